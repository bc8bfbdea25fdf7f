"""`codegym install HOST GYM`: put a gym into an MCP host's config file (Claude Desktop, Cursor, VS Code).

The server entry starts the absolute path of the running ``codegym`` (hosts do not start from a shell,
so ``codegym`` is rarely on their PATH), ``serve GYM`` and the task options given. With ``--url`` the
entry is a remote (streamable HTTP) server instead: ``BASE/gyms/GYM/mcp/NAME``, an episode URL of its
own, plus ``Authorization: Bearer TOKEN`` when ``--token`` is given.

Writing a config file keeps every other entry and key in it, copies the old file to ``FILE.bak`` first,
and replaces the file atomically; a file that is not a JSON object is left untouched and named in the
error. ``--print`` shows the JSON instead of writing it.

Host formats (each host's documented file):

- ``claude-desktop``: ``{"mcpServers": {NAME: {"command", "args"}}}`` in ``claude_desktop_config.json``
  (Linux ``$XDG_CONFIG_HOME/Claude``, macOS ``~/Library/Application Support/Claude``, Windows
  ``%APPDATA%\\Claude``). Claude Desktop adds remote servers in its settings, not in this file, so
  ``--url`` prints what to paste there.
- ``cursor``: ``{"mcpServers": {NAME: {"command", "args"} | {"url", "headers"}}}`` in ``.cursor/mcp.json``.
- ``vscode``: ``{"servers": {NAME: {"type": "stdio", "command", "args"} | {"type": "http", "url",
  "headers"}}}`` in ``.vscode/mcp.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from .bank import Bank
from .episode_manager import EpisodeError, resolve_task
from .files import atomic_write
from .protocol import DIFFICULTIES, EPISODE_NAME

__all__ = ["HOSTS", "add_arguments", "codegym_command", "default_config_path", "merge_entry", "run", "server_entry"]

#: host -> the top-level key that holds its servers.
HOSTS: dict[str, str] = {"claude-desktop": "mcpServers", "cursor": "mcpServers", "vscode": "servers"}


class InstallError(Exception):
    """A config file or an option that cannot be used; the message says which and why."""


def codegym_command() -> list[str]:
    """The command that starts this ``codegym``, with absolute paths (no PATH lookup needed)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "codegym" and argv0.exists():
        return [str(argv0.resolve())]
    beside = Path(sys.executable).parent / "codegym"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "mcp_gyms.cli"]


def default_config_path(host: str) -> Path:
    """Where ``host`` reads its MCP servers from (Claude Desktop: per OS; Cursor, VS Code: this project)."""
    if host == "cursor":
        return Path.cwd() / ".cursor" / "mcp.json"
    if host == "vscode":
        return Path.cwd() / ".vscode" / "mcp.json"
    if sys.platform == "darwin":
        folder = Path.home() / "Library" / "Application Support" / "Claude"
    elif sys.platform == "win32":
        folder = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "Claude"
    else:
        folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "Claude"
    return folder / "claude_desktop_config.json"


def server_entry(host: str, args: argparse.Namespace) -> dict[str, Any]:
    """The host's server entry for ``args`` (a stdio command, or with ``--url`` a remote server)."""
    if args.url:
        name = args.episode or f"{args.gym}-{secrets.token_urlsafe(6)}"
        entry: dict[str, Any] = {"url": f"{args.url.rstrip('/')}/gyms/{args.gym}/mcp/{name}"}
        if args.token:
            entry["headers"] = {"Authorization": f"Bearer {args.token}"}
        return {"type": "http", **entry} if host == "vscode" else entry
    command = codegym_command()
    serve = [*command[1:], "serve", args.gym]
    if args.bank:
        serve += ["--bank", str(Path(args.bank).resolve())]
    for option in ("task", "difficulty", "seed"):
        value = getattr(args, option)
        if value is not None:
            serve += [f"--{option}", str(value)]
    entry = {"command": command[0], "args": serve}
    return {"type": "stdio", **entry} if host == "vscode" else entry


