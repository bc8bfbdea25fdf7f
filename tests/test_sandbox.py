"""The sandbox pool: episodes in worker processes, replay after a worker dies, isolation, errors."""

from __future__ import annotations

import contextlib
import os
import random
import signal

import anyio
import pytest
from conftest import gym_code

from mcp_gyms.constants import ErrorKind
from mcp_gyms.episode import LocalEpisode
from mcp_gyms.sandbox import GymCode, SandboxError, SandboxLimits, SandboxPool

COUNTER = gym_code("")


async def test_episode_lifecycle_and_gymnasium_view(pool):
    ep = await pool.open(COUNTER, {"value": 4})
    obs, reward, terminated, truncated, info = await ep.step({"name": "Add", "arguments": {"amount": 3}})
    assert (obs, reward, terminated, truncated, info) == ("7", 0.0, False, False, {"steps": 1, "error": None})
    bad = await ep.call("Add", {"amount": "x"})
    assert bad.error == ErrorKind.INVALID_ARGUMENTS and ep.committed == [["Add", '{"amount": 3}']]
    done = await ep.call("Done", {"answer": 4})
    assert done.terminated and done.reward == 1.0 and ep.done
    late = await ep.call("Get")
    assert late.error == ErrorKind.EPISODE_OVER
    await ep.aclose()
    await ep.aclose()  # idempotent
    assert (await ep.call("Get")).error == ErrorKind.EPISODE_OVER


async def test_reference_oracle_and_describe(pool):
    described = await pool.describe(COUNTER)
    assert [t["name"] for t in described["tools"]] == ["Observe", "Add", "Get", "Done"]
    assert await pool.reference_answer(COUNTER, {"value": 9}) == 9
    oracle = await pool.run_oracle(COUNTER, {"value": 9})
    assert oracle.reward == 1.0 and oracle.steps == 11 and oracle.calls[-1] == ("Done", {"answer": 9})


async def test_broken_gym_code_is_a_clear_error(pool):
    with pytest.raises(SandboxError, match="failed to load: SyntaxError"):
        await pool.open(GymCode("class X(:\n", "X"), {})
    with pytest.raises(SandboxError, match="no class named 'Missing'"):
        await pool.describe(GymCode("x = 1\n", "Missing"))
    with pytest.raises(SandboxError, match="could not open an episode.*KeyError"):
        await pool.open(gym_code("def setup(self, task):\n    self.value = task['absent']\n"), {})


async def test_each_gym_has_workers_of_its_own_and_the_cap_stops_idle_ones(monkeypatch):
    """No two gyms share a worker process; past ``max_workers`` the least recently used worker stops
    (a long synthesis run meets thousands of gyms) and its episodes are rebuilt by replay when next used."""
    import mcp_gyms.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_MAX_DESCRIPTIONS", 3)
    others = [gym_code(f"LABEL = {i}\n") for i in range(4)]
    async with SandboxPool(workers=1, max_workers=1) as pool:
        ep = await pool.open(COUNTER, {"value": 2})
        assert (await ep.call("Add", {"amount": 1})).observation == "3"
        pids = {pool.groups[f"gym:{COUNTER.key}"][0].process.pid}
        for code in others:
            assert await pool.reference_answer(code, {"value": 5}) == 5
            pids.add(pool.groups[f"gym:{code.key}"][0].process.pid)
            assert pool.live_workers == 1
        assert len(pids) == 5 and pool.stats.evictions >= 4 and len(pool._descriptions) == 3
        assert (await ep.call("Add", {"amount": 1})).observation == "4"  # replayed on a fresh worker
        assert pool.stats.replays >= 1
        second = await pool.open(COUNTER, {"value": 1})
        assert (await second.call("Get")).observation == "1"
        await ep.aclose()
        await second.aclose()
        assert sum(slot.episodes for slot in pool.slots) == 0


async def test_pool_closed_is_a_clear_error():
    pool = SandboxPool(workers=1)
    await pool.aclose()
    with pytest.raises(SandboxError, match="closed"):
        await pool.open(COUNTER, {})


