"""``codegym synth --ray``: the sandbox stages on a local Ray instance.

One Ray instance (2 CPUs, a 200 MB object store) serves the module. The pipeline runs every scenario of
``fixtures/synthesis/scenarios.py`` through Ray and again locally (replaying the same LLM answers):
verdicts, reasons and bank must be the same. Then an actor is killed mid-run: its problems are left
incomplete and a rerun finishes them. The tests that need no cluster (planning, errors, the CLI's
answer to an unreachable address) run without Ray too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from fixtures.synthesis.scenarios import SCENARIOS
from fixtures.synthesis.scripted_llm import ScriptedLLM
from test_synthesis_pipeline import CONFIG, _bank_content, script, write_problems

from mcp_gyms.sandbox import SandboxError
from synthesis.errors import TransientError, transient_cause
from synthesis.llm import LLMClient, LLMConfig, LLMError
from synthesis.pipeline import synthesize
from synthesis.ray_pools import ActorPlan, ClusterError, RayCluster, SandboxUnavailable, _Actor, plan_actors
from synthesis.sources import load_problems
from synthesis.stages import Pools, SynthConfig

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup  # anyio's dependency on Python 3.10

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "codegym-sandbox-"


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance for this module (shut down at its end); the pipeline connects with ``auto``."""
    ray = pytest.importorskip("ray", reason="--ray needs the ray package (the rl extra brings it)")
    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    yield ray
    ray.shutdown()


def _sandbox_actors(ray) -> list[str]:
    return [n for n in ray.util.list_named_actors() if n.startswith(PREFIX)]


async def _run(problems: Path, out: Path, cache: Path, *, base_url: str | None, ray: str | None):
    config = LLMConfig(base_url=base_url, model="scripted", api_key=None if base_url is None else "key",
                       cache_dir=cache, offline=base_url is None, backoff_s=0.01, max_backoff_s=0.05)
    async with LLMClient(config) as llm:
        return await synthesize(load_problems(str(problems)), out=out, llm=llm, config=CONFIG, workers=2, jobs=16,
                                source=str(problems), ray=ray)


_LIMIT = re.compile(r"exceeded the (CPU )?time limit of [0-9.]+ s")


def _rows(report) -> list[tuple[str, str, str | None, str, str]]:
    """The report's rows. A looping oracle call meets its CPU limit or the run's wall-time limit first,
    whichever the machine's load decides: both read as one time limit here."""
    return [(r.problem_id, r.verdict, r.stage, r.code, _LIMIT.sub("exceeded a time limit", r.reason))
            for r in report.rows]


@pytest.fixture(scope="module")
def runs(ray_instance, tmp_path_factory):
    """Every scenario through Ray (paying the scripted LLM), then locally from the same answers."""
    folder = tmp_path_factory.mktemp("synth-ray")
    problems = write_problems(folder, list(SCENARIOS))
    with ScriptedLLM() as server:
        script(server, list(SCENARIOS))
        on_ray = anyio.run(lambda: _run(problems, folder / "ray", folder / "cache", base_url=server.base_url,
                                        ray="auto"))
    assert _sandbox_actors(ray_instance) == []  # the run stopped its actors
    local = anyio.run(lambda: _run(problems, folder / "local", folder / "cache", base_url=None, ray=None))
    return on_ray, local, folder


def test_ray_gives_the_verdicts_and_bank_of_a_local_run(runs):
    on_ray, local, folder = runs
    assert on_ray.incomplete == 0 and on_ray.verified == 4
    assert _rows(on_ray) == _rows(local)
    assert _bank_content(folder / "ray") == _bank_content(folder / "local")
    # gyms that loop or blow up memory drop with the sandbox's own words, no Ray wrapper or traceback
    reasons = {r.problem_id: r.reason for r in on_ray.rows}
    assert "exceeded the time limit" in reasons["peaks-loop_on_load"]
    assert "out of memory" in reasons["peaks-memory_bomb"] and _LIMIT.search(reasons["peaks-tool_loop"])
    assert not any("Ray" in why or "Traceback" in why for why in reasons.values())
    assert on_ray.sandbox["where"] == "ray (1 actor on 1 node, 2 workers per pool)"
    assert local.sandbox["where"] == "local (2 workers per pool)"
    assert on_ray.sandbox["gyms"]["requests"] > 0 and on_ray.sandbox["gyms"]["timeouts"] > 0
    assert "Sandbox: ray (1 actor" in (folder / "ray" / "synthesis" / "report.md").read_text()


