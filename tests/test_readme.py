"""The code blocks of the README and of docs/*.md run as written, against a live server with the tiny model.

Each bash and python block runs in a fresh process from a folder that holds the repository's
`lychee_gradio/` (so relative paths such as `lychee_gradio/assets/images/...` resolve as they do
from the repository root, and files a block writes land in a temporary folder). Two things are
substituted, both in the reader's place: the server's address (`http://127.0.0.1:7860`, which the
test server cannot be sure to get) and the weights' folder (`/models/lychee-rerank-mm`, which is
the tiny checkpoint here; `LycheeScorer.load()` finds it through `$LYCHEE_MODEL` as the README
says). A block the test cannot run says why in a `<!-- readme-test: skip (...) -->` line above it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lychee_gradio import app
from lychee_gradio.config import Config

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK_RE = re.compile(r"(?:<!-- readme-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)


def blocks() -> list[tuple[str, str, str, str | None]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        found += [
            (
                f"{page.relative_to(ROOT)} line {text[: m.start()].count(chr(10)) + 1}",
                m.group("lang"),
                m.group("code"),
                m.group("marker"),
            )
            for m in BLOCK_RE.finditer(text)
        ]
    return found


RUNNABLE = [(line, lang, code) for line, lang, code, marker in blocks() if lang in ("bash", "python") and not marker]


def test_every_command_block_is_run_here_or_says_why_not():
    for line, lang, _, marker in blocks():
        if lang in ("bash", "python") and marker:
            assert re.fullmatch(r"skip \(.{10,}\)", marker), f"{line}: a skip needs its reason"
    assert len(RUNNABLE) >= 8  # gradio_client, the curls, the frameworks, Python, lychee eval


@pytest.fixture(scope="module")
def readme_server(scorer):
    running = app.start(scorer, app.ServerSettings(port=0, config=Config()))
    yield running.url.rstrip("/")
    running.close()


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "lychee_gradio").symlink_to(ROOT / "lychee_gradio", target_is_directory=True)
    return tmp_path


def test_the_readme_is_short_and_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    first = BLOCK_RE.search(readme).group("code")
    assert first.startswith("./start.sh") and "./run_tests.sh" in first


@pytest.mark.parametrize(("line", "lang", "code"), RUNNABLE, ids=[line for line, _, _ in RUNNABLE])
def test_the_readme_block_runs_as_written(line, lang, code, readme_server, tiny_model_dir, workdir):
    code = code.replace("http://127.0.0.1:7860", readme_server).replace("/models/lychee-rerank-mm", str(tiny_model_dir))
    env = {
        **os.environ,
        "LYCHEE_MODEL": str(tiny_model_dir),
        "XDG_CACHE_HOME": str(workdir / ".cache"),  # where LycheeScorer.load("demo") builds the demo model
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{line} failed:\n{result.stdout}\n{result.stderr}"
    if "curl" in code:
        answers = [json.loads(out) for out in result.stdout.splitlines() if out.strip()]
        # each a ranking in its dialect: Cohere's results, TEI's list, vLLM's data (never an error body)
        assert len(answers) == code.count("curl ") and all(
            answer if isinstance(answer, list) else answer.get("results") or answer.get("data") for answer in answers
        )
