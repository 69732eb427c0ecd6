"""The import rules of the package, read from the code itself.

The direction is ``cli -> tools -> build -> spec``, with ``render`` beside the tools: it formats
their result objects and never runs their logic. These tests parse every module of ``nncli/``
with ``ast`` (imports inside functions count: a lazy import still ties two modules together;
imports under ``if TYPE_CHECKING:`` do not, they only name types) and check:

- ``nncli/spec/`` and ``nncli/train/config.py`` import no torch, directly or through other nncli
  modules;
- ``nncli/render/`` imports no tool module;
- no module outside ``nncli/cli/`` imports it (except ``python -m nncli``'s ``__main__``);
- there is no circle among the top-level parts of ``nncli`` (``train``, ``sweep``, ``render``, ...).

Each rule is also run on a copy of the tree with a wrong-way import planted, and must catch it.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "nncli"

# Top-level parts that run a command's logic: render may name their result types (under
# TYPE_CHECKING), never import them.
TOOLS = {
    "lint",
    "params",
    "diagram",
    "gradcheck",
    "probe",
    "train",
    "evaluate",
    "sweep",
    "compare",
    "build",
    "data",
    "attack",
    "export",
    "transfer",
}
# Modules allowed to import nncli.cli: its own modules and the package's `python -m nncli`.
CLI_IMPORTERS = {"nncli.__main__"}
TORCH_FREE = ("nncli.spec", "nncli.train.config")


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports (absolute names), lazy ones included, TYPE_CHECKING ones not."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from nncli import data` imports the module nncli.data
            found.update(f"{module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the nncli modules it imports (names resolved to existing modules)."""
    paths = {module_name(root, p): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for imported in imports_of(path, name):
            if imported == "torch" or imported.startswith("torch."):
                targets.add("torch")
            # `from nncli.x import y`: y may be a module or a name in x; keep whichever exists
            while imported and imported not in paths and imported.startswith("nncli"):
                imported = imported.rpartition(".")[0]
            if imported in paths and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def part(module: str) -> str:
    """The top-level part a module belongs to: nncli.train.loop -> train."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def torch_reach(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A chain of imports from ``start`` to torch, or None."""
    stack, seen = [(start, [start])], {start}
    while stack:
        node, chain = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == "torch":
                return chain + ["torch"]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, chain + [nxt]))
    return None


def torch_free_violations(graph) -> list[str]:
    bad = []
    for name in graph:
        if any(name == m or name.startswith(m + ".") for m in TORCH_FREE):
            chain = torch_reach(graph, name)
            if chain:
                bad.append(" -> ".join(chain))
    return bad


def render_violations(graph) -> list[str]:
    return [
        f"{name} imports {t}"
        for name, targets in graph.items()
        if part(name) == "render"
        for t in targets
        if t != "torch" and part(t) in TOOLS
    ]


def cli_violations(graph) -> list[str]:
    return [
        f"{name} imports {t}"
        for name, targets in graph.items()
        if name not in CLI_IMPORTERS and part(name) != "cli"
        for t in targets
        if t == "nncli.cli" or t.startswith("nncli.cli.")
    ]


def part_cycles(graph) -> list[list[str]]:
    """Circles among top-level parts (imports inside one part are ignored)."""
    parts: dict[str, set[str]] = {}
    for name, targets in graph.items():
        src = part(name)
        for t in targets:
            if t != "torch" and part(t) != src and src and part(t):
                parts.setdefault(src, set()).add(part(t))
    cycles, state = [], {}

    def dfs(node, chain):
        state[node] = "open"
        for nxt in sorted(parts.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(chain[chain.index(nxt) :] + [nxt])
            elif nxt not in state:
                dfs(nxt, chain + [nxt])
        state[node] = "done"

    for node in sorted(parts):
        if node not in state:
            dfs(node, [node])
    return cycles


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE)


def test_spec_and_train_config_import_no_torch(graph):
    assert "nncli.spec" in graph and "nncli.train.config" in graph
    assert torch_free_violations(graph) == []


def test_render_imports_no_tool(graph):
    assert any(part(name) == "render" for name in graph)
    assert render_violations(graph) == []


def test_no_tool_imports_cli(graph):
    assert cli_violations(graph) == []


def test_no_circle_among_parts(graph):
    assert part_cycles(graph) == []


