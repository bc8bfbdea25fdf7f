"""The oracle over MCP on a sample of the bundled bank (servers + client + rewards together), re-scoring,
the random policy, and the report files. Every task of the bank is played by its oracle in `codegym verify`
(tests/test_verify.py) and over MCP by `make demo`; here every fourth gym (and three more), all their tasks, is
enough to hold the MCP path to the same result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.cli import demo_table
from eval.report import read_trajectories
from mcp_gyms.bank import Bank
from mcp_gyms.cli import main

pytestmark = pytest.mark.timeout(900)
# every fourth gym (every difficulty), and the ones the re-scoring tests below take apart
SAMPLE = sorted({*sorted(Bank.open().gym_ids)[::4], "coin_vault", "mountain_peak", "tape_decoder"})


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`codegym eval` with the default (oracle) policy on the default (bundled) bank."""
    out = tmp_path_factory.mktemp("oracle") / "run"
    code = main(["eval", "--out", str(out), "--min-success", "1", "--no-progress", "--concurrency", "64",
                 "--gyms", *SAMPLE])
    failed = [(r.gym, r.task_id, r.reason, r.error, r.calls[-1].observation[:200] if r.calls else None)
              for r in read_trajectories(out) if not r.success] if (out / "trajectories.jsonl").exists() else "no run"
    assert code == 0, failed
    return out


def test_oracle_scores_100_percent_on_the_bundled_bank(oracle_run: Path) -> None:
    bank = Bank.open()
    expected = {(g, t.id): t for g in SAMPLE for t in bank.tasks(g)}
    records = read_trajectories(oracle_run)
    assert {(r.gym, r.task_id) for r in records} == set(expected) and len(records) == len(expected)
    for r in records:
        task = expected[(r.gym, r.task_id)]
        assert (r.reason, r.reward, r.success, r.done) == ("done", 1.0, True, True), (r.gym, r.task_id, r.error)
        assert r.tool_calls == r.steps == task.oracle_steps == r.oracle_steps
        assert (r.invalid_calls, r.tool_errors) == (0, 0)
        assert r.difficulty == task.difficulty and r.policy == "oracle"
        assert r.calls[-1].name == "Done" and r.calls[-1].reward == 1.0
    results = json.loads((oracle_run / "results.json").read_text())
    overall = results["overall"]
    assert overall["success_rate"] == 1.0 and overall["episodes"] == len(expected)
    assert overall["pass_at_k"] == {"1": 1.0} and overall["calls_over_oracle"] == 1.0
    assert set(results["by_gym"]) == set(SAMPLE)
    assert set(results["by_difficulty"]) == {"easy", "medium", "hard"}
    assert results["interrupted"] is False and results["config"]["policy"] == "oracle"
    assert "api_key" not in results["config"]
    report = (oracle_run / "report.md").read_text()
    assert "## By gym" in report and "## By difficulty" in report and "report.png" in report
    assert (oracle_run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (oracle_run / "trajectories.jsonl.partial").exists()


def _subset(src: Path, dst: Path, gyms: set[str]) -> Path:
    lines = [line for line in (src / "trajectories.jsonl").read_text().splitlines()
             if json.loads(line)["gym"] in gyms]
    dst.write_text("\n".join(lines) + "\n")
    return dst


def test_rescore_round_trip(oracle_run: Path, tmp_path: Path, capsys) -> None:
    path = _subset(oracle_run, tmp_path / "trajectories.jsonl", {"coin_vault", "tape_decoder"})
    assert main(["eval", "rescore", str(path)]) == 0
    assert "24 match, 0 mismatch, 0 with differing observations" in capsys.readouterr().out
    report = json.loads((tmp_path / "rescore.json").read_text())
    assert report["ok"] and report["replayed"] == 24


def test_rescore_catches_a_tampered_reward(oracle_run: Path, tmp_path: Path, capsys) -> None:
    path = _subset(oracle_run, tmp_path / "trajectories.jsonl", {"mountain_peak"})
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    done = record["calls"][-1]
    done["arguments"]["answer"] = done["arguments"]["answer"] + 1  # the same record, but a wrong answer sent
    lines[0] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    assert main(["eval", "rescore", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH  mountain_peak {record['task_id']} sample 0: recorded reward 1 (done=True), replayed 0" in out
    assert "11 match, 1 mismatch" in out


def test_report_is_rebuilt_from_trajectories(oracle_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _subset(oracle_run, run / "trajectories.jsonl", {"coin_vault"})
    assert main(["eval", "report", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert list(results["by_gym"]) == ["coin_vault"] and results["overall"]["episodes"] == 12


def test_random_policy_makes_only_schema_valid_calls(tmp_path: Path) -> None:
    out = tmp_path / "random"
    code = main(["eval", "--policy", "random", "--gyms", "coin_vault", "tape_decoder", "--split", "easy",
                 "--tasks-per-gym", "2", "-k", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    records = read_trajectories(out)
    assert len(records) == 8 and {r.policy for r in records} == {"random"}
    assert {r.difficulty for r in records} == {"easy"}
    for r in records:
        assert r.invalid_calls == 0 and r.reason in ("done", "step_budget")
        assert r.tool_calls == len(r.calls) and all(c.sent for c in r.calls)
    results = json.loads((out / "results.json").read_text())
    assert set(results["overall"]["pass_at_k"]) == {"1", "2"}
    assert results["config"]["k"] == 2 and results["config"]["split"] == "easy"


def _small_bank(root: Path, *, break_oracle: bool = False) -> Path:
    """A bank with two bundled gyms; ``break_oracle`` makes coin_vault's reference answers off by one (in
    its code and in the answers stored with its tasks, which are what ``Done`` is judged against)."""
    src, dst = Bank.open(), Bank.create(root)
    for gym_id in ("coin_vault", "mountain_peak"):
        code, tasks = src.code(gym_id), src.tasks(gym_id)[:3]
        if break_oracle and gym_id == "coin_vault":
            assert "return best[target]" in code
            code = code.replace("return best[target]", "return best[target] + 1")
            tasks = [t.model_copy(update={"answer": t.answer + 1}) for t in tasks]
        dst.put_gym(src.gym(gym_id), code, tasks)
    return root


def test_demo_table(tmp_path: Path, capsys) -> None:
    assert demo_table(_small_bank(tmp_path / "bank"), concurrency=8, workers=1) == 0
    out = capsys.readouterr().out
    assert "oracle over MCP: 6/6 episodes solved (100.0%)" in out
    assert "coin_vault" in out and "mountain_peak" in out and "easy" in out


def test_demo_table_fails_when_the_oracle_does(tmp_path: Path, capsys) -> None:
    assert demo_table(_small_bank(tmp_path / "bank", break_oracle=True), concurrency=8, workers=1) == 1
    assert "oracle over MCP: 3/6 episodes solved (50.0%)" in capsys.readouterr().out
