"""The package's shape: imports point one way, and a plain wheel install has everything the app needs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import free_port, served_command

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lychee_gradio"

# The layers, read from docs/design.md's module map (the one copy of it): each layer's modules (a folder ends in
# "/") and the layers it may import besides its own.
MAP_RE = re.compile(r"^\| (\w+) \| ([^|]+) \|([^|]*)\|$", re.M)
LAYERS = {
    layer: (modules.split(), set(allowed.split()))
    for layer, modules, allowed in MAP_RE.findall((ROOT / "docs" / "design.md").read_text(encoding="utf-8"))
    if layer != "layer"
}
ALLOWED = {layer: allowed for layer, (_, allowed) in LAYERS.items()}


def group(module: str) -> str:
    for layer, (members, _) in LAYERS.items():
        for member in members:
            if module == member.rstrip("/") or (member.endswith("/") and module.startswith(member[:-1] + ".")):
                return layer
    raise AssertionError(f"{module} has no place on the map (docs/design.md)")


def module_name(path: Path) -> str:
    """A file's module name in the package: `inputs.images`; a package's `__init__.py` is the package (`inputs`),
    the package's own `__init__.py` is `__init__`."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def modules() -> list[str]:
    """Every module of the package, packages (their `__init__.py`) included: their imports count too."""
    return sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def source_of(module: str) -> Path:
    if module == "__init__":
        return PACKAGE / "__init__.py"
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def package_imports(module: str) -> set[str]:
    """The package modules `module` imports anywhere in its source, lazy imports inside functions included. A
    name imported from a package is that package's module when it is one (`from . import kv_cache`), else the
    package itself (`from .inputs import to_item` imports `inputs`, whose `__init__` imports the rest)."""
    path = source_of(module)
    here = [] if module == "__init__" else module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    known = set(modules())
    found = set()

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("lychee_gradio"):
                prefix = node.module.removeprefix("lychee_gradio").lstrip(".")
            else:
                continue
            for alias in node.names:
                name = f"{prefix}.{alias.name}".lstrip(".")
                if name in known:
                    found.add(name)
                elif prefix in known:
                    found.add(prefix)
                elif not prefix:
                    found.add("__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lychee_gradio."):
                    name = alias.name.removeprefix("lychee_gradio.")
                    found.add(name if name in known else name.rsplit(".", 1)[0])
    return found - {module}


def test_every_module_has_a_place_on_the_map():
    for module in modules():
        group(module)


def test_no_test_module_imports_another():
    """Shared helpers live in conftest.py and helpers.py; a test module imports neither another test module."""
    tests = ROOT / "tests"
    names = {p.stem for p in tests.glob("test_*.py")}
    wrong = []
    for path in tests.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                imported = (node.module or "").split(".")[-1] if node.module else None
                targets = [imported] if imported else [alias.name for alias in node.names]
                wrong += [(path.name, t) for t in targets if t in names]
    assert wrong == []


def test_imports_point_one_way_and_nothing_imports_the_cli():
    wrong = [
        (module, imported)
        for module in modules()
        for imported in package_imports(module)
        if group(imported) != group(module) and group(imported) not in ALLOWED[group(module)]
    ]
    assert wrong == []
    assert [m for m in modules() if "cli" in package_imports(m)] == []


def test_the_import_graph_has_no_cycle():
    graph = {module: package_imports(module) for module in modules()}
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


def test_no_module_of_the_package_is_over_450_lines_and_no_other_file_over_600():
    package = {
        str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert package == {}
    files = [*ROOT.glob("*.py"), *(p for folder in ("tests", "examples", "docs") for p in (ROOT / folder).rglob("*.py"))]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}


