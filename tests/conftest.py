"""Shared fixtures: the bundled bank, a sandbox pool, and a helper to build gyms from source text."""

from __future__ import annotations

import textwrap

import pytest

from mcp_gyms.bank import Bank
from mcp_gyms.sandbox import GymCode, SandboxLimits, SandboxPool


@pytest.fixture(scope="session")
def bank() -> Bank:
    return Bank.open()


@pytest.fixture
async def pool():
    async with SandboxPool(workers=2, limits=SandboxLimits(time_s=1.5, memory_mb=128)) as p:
        yield p


def gym_code(body: str, class_name: str = "TestGym") -> GymCode:
    """A small gym whose tools are given as source (indented like class members)."""
    code = textwrap.dedent('''
        import json, os, sys, time
        from typing import Any
        from mcp_gyms import Gym, tool

        class {name}(Gym):
            answer_type = int

            def setup(self, task):
                self.value = task.get("value", 0)
                self.log = []

            def observe(self):
                return f"log has {{len(self.log)}} entries"

            @classmethod
            def reference_answer(cls, task):
                return task.get("value", 0)

            @staticmethod
            def solve(call):
                for _ in range(9):
                    call("Add", amount=0)
                call("Done", answer=int(call("Get")))

            @tool
            def Add(self, amount: int) -> int:
                """Add to the value."""
                self.log.append(amount)
                self.value += amount
                return self.value

            @tool
            def Get(self) -> int:
                """Read the value."""
                return self.value
    ''').format(name=class_name)
    return GymCode(code + textwrap.indent(textwrap.dedent(body), "    "), class_name)


# --- ending the run ---------------------------------------------------------------------------------
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with pytest's own status once everything is reported, skipping the interpreter's
    finalization: the native libraries some tests load in this process (Ray's core worker, torch, gRPC)
    can crash while the interpreter tears down (a full run once ended in a segfault after all 477 tests
    had passed), which would turn a passing run into a failing one. Nothing of the project runs then."""
    if not _exit_status:
        return
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status[-1])
