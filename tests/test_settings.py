"""One configuration for every door: the CLI and the Ray-native entry point build it from the same defaults."""

from __future__ import annotations

from lychee_gradio.cli import build_parser, server_settings
from lychee_gradio.settings import Config, Limits


def test_flat_options_as_strings_become_the_same_config_the_cli_builds():
    args = build_parser().parse_args(["load", "--api-key", "k", "--max-documents", "20", "--request-timeout", "0",
                                      "--allow-image-urls", "--allowed-image-hosts", "a.example,b.example",
                                      "--image-url-timeout", "2.5", "--max-request-pixels", "1000000"])
    from_cli = server_settings(args, None).config
    from_options = Config.from_options({"api_key": "k", "max_documents": "20", "request_timeout": "0",
                                        "allow_image_urls": "true", "allowed_image_hosts": "a.example,b.example",
                                        "image_url_timeout": "2.5", "max_request_pixels": "1000000",
                                        "unrelated": "ignored"})
    assert from_options == from_cli
    assert from_cli.request_timeout is None and from_cli.limits.max_documents == 20


def test_the_cli_defaults_are_the_configs_defaults():
    config = server_settings(build_parser().parse_args(["load"]), None).config
    assert config.limits == Limits() and config.request_timeout == Config().request_timeout
    assert config.cache_size == Config().cache_size and config.image_cache_mb == Config().image_cache_mb
    assert Config.from_options({}) == Config()