@pytest.mark.slow
def test_the_page_the_serving_side_and_the_contract_import_without_torch_or_transformers():
    # Every module a front end needs, imported with torch and transformers made unimportable.
    names = [m for m in modules() if group(m) in ("core", "application", "serving", "ui") or m == "app"]
    assert "service" in names and "serving.edge" in names
    code = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'torchvision'):\n"
        "            raise ImportError(f'{name} is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {[f'lychee_gradio.{m}' for m in names]!r}:\n"
        "    importlib.import_module(name)\n"
        "assert not {'torch', 'transformers'} & set(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter_without_pulling_in_the_cli():
    # serve_app (Ray Serve's entry point) and serving.replica_routing (a Ray Serve router) import Ray by design; nothing
    # else may.
    skip = ("cli", "serve_app", "serving.replica_routing", "__init__")
    names = ", ".join(repr(f"lychee_gradio.{m}") for m in modules() if m not in skip)
    code = (
        f"import importlib, sys\nfor name in [{names}]:\n    importlib.import_module(name)\n"
        "assert 'lychee_gradio.cli' not in sys.modules, 'a library module imported the CLI'\n"
        "assert 'ray' not in sys.modules, 'importing the package imported ray'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# -- a plain install, as a user gets it -----------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this checkout installed (no -e) into a fresh venv with the runtime dependencies only."""
    work = tmp_path_factory.mktemp("wheel-install")
    wheels = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True, timeout=600
    )
    (wheel,) = wheels.glob("lychee_gradio-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling every module of torch, transformers and gradio at install took ~55 s here;
    # the demo below compiles only what it imports (about 15 s): 40 s less in all.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-compile", "-r", str(ROOT / "requirements.txt"), str(wheel)],
        check=True,
        timeout=1200,
    )
    return venv


@pytest.mark.slow
def test_the_runtime_install_holds_no_test_tool(installed):
    listed = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert {"pytest", "playwright", "cohere", "litellm", "langchain-cohere"} & names == set()


@pytest.mark.slow
def test_the_installed_wheel_serves_the_demo_with_its_examples(installed, tmp_path):
    port = free_port()
    # Run outside the checkout, so that nothing can be imported from the source tree.
    with served_command(
        [str(installed / "bin" / "lychee"), "load", "--demo", "--port", str(port)],
        cwd=tmp_path,
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
        timeout=300,
    ):
        url = f"http://127.0.0.1:{port}"
        response = httpx.post(f"{url}/v1/rerank", json={"query": "white cup", "documents": ["a cup", "a plate"]}, timeout=60)
        assert response.status_code == 200
        assert sorted(r["index"] for r in response.json()["results"]) == [0, 1]
        # The page's examples are there: images, the cup descriptions and the evaluation sample ...
        config = httpx.get(f"{url}/config", timeout=30).text
        for shown in ("mountain_cup.png", "北欧风手绘山形白瓷咖啡杯", "sample.jsonl"):
            assert shown in config
        # ... and they come from the installed package, not from a checkout.
        where = subprocess.run(
            [str(installed / "bin" / "python"), "-c", "from lychee_gradio.ui.forms import ASSETS_DIR; print(ASSETS_DIR)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        ).stdout.strip()
        assert "site-packages" in where and (Path(where) / "eval" / "images.zip").is_file()


# -- one road through the house ----------------------------------------------------------------------------------


DOORS = [
    "serving/http_api.py",
    "serving/mcp_tools.py",
    "ui/handlers.py",
    "ui/single.py",
    "ui/batch.py",
    "ui/images.py",
    "ui/compare.py",
    "ui/why.py",
    "ui/evaluate.py",
    "ui/forms.py",
]


def calls_of(path: Path) -> list[str]:
    return [
        ast.unparse(node.func) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Call)
    ]


def test_no_door_builds_a_request_context_of_its_own_they_open_the_request_service():
    for door in DOORS:
        calls = calls_of(PACKAGE / door)
        assert not [call for call in calls if call.endswith("RequestContext")], door
        assert not [
            call
            for call in calls
            if call.split(".")[-1] in ("admit_images", "request_rules", "to_item", "to_items", "check_top_n")
        ], door
    for door in ("serving/http_api.py", "serving/mcp_tools.py", "ui/handlers.py"):
        assert any(call.endswith("service.request") for call in calls_of(PACKAGE / door)), door


def test_no_module_reaches_into_a_scorers_private_members():
    reached = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = ast.unparse(node.value)
                if any(word in base.lower() for word in ("scorer", "runner", "replica", "scheduler")):
                    reached.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {base}.{node.attr}")
    assert reached == []


def test_the_engine_has_one_out_of_memory_split_and_one_batch_budget():
    engine = {path.name: path.read_text(encoding="utf-8") for path in (PACKAGE / "engine").glob("*.py")}
    assert [name for name, text in engine.items() if "_remember_fit(" in text and "def _split" in text] == ["scheduler.py"]
    assert [name for name, text in engine.items() if "max_batch_tokens" in text and "def _choose" in text] == ["scheduler.py"]
    assert "def _batches" not in engine["scorer.py"] and "_score_pairs" not in engine["scorer.py"]


def test_every_relative_link_of_the_readme_and_the_docs_names_a_file_that_exists():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken
