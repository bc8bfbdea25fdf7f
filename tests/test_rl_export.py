"""`codegym export-verl`: the parquet rows, the stable split, bad input, and veRL's RLHFDataset reading them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

if importlib.util.find_spec("pyarrow") is None:
    pytest.skip("needs the rl extra (pyarrow); `make test` installs it", allow_module_level=True)

import pyarrow.parquet as pq  # noqa: E402

from mcp_gyms.bank import Bank  # noqa: E402
from mcp_gyms.cli import main as codegym  # noqa: E402
from rl.export import DEFAULT_SYSTEM_PROMPT, ExportOptions, export  # noqa: E402
from rl.settings import EpisodeSpec  # noqa: E402
from rl.testing import make_test_bank  # noqa: E402

HAS_VERL = importlib.util.find_spec("verl") is not None


def rows(path: str | Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_export_writes_one_row_per_verified_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert codegym(["export-verl", "--out", str(tmp_path)]) == 0
    assert "train" in capsys.readouterr().out
    bank = Bank.open()
    expected = sum(len(bank.tasks(g)) for g in bank.gym_ids if bank.summary(g).verified)
    train, val = rows(tmp_path / "train.parquet"), rows(tmp_path / "val.parquet")
    assert len(train) + len(val) == expected and val and len(val) < len(train)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["train_rows"], manifest["val_rows"], manifest["bank_digest"]) == (len(train), len(val), bank.digest)

    row = next(r for r in train if r["extra_info"]["gym"] == "coin_vault" and r["extra_info"]["task"] == "easy-0")
    task = bank.task("coin_vault", "easy-0")
    assert row["data_source"] == "codegym" and row["agent_name"] == "codegym_agent" and row["ability"] == "tool-use"
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"] == DEFAULT_SYSTEM_PROMPT
    assert row["prompt"][1]["content"].startswith(bank.gym("coin_vault").task_text)
    assert json.loads(row["reward_model"]["ground_truth"]) == task.answer
    info = row["extra_info"]
    assert (info["task_index"], info["difficulty"], info["seed"], info["oracle_steps"], info["split"]) == (
        0, "easy", task.seed, task.oracle_steps, "train")
    assert info["tools_kwargs"] == {"codegym": {"create_kwargs": {"gym": "coin_vault", "task": "easy-0",
                                                                  "seed": task.seed}}}
    assert sorted(r["extra_info"]["index"] for r in train) == list(range(len(train)))
    assert EpisodeSpec.from_row(info) == EpisodeSpec(gym="coin_vault", task="easy-0", seed=task.seed)


def test_split_is_stable_when_the_bank_grows(tmp_path: Path) -> None:
    bank = make_test_bank(tmp_path / "bank")
    small = export(ExportOptions(bank=bank.root, out=tmp_path / "a", gyms=["coin_vault"], val_fraction=0.3))
    grown = export(ExportOptions(bank=bank.root, out=tmp_path / "b", include_unverified=True, val_fraction=0.3))
    assert grown.train_rows + grown.val_rows == small.train_rows + small.val_rows + 3

    def sides(out: str) -> dict[tuple[str, str], str]:
        return {(r["extra_info"]["gym"], r["extra_info"]["task"]): r["extra_info"]["split"]
                for name in ("train", "val") for r in rows(Path(out) / f"{name}.parquet")}

    before, after = sides(str(tmp_path / "a")), sides(str(tmp_path / "b"))
    assert all(after[key] == side for key, side in before.items())

    by_gym = export(ExportOptions(bank=bank.root, out=tmp_path / "c", include_unverified=True, val_fraction=0.5,
                                  split_by="gym"))
    gyms_in = {name: {r["extra_info"]["gym"] for r in rows(Path(by_gym.train_file if name == "train" else by_gym.val_file))}
               for name in ("train", "val")}
    assert gyms_in["train"] and gyms_in["val"] and not gyms_in["train"] & gyms_in["val"]


def test_unverified_gyms_are_skipped_unless_asked(tmp_path: Path) -> None:
    bank = make_test_bank(tmp_path / "bank")
    report = export(ExportOptions(bank=bank.root, out=tmp_path / "out"))
    assert "probe" in report.skipped_gyms and report.gyms == 1
    with pytest.raises(ValueError, match="nothing to export"):
        export(ExportOptions(bank=bank.root, out=tmp_path / "none", gyms=["probe"]))


@pytest.mark.parametrize(("args", "message"), [
    (["--gym", "no_such_gym"], "no gym 'no_such_gym'"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--bank", "/nonexistent/bank"], "not a bank"),
])
def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    assert codegym(["export-verl", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_empty_system_prompt_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sys.txt").write_text("  \n")
    assert codegym(["export-verl", "--out", str(tmp_path), "--system-prompt", str(tmp_path / "sys.txt")]) == 2
    assert "empty" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_VERL, reason="needs the rl extra (verl)")
def test_rlhf_dataset_reads_the_export(tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from rl.testing import build_tokenizer

    report = export(ExportOptions(out=tmp_path))
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 4096, "filter_overlong_prompts": True,
                               "return_raw_chat": True, "truncation": "error", "cache_dir": str(tmp_path / "cache"),
                               "filter_overlong_prompts_workers": 1})
    dataset = RLHFDataset(report.train_file, build_tokenizer(), config)
    assert len(dataset) == report.train_rows  # nothing filtered: the prompts fit
    item = dataset[0]
    source = rows(report.train_file)[0]
    assert item["raw_prompt"] == source["prompt"]
    assert item["agent_name"] == "codegym_agent" and item["data_source"] == "codegym"
    assert item["tools_kwargs"] == source["extra_info"]["tools_kwargs"] and item["index"] == 0
    assert EpisodeSpec.from_row(item).gym == source["extra_info"]["gym"]
