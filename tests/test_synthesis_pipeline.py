"""The synthesis pipeline end to end against a scripted OpenAI-compatible endpoint.

One run synthesises every scenario of ``fixtures/synthesis/scenarios.py`` (good gyms, and gyms that
fail each check); each test then checks one scenario's verdict and reason. Further tests replay the run
offline from its response cache, resume a run killed with SIGKILL, and drive the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from fixtures.synthesis.scenarios import SCENARIOS, scenario
from fixtures.synthesis.scripted_llm import ScriptedLLM

from mcp_gyms.bank import Bank
from synthesis.llm import LLMClient, LLMConfig
from synthesis.pipeline import synthesize
from synthesis.sources import load_problems
from synthesis.stages import SynthConfig
from synthesis.state import ProblemState

ROOT = Path(__file__).resolve().parent.parent
CONFIG = SynthConfig(k=2, oracle_timeout_s=1.0, gym_time_s=0.5)


def write_problems(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "problems.jsonl"
    path.write_text("".join(json.dumps(scenario(n).problem) + "\n" for n in names))
    return path


def script(server: ScriptedLLM, names: list[str], delay_s: float = 0.0, solve_delay_s: float | None = None) -> None:
    for name in names:
        for stage, key, answers, options in scenario(name).rules:
            delay = solve_delay_s if stage == "solve" and solve_delay_s is not None else delay_s
            server.add(stage, key, answers, **{"delay_s": delay, **options})


async def run_pipeline(problems_path: Path, out: Path, *, base_url: str | None, cache: Path, work: Path | None = None,
                       offline: bool = False):
    config = LLMConfig(base_url=base_url, model="scripted", api_key=None if offline else "key", cache_dir=cache,
                       offline=offline, backoff_s=0.01, max_backoff_s=0.05)
    async with LLMClient(config) as llm:
        return await synthesize(load_problems(str(problems_path)), out=out, work=work, llm=llm, config=CONFIG,
                                workers=2, jobs=16, source=str(problems_path))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Synthesise every scenario once; yield (report, states, bank folder, server log, folder)."""
    folder = tmp_path_factory.mktemp("synth")
    problems = write_problems(folder, list(SCENARIOS))
    with ScriptedLLM() as server:
        script(server, list(SCENARIOS))
        report = anyio.run(lambda: run_pipeline(problems, folder / "bank", base_url=server.base_url,
                                                cache=folder / "cache"))
        log = list(server.log)
    states = {p.stem: ProblemState.model_validate_json(p.read_text())
              for p in (folder / "bank" / "synthesis" / "state").glob("*.json")}
    return report, states, folder / "bank", log, folder


def verdict(run, name: str) -> tuple[str, str, str]:
    report = run[0]
    row = next(r for r in report.rows if r.problem_id == f"peaks-{name}")
    return row.verdict, row.code, row.reason


def test_good_gym_is_verified_and_servable(run):
    report, states, bank_path, _, _ = run
    assert verdict(run, "good")[0] == "verified"
    bank = Bank.open(bank_path)
    record, tasks = bank.gym("peaks-good"), bank.tasks("peaks-good")
    assert record.verification is not None and record.verification.verified
    assert [t.name for t in record.tools] == ["Observe", "Length", "Value", "IsPeak", "Done"]
    assert len(tasks) == 30 and {t.difficulty for t in tasks} == {"easy", "medium", "hard"}
    assert all(10 <= (t.oracle_steps or 0) <= 256 and isinstance(t.answer, int) for t in tasks)
    assert record.provenance.problem_id == "peaks-good" and record.provenance.source == "test"
    # the two invalid generated inputs were dropped with the solution's own error
    dropped = [i for i in states["peaks-good"].inputs if i.status == "dropped"]
    assert len(dropped) == 2 and all("the solution failed: TypeError" in i.reason for i in dropped)
    # the stable checks agree: the bank verifies with `codegym verify`
    result = subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "verify", str(bank_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name, stage, code, reason", [
    ("unparsable", "gym", "format", "does not parse: line"),
    ("loop_on_load", "gym", "load", "exceeded the time limit"),
    ("memory_bomb", "inputs", "reference_error", "out of memory"),
    ("disagree", "inputs", "reference_mismatch", "disagrees with the solution on hard-"),
    ("no_solver", "oracle", "no_solution", "none of 3 tool-only candidates"),
    ("three_tools", "gym", "tools", "only 3 tools (Observe, Value, Done)"),
    ("dupe_heavy", "inputs", "too_few_inputs", "3 of 3 unique inputs survive"),
    ("small_space", "inputs", "small_input_space", "the valid input space is too small: only 4 distinct inputs"),
    # a looping oracle call meets its per-call CPU limit or the run's wall-time limit, whichever comes first
    ("tool_loop", "oracle", "no_solution", "time limit of "),
    ("short", "oracle", "steps", "fewer than 10"),
])
def test_bad_gyms_are_dropped_with_the_reason(run, name, stage, code, reason):
    report, states, bank_path, _, _ = run
    got_verdict, got_code, got_reason = verdict(run, name)
    assert (got_verdict, got_code) == ("dropped", code), got_reason
    assert reason in got_reason
    assert states[f"peaks-{name}"].dropped.stage == stage
    assert f"peaks-{name}" not in Bank.open(bank_path)


