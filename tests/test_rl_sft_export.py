"""`codegym export-sft`: successful oracle / eval trajectories as chat parquet, loaded by veRL's SFT dataset."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("verl") is None:
    pytest.skip("needs the rl extra (verl 0.9.1); `make test` installs it", allow_module_level=True)

import pandas as pd  # noqa: E402
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset  # noqa: E402

from eval.report import read_trajectories  # noqa: E402
from rl.sft import SftOptions, export_sft  # noqa: E402
from rl.sft_dataset import CodeGymSFTDataset  # noqa: E402
from rl.testing import build_tokenizer, make_test_bank  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SFT_CONFIG = {"max_length": 16384, "truncation": "error"}


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sft") / "bank"
    make_test_bank(path)
    return path


@pytest.fixture(scope="module")
def oracle_export(bank: Path) -> Any:
    return export_sft(SftOptions(bank=bank, out=bank.parent / "oracle", include_unverified=True, workers=2,
                                 val_fraction=0.2))


def rows(report: Any) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(report.train_file), pd.read_parquet(report.val_file)])


def test_oracle_trajectories_are_chats_with_tools(oracle_export: Any, bank: Path) -> None:
    from mcp_gyms.bank import Bank

    tasks = sum(len(Bank.open(bank).tasks(g)) for g in ("probe", "coin_vault"))
    assert oracle_export.episodes_seen == tasks and oracle_export.episodes_failed == 0
    assert oracle_export.train_rows + oracle_export.val_rows == tasks and oracle_export.val_rows >= 1
    data = rows(oracle_export)
    probe = data[data.extra_info.map(lambda e: e["gym"] == "probe" and e["task"] == "t2")].iloc[0]
    roles = [m["role"] for m in probe.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool"]
    read, done = probe.messages[2]["tool_calls"][0], probe.messages[4]["tool_calls"][0]
    assert (read["function"]["name"], json.loads(read["function"]["arguments"])) == ("Read", {})
    assert (done["function"]["name"], json.loads(done["function"]["arguments"])) == ("Done", {"answer": 42})
    assert probe.messages[3]["content"] == "42" and probe.extra_info["reward"] == 1.0
    tools = json.loads(probe.tools_json)
    assert [t["function"]["name"] for t in tools] == ["Observe", "Read", "Sleep", "Echo", "Done"]


def test_verls_sft_dataset_tokenizes_a_row(oracle_export: Any) -> None:
    tokenizer = build_tokenizer()
    for dataset_class in (MultiTurnSFTDataset, CodeGymSFTDataset):
        dataset = dataset_class(oracle_export.train_file, tokenizer, SFT_CONFIG)
        item = dataset[0]
        ids, loss_mask = item["input_ids"].tolist(), item["loss_mask"].tolist()
        text = tokenizer.decode(ids)
        assert "<tool_call>" in text and "<tool_response>" in text and '"name": "Done"' in text
        trained = tokenizer.decode([t for t, m in zip(ids, loss_mask) if m])
        assert "<tool_call>" in trained and "<tool_response>" not in trained  # only the model's turns are learned
        assert "hidden" not in trained  # nor the prompt


def test_the_exact_tools_are_rendered_with_codegyms_dataset_class(oracle_export: Any) -> None:
    tokenizer = build_tokenizer()
    dataset = CodeGymSFTDataset(oracle_export.train_file, tokenizer, SFT_CONFIG)
    data = pd.read_parquet(oracle_export.train_file)
    text = tokenizer.decode(dataset[0]["input_ids"].tolist())
    for tool in json.loads(data.iloc[0].tools_json):  # as the chat template renders them at RL time
        assert json.dumps(tool, ensure_ascii=False) in text


def test_successful_episodes_of_an_eval_run(bank: Path, tmp_path: Path) -> None:
    for policy in ("oracle", "random"):
        done = subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "eval", "--policy", policy, "--bank", str(bank),
                               "--gyms", "probe", "-k", "2", "--out", str(tmp_path / policy), "--no-progress"],
                              cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert (tmp_path / policy / "trajectories.jsonl").is_file(), done.stderr[-2000:]
        records = read_trajectories(tmp_path / policy)
        wins = [r for r in records if r.reward >= 1.0]
        options = SftOptions(bank=bank, from_eval=tmp_path / policy, out=tmp_path / f"sft-{policy}",
                             include_unverified=True, workers=1, val_fraction=0.0)
        if not wins:
            with pytest.raises(ValueError, match="no successful trajectory"):
                export_sft(options)
            continue
        report = export_sft(options)
        assert (report.train_rows, report.episodes_seen, report.episodes_failed) == (
            len(wins), len(records), len(records) - len(wins))
        data = pd.read_parquet(report.train_file)
        assert set(data.extra_info.map(lambda e: e["source"])) == {f"eval:{policy}"}
        for (_, row), record in zip(data.iterrows(), sorted(wins, key=lambda r: (r.gym, r.task_id))):
            calls = [c["function"]["name"] for m in row.messages if m["role"] == "assistant"
                     for c in m["tool_calls"]]
            assert calls == [c.name for c in record.calls]
    assert (tmp_path / "sft-oracle" / "train.parquet").is_file()


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "export-sft", "--from-eval", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no such eval run" in done.stderr
    assert not (tmp_path / "out").exists()
