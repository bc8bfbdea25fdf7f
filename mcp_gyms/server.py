"""The ``codegym serve`` command (also ``python -m mcp_gyms.server``): one gym over stdio, or a bank over
streamable HTTP from one process or from ``--procs N`` (see :mod:`mcp_gyms.procs`).

The servers themselves: :mod:`mcp_gyms.gym_server` (one gym, one MCP server), :mod:`mcp_gyms.stdio` and
:mod:`mcp_gyms.http_service` (the transports).
"""

from __future__ import annotations

import argparse
import os
import sys

import anyio

from .bank import Bank
from .episode_manager import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_EPISODES,
    EpisodeError,
    rejection,
    resolve_task,
)
from .gym_server import StartupTask
from .http_service import DEFAULT_MAX_REQUEST_BODY, HttpService, is_loopback, serve_http
from .protocol import (
    DIFFICULTIES,
    TOKEN_ENV,
)
from .sandbox import SandboxLimits
from .stdio import serve_stdio

__all__ = ["add_serve_arguments", "http_service", "main", "serve_command"]


# --- the `codegym serve` command ---------------------------------------------------------------------
def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``codegym serve`` to ``parser``."""
    parser.add_argument("gym", nargs="?", help="gym id: serve it over stdio (or, with --http, serve only it)")
    parser.add_argument("--bank", default=None, help="bank folder (default: the bundled bank)")
    parser.add_argument("--task", default=None, help="task index or task id of the implicit episode (default: 0)")
    parser.add_argument("--difficulty", choices=DIFFICULTIES, default=None,
                        help="start on the first task of this difficulty (when --task is not given)")
    parser.add_argument("--seed", type=int, default=None, help="episode seed (default: the task's own)")
    parser.add_argument("--http", action="store_true", help="serve over streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000; 0 picks a free one)")
    parser.add_argument("--token", default=None,
                        help=f"require 'Authorization: Bearer TOKEN' on HTTP (default: ${TOKEN_ENV}, if set)")
    parser.add_argument("--procs", type=int, default=None, metavar="N",
                        help="HTTP server processes (default: the CPU count): each a full server of the bank "
                             "with its own episodes, on ports PORT..PORT+N-1 (--port 0: N free ports); "
                             "--workers and --max-episodes are totals, shared out among them")
    parser.add_argument("--ready-file", default=None, metavar="PATH",
                        help="with --http: once every server process answers, write JSON {url, urls, port, ports, "
                             "pid, pids} to PATH atomically (removed again on exit)")
    parser.add_argument("--workers", type=int, default=None,
                        help="sandbox worker processes per gym (default: 1 for stdio, the CPU count for HTTP)")
    parser.add_argument("--max-episodes", type=int, default=DEFAULT_MAX_EPISODES,
                        help=f"cap on open episodes (default: {DEFAULT_MAX_EPISODES})")
    parser.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                        help=f"close episodes idle this long (default: {DEFAULT_IDLE_TIMEOUT_S:g} for HTTP, "
                             "never for stdio)")
    parser.add_argument("--time-limit", type=float, default=3.0, metavar="SECONDS",
                        help="wall-time limit of one tool call in the sandbox (default: 3)")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="also serve gyms that failed `codegym verify` (refused by default)")
    parser.add_argument("--max-request-body", type=int, default=DEFAULT_MAX_REQUEST_BODY, metavar="BYTES",
                        help=f"largest HTTP request body accepted (default: {DEFAULT_MAX_REQUEST_BODY}, 4 MiB); "
                             "a bigger one gets HTTP 413 with a JSON-RPC error naming the limit")
    parser.add_argument("--no-hot-path", action="store_true",
                        help="answer every HTTP request through the MCP SDK, also the 2026-07-28 tools/call that "
                             "names its episode (answered by codegym's hot path by default: same answer, less CPU)")


def _announce_unverified(bank: Bank, gyms: list[str] | None, allowed: bool) -> None:
    """Say at start which served gyms failed verification (refused unless ``allowed``) or never had it."""
    rejected, unchecked = [], []
    for gym_id in gyms if gyms is not None else bank.gym_ids:
        if bank.summary(gym_id).verified:
            continue
        (rejected if rejection(bank.gym(gym_id)) else unchecked).append(gym_id)
    if rejected:
        what = "serving anyway (--allow-unverified)" if allowed else "refusing (--allow-unverified serves them)"
        print(f"codegym: {len(rejected)} gym(s) failed verification, {what}: {', '.join(rejected[:20])}",
              file=sys.stderr, flush=True)
    if unchecked:
        print(f"codegym: {len(unchecked)} gym(s) were never verified (`codegym verify` checks them): "
              f"{', '.join(unchecked[:20])}", file=sys.stderr, flush=True)


def _task_arg(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def serve_command(args: argparse.Namespace) -> int:
    """Run ``codegym serve``: stdio when a GYM is given without --http, else HTTP. Returns the exit code."""
    bank = Bank.open(args.bank)
    startup = StartupTask(_task_arg(args.task), args.difficulty, args.seed)
    limits = SandboxLimits(time_s=args.time_limit)
    if args.gym is not None and args.gym not in bank:
        print(f"codegym serve: no gym {args.gym!r} in {bank.root} (see `codegym list`)", file=sys.stderr)
        return 2
    if args.gym is not None and (startup.task is not None or startup.difficulty is not None):
        try:  # fail before any sandbox starts
            resolve_task(args.gym, bank.tasks(args.gym), startup.task, startup.difficulty)
        except EpisodeError as exc:
            print(f"codegym serve: {exc.message}", file=sys.stderr)
            return 2
    rejected = rejection(bank.gym(args.gym)) if args.gym is not None else None
    if rejected and not args.allow_unverified:
        print(f"codegym serve: gym {args.gym!r} {rejected}; serve it anyway with --allow-unverified", file=sys.stderr)
        return 2
    _announce_unverified(bank, [args.gym] if args.gym else None, args.allow_unverified)
    if not args.http:
        if args.ready_file or (args.procs or 1) > 1:
            print("codegym serve: --ready-file and --procs are for --http", file=sys.stderr)
            return 2
        if args.gym is None:
            print("codegym serve: name a GYM to serve over stdio, or add --http to serve the whole bank",
                  file=sys.stderr)
            return 2
        try:
            anyio.run(lambda: serve_stdio(bank, args.gym, startup=startup, workers=args.workers or 1, limits=limits,
                                          idle_timeout=args.idle_timeout, max_episodes=args.max_episodes,
                                          allow_unverified=args.allow_unverified))
        except EpisodeError as exc:
            print(f"codegym serve: {exc.message}", file=sys.stderr)
            return 2
        return 0
    if args.max_request_body <= 0:
        print("codegym serve: --max-request-body must be a positive number of bytes", file=sys.stderr)
        return 2
    if args.ready_file and not os.path.isdir(os.path.dirname(os.path.abspath(args.ready_file))):
        print(f"codegym serve: --ready-file {args.ready_file}: its folder does not exist", file=sys.stderr)
        return 2
    procs = args.procs if args.procs is not None else (os.cpu_count() or 1)
    if procs < 1 or (args.workers is not None and args.workers < 1):
        print("codegym serve: --procs and --workers must be at least 1", file=sys.stderr)
        return 2
    if args.port and not 0 < args.port + procs - 1 < 65536:
        print(f"codegym serve: ports {args.port}..{args.port + procs - 1} (--port, --procs) are not all valid "
              "TCP ports", file=sys.stderr)
        return 2
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        bar = "!" * 78
        print(f"{bar}\nWARNING: serving on {args.host} WITHOUT a bearer token: anyone who can reach this port can "
              f"run episodes.\nPass --token (or set ${TOKEN_ENV}) unless this network is trusted.\n{bar}",
              file=sys.stderr, flush=True)
    if procs > 1:
        from .procs import serve_processes

        return serve_processes(args, procs)
    try:
        serve_http(http_service(args, bank), args.port, ready_file=args.ready_file)
    except OSError as exc:
        print(f"codegym serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


def _share(total: int, procs: int) -> int:
    return max(1, -(-total // procs))


def http_service(args: argparse.Namespace, bank: Bank, procs: int = 1) -> HttpService:
    """The :class:`HttpService` of ``codegym serve --http`` ARGS, as one of ``procs`` server processes.

    With several processes, ``--workers`` (sandbox workers per gym), the pool's cap on live workers and
    ``--max-episodes`` are totals: each process gets its share, rounded up (at least 1)."""
    workers, max_workers, max_episodes = args.workers, None, args.max_episodes
    if procs > 1:
        per_gym = args.workers or os.cpu_count() or 1
        workers = _share(per_gym, procs)
        max_workers = max(workers, _share(max(64, 8 * per_gym), procs))  # the pool's own default, shared out
        max_episodes = _share(args.max_episodes, procs)
    return HttpService(bank, gyms=[args.gym] if args.gym else None, workers=workers, max_workers=max_workers,
                       limits=SandboxLimits(time_s=args.time_limit), max_episodes=max_episodes,
                       idle_timeout=args.idle_timeout if args.idle_timeout is not None else DEFAULT_IDLE_TIMEOUT_S,
                       token=args.token or os.environ.get(TOKEN_ENV) or None, host=args.host,
                       startup=StartupTask(_task_arg(args.task), args.difficulty, args.seed),
                       max_request_body=args.max_request_body, allow_unverified=args.allow_unverified,
                       hot_path=not args.no_hot_path)


#: The names `mcp_gyms.cli` looks up on a lazily imported command module.
add_arguments = add_serve_arguments
run = serve_command


def main(argv: list[str] | None = None) -> int:
    """``python -m mcp_gyms.server ...``: the same as ``codegym serve ...``."""
    from .bank import BankError

    parser = argparse.ArgumentParser(prog="python -m mcp_gyms.server", description="serve gyms over MCP")
    add_serve_arguments(parser)
    try:
        return serve_command(parser.parse_args(argv))
    except BankError as exc:
        print(f"codegym serve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
