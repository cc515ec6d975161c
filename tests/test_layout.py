"""The package's shape: imports point one way, and a plain wheel install has everything the app needs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, served_command

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lychee_gradio"

# The layers of the README's map, lowest first: a module may import only modules of a lower layer
# (or of its own layer, where noted by equal numbers and no cycle).
LAYERS = {
    "settings": 0, "ranking": 0, "families": 0, "metrics": 0, "labels": 0, "telemetry": 0, "image_urls": 0,
    "inputs": 1,
    "prompt": 2, "cache": 2,
    "encoding": 3, "weights": 3,
    "scorer": 4, "naive": 4, "random_model": 4, "registry": 4,
    "evaluation": 5, "rest_api": 5, "cluster": 5,
    "app": 6, "mcp_tools": 6,
    "server": 7,
    "cli": 8, "serve_app": 8, "bench": 8,  # entry points: the lychee command, Ray Serve's, the benchmark
}


def package_imports(module: str) -> set[str]:
    """The package modules `module` imports anywhere in its source, lazy imports inside functions included."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lychee_gradio."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lychee_gradio."))
    return found - {"__init__"} - {"__version__"}


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_every_module_has_a_place_on_the_map():
    assert set(modules()) == set(LAYERS)


def test_imports_point_one_way_and_nothing_imports_the_cli():
    back_edges = [(module, imported) for module in modules() for imported in package_imports(module)
                  if imported in LAYERS and LAYERS[imported] > LAYERS[module]]
    assert back_edges == []
    assert [m for m in modules() if "cli" in package_imports(m)] == []


def test_the_import_graph_has_no_cycle():
    graph = {module: package_imports(module) & set(LAYERS) for module in modules()}
    visiting, done = set(), set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in visiting, f"import cycle: {' -> '.join(path + [module])}"
        if module in done:
            return
        visiting.add(module)
        for imported in graph[module]:
            visit(imported, path + [module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])


def test_every_module_imports_in_a_fresh_interpreter_without_pulling_in_the_cli():
    # serve_app is Ray Serve's entry point and imports Ray by design; nothing else may.
    names = ", ".join(repr(f"lychee_gradio.{m}") for m in modules() if m not in ("cli", "serve_app"))
    code = (f"import importlib, sys\nfor name in [{names}]:\n    importlib.import_module(name)\n"
            "assert 'lychee_gradio.cli' not in sys.modules, 'a library module imported the CLI'\n"
            "assert 'ray' not in sys.modules, 'importing the package imported ray'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# -- a plain install, as a user gets it -----------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this checkout installed (no -e) into a fresh venv with the runtime dependencies only."""
    work = tmp_path_factory.mktemp("wheel-install")
    wheels = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=600)
    (wheel,) = wheels.glob("lychee_gradio-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements.txt"), str(wheel)],
                   check=True, timeout=1200)
    return venv


def test_the_runtime_install_holds_no_test_tool(installed):
    listed = subprocess.run([str(installed / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert {"pytest", "playwright", "cohere", "litellm", "langchain-cohere"} & names == set()


def test_the_installed_wheel_serves_the_demo_with_its_examples(installed, tmp_path):
    port = free_port()
    # Run outside the checkout, so that nothing can be imported from the source tree.
    with served_command([str(installed / "bin" / "lychee"), "load", "--demo", "--port", str(port)], cwd=tmp_path,
                        env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=300):
        url = f"http://127.0.0.1:{port}"
        response = httpx.post(f"{url}/v1/rerank", json={"query": "white cup", "documents": ["a cup", "a plate"]},
                              timeout=60)
        assert response.status_code == 200
        assert sorted(r["index"] for r in response.json()["results"]) == [0, 1]
        # The page's examples are there: images, the cup descriptions and the evaluation sample ...
        config = httpx.get(f"{url}/config", timeout=30).text
        for shown in ("mountain_cup.png", "北欧风手绘山形白瓷咖啡杯", "sample.jsonl"):
            assert shown in config
        # ... and they come from the installed package, not from a checkout.
        where = subprocess.run([str(installed / "bin" / "python"), "-c",
                                "from lychee_gradio.app import ASSETS_DIR; print(ASSETS_DIR)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
        assert "site-packages" in where and (Path(where) / "eval" / "images.zip").is_file()