def test_no_candidate_solves_records_every_candidate(run):
    state = run[1]["peaks-no_solver"]
    assert [c.origin for c in state.candidates] == ["gym", "llm-1", "llm-2"]
    assert all(c.status == "failed" and c.reason for c in state.candidates)


def test_a_sampled_candidate_can_become_the_oracle(run):
    assert verdict(run, "rescued")[0] == "verified"
    state = run[1]["peaks-rescued"]
    assert [(c.origin, c.status) for c in state.candidates] == [("gym", "failed"), ("llm-1", "failed"),
                                                              ("llm-2", "oracle")]
    code = Bank.open(run[2]).code("peaks-rescued")
    assert "values = [int(call('Value', index=i)) for i in range(length)]" in code and "@staticmethod" in code


def test_duplicate_inputs_are_removed(run):
    assert verdict(run, "duplicates")[0] == "verified"
    details = run[1]["peaks-duplicates"].results["inputs"].details
    assert (details["generated"], details["unique"], details["duplicates"]) == (30, 15, 15)
    assert len(Bank.open(run[2]).tasks("peaks-duplicates")) == 15


def test_a_429_storm_ends_in_a_verified_gym(run):
    assert verdict(run, "storm")[0] == "verified"
    report, log = run[0], run[3]
    assert sum(1 for r in log if r["status"] == 429) == 5
    assert report.llm_usage["retries"] >= 5