def test_torch_free_modules_really_load_without_torch():
    """The same rule, observed: importing them in a fresh interpreter leaves torch unloaded."""
    code = (
        "import sys, nncli.spec, nncli.train.config, nncli.cli; "
        "print(sorted(m for m in ('torch',) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


PLANTS = {
    # file (relative to nncli/) -> the wrong-way line planted at its end, and the rule that must catch it
    "spec/parse.py": ("\ndef _planted():\n    import torch\n", torch_free_violations),
    "train/config.py": ("\nfrom nncli.build import build_model\n", torch_free_violations),
    "render/__init__.py": ("\ndef _planted():\n    from nncli.sweep import run_sweep\n", render_violations),
    "params.py": ("\ndef _planted():\n    from nncli.cli import main\n", cli_violations),
    "build/builder.py": ("\ndef _planted():\n    from nncli import params\n", part_cycles),
}


@pytest.mark.parametrize("relpath", sorted(PLANTS))
def test_rules_catch_a_planted_wrong_way_import(tmp_path, relpath):
    copy = tmp_path / "nncli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    line, rule = PLANTS[relpath]
    assert rule(import_graph(copy)) in ([], [[]])  # clean before planting
    with open(copy / relpath, "a", encoding="utf-8") as f:
        f.write(line)
    assert rule(import_graph(copy)), f"planted import in {relpath} not caught"


def test_type_checking_imports_do_not_count(tmp_path):
    root = tmp_path / "nncli"
    (root / "render").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sweep.py").write_text("X = 1\n")
    (root / "render" / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nncli.sweep import X\n"
    )
    assert render_violations(import_graph(root)) == []
    (root / "render" / "__init__.py").write_text("from nncli.sweep import X\n")
    assert render_violations(import_graph(root)) == ["nncli.render imports nncli.sweep"]


# -- private names and function length ------------------------------------------------------------
# A private name (`_x`) is its module's own business: another top-level part that needs it gets a
# public name instead, so a rename inside one part never breaks another. And a function longer
# than a screen is a function whose steps have no names.
MAX_FUNCTION_LINES = 60
# Functions still over the limit, each with the reason it is allowed for now. Empty is the goal;
# an entry whose function has shrunk fails the test, so the list only ever gets shorter.
LONG_FUNCTION_ALLOWED: dict[str, str] = {}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")[: -node.level]
    return ".".join(base + ([node.module] if node.module else []))


def private_import_violations(root: Path) -> list[str]:
    """``module: from X import _name`` for each private name imported from another top-level part."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(root, path)
        # a package's own relative imports resolve from the package itself
        here = name + ".__init__" if path.name == "__init__.py" else name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(here, node)
            if source.split(".")[0] != "nncli" or part(source) == part(name):
                continue
            bad += [
                f"{name}: from {source} import {alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return bad


def _is_typer_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated ``@app.command(...)`` or ``@app.callback(...)``: the signature is the options."""
    return any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("command", "callback")
        for d in node.decorator_list
    )


def function_lengths(root: Path) -> dict[str, int]:
    """``relpath:qualname`` -> lines of every function's body under ``root``, docstring included.

    The signature does not count: the formatter writes one parameter per line where they do not
    fit on one, and a Typer command declares one option per parameter."""
    lengths = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        _visit_functions(tree, rel, "", lengths)
    return lengths


def _visit_functions(node: ast.AST, rel: str, prefix: str, lengths: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = child.body[0].lineno
            lengths[f"{rel}:{prefix}{child.name}"] = child.end_lineno - start + 1
            _visit_functions(child, rel, f"{prefix}{child.name}.", lengths)
        elif isinstance(child, ast.ClassDef):
            _visit_functions(child, rel, f"{prefix}{child.name}.", lengths)
        else:
            _visit_functions(child, rel, prefix, lengths)


def long_functions(root: Path, under: str = "") -> list[str]:
    """Functions over MAX_FUNCTION_LINES under ``root/under``, ``relpath:name (N lines)``."""
    return [
        f"{name} ({n} lines)"
        for name, n in function_lengths(root).items()
        if n > MAX_FUNCTION_LINES and name.startswith(under)
    ]


def test_no_private_name_crosses_a_part():
    assert private_import_violations(PACKAGE) == []


def test_no_function_in_train_is_over_60_lines():
    assert any(name.startswith("train/") for name in function_lengths(PACKAGE))
    assert long_functions(PACKAGE, "train/") == []


def test_every_function_is_at_most_60_lines_or_allowed():
    over = {entry.partition(" (")[0] for entry in long_functions(PACKAGE)}
    assert sorted(over - set(LONG_FUNCTION_ALLOWED)) == []
    assert sorted(set(LONG_FUNCTION_ALLOWED) - over) == [], "shrunk under the limit: drop it from the list"


LONG_BODY = "\ndef _planted():\n" + "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES)) + "    return x0\n"
CODE_PLANTS = {
    # file (relative to nncli/) -> what is planted at its end, and the rule that must catch it
    "sweep/axes.py": ("\nfrom nncli.build.builder import _planted_private\n", private_import_violations),
    "render/__init__.py": ("\ndef _planted():\n    from ..spec.parse import _type_name\n", private_import_violations),
    "train/loop.py": (LONG_BODY, lambda root: long_functions(root, "train/")),
    "params.py": (LONG_BODY, long_functions),
    "cli/check.py": (
        "\n@app.command()\ndef planted(\n"
        + "    a: int = 0,\n" * 70
        + "):\n    pass\n"
        + LONG_BODY.replace("_planted", "_planted_helper"),
        long_functions,
    ),
}


@pytest.mark.parametrize("relpath", sorted(CODE_PLANTS))
def test_code_rules_catch_a_planted_violation(tmp_path, relpath):
    copy = tmp_path / "nncli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    code, rule = CODE_PLANTS[relpath]
    before = set(rule(copy))
    with open(copy / relpath, "a", encoding="utf-8") as f:
        f.write(code)
    new = set(rule(copy)) - before
    assert new, f"planted violation in {relpath} not caught"
    if relpath.startswith("cli/"):  # a command's 70 option lines do not count, a helper's body does
        assert [n for n in new if ":planted " in n] == [] and [n for n in new if "_planted_helper" in n]


def test_same_part_private_imports_and_short_command_bodies_pass(tmp_path):
    root = tmp_path / "nncli"
    (root / "spec").mkdir(parents=True)
    (root / "cli").mkdir()
    (root / "__init__.py").write_text("")
    (root / "spec" / "__init__.py").write_text("from .parse import _found\nfrom nncli.spec.parse import _x\n")
    (root / "spec" / "parse.py").write_text("_found = _x = 1\n")
    (root / "cli" / "__init__.py").write_text("from ..spec.parse import _found\n")
    assert private_import_violations(root) == ["nncli.cli: from nncli.spec.parse import _found"]
    (root / "cli" / "cmd.py").write_text("@app.command()\ndef run(\n" + "    a: int = 0,\n" * 70 + "):\n    pass\n")
    assert long_functions(root) == []