def _gone(pid: int) -> bool:
    """True when process ``pid`` has exited (a zombie waiting for its new parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def test_a_lost_actor_leaves_problems_incomplete_and_a_rerun_finishes_them(runs, ray_instance, tmp_path):
    ray, folder = ray_instance, runs[2]
    names = ["good", "rescued"]
    problems = write_problems(tmp_path, names)
    out = tmp_path / "bank"
    rescued = out / "synthesis" / "state" / "peaks-rescued.json"
    with ScriptedLLM() as server:
        script(server, names, solve_delay_s=2.0)  # the rescued gym waits for its solve() while the actor dies

        async def killed_mid_run():
            pids: list[int] = []

            async def kill_when_the_oracle_stage_starts() -> None:
                deadline = time.monotonic() + 60
                while not (rescued.exists() and "inputs" in json.loads(rescued.read_text())["results"]):
                    assert time.monotonic() < deadline, "the run never reached the oracle stage"
                    await anyio.sleep(0.05)
                [name] = _sandbox_actors(ray)
                actor = ray.get_actor(name)
                pids.extend(await actor.worker_pids.remote())
                ray.kill(actor)

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_when_the_oracle_stage_starts)
                report = await _run(problems, out, tmp_path / "cache", base_url=server.base_url, ray="auto")
            return report, pids

        report, pids = anyio.run(killed_mid_run)
        row = next(r for r in report.rows if r.problem_id == "peaks-rescued")
        assert report.incomplete >= 1 and row.verdict == "incomplete", row
        assert row.reason.startswith("oracle: ") and "lost" in row.reason and "run the same command again" in row.reason
        assert "oracle" not in json.loads(rescued.read_text())["results"]  # nothing stored for the lost stage
        assert pids and all(_wait(lambda pid=pid: _gone(pid)) for pid in pids)  # its sandbox workers died with it

        rerun = anyio.run(lambda: _run(problems, out, tmp_path / "cache", base_url=server.base_url, ray="auto"))
    assert report.sandbox["where"] == "ray (1 actor on 1 node, 2 workers per pool; 1 lost)"
    assert rerun.incomplete == 0 and rerun.verified == 2
    assert _sandbox_actors(ray) == []
    whole = _bank_content(folder / "local")
    content = _bank_content(out)
    whole["index"] = [row for row in whole["index"] if row["id"] in content]
    assert content == {key: whole[key] for key in content}


def _wait(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- no cluster needed ----------------------------------------------------------------------------
def test_cli_fails_cleanly_on_an_unreachable_address(tmp_path):
    problems = write_problems(tmp_path, ["good"])
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "mcp_gyms.cli", "synth", str(problems), "--out", str(tmp_path / "b"),
                             "--until", "tests", "--ray", "127.0.0.1:1", "--quiet"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    try:
        import ray  # noqa: F401
    except ImportError:
        assert "--ray needs the ray package" in result.stderr
    else:
        assert "cannot reach a Ray cluster at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr and time.monotonic() - started < 60
    assert not (tmp_path / "b" / "synthesis" / "state").exists() or not any((tmp_path / "b" / "synthesis" / "state").iterdir())


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ClusterError, match=r"--ray needs the ray package \(pip install 'codegym-mcp\[rl\]'"):
        Pools.create(SynthConfig(), 1, ray="auto")


def test_actor_plan_follows_the_nodes_cpus():
    assert plan_actors({"a": 2.0, "b": 0.5}) == [ActorPlan("a", 2, 2)]  # a node without a whole CPU gets none
    assert plan_actors({"a": 40.0}) == [ActorPlan("a", 16, 16)] * 2  # at most 16 workers per actor by default
    assert plan_actors({"a": 8.0, "b": 4.0}, workers=4) == [ActorPlan("a", 4, 4)] * 2 + [ActorPlan("b", 4, 4)]
    assert plan_actors({"a": 2.0}, workers=6) == [ActorPlan("a", 6, 2)]  # more workers than CPUs still fits
    assert plan_actors({}) == []


def test_transient_errors_are_recognised_inside_task_group_errors():
    lost, llm = SandboxUnavailable("actor lost"), LLMError("endpoint down")
    assert transient_cause(lost) is lost and isinstance(llm, TransientError)
    assert transient_cause(ExceptionGroup("x", [lost, ExceptionGroup("y", [llm])])) is lost
    assert transient_cause(ExceptionGroup("x", [lost, ValueError("a bug")])) is None  # a bug is not hidden
    assert transient_cause(ValueError("a bug")) is None


class _FakeRayError(Exception):
    pass


class _FakeActorDied(_FakeRayError):
    pass


_FAKE_RAY = SimpleNamespace(
    exceptions=SimpleNamespace(RayError=_FakeRayError, RayActorError=_FakeActorDied,
                               ActorUnavailableError=type("Unavailable", (_FakeActorDied,), {}),
                               RayTaskError=type("TaskError", (_FakeRayError,), {})),
    kill=lambda handle: None, cancel=lambda ref: None)


class _FakeHandle:
    """Stands in for an actor handle: ``call.remote(...)`` gives an awaitable, like an ObjectRef."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.dead = False
        self.call = SimpleNamespace(remote=self._call)

    def _call(self, pool: str, op: str, payload: dict):
        self.ops.append(op)

        async def reply():
            await anyio.sleep(0.01)
            if self.dead:
                raise _FakeActorDied("The actor died unexpectedly before finishing this task.")
            if payload["code"] == "bad":
                return False, "code execution failed: ValueError: boom", {"requests": len(self.ops)}
            return True, len(self.ops), {"requests": len(self.ops), "timeouts": 1}

        return reply()


