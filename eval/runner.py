"""The evaluation loop: N episodes in flight, one record per episode, outputs that survive Ctrl-C.

:func:`evaluate` plays every :class:`Job` (gym, task, sample) with a policy against a
:class:`~eval.gyms.GymAccess`, at most ``concurrency`` at a time, and hands each finished
:class:`~eval.records.EpisodeRecord` to ``on_record`` (which writes it to ``trajectories.jsonl``
at once). Contract:

- Every job that finishes yields exactly one record, whatever happened: the server's end (``done``,
  ``step_budget``), the policy's (``max_turns``, ``no_tool_call``), a model failure after retries
  (``context_overflow``, ``model_error``, ``timeout``), the episode's wall-time limit (``timeout``), or a
  gym-server failure (``server_error``; starting an episode is retried with backoff first, a tool call
  never is — it is not idempotent).
- A :class:`~eval.chat.FatalModelError` (wrong key, model or URL) stops the whole run: in-flight
  episodes are cancelled and the error propagates. So does cancellation (Ctrl-C); records already handed
  to ``on_record`` are kept — unfinished episodes leave no record.
- Episodes are closed on the server whatever happens (shielded, with a short time limit).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio

from mcp_gyms.client import GymClientError, RemoteEpisode

from .chat import FatalModelError, ModelFailure
from .driver import EpisodeDriver
from .gyms import GymAccess, GymEntry, TaskEntry
from .policies import OracleError, Policy
from .records import EpisodeRecord

__all__ = ["Job", "evaluate", "make_jobs", "Progress"]

_CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Job:
    """One episode to play: sample ``sample`` of task ``task`` of gym ``gym``."""

    gym: GymEntry
    task: TaskEntry
    sample: int


def make_jobs(gyms: Sequence[GymEntry], *, k: int, split: str | None = None,
              tasks_per_gym: int | None = None) -> list[Job]:
    """Every (gym, task, sample) to play: tasks of ``split`` only when given, the first ``tasks_per_gym``
    of each gym when given, ``k`` samples each. Jobs come gym by gym (the samples of a task side by side),
    so that only the gyms in play need an open connection."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    jobs: list[Job] = []
    for gym in gyms:
        tasks = [t for t in gym.tasks if split is None or t.difficulty == split]
        if tasks_per_gym is not None:
            tasks = tasks[:tasks_per_gym]
        jobs.extend(Job(gym, task, sample) for task in tasks for sample in range(k))
    return jobs


class Progress:
    """A progress bar (tqdm on stderr when available and ``enabled``) with a running success rate."""

    def __init__(self, total: int, *, enabled: bool = True, label: str = "eval") -> None:
        self.total = total
        self.done = 0
        self.successes = 0
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=label, unit="ep", dynamic_ncols=True, leave=True)
            except ImportError:
                self._bar = None

    def update(self, record: EpisodeRecord) -> None:
        self.done += 1
        self.successes += record.success
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(success=f"{100 * self.successes / self.done:.1f}%", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


async def _start(access: GymAccess, job: Job, attempts: int, backoff_s: float) -> RemoteEpisode:
    for attempt in range(attempts):
        try:
            return await access.start(job.gym.id, job.task.index)
        except GymClientError as exc:
            if attempt + 1 >= attempts or not exc.retryable:
                raise
            await anyio.sleep(min(30.0, backoff_s * 2 ** attempt) * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def play_episode(access: GymAccess, policy: Policy, job: Job, *, episode_timeout: float | None = None,
                       start_attempts: int = 4, start_backoff_s: float = 0.5) -> EpisodeRecord:
    """Play one job to its end and return its record (see the module docstring for the reasons)."""
    started_at, t0 = _now(), time.monotonic()
    base: dict[str, Any] = dict(gym=job.gym.id, task_id=job.task.id, task_index=job.task.index,
                                difficulty=job.task.difficulty, sample=job.sample, policy=policy.name,
                                model=policy.model, oracle_steps=job.task.oracle_steps, started_at=started_at)
    try:
        session = await _start(access, job, start_attempts, start_backoff_s)
    except GymClientError as exc:
        return EpisodeRecord(**base, seed=-1, reward=0.0, success=False, done=False, truncated=False,
                             reason="server_error", error=f"could not start the episode: {exc}",
                             wall_s=round(time.monotonic() - t0, 3))
    ep = EpisodeDriver(job.gym, job.task, job.sample, session, started=t0)
    reason: str | None = None
    error: str | None = None
    try:
        with anyio.fail_after(episode_timeout if episode_timeout and math.isfinite(episode_timeout) else None):
            await policy.play(ep)
    except TimeoutError:
        reason, error = "timeout", f"the episode ran past its time limit of {episode_timeout:g} s"
    except ModelFailure as exc:
        reason, error = exc.reason, exc.message
    except (GymClientError, OracleError) as exc:
        reason, error = "server_error", str(exc)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT_S):
            try:
                await session.close()
            except GymClientError:
                pass
    if ep.terminated:
        reason = "done"
    elif ep.truncated:
        reason = "step_budget"
    elif reason is None:
        reason = ep.stop_reason or "max_turns"
        error = ep.stop_note
    info = session.info
    return EpisodeRecord(
        **base, seed=info.seed, reward=ep.reward if ep.terminated else 0.0, success=ep.terminated and ep.reward >= 1,
        done=ep.terminated, truncated=reason == "step_budget", reason=reason, error=error, turns=ep.turns,
        tool_calls=len(ep.calls), invalid_calls=ep.invalid_calls, tool_errors=ep.tool_errors, steps=ep.steps,
        max_steps=info.max_steps, prompt_tokens=ep.prompt_tokens, completion_tokens=ep.completion_tokens,
        retries=ep.retries, wall_s=round(time.monotonic() - t0, 3), messages=ep.messages, calls=ep.calls)


async def evaluate(access: GymAccess, policy: Policy, jobs: Sequence[Job], *, concurrency: int = 256,
                   episode_timeout: float | None = None, on_record: Callable[[EpisodeRecord], None] | None = None,
                   progress: Progress | None = None) -> list[EpisodeRecord]:
    """Play ``jobs`` with at most ``concurrency`` episodes in flight; return the records in finishing order.

    ``on_record`` gets each record as soon as its episode ends (write it there). Raises
    :class:`~eval.chat.FatalModelError` (after cancelling the rest) when the model endpoint refuses.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1 (got {concurrency})")
    records: list[EpisodeRecord] = []
    queue = iter(jobs)
    fatal: list[FatalModelError] = []
    left = Counter(job.gym.id for job in jobs)  # jobs not finished, per gym: release a gym's connection at 0

    async def worker(tg: anyio.abc.TaskGroup) -> None:
        for job in queue:
            try:
                record = await play_episode(access, policy, job, episode_timeout=episode_timeout)
            except FatalModelError as exc:
                fatal.append(exc)
                tg.cancel_scope.cancel()
                return
            records.append(record)
            if on_record is not None:
                on_record(record)
            if progress is not None:
                progress.update(record)
            left[job.gym.id] -= 1
            if left[job.gym.id] == 0:
                await access.release(job.gym.id)

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, max(1, len(jobs)))):
            tg.start_soon(worker, tg)
    if fatal:
        raise fatal[0]
    return records
