"""One evaluation run, end to end: configuration, gym server, policy, episodes, outputs.

:func:`run_evaluation` is what ``codegym eval`` does:

1. With ``server`` unset, start a :class:`~eval.local.LocalServer` for ``bank`` (the bundled bank by
   default) and stop it at the end; with ``server`` set, use that remote server.
2. List the gyms over MCP (all, or ``gyms``), read their tools and tasks, and make the jobs: every task (of
   ``split``) × ``k`` samples.
3. Play them with the policy, ``concurrency`` at a time; each finished episode is appended to
   ``OUT/trajectories.jsonl.partial`` at once.
4. Whatever happens (done, Ctrl-C, a fatal model error), rename the trajectories to
   ``trajectories.jsonl`` and write ``results.json``, ``report.md`` and ``report.png`` for the episodes
   that finished.

The API key is a :class:`pydantic.SecretStr` excluded from every dump of the configuration; it only
reaches the ``openai`` client.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from mcp_gyms.client import GymClientError
from mcp_gyms.constants import DEFAULT_MAX_STEPS, Difficulty

from .chat import ChatModel, FatalModelError, RetryPolicy
from .gyms import GymEntry, McpGymAccess
from .local import LocalServer, LocalServerError
from .policies import OpenAIPolicy, OraclePolicy, Policy, RandomPolicy
from .records import EpisodeRecord
from .report import TRAJECTORIES, TrajectoryWriter, write_reports
from .runner import Progress, evaluate, make_jobs

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = ["EvalConfig", "EvalError", "RunOutcome", "run_evaluation"]


class EvalError(Exception):
    """A run that cannot start or go on (bad configuration, unreachable server, refused model)."""


class EvalConfig(BaseModel):
    """The configuration of a run (what ``codegym eval`` parses). Stored in ``results.json`` without the key."""

    model_config = ConfigDict(extra="forbid")

    bank: str | None = Field(None, description="bank folder to serve locally (None: the bundled bank)")
    server: str | None = Field(None, description="URL of a running gym server (instead of a local bank), or the "
                                                 "comma-separated URLs of the processes of one server (--procs N)")
    token: SecretStr | None = Field(None, exclude=True, description="bearer token of the gym server")
    gyms: list[str] | None = None
    split: Difficulty | None = None
    tasks_per_gym: int | None = Field(None, ge=1)
    policy: Literal["oracle", "openai", "random"] = "oracle"
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(None, exclude=True)
    k: int = Field(1, ge=1, le=1024)
    concurrency: int = Field(256, ge=1, le=100_000)
    max_turns: int = Field(DEFAULT_MAX_STEPS, ge=1)
    temperature: float | None = Field(0.7, ge=0)
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    tool_format: Literal["native", "text"] = "native"
    request_timeout: float = Field(600.0, gt=0)
    episode_timeout: float | None = Field(None, gt=0)
    max_retries: int = Field(5, ge=0)
    retry_base: float = Field(1.0, ge=0)
    seed: int = 0
    random_max_calls: int = Field(32, ge=0)
    workers: int | None = Field(None, ge=1, description="sandbox workers of the local server")
    out: str

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.bank is not None and self.server is not None:
            raise ValueError("give --bank or --server, not both")
        if self.policy == "openai" and not self.model:
            raise ValueError("--policy openai needs --model")
        for url in (self.server or "").split(","):
            if self.server is not None and not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"--server must be http(s) URLs (comma-separated), not {url.strip()!r}")
        return self

    def public(self) -> dict[str, Any]:
        """The configuration as stored in ``results.json`` (no key, no token)."""
        data = self.model_dump(mode="json")
        data["api_key"] = "set" if self.api_key is not None else None
        data["token"] = "set" if self.token is not None else None
        if self.policy != "openai":
            for key in ("model", "base_url", "api_key", "temperature", "top_p", "max_tokens", "tool_format",
                        "request_timeout", "max_retries", "retry_base"):
                data.pop(key, None)
        return data


@dataclass
class RunOutcome:
    """What a run did: its records, results (``results.json``) and how it ended."""

    records: list[EpisodeRecord]
    results: dict[str, Any]
    out_dir: Path
    interrupted: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _make_policy(config: EvalConfig) -> Policy:
    if config.policy == "oracle":
        return OraclePolicy()
    if config.policy == "random":
        return RandomPolicy(max_calls=config.random_max_calls, seed=config.seed, max_turns=config.max_turns)
    key = config.api_key.get_secret_value() if config.api_key is not None else "EMPTY"
    chat = ChatModel(config.model or "", base_url=config.base_url, api_key=key, concurrency=config.concurrency,
                     request_timeout=config.request_timeout,
                     retry=RetryPolicy(max_retries=config.max_retries, base_s=config.retry_base),
                     sampling={"temperature": config.temperature, "top_p": config.top_p,
                               "max_tokens": config.max_tokens})
    return OpenAIPolicy(chat, max_turns=config.max_turns, tool_format=config.tool_format)


async def _describe_all(access: McpGymAccess, wanted: list[str] | None) -> list[GymEntry]:
    available = await access.gym_ids()
    if wanted:
        missing = [g for g in wanted if g not in available]
        if missing:
            shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
            raise EvalError(f"no gym {', '.join(map(repr, missing))} on the server (gyms: {shown})")
        ids = list(dict.fromkeys(wanted))
    else:
        ids = available
    entries: dict[str, GymEntry] = {}
    errors: list[GymClientError] = []
    limiter = anyio.CapacityLimiter(32)

    async def one(gym_id: str) -> None:
        async with limiter:
            if errors:
                return
            try:
                entries[gym_id] = await access.describe(gym_id)
            except GymClientError as exc:
                errors.append(exc)
            await access.release(gym_id)  # reopened when its episodes start

    async with anyio.create_task_group() as tg:
        for gym_id in ids:
            tg.start_soon(one, gym_id)
    if errors:
        raise errors[0]
    return [entries[g] for g in ids]


async def _run(config: EvalConfig, url: str, writer: TrajectoryWriter, records: list[EpisodeRecord],
               state: dict[str, Any], progress_enabled: bool) -> None:
    token = config.token.get_secret_value() if config.token is not None else None
    policy = _make_policy(config)
    try:
        async with McpGymAccess(url, token=token, call_timeout=120.0) as access:
            try:
                gyms = await _describe_all(access, config.gyms)
            except GymClientError as exc:
                raise EvalError(str(exc)) from None
            jobs = make_jobs(gyms, k=config.k, split=config.split, tasks_per_gym=config.tasks_per_gym)
            state["expected"] = len(jobs)
            if not jobs:
                raise EvalError("nothing to evaluate: no task matches (check --gyms and --split)")
            progress = Progress(len(jobs), enabled=progress_enabled, label=f"eval {config.policy}")

            def on_record(record: EpisodeRecord) -> None:
                records.append(record)
                writer.write(record)

            try:
                await evaluate(access, policy, jobs, concurrency=config.concurrency,
                               episode_timeout=config.episode_timeout, on_record=on_record, progress=progress)
            finally:
                progress.close()
    finally:
        with anyio.CancelScope(shield=True):
            await policy.aclose()


async def _run_until_sigint(config: EvalConfig, url: str, writer: TrajectoryWriter, records: list[EpisodeRecord],
                            state: dict[str, Any], progress_enabled: bool) -> None:
    """:func:`_run`, stopped cleanly by Ctrl-C: SIGINT sets ``state["interrupted"]`` and cancels the run.

    asyncio's own SIGINT handling cancels the main task and raises KeyboardInterrupt only if that
    cancellation surfaces; a cancellation absorbed by a shielded step (sandbox calls, closing the
    policy) then ended the run as if it had finished. Catching the signal here is deterministic."""
    try:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT) as signals:
                    async for _ in signals:
                        state["interrupted"] = True
                        tg.cancel_scope.cancel()
                        return

            if threading.current_thread() is threading.main_thread():
                tg.start_soon(watch)
            await _run(config, url, writer, records, state, progress_enabled)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the run's own error, not wrapped by the watcher's task group
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def run_evaluation(config: EvalConfig, *, progress: bool = True) -> RunOutcome:
    """Run an evaluation (see the module docstring). Returns even on Ctrl-C (``interrupted``) and on a
    fatal model error (``error``), after writing the outputs of the finished episodes. Raises
    :class:`EvalError` for a run that cannot start."""
    out_dir = Path(config.out)
    if (out_dir / TRAJECTORIES).exists():
        raise EvalError(f"{out_dir} already holds a run ({TRAJECTORIES}); choose another --out or remove it")
    records: list[EpisodeRecord] = []
    state: dict[str, Any] = {"expected": None}
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    interrupted = False
    error: str | None = None
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with TrajectoryWriter(out_dir) as writer:
            try:
                if config.server is not None:
                    anyio.run(_run_until_sigint, config, config.server, writer, records, state, progress)
                else:
                    gyms = config.gyms or None
                    with LocalServer(config.bank, gyms=gyms, workers=config.workers,
                                     max_episodes=max(10_000, 2 * config.concurrency)) as local:
                        anyio.run(_run_until_sigint, config, local.url, writer, records, state, progress)
                interrupted = bool(state.get("interrupted"))
            except KeyboardInterrupt:
                interrupted = True
            except FatalModelError as exc:
                error = str(exc)
    except EvalError:
        if not records:
            _remove_empty(out_dir)
        raise
    except Exception as exc:
        if not records:
            _remove_empty(out_dir)
        from mcp_gyms.bank import BankError

        if isinstance(exc, (BankError, GymClientError, LocalServerError, OSError)):
            raise EvalError(str(exc)) from None
        raise
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results = write_reports(out_dir, records, config.public(), started_at=started_at, finished_at=finished_at,
                            wall_s=time.monotonic() - t0, interrupted=interrupted or error is not None,
                            expected=state["expected"], error=error)
    return RunOutcome(records, results, out_dir, interrupted, error)


def _remove_empty(out_dir: Path) -> None:
    """Remove the empty trajectories file of a run that never started (keep anything else)."""
    for name in (TRAJECTORIES, TRAJECTORIES + ".partial"):
        path = out_dir / name
        if path.exists() and path.stat().st_size == 0:
            path.unlink()
    try:
        os.rmdir(out_dir)
    except OSError:
        pass