def test_report_has_yield_per_stage_and_histograms(run):
    report, _, _, _, folder = run
    work = folder / "bank" / "synthesis"
    data = json.loads((work / "report.json").read_text())
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["tests"]["entered"] == len(SCENARIOS) and stages["tests"]["passed"] == len(SCENARIOS)
    assert stages["gym"]["reasons"] == {"format": 1, "load": 1, "tools": 1}
    assert data["verified"] == 4 and data["tools_histogram"] == {"5": 4}
    assert sum(data["steps_histogram"].values()) == data["tasks"] == 30 + 30 + 15 + 30
    markdown = (work / "report.md").read_text()
    assert "## Yield per stage" in markdown and "reference_mismatch" in markdown
    assert (work / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _bank_content(path: Path) -> dict[str, object]:
    """Everything in a bank except timestamps (bank.json's updated_at, a report's verified_at)."""
    bank = Bank.open(path)
    content: dict[str, object] = {"index": [g.model_dump() for g in bank.index.gyms]}
    for gym_id in bank.gym_ids:
        record = bank.gym(gym_id).model_dump()
        record["verification"].pop("verified_at")
        content[gym_id] = (record, bank.code(gym_id), [t.model_dump() for t in bank.tasks(gym_id)])
    return content


def test_replay_from_the_cache_rebuilds_the_same_bank_offline(run, tmp_path):
    _, _, bank_path, _, folder = run
    # the verified scenarios plus one dropped one (the others cost sandbox timeouts, not coverage)
    problems = write_problems(tmp_path, ["good", "rescued", "duplicates", "storm", "disagree"])
    report = anyio.run(lambda: run_pipeline(problems, tmp_path / "bank", base_url=None, cache=folder / "cache",
                                            offline=True))
    assert report.incomplete == 0 and report.llm_usage["requests"] == 0 and report.llm_usage["cache_hits"] == 11
    assert _bank_content(tmp_path / "bank") == _bank_content(bank_path)


def test_rerun_skips_finished_work(run, tmp_path):
    _, _, bank_path, _, folder = run
    with ScriptedLLM() as server:  # knows nothing: any request would fail
        report = anyio.run(lambda: run_pipeline(folder / "problems.jsonl", bank_path, base_url=server.base_url,
                                                cache=tmp_path / "empty-cache"))
        assert server.log == []
    assert report.incomplete == 0 and report.verified == 4


def _synth_cli(problems: Path, out: Path, base_url: str, cache: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mcp_gyms.cli", "synth", str(problems), "--out", str(out), "--llm-base-url", base_url,
         "--model", "scripted", "--cache", str(cache), "--k", "2", "--workers", "2", "--quiet", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OPENAI_API_KEY": "test"})


def test_kill_9_then_rerun_equals_an_uninterrupted_run(run, tmp_path):
    names = ["good", "rescued", "duplicates", "three_tools"]
    problems = write_problems(tmp_path, names)
    needed = 4 + 3 + 1  # LLM answers: gyms; inputs for the 3 gyms that load; solve for the rescued gym
    with ScriptedLLM() as server:
        script(server, names, delay_s=0.25, solve_delay_s=1.5)  # the kill lands before the last answer
        killed = _synth_cli(problems, tmp_path / "resumed", server.base_url, tmp_path / "cache")
        state_dir = tmp_path / "resumed" / "synthesis" / "state"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                "inputs" in json.loads(p.read_text()).get("results", {}) for p in state_dir.glob("*.json")):
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        assert not (tmp_path / "resumed" / "bank.json").exists()  # killed before the bank was assembled
        paid_killed = len(server.requests(status=200))

        resumed = _synth_cli(problems, tmp_path / "resumed", server.base_url, tmp_path / "cache")
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert "3/4 problems became verified gyms" in out
        paid_resumed = len(server.requests(status=200)) - paid_killed
    assert not list((tmp_path / "resumed").rglob("*.tmp"))
    # the same gyms, code and tasks as the uninterrupted run of the `run` fixture
    resumed_content = _bank_content(tmp_path / "resumed")
    whole = _bank_content(run[2])
    whole["index"] = [row for row in whole["index"] if row["id"] in resumed_content]
    assert resumed_content == {key: whole[key] for key in resumed_content}
    # the resumed run did not pay again for what the killed run had cached
    assert 0 < paid_killed and paid_resumed < needed <= paid_killed + paid_resumed


def test_cli_reports_bad_input_clearly(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "synth", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)

    result = cli("no-such-source", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "unknown source 'no-such-source'" in result.stderr
    problems = write_problems(tmp_path, ["good"])
    result = cli(str(problems), "--out", str(tmp_path / "b"), "--replay", str(tmp_path / "empty"))
    assert result.returncode == 2 and "pass --model" in result.stderr
    # stage 4 plays the reference model live: a replay must say where it is
    result = cli(str(problems), "--out", str(tmp_path / "b"), "--replay", str(tmp_path / "empty"), "--model", "m",
                 "--difficulty-model", "m")
    assert result.returncode == 2 and "needs --difficulty-base-url" in result.stderr
    result = cli(str(problems), "--out", str(tmp_path / "b"), "--difficulty-model", "m", "--difficulty-tries", "2",
                 "--difficulty-max-solved", "2", "--until", "tests")
    assert result.returncode == 2 and "--difficulty-max-solved 2 would keep every task" in result.stderr
    result = cli(str(problems), "--out", str(tmp_path / "b"), "--limit", "0")
    assert result.returncode == 2 and "--limit" in result.stderr
    # a replay that misses the cache leaves the problem incomplete (exit 1) rather than dropping it
    result = cli(str(problems), "--out", str(tmp_path / "b"), "--replay", str(tmp_path / "empty"), "--model", "m",
                 "--quiet")
    assert result.returncode == 1 and "incomplete" in result.stdout
    state = json.loads((tmp_path / "b" / "synthesis" / "state" / "peaks-good.json").read_text())
    assert list(state["results"]) == ["tests"]


def test_the_difficulty_filter_hook_drops_easy_tasks(run, tmp_path):
    folder = run[4]
    seen: list[tuple[str, int]] = []

    async def solved_by_reference_model(gym, tries):  # a stand-in for the evaluator
        seen.append((gym.record.id, tries))
        return {t.id: (tries if t.difficulty == "easy" else 1) for t in gym.tasks}

    async def main():
        config = LLMConfig(model="scripted", base_url=None, api_key=None, cache_dir=folder / "cache", offline=True)
        async with LLMClient(config) as llm:
            return await synthesize(load_problems(str(write_problems(tmp_path, ["good"]))), out=tmp_path / "bank",
                                    llm=llm, config=CONFIG, workers=2, difficulty_filter=solved_by_reference_model)

    report = anyio.run(main)
    assert seen == [("peaks-good", 4)] and report.verified == 1
    assert [s.stage for s in report.stages][-1] == "difficulty"
    tasks = Bank.open(tmp_path / "bank").tasks("peaks-good")
    assert len(tasks) == 20 and {t.difficulty for t in tasks} == {"medium", "hard"}
    verification = Bank.open(tmp_path / "bank").gym("peaks-good").verification
    assert verification.tasks_kept == 20 and verification.dropped_tasks["easy-0"] == "solved 4/4"


def test_progress_in_a_log_is_plain_lines():
    import io

    from synthesis.progress import StageProgress
    from synthesis.state import StageResult

    stream = io.StringIO()
    progress = StageProgress(("tests", "gym"), enabled=True, stream=stream, interval_s=0)
    resumed = ProblemState(problem_id="a", gym_id="a", fingerprint="f",
                           results={"tests": StageResult(stage="tests", passed=True)})
    progress.replay(resumed)
    progress.reached("tests")
    progress.finished("tests", False)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "progress: tests 2/2 (1 dropped) | gym 0/1" and "\x1b" not in stream.getvalue()
