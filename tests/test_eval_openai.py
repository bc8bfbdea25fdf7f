"""The openai policy against a scripted OpenAI-compatible HTTP server (real HTTP, real ``openai`` client),
playing a real gym over MCP: every scripted behaviour ends in the right episode record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.eval.scripted_openai import ScriptedLLM, ServerThread

from eval.evaluation import EvalConfig, RunOutcome, run_evaluation
from eval.local import LocalServer
from eval.records import EpisodeRecord

SECRET = "sk-test-DO-NOT-LEAK-4b1d9e"


@pytest.fixture(scope="module")
def llm():
    scripted = ScriptedLLM()
    with ServerThread(scripted.app) as thread:
        scripted.url = thread.url  # type: ignore[attr-defined]
        yield scripted


@pytest.fixture(scope="module")
def gym_server():
    with LocalServer(gyms=["coin_vault"], workers=1) as server:
        yield server


def play(llm, gym_server, out: Path, model: str, **overrides) -> RunOutcome:
    """One episode of coin_vault task easy-0 (answer 3) with the scripted model ``model``."""
    settings = dict(server=gym_server.url, gyms=["coin_vault"], tasks_per_gym=1, policy="openai", model=model,
                    base_url=llm.url, api_key=SECRET, k=1, concurrency=4, max_turns=8, max_retries=2,
                    retry_base=0.01, request_timeout=5.0, out=str(out))
    settings.update(overrides)
    return run_evaluation(EvalConfig(**settings), progress=False)


def only(outcome: RunOutcome) -> EpisodeRecord:
    assert len(outcome.records) == 1
    return outcome.records[0]


def test_native_tool_calls_solve_the_task(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "native"))
    assert (rec.reason, rec.reward, rec.success, rec.done, rec.truncated) == ("done", 1.0, True, True, False)
    assert [(c.name, c.source, c.sent, c.error) for c in rec.calls] == [
        ("Observe", "native", True, None), ("Done", "native", True, None)]
    assert (rec.turns, rec.tool_calls, rec.invalid_calls, rec.tool_errors, rec.steps) == (2, 2, 0, 0, 2)
    assert rec.prompt_tokens > 0 and rec.completion_tokens == 14
    roles = [m["role"] for m in rec.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool"]
    system, user = rec.messages[0]["content"], rec.messages[1]["content"]
    assert "## Coin(index)" in system and "Example" not in system  # tool docs, without their examples
    assert "coin" in user.lower()  # the task text
    assert rec.messages[3]["tool_call_id"] == rec.calls[0].id
    # the gym's tools were offered as function tools, and nothing else
    body = next(r for r in llm.requests if r["model"] == "native")
    assert [t["function"]["name"] for t in body["tools"]] == [
        "Observe", "CoinCount", "Coin", "Target", "Relax", "Best", "Done"]
    assert body["temperature"] == 0.7 and body["top_p"] == 0.95


def test_text_tool_calls_are_parsed(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "text"))
    assert (rec.reason, rec.reward) == ("done", 1.0)
    assert [(c.name, c.source) for c in rec.calls] == [("Observe", "text"), ("Done", "text")]
    assert rec.messages[3]["role"] == "user" and rec.messages[3]["content"].startswith("<tool_response>")


def test_text_tool_format_sends_no_tools(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "text", tool_format="text", temperature=None))
    assert (rec.reason, rec.reward) == ("done", 1.0)
    body = [r for r in llm.requests if r["model"] == "text"][-1]
    assert "tools" not in body and "temperature" not in body
    assert "<tool_call>" in body["messages"][0]["content"]


@pytest.mark.parametrize(("model", "kind", "sent"), [
    ("malformed", "malformed", False),          # broken JSON arguments: answered by the evaluator
    ("unknown", "unknown_tool", True),          # the server says the tool does not exist
    ("badargs", "invalid_arguments", True),     # the server's schema check fails
])
def test_invalid_calls_are_observations_not_the_end(llm, gym_server, tmp_path: Path, model: str, kind: str,
                                                     sent: bool) -> None:
    rec = only(play(llm, gym_server, tmp_path, model))
    assert (rec.reason, rec.reward) == ("done", 1.0)  # the model recovers and answers
    first = rec.calls[0]
    assert (first.error, first.sent, first.observation.startswith("Error:")) == (kind, sent, True)
    assert (rec.invalid_calls, rec.tool_errors, rec.tool_calls) == (1, 0, 2)
    assert rec.steps == (2 if sent else 1)  # only calls that reached the server count on its budget
    assert rec.messages[3]["role"] == "tool" and rec.messages[3]["content"] == first.observation


def test_no_tool_call_ends_the_episode(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "silent"))
    assert (rec.reason, rec.reward, rec.done, rec.truncated, rec.tool_calls) == ("no_tool_call", 0.0, False, False, 0)


def test_reply_cut_by_the_context_window_is_an_overflow(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "cut"))
    assert (rec.reason, rec.reward) == ("context_overflow", 0.0)
    assert "finish_reason=length" in (rec.error or "")


def test_reply_cut_by_max_tokens_is_no_tool_call(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "cut", max_tokens=7))
    assert (rec.reason, rec.reward, rec.error) == ("no_tool_call", 0.0, "the reply hit max_tokens (7) without a tool call")
    assert [r for r in llm.requests if r["model"] == "cut"][-1]["max_tokens"] == 7


def test_429_is_retried_then_succeeds(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "flaky429"))
    assert (rec.reason, rec.reward) == ("done", 1.0)
    assert rec.retries == 2  # each of the two requests was refused once


def test_500_forever_is_a_model_error_after_retries(llm, gym_server, tmp_path: Path) -> None:
    before = sum(r["model"] == "error500" for r in llm.requests)
    rec = only(play(llm, gym_server, tmp_path, "error500", max_retries=3))
    assert (rec.reason, rec.reward, rec.retries) == ("model_error", 0.0, 3)
    assert "HTTP 500" in (rec.error or "") and "after 3 retries" in (rec.error or "")
    assert sum(r["model"] == "error500" for r in llm.requests) - before == 4


def test_context_overflow_ends_the_episode_not_the_run(llm, gym_server, tmp_path: Path) -> None:
    before = sum(r["model"] == "overflow" for r in llm.requests)
    outcome = play(llm, gym_server, tmp_path, "overflow", tasks_per_gym=2)
    assert len(outcome.records) == 2 and outcome.error is None
    for rec in outcome.records:
        assert (rec.reason, rec.reward, rec.retries) == ("context_overflow", 0.0, 0)
        assert "maximum context length" in (rec.error or "")
    assert sum(r["model"] == "overflow" for r in llm.requests) - before == 2  # never retried


def test_slow_responses_time_out(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "slow", request_timeout=0.3, max_retries=1))
    assert (rec.reason, rec.reward, rec.retries) == ("timeout", 0.0, 1)
    assert "timed out" in (rec.error or "")


def test_episode_wall_time_limit(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "slow", episode_timeout=0.5))
    assert (rec.reason, rec.reward) == ("timeout", 0.0)
    assert "time limit" in (rec.error or "")


def test_step_budget_truncates(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "flood"))
    assert (rec.reason, rec.reward, rec.done, rec.truncated) == ("step_budget", 0.0, False, True)
    assert rec.steps == rec.max_steps == 256 and rec.tool_calls == 256 and rec.calls[-1].truncated


def test_max_turns(llm, gym_server, tmp_path: Path) -> None:
    rec = only(play(llm, gym_server, tmp_path, "loop", max_turns=3))
    assert (rec.reason, rec.reward, rec.turns, rec.tool_calls) == ("max_turns", 0.0, 3, 3)


def test_wrong_key_stops_the_run_with_a_clear_error(llm, gym_server, tmp_path: Path) -> None:
    outcome = play(llm, gym_server, tmp_path, "unauthorized", tasks_per_gym=3)
    assert outcome.records == [] and outcome.error is not None
    assert "HTTP 401" in outcome.error and "API key" in outcome.error
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["error"] == outcome.error and results["episodes_expected"] == 3


def test_the_api_key_is_used_but_never_written(llm, gym_server, tmp_path: Path, capsys) -> None:
    from mcp_gyms.cli import main

    out = tmp_path / "run"
    code = main(["eval", "--server", gym_server.url, "--gyms", "coin_vault", "--tasks-per-gym", "2", "--policy",
                 "openai", "--model", "unknown", "--base-url", llm.url, "--api-key", SECRET, "-k", "2",
                 "--out", str(out), "--retry-base", "0.01"])
    captured = capsys.readouterr()
    assert code == 0
    assert llm.auth_headers[f"Bearer {SECRET}"] > 0
    files = sorted(out.iterdir())
    assert {f.name for f in files} == {"trajectories.jsonl", "results.json", "report.md", "report.png"}
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f.name
    assert SECRET not in captured.out + captured.err
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["api_key"] == "set" and config["model"] == "unknown"


def test_api_key_from_the_environment(llm, gym_server, tmp_path: Path, monkeypatch, capsys) -> None:
    from mcp_gyms.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", SECRET + "-env")
    code = main(["eval", "--server", gym_server.url, "--gyms", "coin_vault", "--tasks-per-gym", "1", "--policy",
                 "openai", "--model", "native", "--base-url", llm.url, "-k", "1", "--out", str(tmp_path / "r"),
                 "--no-progress", "--min-success", "1"])
    assert code == 0
    assert llm.auth_headers[f"Bearer {SECRET}-env"] > 0
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert all(SECRET.encode() not in f.read_bytes() for f in (tmp_path / "r").iterdir())


def test_rescore_replays_model_trajectories(llm, gym_server, tmp_path: Path) -> None:
    """Records with unsent (malformed), unknown-tool and schema-violating calls re-score to the same rewards,
    here through one gym's endpoint URL."""
    from eval.rescore import run_rescore

    lines = []
    for model in ("malformed", "unknown", "badargs", "silent", "loop"):
        outcome = play(llm, gym_server, tmp_path / model, model, max_turns=3)
        lines += (tmp_path / model / "trajectories.jsonl").read_text().splitlines()
        assert len(outcome.records) == 1
    path = tmp_path / "all.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = run_rescore(path, server=f"{gym_server.url}/gyms/coin_vault/mcp")
    assert report.ok and (report.replayed, report.matched, report.diverged) == (5, 5, 0)
    assert [c.calls for c in report.checks] == [1, 2, 2, 0, 3]  # the malformed call was never sent
    assert json.loads((tmp_path / "rescore.json").read_text())["ok"] is True


@pytest.mark.parametrize(("suffix", "message"), [
    ("", "is this a codegym server?"),          # GET /gyms is not there
    ("/gyms/coin_vault/mcp", "cannot connect to gym 'coin_vault'"),  # not an MCP endpoint
])
def test_a_server_that_is_not_a_gym_server_is_a_clear_error(llm, tmp_path: Path, suffix: str, message: str) -> None:
    from eval.evaluation import EvalError

    base = llm.url.removesuffix("/v1")
    with pytest.raises(EvalError, match=message):
        run_evaluation(EvalConfig(server=base + suffix, out=str(tmp_path / "x")), progress=False)
    assert not (tmp_path / "x").exists()
