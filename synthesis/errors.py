"""The one error kind every synthesis stage shares: *transient* trouble, which a rerun continues.

A stage drops a problem (with a reason) for anything the problem's own code causes. It raises a
:class:`TransientError` for trouble outside the problem — an LLM endpoint that is down, a replay
cache miss (:class:`synthesis.llm.LLMError`), a sandbox node of a Ray cluster that was lost
(:class:`synthesis.ray_pools.SandboxUnavailable`). The pipeline stores nothing for that stage, leaves
the problem *incomplete* (exit status 1) and the same command run again continues it.
"""

from __future__ import annotations

__all__ = ["TransientError", "transient_cause"]


class TransientError(RuntimeError):
    """Trouble outside the problem: the stage did not reach a verdict, and a rerun may."""


def transient_cause(exc: BaseException) -> TransientError | None:
    """The transient error ``exc`` stands for, or None when it is something else.

    That is ``exc`` itself when it is a :class:`TransientError`, or — for the exception group a task
    group raises when concurrent sandbox requests fail together — its first leaf, provided every leaf
    is transient (a group that also holds a real bug is not transient, so the bug is not hidden)."""
    if isinstance(exc, TransientError):
        return exc
    inner = getattr(exc, "exceptions", None)
    if isinstance(exc, Exception) and isinstance(inner, tuple) and inner:
        causes = [transient_cause(e) for e in inner]
        if all(c is not None for c in causes):
            return causes[0]
    return None