def test_requests_go_to_the_least_loaded_live_actor():
    handles = [_FakeHandle(), _FakeHandle()]
    actors = [_Actor(i, f"a{i}", h, ActorPlan("node", 2, 2), host="h") for i, h in enumerate(handles)]
    cluster = RayCluster(_FAKE_RAY, actors, "addr", owns_connection=False)
    pool = cluster.pools["tests"]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(pool.execute, "ok")
        assert [len(h.ops) for h in handles] == [4, 4] and len(pool.slots) == 4
        assert (pool.stats.requests, pool.stats.timeouts) == (8, 2)  # summed over the actors
        with pytest.raises(SandboxError, match="^code execution failed: ValueError: boom$"):
            await pool.execute("bad")
        handles[0].dead = True
        with pytest.raises(SandboxUnavailable, match="actor 0 on h was lost .*run the same command again"):
            for _ in range(3):  # the next request for actor 0 finds it dead
                await pool.execute("ok")
        before = len(handles[0].ops)
        for _ in range(4):
            await pool.execute("ok")
        assert len(handles[0].ops) == before and len(pool.slots) == 2  # no more requests for the dead actor
        handles[1].dead = True
        with pytest.raises(SandboxUnavailable):
            await pool.execute("ok")
        with pytest.raises(SandboxUnavailable, match="every sandbox actor on the Ray cluster at addr is lost"):
            await pool.execute("ok")
        assert len(pool.slots) == 1  # never zero: stages size semaphores with it
        await cluster.aclose()
        with pytest.raises(SandboxError, match="closed"):
            await pool.execute("ok")

    anyio.run(main)
