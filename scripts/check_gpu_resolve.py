"""Check that ``pip install 'codegym-mcp[rl,gpu]'`` resolves on a Linux GPU machine, without a GPU or a download.

``python scripts/check_gpu_resolve.py`` (``make check-gpu-resolve``, which ``make test`` runs):

1. compares the ``gpu`` extra of ``pyproject.toml`` with the pins of veRL's own ``vllm`` extra (from the
   installed veRL's metadata): a veRL upgrade that moves its pins shows up here first;
2. asks the package index whether it answers at all (so an offline machine is told so, not told of a conflict);
3. runs ``uv pip compile`` on the project with the ``rl`` and ``gpu`` extras for Linux x86_64 and every
   supported Python version at once. uv reads package metadata only (PEP 658 files, small sdists), so no
   multi-GB wheel is downloaded; a warm cache makes it a few seconds.

Exit status: 0 resolves; 1 a real conflict or pin drift (uv's explanation is printed); 2 the index could not
be reached (nothing was checked); 3 ``uv`` is missing (it comes with the ``dev`` extra).
Environment: ``UV_INDEX_URL`` or ``PIP_INDEX_URL`` choose the index (default https://pypi.org/simple).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = ("3.10", "3.11", "3.12")  # requires-python >=3.10,<3.13
PLATFORM = "x86_64-manylinux_2_28"
KEY_PACKAGES = ("verl", "vllm", "torch", "transformers", "transferqueue")
CONFLICT = re.compile(r"No solution found|unsatisfiable|conflicting|Because .* depends on", re.IGNORECASE)


def _pins(requirements: list[str]) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` entries (markers stripped)."""
    out = {}
    for requirement in requirements:
        found = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^;\s,]+)", requirement.split(";")[0])
        if found:
            out[found.group(1).lower()] = found.group(2)
    return out


def verl_vllm_pins() -> dict[str, str] | None:
    """The ``==`` pins of the installed veRL's ``vllm`` extra (None when veRL is not installed)."""
    from importlib import metadata

    try:
        requirements = metadata.requires("verl") or []
    except metadata.PackageNotFoundError:
        return None
    return _pins([r for r in requirements if re.search(r"extra\s*==\s*['\"]vllm['\"]", r)])


def gpu_extra_pins() -> dict[str, str]:
    """The ``==`` pins of this project's ``gpu`` extra."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return _pins(project["optional-dependencies"]["gpu"])


def index_url() -> str:
    return (os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/")


def index_reachable(url: str, timeout_s: float = 15.0) -> str | None:
    """None when the index answers for ``verl``; otherwise why not."""
    import httpx

    try:
        response = httpx.get(f"{url}/verl/", timeout=timeout_s, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def compile_for(uv: str, python: str, url: str, cache: str | None) -> tuple[str, int, str, str]:
    """``(python, returncode, lock text, stderr)`` of one ``uv pip compile``."""
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / "lock.txt"
        command = [uv, "pip", "compile", str(ROOT / "pyproject.toml"), "--extra", "rl", "--extra", "gpu",
                   "--python-version", python, "--python-platform", PLATFORM, "--index-url", url,
                   "--no-header", "--quiet", "-o", str(lock)]
        if cache:
            command += ["--cache-dir", cache]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        return python, done.returncode, lock.read_text() if lock.exists() else "", done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help=f"Python version(s) to resolve for (default: {PYTHONS})")
    parser.add_argument("--cache-dir", help="uv cache folder (default: uv's own)")
    args = parser.parse_args(argv)

    ours = gpu_extra_pins()
    theirs = verl_vllm_pins()
    if theirs is None:
        print("note: veRL is not installed here; the gpu extra is not compared with veRL's own pins")
    else:
        drift = {name: (ours.get(name), version) for name, version in theirs.items()
                 if name in ("vllm", "torch", "torchvision", "torchaudio", "transformers") and ours.get(name) != version}
        if drift:
            for name, (mine, verls) in sorted(drift.items()):
                print(f"PIN DRIFT: pyproject gpu extra has {name}=={mine}, veRL's vllm extra pins {name}=={verls}")
            return 1

    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists():
        print("uv is not installed: pip install 'codegym-mcp[dev]' (or pip install uv)")
        return 3
    url = index_url()
    why = index_reachable(url)
    if why is not None:
        print(f"REGISTRY UNREACHABLE: {url} did not answer ({why}); the rl+gpu install was NOT checked")
        return 2

    pythons = args.python or list(PYTHONS)
    with ThreadPoolExecutor(len(pythons)) as pool:
        results = list(pool.map(lambda v: compile_for(uv, v, url, args.cache_dir), pythons))
    status = 0
    for python, code, lock, stderr in results:
        if code == 0:
            pins = _pins(lock.splitlines())
            shown = ", ".join(f"{name}=={pins.get(name, '?')}" for name in KEY_PACKAGES)
            print(f"ok: rl+gpu resolves for Python {python} on {PLATFORM}: {len(pins)} packages ({shown})")
        elif CONFLICT.search(stderr):
            print(f"CONFLICT: rl+gpu does not resolve for Python {python} on {PLATFORM}:\n{stderr.strip()}")
            status = 1
        else:
            print(f"REGISTRY ERROR while resolving for Python {python} (not a conflict):\n{stderr.strip()}")
            status = max(status, 2) if status != 1 else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
