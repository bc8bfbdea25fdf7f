"""Third-party packages a problem imports, checked against the sandbox's allowlist before anything runs.

KodCode problems use the scientific stack. The sandbox offers :data:`ALLOWED_PACKAGES` — installed with
the ``synth`` extra (``pip install 'codegym-mcp[synth]'``), read from the Python installation by the
jailed workers, which still have no network and no writes outside their temp dir. A problem whose
solution or tests import anything else outside the standard library is dropped at step 0 with a reason
that names the package; so is one that needs an allowlisted package which is not installed here.

Imports are found by parsing (never by running the code): every ``import x`` / ``from x import y`` at
any depth, including ones inside functions, by top-level package name. ``solution`` (the problem's own
module) and ``pytest`` (the sandbox's stand-in) are not packages to install.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import cache

__all__ = ["ALLOWED_PACKAGES", "SANDBOX_PRELOAD", "imported_packages", "package_problem"]

#: Import name -> distribution: what problems may import beyond the standard library.
ALLOWED_PACKAGES: dict[str, str] = {"numpy": "numpy", "scipy": "scipy", "pandas": "pandas"}
_PROVIDED = {"solution", "pytest", "mcp_gyms", "__future__"}
#: Modules the pools that run problem code import before their workers are locked down (scipy and
#: pandas load ctypes on import, which a locked-down worker may not); missing ones are skipped.
SANDBOX_PRELOAD = ("numpy", "scipy", "scipy.special", "scipy.stats", "scipy.optimize", "scipy.linalg",
                   "scipy.sparse", "scipy.sparse.csgraph", "scipy.spatial", "scipy.integrate", "scipy.interpolate",
                   "scipy.signal", "pandas")


def imported_packages(source: str) -> set[str]:
    """Top-level names of the non-standard-library modules ``source`` imports (empty if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in _PROVIDED}


@cache
def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def package_problem(solution: str, tests: str) -> str | None:
    """Why the problem's imports cannot run in the sandbox, or None when they can."""
    used = imported_packages(solution) | imported_packages(tests)
    outside = sorted(used - ALLOWED_PACKAGES.keys())
    if outside:
        return (f"the problem imports {', '.join(outside)}, outside the sandbox's package allowlist "
                f"({', '.join(sorted(ALLOWED_PACKAGES))})")
    missing = sorted(n for n in used if not _installed(n))
    if missing:
        return (f"the problem imports {', '.join(missing)}, which is allowed but not installed: "
                "pip install 'codegym-mcp[synth]'")
    return None
