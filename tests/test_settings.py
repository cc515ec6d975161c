"""Every setting declared once (settings.SETTINGS): the CLI's flags, the Ray-native entry point's arguments, the
replicas' load options and docs/configuration.md all come from the one table, with its defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lychee_gradio import settings
from lychee_gradio.cli import _load_options, build_parser, server_settings
from lychee_gradio.config import Config, Limits
from lychee_gradio.explain import DEFAULT_GRID
from lychee_gradio.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def flags_of(command: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return {action.dest: action for action in sub.choices[command]._actions}


def test_every_setting_is_a_flag_of_lychee_load_and_share_with_the_tables_default(monkeypatch):
    for setting in SETTINGS:  # an environment variable overrides its default (the tests set $LYCHEE_DTYPE)
        if setting.env:
            monkeypatch.delenv(setting.env, raising=False)
    for command in ("load", "share"):
        flags = flags_of(command)
        for setting in SETTINGS:
            action = flags[setting.name]
            assert setting.option in action.option_strings, setting.name
            if setting.kind == "bool":
                assert action.default is setting.default, setting.name
            elif setting.name != "model":
                assert action.default == setting.default, setting.name


def test_every_flag_of_lychee_load_has_its_lychee_variable_in_the_configuration_page():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    flags = flags_of("load")
    for setting in SETTINGS:
        assert setting.option in flags[setting.name].option_strings
        assert setting.env == "LYCHEE_" + setting.name.upper() or setting.name in ("model", "dtype", "api_key")
        assert f"`{setting.option}` (`${setting.env}`)" in page, setting.name


def test_a_variable_overrides_the_default_and_a_flag_overrides_the_variable(monkeypatch):
    monkeypatch.setenv("LYCHEE_MAX_BODY_MB", "16")
    monkeypatch.setenv("LYCHEE_MCP", "yes")
    args = build_parser().parse_args(["load"])
    assert (args.max_body_mb, args.mcp) == (16.0, True)
    assert build_parser().parse_args(["load", "--max-body-mb", "8"]).max_body_mb == 8.0
    assert build_parser().parse_args(["load", "--no-mcp"]).mcp is False  # a flag wins either way
    monkeypatch.setenv("LYCHEE_CHECK_MEMORY", "no")
    assert build_parser().parse_args(["load", "--check-memory"]).check_memory is True
    monkeypatch.setenv("LYCHEE_PORT", "eighty")
    with pytest.raises(SystemExit, match="LYCHEE_PORT"):
        build_parser()


def test_lychee_eval_takes_the_model_settings():
    flags = flags_of("eval")
    assert {setting.name for setting in SETTINGS if setting.eval} <= set(flags)


def test_serve_app_reads_the_same_names_with_the_same_parser_as_the_flags():
    args = build_parser().parse_args(
        [
            "load",
            "--api-key",
            "k",
            "--max-documents",
            "20",
            "--request-timeout",
            "0",
            "--allow-image-urls",
            "--allowed-image-hosts",
            "a.example,b.example",
            "--image-url-timeout",
            "2.5",
            "--max-request-pixels",
            "1000000",
            "--max-body-mb",
            "2",
            "--cache-scope",
            "global",
        ]
    )
    from_cli = server_settings(args, None).config
    from_options = Config.from_options(
        {
            "api_key": "k",
            "max_documents": "20",
            "request_timeout": "0",
            "allow_image_urls": "true",
            "allowed_image_hosts": "a.example,b.example",
            "image_url_timeout": "2.5",
            "max_request_pixels": "1000000",
            "max_body_mb": 2,
            "cache_scope": "global",
        }
    )
    assert from_options == from_cli
    assert from_cli.request_timeout is None and from_cli.limits.max_documents == 20
    assert from_cli.limits.max_body_bytes == 2 * 2**20


@pytest.mark.parametrize("text", ["maybe", "2", "yes please"])
def test_a_boolean_is_read_one_way_everywhere(text):
    with pytest.raises(ValueError, match="expected true or false"):
        settings.parse_options({"allow_image_urls": text})
    assert settings.parse_options({"allow_image_urls": "off", "mcp": "yes"}) == {"allow_image_urls": False, "mcp": True}


def test_the_defaults_of_config_and_limits_are_the_tables():
    config = server_settings(build_parser().parse_args(["load"]), None).config
    assert config == Config() == Config.from_options({})
    assert Limits().max_body_bytes == settings.default_of("max_body_mb") * 2**20
    assert Limits().image_memory_in_flight == settings.default_of("image_memory_mb") * 2**20


def test_a_ray_native_replica_gets_the_image_cache_lychee_load_gives():
    pytest.importorskip("ray")
    from lychee_gradio import serve_app

    application = serve_app.build({"model": "/models/x"})
    scorer = application._bound_deployment.init_args[0]
    replica_options = scorer._bound_deployment.init_args[1]
    local = _load_options(build_parser().parse_args(["load"]), cache=False)
    assert replica_options == local
    assert replica_options["image_cache_bytes"] == 1024 * 2**20


def test_serve_app_refuses_a_name_no_setting_has():
    pytest.importorskip("ray")
    from lychee_gradio import serve_app

    with pytest.raises(ValueError, match="unknown settings max_body_bytes"):
        serve_app.build({"max_body_bytes": "1"})


def test_every_limit_has_a_flag():
    flags = flags_of("load")
    for name in ("max_zip_mb", "max_zip_members", "max_image_url_mb", "image_memory_mb", "max_upload_request_mb"):
        assert name in flags


def test_the_configuration_page_holds_the_tables_every_row():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert settings.markdown_table() in page


def test_the_explain_grid_default_is_written_once():
    import re

    sources = [path for path in (ROOT / "lychee_gradio").rglob("*.py")]
    literal = [
        str(path.relative_to(ROOT))
        for path in sources
        if re.search(r"grid[^\n=]{0,40}(=|:)\s*8\b|\bgrid or 8\b|value=8\b", path.read_text(encoding="utf-8"))
    ]
    assert literal == [], "the grid default is explain.DEFAULT_GRID"
    assert DEFAULT_GRID == 8
