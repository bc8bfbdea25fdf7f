"""The bank format: validation with clear errors, lazy loading, atomic writes, scale."""

from __future__ import annotations

import json
import time

import pytest

from mcp_gyms.bank import Bank, BankError, GymRecord, Provenance, TaskRecord, default_bank_path


def _record(gym_id: str = "g1") -> GymRecord:
    return GymRecord(id=gym_id, title="G", class_name="G", task_text="do it", provenance=Provenance(source="test"))


def _tasks(n: int = 3) -> list[TaskRecord]:
    return [TaskRecord(id=f"t{i}", difficulty=("easy", "medium", "hard")[i % 3], config={"x": i}, oracle_steps=10 + i)
            for i in range(n)]


def test_default_bank_meets_the_bar(bank: Bank):
    assert bank.root == default_bank_path()
    assert len(bank) >= 30
    assert sum(bank.gym(g).provenance.source == "bundled" for g in bank.gym_ids) >= 20  # rebuilt by `codegym synth`
    for summary in bank.index.gyms:
        assert summary.verified, summary.id
        assert summary.tools >= 4
        assert summary.tasks >= 10
        assert all(summary.difficulty[d] > 0 for d in ("easy", "medium", "hard"))
        record = bank.gym(summary.id)
        assert record.provenance.source in ("codegym-team", "bundled")  # by hand, or synthesized from our problems
        assert record.verification and record.verification.verified
        for task in bank.tasks(summary.id):
            assert task.oracle_steps is not None and 10 <= task.oracle_steps <= 256
        bank.code(summary.id)  # hash matches


def test_round_trip_and_lookup(tmp_path):
    bank = Bank.create(tmp_path / "b")
    bank.put_gym(_record(), "class G: pass\n", _tasks())
    again = Bank.open(tmp_path / "b")
    assert again.gym_ids == ["g1"]
    assert again.summary("g1").difficulty == {"easy": 1, "medium": 1, "hard": 1}
    assert again.summary("g1").mean_oracle_steps == 11.0
    assert again.task("g1", 2).id == "t2" and again.task("g1", "t1").config == {"x": 1}
    assert again.code("g1") == "class G: pass\n"
    with pytest.raises(BankError, match="there is no task #7"):
        again.task("g1", 7)
    with pytest.raises(BankError, match="no task with id 'zz'"):
        again.task("g1", "zz")
    with pytest.raises(BankError, match="no gym 'nope'"):
        again.gym("nope")
    assert not list((tmp_path / "b").rglob("*.tmp"))  # atomic writes leave no temp files


def test_content_digest_ignores_only_the_verification_time(tmp_path):
    from mcp_gyms.bank import VerificationReport

    def bank_with(name: str, verified_at: str, tasks: list[TaskRecord]) -> Bank:
        bank = Bank.create(tmp_path / name)
        report = VerificationReport(verified=True, verified_at=verified_at, tasks_total=len(tasks))
        bank.put_gym(_record().model_copy(update={"verification": report}), "class G: pass\n", tasks)
        return bank

    first = bank_with("a", "2026-01-01T00:00:00+00:00", _tasks())
    assert first.content_digest("g1") == bank_with("b", "2026-02-02T00:00:00+00:00", _tasks()).content_digest("g1")
    changed = _tasks()
    changed[1] = changed[1].model_copy(update={"oracle_steps": 99})
    assert first.content_digest("g1") != bank_with("c", "2026-01-01T00:00:00+00:00", changed).content_digest("g1")


def test_bad_records_are_named(tmp_path):
    bank = Bank.create(tmp_path / "b")
    bank.put_gym(_record(), "x = 1\n", _tasks())
    folder = tmp_path / "b" / "gyms" / "g1"

    (folder / "tasks.jsonl").write_text('{"id": "t0", "difficulty": "easy", "config": {}}\n{"id": "t1", "difficulty": "extreme", "config": {}}\n')
    with pytest.raises(BankError, match=r"tasks.jsonl:2: invalid task: difficulty"):
        Bank.open(tmp_path / "b").tasks("g1")

    raw = json.loads((folder / "gym.json").read_text())
    del raw["task_text"]
    (folder / "gym.json").write_text(json.dumps(raw))
    with pytest.raises(BankError, match=r"gym.json: invalid GymRecord: task_text: Field required"):
        Bank.open(tmp_path / "b").gym("g1")

    (folder / "gym.py").write_text("x = 2\n")
    raw["task_text"] = "t"
    (folder / "gym.json").write_text(json.dumps(raw))
    with pytest.raises(BankError, match="does not match code_sha256"):
        Bank.open(tmp_path / "b").code("g1")


def test_bad_index(tmp_path):
    with pytest.raises(BankError, match="not a bank"):
        Bank.open(tmp_path)
    (tmp_path / "bank.json").write_text('{"format": "other/9"}')
    with pytest.raises(BankError, match="unsupported bank format"):
        Bank.open(tmp_path)
    (tmp_path / "bank.json").write_text("{oops")
    with pytest.raises(BankError, match="cannot read the index"):
        Bank.open(tmp_path)
    with pytest.raises(BankError, match="duplicate task ids"):
        Bank.create(tmp_path / "c").put_gym(_record(), "", _tasks() + _tasks(1))


def test_large_bank_opens_fast(tmp_path):
    """The paper's scale: 13k gyms, 86k tasks. Opening reads the index only."""
    gyms = [{"id": f"gym-{i:05d}", "title": f"Gym {i}", "tools": 6, "tasks": 7,
             "difficulty": {"easy": 2, "medium": 3, "hard": 2}, "mean_oracle_steps": 44.1, "verified": True}
            for i in range(13_116)]
    (tmp_path / "bank.json").write_text(json.dumps({"format": "codegym-bank/1", "name": "big", "gyms": gyms}))
    started = time.perf_counter()
    bank = Bank.open(tmp_path)
    elapsed = time.perf_counter() - started
    assert len(bank) == 13_116 and sum(g.tasks for g in bank.index.gyms) == 91_812
    print(f"opened a 13,116-gym index in {elapsed * 1000:.0f} ms")  # speed targets live in benchmarks/


def test_batch_writes_the_index_once(tmp_path, monkeypatch):
    bank = Bank.create(tmp_path / "b")
    writes = []
    original = bank.write_index
    monkeypatch.setattr(bank, "write_index", lambda: (writes.append(1), original())[1])
    with bank.batch():
        for i in range(5):
            bank.put_gym(_record(f"g{i}"), "x = 1\n", _tasks())
        assert not writes
    assert len(writes) == 1
    assert Bank.open(tmp_path / "b").gym_ids == [f"g{i}" for i in range(5)]


def test_code_file_cannot_leave_the_gym_folder(tmp_path):
    with pytest.raises(ValueError, match="code_file"):
        GymRecord(id="g", title="G", class_name="G", task_text="t", provenance=Provenance(source="x"),
                  code_file="../../etc/hostname")
