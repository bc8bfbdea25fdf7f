"""The rl+gpu install check (scripts/check_gpu_resolve.py): pins match veRL's, and an unreachable index is
reported as such, not as a conflict. The resolution itself runs in `make check-gpu-resolve` (needs the index)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import check_gpu_resolve  # noqa: E402


@pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="needs the rl extra (verl 0.9.1)")
def test_gpu_extra_pins_what_verl_tests_with() -> None:
    verls = check_gpu_resolve.verl_vllm_pins()
    ours = check_gpu_resolve.gpu_extra_pins()
    assert verls is not None and verls["vllm"] == "0.24.0"
    for name in ("vllm", "torch", "torchvision", "torchaudio", "transformers"):
        assert ours[name] == verls[name], name


def test_pins_are_read_from_requirement_strings() -> None:
    assert check_gpu_resolve._pins(['vllm==0.24.0; extra == "vllm"', "torch >= 2.6", "Torch==2.11.0"]) == {
        "vllm": "0.24.0", "torch": "2.11.0"}


def test_an_unreachable_index_is_not_reported_as_a_conflict() -> None:
    env = {"PATH": "/usr/bin:/bin", "UV_INDEX_URL": "http://127.0.0.1:1/simple"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_gpu_resolve.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 3:
        pytest.skip("uv is not installed (dev extra)")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "REGISTRY UNREACHABLE" in done.stdout and "NOT checked" in done.stdout and "CONFLICT" not in done.stdout