def merge_entry(path: Path, servers_key: str, name: str, entry: dict[str, Any]) -> Path | None:
    """Write ``entry`` as server ``name`` into the config file at ``path``, keeping everything else.

    Returns the backup's path (None when there was no file before). Raises :class:`InstallError` for a
    file that is not a JSON object (or whose servers key is not an object), leaving it untouched."""
    config: dict[str, Any] = {}
    backup = None
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if text.strip():
            try:
                config = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InstallError(f"{path} is not valid JSON ({exc}); fix or move it, then run this again") from None
            if not isinstance(config, dict):
                raise InstallError(f"{path} does not hold a JSON object; fix or move it, then run this again")
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
    servers = config.setdefault(servers_key, {})
    if not isinstance(servers, dict):
        raise InstallError(f"{path}: {servers_key!r} is not a JSON object; fix it, then run this again")
    servers[name] = entry
    atomic_write(path, json.dumps(config, indent=2) + "\n")
    return backup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``codegym install``."""
    parser.add_argument("host", choices=list(HOSTS), help="the MCP host whose config gets the gym")
    parser.add_argument("gym", help="gym id (see `codegym list`)")
    parser.add_argument("--bank", default=None, help="bank folder (default: the bundled bank)")
    parser.add_argument("--task", default=None, help="task index or id the episode starts on (default: 0)")
    parser.add_argument("--difficulty", choices=DIFFICULTIES, default=None,
                        help="start on the first task of this difficulty")
    parser.add_argument("--seed", type=int, default=None, help="episode seed (default: the task's own)")
    parser.add_argument("--name", default=None, help="the server's name in the config (default: codegym-GYM)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="the config file to write (default: the host's standard location)")
    parser.add_argument("--print", action="store_true", help="print the JSON instead of writing the file")
    parser.add_argument("--url", default=None, metavar="BASE",
                        help="a remote server instead (`codegym serve --http` at BASE, e.g. http://host:8000)")
    parser.add_argument("--episode", default=None, metavar="NAME",
                        help="with --url: the episode name in the URL (default: GYM-<random>)")
    parser.add_argument("--token", default=None, help="with --url: the server's bearer token (stored in the file)")


def run(args: argparse.Namespace) -> int:
    """Run ``codegym install``; returns the exit code (2 for bad input, with a message on stderr)."""
    bank = Bank.open(args.bank)
    if args.gym not in bank:
        return _fail(f"no gym {args.gym!r} in {bank.root} (see `codegym list`)")
    if args.task is not None or args.difficulty is not None:
        task = int(args.task) if args.task is not None and args.task.lstrip("-").isdigit() else args.task
        try:
            resolve_task(args.gym, bank.tasks(args.gym), task, args.difficulty)
        except EpisodeError as exc:
            return _fail(exc.message)
    if args.episode is not None and not EPISODE_NAME.fullmatch(args.episode):
        return _fail(f"bad --episode {args.episode!r}: use 1 to 64 letters, digits, '-', '_', '.' or '~'")
    if (args.episode or args.token) and not args.url:
        return _fail("--episode and --token go with --url (a remote server)")
    name = args.name or f"codegym-{args.gym}"
    entry = server_entry(args.host, args)
    key = HOSTS[args.host]
    if args.host == "claude-desktop" and args.url:
        print(f"Claude Desktop adds remote MCP servers in Settings > Connectors > Add custom connector.\n"
              f"URL: {entry['url']}" + ("\n(the server needs a bearer token: give it as the connector's "
                                        "authorization, or serve without --token on a trusted network)"
                                        if args.token else ""))
        return 0
    if args.print:
        print(json.dumps({key: {name: entry}}, indent=2))
        return 0
    path = Path(args.config) if args.config else default_config_path(args.host)
    try:
        backup = merge_entry(path, key, name, entry)
    except (InstallError, OSError) as exc:
        return _fail(str(exc))
    print(f"added {name!r} to {path}" + (f" (the old file is at {backup})" if backup else ""))
    print("restart the host (or reload its MCP servers) to see the gym's tools")
    return 0


def _fail(message: str) -> int:
    print(f"codegym install: {message}", file=sys.stderr)
    return 2
