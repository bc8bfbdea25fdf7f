"""Stage 4, the difficulty filter, played for real: the evaluator's openai policy against scripted
OpenAI-compatible endpoints (real HTTP), a local gym server, MCP.

The first tests drive :class:`EvaluatorDifficulty` directly on the bundled ``coin_vault`` gym with the eval
tests' scripted models. The CLI tests synthesise the ``good`` peaks scenario of ``fixtures/synthesis`` and
filter it with :class:`PeakModel`, a reference model that reads the hidden list through the gym's tools
and answers right only when the list is short (the easy tasks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from fixtures.eval.scripted_openai import ScriptedLLM as ScriptedEvalLLM
from fixtures.eval.scripted_openai import ServerThread
from fixtures.synthesis.scenarios import scenario
from fixtures.synthesis.scripted_llm import ScriptedLLM as ScriptedSynthLLM
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_gyms.bank import Bank
from mcp_gyms.verify import GymSource
from synthesis.difficulty import DifficultyModel, EvaluatorDifficulty
from synthesis.llm import LLMError
from synthesis.pipeline import _difficulty_filter, _llm_config, add_arguments

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-difficulty-DO-NOT-LEAK-93c1f"
SYNTH_KEY = "sk-synth-DO-NOT-LEAK-5e0a2"


# --- the filter on its own ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_llm():
    scripted = ScriptedEvalLLM()
    with ServerThread(scripted.app) as thread:
        scripted.url = thread.url  # type: ignore[attr-defined]
        yield scripted


def coin_vault(bank: Bank) -> GymSource:
    """coin_vault's first three tasks: easy-0 and easy-1 (answer 3, which the `native` script gives), easy-2."""
    return GymSource(bank.gym("coin_vault"), bank.code("coin_vault"), bank.tasks("coin_vault")[:3], "bank")


def evaluator(eval_llm, root: Path, model: str) -> EvaluatorDifficulty:
    settings = DifficultyModel(model=model, base_url=eval_llm.url, api_key=SecretStr(SECRET), max_retries=0,
                               retry_base=0.01, request_timeout=5.0, workers=1)
    return EvaluatorDifficulty(settings, root)


def test_counts_successes_per_task_and_reuses_a_complete_run(eval_llm, bank, tmp_path):
    gym = coin_vault(bank)
    outcome = anyio.run(evaluator(eval_llm, tmp_path, "native"), gym, 2)
    assert outcome.solved == {"easy-0": 2, "easy-1": 2, "easy-2": 0}
    details = outcome.details
    assert (details["episodes"], details["endings"], details["reused"]) == (6, {"done": 6}, False)
    eval_dir = Path(details["eval_dir"])
    assert eval_dir == (tmp_path / "coin_vault" / "eval").absolute()
    assert {"trajectories.jsonl", "results.json", "report.md"} <= {p.name for p in eval_dir.iterdir()}
    # the evaluator served a bank holding only this gym and these tasks
    served = Bank.open(tmp_path / "coin_vault" / "bank")
    assert served.gym_ids == ["coin_vault"] and [t.id for t in served.tasks("coin_vault")] == ["easy-0", "easy-1",
                                                                                             "easy-2"]
    # a second call (a resumed run) reads the stored counts: no episode is played again
    before = len(eval_llm.requests)
    again = anyio.run(evaluator(eval_llm, tmp_path, "native"), gym, 2)
    assert again.solved == outcome.solved and again.details["reused"] and len(eval_llm.requests) == before
    # other tries (or another model) are another question: evaluated afresh, the old outputs replaced
    third = anyio.run(evaluator(eval_llm, tmp_path, "native"), gym, 1)
    assert third.solved == {"easy-0": 1, "easy-1": 1, "easy-2": 0} and not third.details["reused"]
    assert SECRET not in "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


def test_a_model_that_fails_for_its_own_reasons_solves_nothing(eval_llm, bank, tmp_path):
    outcome = anyio.run(evaluator(eval_llm, tmp_path, "overflow"), coin_vault(bank), 2)  # context overflow
    assert outcome.solved == {"easy-0": 0, "easy-1": 0, "easy-2": 0}
    assert outcome.details["endings"] == {"context_overflow": 6}


