"""The layer rules, checked on every import statement in the project (module level and inside functions).

- The runtime (``mcp_gyms``) imports nothing from ``synthesis``, ``eval`` or ``rl``, except the CLI, the
  top of the house, which imports a package's command only inside the function that runs it (so the
  runtime works without the extras installed).
- ``eval`` and ``rl`` reach gyms only through MCP: they never import the modules that run gym code
  (the sandbox, its workers, the episode engine), only the client, the wire protocol, the bank's records
  and the serving entry points that start a server for them.
- ``eval`` (the evaluator) imports neither ``synthesis`` nor ``rl``; ``synthesis`` (which measures
  difficulty with the evaluator) and ``rl`` (which exports evaluation runs as SFT data) may use ``eval``,
  but not each other.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mcp_gyms", "synthesis", "eval", "rl")
CLI = ROOT / "mcp_gyms" / "cli.py"
#: Files that run inside a sandbox with a path of their own, not as modules of the project.
RUN_AS_SCRIPTS = ("synthesis.sandboxed.",)

#: Runtime modules that run gym code in this process or manage the processes that do.
GYM_CODE_MODULES = {"mcp_gyms.sandbox", "mcp_gyms.sandbox_worker", "mcp_gyms.zygote", "mcp_gyms.jail",
                    "mcp_gyms.episode", "mcp_gyms.episode_manager"}
FORBIDDEN = {
    "mcp_gyms": {"synthesis", "eval", "rl"},
    "synthesis": {"rl"},
    "eval": {"synthesis", "rl", *GYM_CODE_MODULES},
    "rl": {"synthesis", *GYM_CODE_MODULES},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str | None = None, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """Every module an import statement in ``path`` names (relative imports resolved), with its line;
    with ``top_level_only``, only the statements that run when the module is imported."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    tree = ast.parse(path.read_text(), str(path))
    for node in _top_level(tree) if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]  # from pkg import module
    return found


def _top_level(tree: ast.Module) -> list[ast.AST]:
    """The statements of a module that run at import: all but function bodies."""
    found: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        todo += [c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.FunctionDef | ast.AsyncFunctionDef)]
    return found


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _breaks(name: str, forbidden: set[str]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_crosses_a_layer(package: str) -> None:
    sources = _sources(package)
    assert sources, f"no sources found for {package}"
    broken = [f"{p.relative_to(ROOT)}:{line} imports {name}"
              for p in sources if p != CLI for line, name in _imports(p) if _breaks(name, FORBIDDEN[package])]
    assert not broken, f"{package} crosses a layer:\n" + "\n".join(broken)


def test_the_cli_imports_other_packages_only_when_a_command_runs() -> None:
    eager = [f"line {line} imports {name}" for line, name in _imports(CLI, top_level_only=True)
             if _breaks(name, FORBIDDEN["mcp_gyms"])]
    assert not eager, "the CLI imports a package above the runtime at import time:\n" + "\n".join(eager)


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """The walk would catch the ways a layer is usually crossed by accident."""
    sample = tmp_path / "probe.py"
    sample.write_text("def f():\n    from eval.cli import main\n    from . import sandbox\n    import rl.gyms\n")
    names = {name for _, name in _imports(sample, module="mcp_gyms.probe")}
    assert {"eval.cli", "mcp_gyms.sandbox", "rl.gyms"} <= names
    assert _breaks("eval.cli", FORBIDDEN["mcp_gyms"]) and _breaks("mcp_gyms.sandbox", FORBIDDEN["eval"])
    assert not _breaks("evaluation", FORBIDDEN["mcp_gyms"])
    top = {name for _, name in _imports(sample, module="mcp_gyms.probe", top_level_only=True)}
    assert not top & {"eval.cli", "rl.gyms"}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports(package: str) -> None:
    """Every module of the package imports (a name moved or renamed elsewhere breaks it here, not in a user's hands)."""
    failed = []
    for path in _sources(package):
        name = _module_name(path)
        if name.startswith(RUN_AS_SCRIPTS):
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every module that fails, with why
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not failed, "\n".join(failed)
