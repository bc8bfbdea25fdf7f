"""`codegym eval` as a command: clear errors for bad input, and Ctrl-C keeps what finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_support import prometheus_samples, spawn_http_ready

from mcp_gyms.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(["eval", *args])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(("args", "message"), [
    (["--policy", "openai"], "--out DIR is required"),
    (["--policy", "openai", "--out", "{tmp}/a"], "--policy openai needs --model"),
    (["--gyms", "no_such_gym", "--out", "{tmp}/b"], "no gym 'no_such_gym'"),
    (["--server", "ftp://x", "--out", "{tmp}/c"], "--server must be http(s) URLs"),
    (["--server", "http://127.0.0.1:9,ftp://x", "--out", "{tmp}/c2"], "not 'ftp://x'"),
    (["--server", "http://127.0.0.1:9", "--out", "{tmp}/d"], "cannot reach the gym server"),
    (["--bank", "{tmp}", "--out", "{tmp}/e"], "not a bank"),
    (["-k", "0", "--out", "{tmp}/f"], "-k: Input should be greater than or equal to 1"),
    (["--split", "extreme", "--out", "{tmp}/g"], "invalid choice: 'extreme'"),
    (["--bank", "x", "--server", "http://y", "--out", "{tmp}/h"], "not allowed with argument"),
    (["--min-success", "2", "--out", "{tmp}/i"], "--min-success is a rate between 0 and 1"),
])
def test_bad_input_is_a_clear_error(args: list[str], message: str, tmp_path: Path, capsys) -> None:
    code, output = run_cli([a.replace("{tmp}", str(tmp_path)) for a in args], capsys)
    assert code == 2
    assert message in output
    assert "Traceback" not in output
    assert not any(tmp_path.glob("*/trajectories.jsonl*"))


def test_out_dir_holding_a_run_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "trajectories.jsonl").write_text("")
    code, output = run_cli(["--out", str(tmp_path)], capsys)
    assert code == 2 and "already holds a run" in output


def test_rescore_of_a_bad_file(tmp_path: Path, capsys) -> None:
    code, output = run_cli(["rescore", str(tmp_path / "missing.jsonl")], capsys)
    assert code == 2 and "cannot read" in output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"gym": "coin_vault"}\n')
    code, output = run_cli(["rescore", str(bad)], capsys)
    assert code == 2 and "bad.jsonl:1: not an episode record" in output


def test_ctrl_c_writes_what_finished(tmp_path: Path) -> None:
    """SIGINT in the middle of a run: exit 130, finished episodes in trajectories.jsonl, reports written."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_gyms.cli", "eval", "--policy", "random", "--gyms", "coin_vault", "-k", "200",
         "--concurrency", "2", "--workers", "1", "--out", str(out), "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out / "trajectories.jsonl.partial"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=180)  # generous: CI machines can be loaded
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    assert 3 <= len(lines) < 200 * 12
    assert not partial.exists()
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert results["episodes_finished"] == len(lines) and results["episodes_expected"] == 200 * 12
    assert "**Interrupted**" in (out / "report.md").read_text()


def test_eval_spreads_episodes_over_the_processes_of_one_server(tmp_path: Path, capsys) -> None:
    """``--server URL1,URL2`` (the processes of ``codegym serve --procs 2``): every episode plays, and both
    processes serve some of them."""
    proc, ready = spawn_http_ready("--procs", "2", "mountain_peak")
    try:
        code, out = run_cli(["--server", ",".join(ready.urls), "--policy", "oracle", "-k", "2",
                             "--out", str(tmp_path / "run"), "--no-progress"], capsys)
        assert code == 0, out
        records = [json.loads(line) for line in (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()]
        assert records and all(r["success"] for r in records)
        started = [prometheus_samples(httpx.get(f"{url}/metrics").text)["codegym_episodes_started_total"]
                   for url in ready.urls]
        assert sum(started) == len(records) and all(n > 0 for n in started), started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
