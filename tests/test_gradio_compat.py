"""Each touch of Gradio's internals (ui/gradio_compat.py) still holds for the installed Gradio: fast tests that
fail when a release changes one, before the slow browser tests would notice."""

from __future__ import annotations

import inspect
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI

from lychee_gradio.ui import gradio_compat


def test_the_module_says_which_gradio_it_was_checked_against():
    assert gr.__version__.startswith(gradio_compat.GRADIO_CHECKED), (
        f"Gradio {gr.__version__}: check every touch in ui/gradio_compat.py, then update GRADIO_CHECKED"
    )


def test_blocks_still_preprocess_event_data_in_the_method_page_overrides():
    parameters = list(inspect.signature(gr.Blocks.preprocess_data).parameters)
    assert parameters[:5] == ["self", "block_fn", "inputs", "state", "explicit_call"]
    assert inspect.iscoroutinefunction(gr.Blocks.preprocess_data)
    from gradio.context import LocalContext

    assert LocalContext.request.get(None) is None  # a ContextVar, read inside an event


def test_a_translated_label_still_carries_its_key():
    assert gradio_compat.label_key(gr.I18n(en={"greeting": "hi"})("greeting")) == "greeting"
    assert gradio_compat.label_key("plain") is None


def test_examples_still_say_which_inputs_they_set_and_when_they_load():
    with gr.Blocks():
        first, second = gr.Textbox(), gr.Textbox()
        found = gr.Examples([["a", None]], [first, second])
        gradio_compat.clear_unset_on_example(found)
    assert hasattr(found, "inputs_with_examples") and found.load_input_event is not None


def test_event_functions_still_have_api_names_and_visibility():
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.change(lambda x: x, box, box, api_name="named")
        box.submit(lambda x: x, box, box, api_visibility="private")
    assert gradio_compat.named_endpoints(demo) == ["named"]


def test_the_mounted_app_still_holds_tokens_a_cookie_id_and_api_info():
    with gradio_compat.Page() as blocks:
        box = gr.Textbox()
        box.change(lambda x: x, box, box, api_name="echo")
    app, gradio_app = gradio_compat.mount(FastAPI(), blocks)
    assert isinstance(gradio_app.tokens, dict) and gradio_app.cookie_id and hasattr(gradio_app, "api_info")
    assert blocks.has_launched
    cookie, token = gradio_compat.session_for_key(gradio_app, "t0ken")
    scope = {"headers": [(b"cookie", f"{cookie}=t0ken".encode())]}
    assert gradio_compat.logged_in(gradio_app, scope)
    assert "named_endpoints" in blocks.get_api_info()


def test_the_login_route_still_sets_the_cookies_the_gate_reads():
    from gradio import routes

    source = inspect.getsource(routes.App.create_app)
    assert 'f"access-token-{app.cookie_id}"' in source and 'f"access-token-unsecure-{app.cookie_id}"' in source


def test_run_history_still_follows_the_blocks_switch_and_its_header():
    from gradio import history

    assert "run_history" in inspect.getsource(history.resolve_target)
    assert history.BUCKET_HEADER.startswith("x-gradio-")  # the edge drops every x-gradio-* request header


def test_gradio_still_leaves_cors_to_a_parent_app_that_configures_its_own():
    from gradio.route_utils import CustomCORSMiddleware

    assert "CORSMiddleware" in inspect.getsource(CustomCORSMiddleware.parent_configures_cors)


def test_blocks_still_take_delete_cache():
    assert gr.Blocks(delete_cache=(60, 600)).delete_cache == (60, 600)


def test_the_share_tunnel_is_still_set_up_the_way_open_share_link_calls_it():
    from gradio import networking

    assert len(inspect.signature(networking.setup_tunnel).parameters) == 5


def test_the_image_input_hands_on_the_uploads_path_unopened_and_writes_nothing_into_the_package(tmp_path):
    from gradio.data_classes import FileData

    from lychee_gradio.ui.layout import ImageBox

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    box = ImageBox(type="filepath")
    assert box.get_block_name() == "image"
    assert box.preprocess(FileData(path=str(not_an_image))) == str(not_an_image)  # gr.Image would open it
    package = Path(__file__).resolve().parent.parent / "lychee_gradio"
    assert list(package.rglob("*.pyi")) == []


@pytest.mark.parametrize("word", sorted(gradio_compat.GRADIO_WORDS_ZH))
def test_every_gradio_word_the_chinese_page_translates_is_still_in_gradios_frontend(word):
    frontend = Path(gr.__file__).parent / "templates" / "frontend"
    assert any(word.encode() in path.read_bytes() for path in frontend.rglob("*.js")), word
