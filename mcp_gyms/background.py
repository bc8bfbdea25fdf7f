"""Async contexts held open by a background task: the plumbing the client's connections (and any other
long-lived context used from many tasks) share.

An async context (an MCP client, a connection, a session manager) must be entered and exited by one task,
while its users are many tasks that come and go; and a crash inside it must fail its users' requests
rather than cancel whichever task happened to enter it. :func:`hold` enters it in a task of a task group
the owner keeps, and returns a :class:`Held` that stops it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

__all__ = ["Held", "hold"]

T = TypeVar("T")


class Held(Generic[T]):
    """An async context held open by a background task (see :func:`hold`): ``value`` is what it yielded;
    ``dead`` turns true once the context has exited (stopped, or crashed under its users)."""

    def __init__(self, value: T) -> None:
        self.value = value
        self.dead = False
        self._stop = anyio.Event()

    def stop(self) -> None:
        """Ask the holding task to exit the context (returns at once)."""
        self._stop.set()


async def hold(tg: TaskGroup, open_context: Callable[[], contextlib.AbstractAsyncContextManager[T]]) -> Held[T]:
    """Enter ``open_context()`` in a new task of ``tg`` and keep it open until :meth:`Held.stop`.

    A failure while entering is raised here; a failure after that (the context crashed, or failed while
    exiting) only marks the :class:`Held` dead."""

    async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        held: Held[T] | None = None
        try:
            async with open_context() as value:
                held = Held(value)
                task_status.started(held)
                await held._stop.wait()
        except Exception:
            if held is None:
                raise
        finally:
            if held is not None:
                held.dead = True

    return await tg.start(run)
