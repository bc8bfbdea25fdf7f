"""Re-scoring: replay the recorded calls of ``trajectories.jsonl`` through fresh episodes, over MCP, and
check that the rewards match (reproducibility of an evaluation).

For every record, :func:`rescore` starts a new episode on the same (gym, task, seed), sends exactly the
calls the record marks ``sent`` (in order, with the same arguments) and compares:

- the final outcome: reward and whether ``Done`` ended the episode — a *mismatch* fails the re-score;
- every call's observation, error kind and reward — the first difference is reported as a
  *divergence* (an observation that differs but ends in the same reward is reported, not failed).

Records that never reached the server (an episode that could not start) are skipped. Gyms are
deterministic in (task, seed, calls) — the contract in :mod:`mcp_gyms.gym` — so a faithful server
reproduces every reward.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, Field

from mcp_gyms.client import GymClientError
from mcp_gyms.files import atomic_write

from .gyms import GymAccess, McpGymAccess
from .local import LocalServer
from .records import EpisodeRecord
from .report import read_trajectories

__all__ = ["EpisodeCheck", "RescoreReport", "rescore", "run_rescore"]


class EpisodeCheck(BaseModel):
    """The re-score of one record."""

    gym: str
    task_id: str
    sample: int
    recorded_reward: float
    replayed_reward: float | None = None
    recorded_done: bool
    replayed_done: bool | None = None
    calls: int = 0
    match: bool = False
    divergence: dict[str, Any] | None = Field(None, description="the first call whose outcome differs")
    error: str | None = None


class RescoreReport(BaseModel):
    """The outcome of a re-score: ``ok`` when every replayed reward matches."""

    episodes: int
    replayed: int
    matched: int
    mismatched: int
    skipped: int
    diverged: int = Field(description="episodes whose per-call outcomes differ somewhere")
    ok: bool
    checks: list[EpisodeCheck]


async def _check(access: GymAccess, record: EpisodeRecord) -> EpisodeCheck:
    check = EpisodeCheck(gym=record.gym, task_id=record.task_id, sample=record.sample, recorded_reward=record.reward,
                         recorded_done=record.done)
    try:
        session = await access.start(record.gym, record.task_index, record.seed)
    except GymClientError as exc:
        check.error = f"could not start the episode: {exc}"
        return check
    try:
        if session.info.task_id != record.task_id:
            check.error = (f"task #{record.task_index} of {record.gym!r} is now {session.info.task_id!r}, "
                           f"not {record.task_id!r} (the bank changed)")
            return check
        reward, done = 0.0, False
        for n, call in enumerate(c for c in record.calls if c.sent):
            reply = await session.call(call.name, call.arguments or {})
            check.calls += 1
            if check.divergence is None and (reply.observation != call.observation or reply.error != call.error
                                             or reply.reward != call.reward or reply.done != call.done):
                check.divergence = {"call": n, "name": call.name, "recorded": call.observation[:300],
                                    "replayed": reply.observation[:300], "recorded_error": call.error,
                                    "replayed_error": reply.error}
            if reply.done:
                reward, done = (reply.reward if reply.terminated else 0.0), reply.terminated
                break
        check.replayed_reward, check.replayed_done = reward, done
        check.match = reward == record.reward and done == record.done
    except GymClientError as exc:
        check.error = str(exc)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            try:
                await session.close()
            except GymClientError:
                pass
    return check


async def rescore(access: GymAccess, records: Sequence[EpisodeRecord], *, concurrency: int = 64) -> RescoreReport:
    """Replay ``records`` on ``access`` (see the module docstring)."""
    todo = [r for r in records if r.seed >= 0]
    checks: list[EpisodeCheck | None] = [None] * len(todo)
    queue = iter(enumerate(todo))

    async def worker() -> None:
        for i, record in queue:
            checks[i] = await _check(access, record)

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, max(1, len(todo)))):
            tg.start_soon(worker)
    done = [c for c in checks if c is not None]
    matched = sum(c.match for c in done)
    return RescoreReport(episodes=len(records), replayed=len(done), matched=matched, mismatched=len(done) - matched,
                         skipped=len(records) - len(todo), diverged=sum(c.divergence is not None for c in done),
                         ok=matched == len(done), checks=done)


async def _run(path: Path, url: str, token: str | None, concurrency: int) -> RescoreReport:
    records = read_trajectories(path)
    async with McpGymAccess(url, token=token) as access:
        return await rescore(access, records, concurrency=concurrency)


def run_rescore(path: Path, *, bank: str | None = None, server: str | None = None, token: str | None = None,
                concurrency: int = 64, workers: int | None = None, out: Path | None = None) -> RescoreReport:
    """Re-score a trajectories file against a local bank (default: the bundled one) or a server; write the
    report as JSON to ``out`` (default: ``rescore.json`` next to the trajectories)."""
    path = Path(path)
    records = read_trajectories(path)  # fail early on a bad file
    gyms = sorted({r.gym for r in records})
    if server is not None:
        report = anyio.run(_run, path, server, token, concurrency)
    else:
        with LocalServer(bank, gyms=gyms or None, workers=workers) as local:
            report = anyio.run(_run, path, local.url, None, concurrency)
    target = out if out is not None else (path if path.is_dir() else path.parent) / "rescore.json"
    atomic_write(target, json.dumps(report.model_dump(mode="json"), indent=1) + "\n")
    return report
