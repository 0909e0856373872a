"""The package's shape: every module imports, none outgrows one job, no import cycle, a thin CLI."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import lgml

ROOT = Path(lgml.__file__).parent
MODULES = sorted(".".join(("lgml", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
                 for p in ROOT.rglob("*.py") if p.name != "__main__.py")
MAX_MODULE_LINES = 600
MAX_COMMAND_LINES = 30


def _path(module: str) -> Path:
    parts = module.split(".")[1:]
    folder = ROOT.joinpath(*parts)
    return folder / "__init__.py" if folder.is_dir() else ROOT.joinpath(*parts[:-1], parts[-1] + ".py")


def _top_level_imports(module: str) -> set[str]:
    """lgml modules imported when ``module`` is imported (not those imported inside functions)."""
    tree = ast.parse(_path(module).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lgml")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lgml"):
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return {m for m in found if m in MODULES and m != module}


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("module", MODULES)
def test_no_module_holds_more_than_one_job(module):
    lines = len(_path(module).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines"


def test_no_import_cycle():
    graph = {m: _top_level_imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_cli_commands_only_wire():
    tree = ast.parse((ROOT / "cli.py").read_text(encoding="utf-8"))
    long = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any("command" in ast.unparse(d) for d in node.decorator_list):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = body[-1].end_lineno - body[0].lineno + 1
            if lines > MAX_COMMAND_LINES:
                long.append(f"{node.name} ({lines} lines)")
    assert long == [], f"command bodies over {MAX_COMMAND_LINES} lines: {long}"