@pytest.mark.parametrize("model, why", [
    ("error500", "6 of 6 episodes on coin_vault ended without a verdict (6 model_error; HTTP 500"),
    ("unauthorized", "Incorrect API key"),  # fatal: the run stops
])
def test_infrastructure_trouble_is_transient_not_unsolved(eval_llm, bank, tmp_path, model, why):
    filter_ = evaluator(eval_llm, tmp_path, model)
    with pytest.raises(LLMError, match="difficulty model") as raised:
        anyio.run(filter_, coin_vault(bank), 2)
    assert why in str(raised.value)
    assert not (tmp_path / "coin_vault" / "counts.json").exists()
    # the failed run's outputs stay for inspection and do not block the next run
    assert (tmp_path / "coin_vault" / "eval" / "trajectories.jsonl").exists()
    with pytest.raises(LLMError):
        anyio.run(filter_, coin_vault(bank), 2)


def test_cli_options_build_the_filter(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for name in ("CODEGYM_DIFFICULTY_API_KEY", "CODEGYM_LLM_API_KEY", "OPENAI_API_KEY", "CODEGYM_LLM_BASE_URL",
                 "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)

    def build(*argv: str) -> Any:
        args = parser.parse_args(["bundled", "--out", str(tmp_path), *argv])
        return _difficulty_filter(args, tmp_path / "w", _llm_config(args, tmp_path / "w"))

    assert build() is None
    monkeypatch.setenv("OPENAI_API_KEY", "shared")
    made = build("--llm-base-url", "http://synth/v1", "--model", "m", "--difficulty-model", "ref")
    assert (made.settings.model, made.settings.base_url, made.root) == ("ref", "http://synth/v1", tmp_path / "w" / "difficulty")
    assert made.settings.api_key.get_secret_value() == "shared" and made.parallel == 2
    monkeypatch.setenv("CODEGYM_DIFFICULTY_API_KEY", "own")
    made = build("--llm-base-url", "http://synth/v1", "--difficulty-model", "ref", "--difficulty-base-url",
                 "http://ref/v1", "--difficulty-parallel", "1", "--difficulty-concurrency", "3")
    assert (made.settings.base_url, made.settings.api_key.get_secret_value()) == ("http://ref/v1", "own")
    assert (made.parallel, made.settings.concurrency) == (1, 3)
    assert "own" not in repr(made.settings) and "own" not in made.settings.model_dump_json()


# --- the pipeline, from the command line ----------------------------------------------------------
class PeakModel:
    """A reference model for the peaks gym, chosen by the request's ``model``:

    ``short-lists`` reads Length, then (lists of at most 12 values: the easy tasks) every Value in one
    turn and answers the right count, or (longer lists) answers -1 at once; ``everything`` solves every
    list. While ``down`` is set every request gets a 500."""

    def __init__(self) -> None:
        self.down = False
        self.requests = 0
        self.auth: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self.lock:
            self.requests += 1
            self.auth[request.headers.get("authorization", "")] += 1
        if self.down:
            return JSONResponse({"error": {"message": "upstream unavailable", "type": "server_error"}}, 500)
        messages = body["messages"]
        turn = sum(m["role"] == "assistant" for m in messages)
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if turn == 0:
            calls = [("Length", {})]
        elif turn == 1:
            length = int(results[0])
            if length > 12 and body["model"] == "short-lists":
                calls = [("Done", {"answer": -1})]
            else:
                calls = [("Value", {"index": i}) for i in range(length)]
        else:
            values = [int(r) for r in results[1:]]
            peaks = sum(values[i - 1] < values[i] > values[i + 1] for i in range(1, len(values) - 1))
            calls = [("Done", {"answer": peaks})]
        tool_calls = [{"id": f"call_{turn}_{n}", "type": "function",
                       "function": {"name": name, "arguments": json.dumps(arguments)}}
                      for n, (name, arguments) in enumerate(calls)]
        return JSONResponse({"id": "chatcmpl-peaks", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "tool_calls",
                                          "message": {"role": "assistant", "content": None, "tool_calls": tool_calls}}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})


def synth(problems: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": SYNTH_KEY, "CODEGYM_DIFFICULTY_API_KEY": SECRET}
    return subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "synth", str(problems), "--out", str(out),
                           "--k", "2", "--workers", "2", "--quiet", "--max-retries", "0", "--difficulty-tries", "2",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def files_text(*folders: Path) -> str:
    return "".join(p.read_text(errors="replace") for folder in folders for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """Synthesise the good peaks gym with stage 4 while the reference endpoint is down (exit 1), then
    again once it is up; yield (down run, up run, folder, reference server, its URL, what the down run
    left: its report.json and whether the bank existed)."""
    folder = tmp_path_factory.mktemp("difficulty")
    problems = folder / "problems.jsonl"
    problems.write_text(json.dumps(scenario("good").problem) + "\n")
    reference = PeakModel()
    with ScriptedSynthLLM() as synth_llm, ServerThread(reference.app) as thread:
        for stage, key, answers, options in scenario("good").rules:
            synth_llm.add(stage, key, answers, **options)
        common = ("--llm-base-url", synth_llm.base_url, "--model", "scripted", "--cache", str(folder / "cache"),
                  "--difficulty-model", "short-lists", "--difficulty-base-url", thread.url)
        reference.down = True
        down = synth(problems, folder / "bank", *common)
        left = {"report": json.loads((folder / "bank" / "synthesis" / "report.json").read_text()),
                "bank": (folder / "bank" / "bank.json").exists()}
        reference.down = False
        up = synth(problems, folder / "bank", *common)
        yield down, up, folder, reference, thread.url, left


def test_endpoint_down_leaves_the_problem_incomplete(flow):
    down, _, _, reference, _, left = flow
    assert down.returncode == 1, down.stderr
    assert "0/1 problems became verified gyms" in down.stdout and "1 problems incomplete" in down.stdout
    assert not left["bank"]  # a gym whose stage 4 is pending is not in the bank (its tasks are unfiltered)
    [row] = left["report"]["rows"]
    assert row["verdict"] == "incomplete" and "difficulty: difficulty model short-lists" in row["reason"]
    assert "model_error" in row["reason"] and "HTTP 500" in row["reason"]
    assert reference.auth[f"Bearer {SECRET}"] == reference.requests  # the difficulty key, not the synth key


def test_rerun_after_recovery_keeps_only_the_tasks_the_model_fails(flow):
    _, up, folder, _, _, _ = flow
    assert up.returncode == 0, up.stderr
    assert "1/1 problems became verified gyms (20 tasks)" in up.stdout
    tasks = Bank.open(folder / "bank").tasks("peaks-good")
    assert len(tasks) == 20 and {t.difficulty for t in tasks} == {"medium", "hard"}
    verification = Bank.open(folder / "bank").gym("peaks-good").verification
    assert verification.tasks_kept == 20 and verification.dropped_tasks["easy-3"] == "solved 2/2"
    report = json.loads((folder / "bank" / "synthesis" / "report.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert (stages["difficulty"]["entered"], stages["difficulty"]["passed"], report["incomplete"]) == (1, 1, 0)
    # the stage record says where the evaluator's outputs are, and what it saw
    state = json.loads((folder / "bank" / "synthesis" / "state" / "peaks-good.json").read_text())
    details = state["results"]["difficulty"]["details"]
    assert (details["episodes"], details["endings"], details["model"]) == (60, {"done": 60}, "short-lists")
    assert sum(details["solved"].values()) == 20 and len(details["dropped_tasks"]) == 10
    eval_dir = Path(details["eval_dir"])
    assert eval_dir == (folder / "bank" / "synthesis" / "difficulty" / "peaks-good" / "eval").absolute()
    assert len((eval_dir / "trajectories.jsonl").read_text().splitlines()) == 60


def test_the_keys_are_written_nowhere(flow):
    folder = flow[2]
    text = files_text(folder / "bank", folder / "cache")
    assert "peaks-good" in text and SECRET not in text and SYNTH_KEY not in text


def test_replay_with_a_model_that_solves_everything_drops_the_gym(flow, tmp_path):
    _, _, folder, _, url, _ = flow
    result = synth(folder / "problems.jsonl", tmp_path / "bank", "--replay", str(folder / "cache"),
                   "--difficulty-model", "everything", "--difficulty-base-url", url, "--difficulty-tries", "1",
                   "--difficulty-max-solved", "0")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bank" / "synthesis" / "report.json").read_text())
    [row] = report["rows"]
    assert (row["verdict"], row["stage"], row["code"]) == ("dropped", "difficulty", "too_easy")
    assert report["stages"][-1]["reasons"] == {"too_easy": 1}
    assert not (tmp_path / "bank" / "bank.json").exists()