async def test_killed_worker_loses_no_committed_state(pool):
    """Random SIGKILLs of workers between and during calls: every episode ends where the same calls
    leave an in-process episode, and episodes never see each other's state."""
    rng = random.Random(7)
    episodes = [await pool.open(COUNTER, {"value": i}) for i in range(40)]
    plans = [[rng.randint(-5, 5) for _ in range(15)] for _ in episodes]
    kills = 0

    async def play(ep, plan):
        for amount in plan:
            result = await ep.call("Add", {"amount": amount})
            assert result.error in (None, ErrorKind.SANDBOX_ERROR), result.observation

    async def killer():
        nonlocal kills
        for _ in range(6):
            await anyio.sleep(0.05)
            slot = rng.choice(pool.slots)
            if slot.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGKILL)
                    kills += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(killer)
        for ep, plan in zip(episodes, plans):
            tg.start_soon(play, ep, plan)
    assert kills > 0
    for i, ep in enumerate(episodes):
        reference = LocalEpisode(_load(COUNTER), {"value": i})
        for tool, args in ep.committed:
            reference.call(tool, args)
        assert (await ep.call("Get")).observation == str(reference.gym.value)
        await ep.aclose()
    assert sum(slot.episodes for slot in pool.slots) == 0


async def test_time_limit_is_configurable():
    slow = gym_code('@tool\ndef Slow(self, s: float) -> str:\n    """Sleep."""\n    time.sleep(s)\n    return "ok"\n')
    async with SandboxPool(workers=1, limits=SandboxLimits(time_s=0.5)) as pool:
        ep = await pool.open(slow, {})
        assert (await ep.call("Slow", {"s": 0.1})).observation == "ok"
        result = await ep.call("Slow", {"s": 5})
        assert result.error == ErrorKind.TIME_LIMIT and "0.5 s" in result.observation


def _load(code: GymCode):
    namespace: dict = {}
    exec(compile(code.code, "<test>", "exec"), namespace)  # trusted test code, in-process on purpose
    return namespace[code.class_name]


def test_stale_worker_dirs_of_dead_hosts_are_swept(tmp_path):
    """A SIGKILLed host leaves its workers' temp dirs; the next pool removes them, not a live host's."""
    import subprocess
    import sys

    from mcp_gyms.sandbox import sweep_stale_tmpdirs

    host = subprocess.Popen(
        [sys.executable, "-c",
         "import anyio, sys\n"
         "from conftest import gym_code\n"
         "from mcp_gyms.sandbox import SandboxPool\n"
         "async def main():\n"
         "    pool = SandboxPool(1)\n"
         "    await pool.describe(gym_code(''))\n"
         "    print('ready', flush=True)\n"
         "    await anyio.sleep(60)\n"
         "anyio.run(main)\n"],
        env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None and host.stdout.readline().strip() == "ready"
        left = [p for p in tmp_path.iterdir() if p.name.startswith(f"codegym-worker-{host.pid}-")]
        assert len(left) == 1
        assert sweep_stale_tmpdirs(str(tmp_path)) == []  # its host is alive: kept
        host.send_signal(signal.SIGKILL)
        host.wait()
    finally:
        host.kill()
    assert left[0].exists()
    live = tmp_path / f"codegym-worker-{os.getpid()}-mine"
    live.mkdir()
    (left[0] / "file.txt").write_text("x")
    assert sweep_stale_tmpdirs(str(tmp_path)) == [str(left[0])]
    assert not left[0].exists() and live.exists()


async def test_an_oracle_may_pass_a_tool_argument_called_name(pool):
    """``call("Tool", name=...)``: the oracle's call function takes the tool's name positionally only
    (a model-written gym with a ``name`` parameter once failed every oracle run with a TypeError)."""
    named = gym_code('''
@tool
def Greet(self, name: str) -> str:
    """Greet someone by name."""
    return f"hello {name}"

@staticmethod
def solve(call):
    assert call("Greet", name="Ada") == "hello Ada"
    for _ in range(8):
        call("Add", amount=0)
    call("Done", answer=int(call("Get")))
''', "NamedGym")
    result = await pool.run_oracle(named, {"value": 4})
    assert result.reward == 1.0 and result.error is None, result
