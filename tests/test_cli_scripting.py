"""`codegym install` (config files of MCP hosts: merge, backup, --print, remote entries, bad input) and the
machine-readable `codegym list --json` / `codegym show GYM --json`. (The installed entry started by a real
host-like client is in tests/test_client_matrix.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mcp_gyms.bank import Bank
from mcp_gyms.cli import main
from mcp_gyms.install import default_config_path

GYM = "mountain_peak"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_show_json(capsys, bank: Bank) -> None:
    code, out, _ = run(capsys, "list", "--json")
    listing = json.loads(out)
    assert code == 0 and listing["format"] == "codegym-list/1" and listing["bank"] == str(bank.root)
    assert [g["id"] for g in listing["gyms"]] == bank.gym_ids
    row = next(g for g in listing["gyms"] if g["id"] == GYM)
    assert row["tasks"] == len(bank.tasks(GYM)) and row["tools"] == len(bank.gym(GYM).tools) and row["verified"]
    code, out, _ = run(capsys, "show", GYM, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["format"] == "codegym-show/1" and shown["gym"]["id"] == GYM
    assert [t["id"] for t in shown["tasks"]] == [t.id for t in bank.tasks(GYM)]
    assert shown["gym"]["tools"][2]["input_schema"]["properties"]["position"]["description"]
    assert run(capsys, "show", "nope", "--json")[0] == 2


def test_install_claude_desktop_merges_with_a_backup(capsys, tmp_path: Path) -> None:
    config = tmp_path / "Claude" / "claude_desktop_config.json"
    config.parent.mkdir()
    before = {"mcpServers": {"other": {"command": "x", "args": ["y"]}}, "globalShortcut": "Ctrl+Space"}
    config.write_text(json.dumps(before))
    code, out, err = run(capsys, "install", "claude-desktop", GYM, "--config", str(config), "--task", "hard-1")
    assert code == 0, err
    after = json.loads(config.read_text())
    assert after["globalShortcut"] == "Ctrl+Space" and after["mcpServers"]["other"] == before["mcpServers"]["other"]
    entry = after["mcpServers"][f"codegym-{GYM}"]
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).exists()
    assert entry["args"][-4:] == ["serve", GYM, "--task", "hard-1"]
    assert json.loads((tmp_path / "Claude" / "claude_desktop_config.json.bak").read_text()) == before
    assert str(config) in out
    # again, under another name and with a bank: both entries stay
    code, _, _ = run(capsys, "install", "claude-desktop", GYM, "--config", str(config), "--name", "two",
                     "--bank", str(Bank.open().root))
    servers = json.loads(config.read_text())["mcpServers"]
    assert code == 0 and set(servers) == {"other", f"codegym-{GYM}", "two"}
    assert servers["two"]["args"][-2:] == ["--bank", str(Bank.open().root)]


def test_install_new_file_and_print(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "new" / "mcp.json"
    code, _, _ = run(capsys, "install", "cursor", GYM, "--config", str(config))
    assert code == 0 and not config.with_name("mcp.json.bak").exists()
    assert set(json.loads(config.read_text())["mcpServers"]) == {f"codegym-{GYM}"}
    code, out, _ = run(capsys, "install", "vscode", GYM, "--print")
    entry = json.loads(out)["servers"][f"codegym-{GYM}"]
    assert code == 0 and entry["type"] == "stdio" and entry["args"][:2] == ["serve", GYM]
    code, out, _ = run(capsys, "install", "vscode", GYM, "--print", "--url", "http://gyms.lan:8000/",
                       "--episode", "alice", "--token", "t0k")
    assert json.loads(out)["servers"][f"codegym-{GYM}"] == {
        "type": "http", "url": f"http://gyms.lan:8000/gyms/{GYM}/mcp/alice", "headers": {"Authorization": "Bearer t0k"}}
    code, out, _ = run(capsys, "install", "cursor", GYM, "--print", "--url", "http://h:1")
    url = json.loads(out)["mcpServers"][f"codegym-{GYM}"]["url"]
    assert url.startswith(f"http://h:1/gyms/{GYM}/mcp/{GYM}-")  # an episode name of its own
    code, out, _ = run(capsys, "install", "claude-desktop", GYM, "--url", "http://h:1", "--episode", "e1")
    assert code == 0 and f"http://h:1/gyms/{GYM}/mcp/e1" in out and "Connectors" in out
    assert not (tmp_path / "xdg").exists()  # neither --print nor --url writes Claude's file


@pytest.mark.parametrize("argv, words", [
    (["claude-desktop", "nope"], "no gym 'nope'"),
    (["claude-desktop", GYM, "--task", "99"], "no task #99"),
    (["cursor", GYM, "--token", "t"], "go with --url"),
    (["cursor", GYM, "--url", "http://h", "--episode", "a/b"], "bad --episode"),
])
def test_install_bad_input(capsys, tmp_path: Path, argv: list[str], words: str) -> None:
    config = tmp_path / "c.json"
    code, out, err = run(capsys, "install", *argv, "--config", str(config))
    assert code == 2 and words in err and not config.exists()


@pytest.mark.parametrize("content, words", [("{not json", "is not valid JSON"), ("[1, 2]", "does not hold a JSON object"),
                                            ('{"mcpServers": []}', "'mcpServers' is not a JSON object")])
def test_install_leaves_a_broken_config_untouched(capsys, tmp_path: Path, content: str, words: str) -> None:
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(content)
    code, _, err = run(capsys, "install", "claude-desktop", GYM, "--config", str(config))
    assert code == 2 and words in err and config.read_text() == content


def test_default_config_locations(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_config_path("claude-desktop") == tmp_path / "Claude" / "claude_desktop_config.json"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_config_path("claude-desktop").parts[-4:] == (
        "Library", "Application Support", "Claude", "claude_desktop_config.json")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert default_config_path("claude-desktop") == tmp_path / "Roaming" / "Claude" / "claude_desktop_config.json"
    monkeypatch.chdir(tmp_path)
    assert default_config_path("cursor") == tmp_path / ".cursor" / "mcp.json"
    assert default_config_path("vscode") == tmp_path / ".vscode" / "mcp.json"


def test_example_config_is_what_install_writes(capsys) -> None:
    example = json.loads((Path(__file__).resolve().parent.parent / "examples" / "claude_desktop_config.json").read_text())
    code, out, _ = run(capsys, "install", "claude-desktop", GYM, "--print")
    printed = json.loads(out)
    (name, entry), = example["mcpServers"].items()
    assert code == 0 and set(printed["mcpServers"]) == {name}
    written = printed["mcpServers"][name]
    assert entry["args"] == written["args"] and entry["command"].endswith("/.venv/bin/codegym")
    assert written["command"].endswith("/codegym") and Path(written["command"]).is_absolute()
