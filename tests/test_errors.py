"""One error scheme: every error class of the package has a code that gives its status and words, the same on
every door; the page words it by its code; an error travels (pickled, as on Ray) as itself."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import httpx
import pytest

from lychee_gradio.contract import (
    ERRORS,
    InputError,
    LycheeError,
    ScorerBusyError,
    ScoringCancelledError,
    ScoringOutOfMemoryError,
    ScoringTimeoutError,
    status_of,
)
from lychee_gradio.engine.memory import WontFitError
from lychee_gradio.engine.weights import ModelLoadError
from lychee_gradio.evaluation import BadLine
from lychee_gradio.ui.error_words import ERRORS_ZH, reason
from lychee_gradio.ui.forms import PageError

PACKAGE = Path(__file__).resolve().parent.parent / "lychee_gradio"


def defined_exception_classes() -> list[tuple[str, str]]:
    """(module, class) of every class in the package whose bases name an Error or Exception."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                if any(base.endswith(("Error", "Exception")) for base in bases):
                    found.append((str(path.relative_to(PACKAGE)), node.name))
    return found


def test_every_exception_class_the_package_defines_derives_from_the_one_base():
    import importlib

    classes = defined_exception_classes()
    assert len(classes) >= 10
    for module, name in classes:
        imported = importlib.import_module("lychee_gradio." + module[:-3].replace("/", "."))
        kind = getattr(imported, name)
        assert issubclass(kind, LycheeError), f"{module}:{name}"
        assert kind.code in ERRORS, f"{module}:{name} has no known code"


@pytest.mark.parametrize(
    "error",
    [
        InputError("documents[2].image", "image_pixels", width=1, height=2, pixels=2, limit=1),
        ScoringTimeoutError(3.0),
        ScoringCancelledError(),
        ScorerBusyError(),
        ScoringOutOfMemoryError(812),
        ModelLoadError("no weights in /x"),
        WontFitError("needs 17 GB"),
        PageError("Document 3: no text"),
        BadLine(4, InputError(None, "json_object")),
    ],
)
def test_an_error_keeps_its_code_status_words_and_type_when_pickled(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert (again.code, again.status, again.field, str(again)) == (error.code, error.status, error.field, str(error))
    assert status_of(error) == ERRORS[error.code][0] or not isinstance(error, (InputError, ScorerBusyError))


def test_the_scoring_errors_have_the_statuses_the_doors_answer():
    assert [
        e.status for e in (ScoringTimeoutError(1), ScoringCancelledError(), ScorerBusyError(), ScoringOutOfMemoryError(1))
    ] == [504, 499, 503, 503]
    assert "timeout of 1 s" in str(ScoringTimeoutError(1))


def test_every_code_a_caller_can_get_has_chinese_words_too():
    worded_elsewhere = {
        "page",
        "model_load",
        "calibration_file",  # the operator's, at start, in English like model_load
        "collection",  # lychee index's, the operator's
        "wont_fit",
        "url_refused",
        "bad_line",
        "internal",
        "replica_failed",
        "timeout",
        "stopped",
        "busy",
        "out_of_memory",
    }  # the page words these itself
    assert set(ERRORS) - set(ERRORS_ZH) - worded_elsewhere == set()
    chinese = reason(InputError("q", "image_aspect", width=1, height=300, limit=200), "zh")
    assert "200" in chinese and "倍" in chinese


def test_mcp_answers_the_same_code_and_message_as_v1_rerank(live_app, scorer):
    from lychee_gradio import app
    from lychee_gradio.config import Config

    from .helpers import mcp_call

    running = app.start(scorer, app.ServerSettings(port=0, mcp=True, config=Config()))
    try:
        bad = {"query": "q", "documents": ["fine", {"image": "bm90IGFuIGltYWdl"}]}
        rest = httpx.post(f"{running.url}v1/rerank", json=bad, timeout=60).json()
        tool = mcp_call(running.url, "rerank", bad)
    finally:
        running.close()
    assert tool.isError
    said = json.loads(tool.content[0].text)
    assert (said["code"], said["message"], said["field"]) == (rest["code"], rest["message"], rest["field"])
    assert rest["code"] == "image_unidentified" and rest["field"] == "documents[1].image"
