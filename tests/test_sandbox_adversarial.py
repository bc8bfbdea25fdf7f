"""Adversarial gyms: every escape the sandbox blocks, each contained with a clear error.

For each attack: the call returns an error observation naming the problem, the attacking episode
keeps its last committed state, a bystander episode on the same pool keeps its state, and the pool
keeps serving.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import gym_code

from mcp_gyms.constants import ErrorKind

EVIL = gym_code('''
@tool
def Evil(self, what: str, arg: str = "") -> str:
    """Misbehave in the way named by `what`."""
    self.value = -999  # corrupt the state first: it must be rolled back
    if what == "loop":
        while True:
            pass
    if what == "sleep":
        time.sleep(30)
    if what == "memory":
        hog = bytearray(2 * 1024 ** 3)
        return str(len(hog))
    if what == "fork":
        os.fork()
    if what == "fork_bomb":
        while True:
            os.fork()
    if what == "posix_spawn":
        os.posix_spawn("/bin/sh", ["sh", "-c", "true"], {})
    if what == "system":
        os.system(f"touch {arg}")
    if what == "subprocess":
        import subprocess
        subprocess.run(["touch", arg])
    if what == "connect":
        import socket
        socket.create_connection(("127.0.0.1", int(arg)), timeout=1)
    if what == "write":
        with open(arg, "w") as fh:
            fh.write("escaped")
    if what == "write_tmp":
        with open("scratch.txt", "w") as fh:
            fh.write("fine")
        return open("scratch.txt").read()
    if what == "environ":
        return json.dumps(dict(os.environ))
    if what == "parent_environ":
        return open(f"/proc/{os.getppid()}/environ").read()
    if what == "raise":
        raise ValueError("tool blew up after corrupting state")
    if what == "exit":
        sys.exit(3)
    if what == "hard_exit":
        os._exit(7)
    if what == "big_output":
        return "x" * 50_000_000
    if what == "big_print":
        print("y" * 50_000_000)
        return "printed"
    if what == "kill_parent":
        os.kill(os.getppid(), 9)
    if what == "ctypes":
        import ctypes
        return str(ctypes.CDLL(None))
    if what == "thread":
        import threading
        threading.Thread(target=lambda: None).start()
    return "nothing happened"
''')


async def _setup(pool):
    attacker = await pool.open(EVIL, {"value": 5})
    bystander = await pool.open(EVIL, {"value": 100})
    assert (await attacker.call("Add", {"amount": 2})).observation == "7"
    assert (await bystander.call("Add", {"amount": 1})).observation == "101"
    return attacker, bystander


async def _assert_intact(attacker, bystander):
    assert (await attacker.call("Get")).observation == "7", "attacker's committed state was lost"
    assert (await bystander.call("Get")).observation == "101", "bystander's state was lost"
    assert (await bystander.call("Add", {"amount": 1})).observation == "102"


@pytest.mark.parametrize(
    "what, kind, words",
    [
        ("loop", ErrorKind.TIME_LIMIT, "time limit"),
        ("sleep", ErrorKind.TIME_LIMIT, "time limit"),
        ("memory", ErrorKind.MEMORY_LIMIT, "memory"),
        ("fork", ErrorKind.TOOL_ERROR, "forking is not allowed"),
        ("fork_bomb", ErrorKind.TOOL_ERROR, "forking is not allowed"),
        ("posix_spawn", ErrorKind.TOOL_ERROR, "starting processes is not allowed"),
        ("raise", ErrorKind.TOOL_ERROR, "tool blew up"),
        ("exit", ErrorKind.TOOL_ERROR, "SystemExit"),
        ("hard_exit", ErrorKind.SANDBOX_ERROR, "exit (status 7)"),
        ("big_output", ErrorKind.OUTPUT_TOO_LARGE, "50,000,000 characters"),
        ("kill_parent", ErrorKind.TOOL_ERROR, "sending signals is not allowed"),
        ("ctypes", ErrorKind.TOOL_ERROR, "importing ctypes is not allowed"),
        ("thread", ErrorKind.TOOL_ERROR, "start new thread"),
        ("parent_environ", ErrorKind.TOOL_ERROR, "is not allowed"),
    ],
)
async def test_attack_is_contained(pool, what, kind, words):
    attacker, bystander = await _setup(pool)
    started = time.monotonic()
    result = await attacker.call("Evil", {"what": what})
    elapsed = time.monotonic() - started
    assert result.error == kind, result.observation
    assert words in result.observation
    assert result.observation.startswith("Error: ")
    assert not result.done
    if kind == ErrorKind.TIME_LIMIT:
        assert elapsed < pool.limits.time_s + 1.0
    await _assert_intact(attacker, bystander)


async def test_shell_and_subprocess_cannot_touch_files(pool, tmp_path):
    attacker, bystander = await _setup(pool)
    for what in ("system", "subprocess"):
        target = tmp_path / f"pwned-{what}"
        result = await attacker.call("Evil", {"what": what, "arg": str(target)})
        assert result.error == ErrorKind.TOOL_ERROR, result.observation
        assert "not allowed" in result.observation
        assert not target.exists()
    await _assert_intact(attacker, bystander)


async def test_no_network(pool):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    try:
        attacker, bystander = await _setup(pool)
        result = await attacker.call("Evil", {"what": "connect", "arg": str(listener.getsockname()[1])})
        assert result.error == ErrorKind.TOOL_ERROR
        assert "network access is not allowed" in result.observation
        with pytest.raises(socket.timeout):
            listener.accept()
        await _assert_intact(attacker, bystander)
    finally:
        listener.close()


async def test_writes_only_inside_private_temp_dir(pool, tmp_path):
    attacker, bystander = await _setup(pool)
    target = tmp_path / "escaped.txt"
    result = await attacker.call("Evil", {"what": "write", "arg": str(target)})
    assert result.error == ErrorKind.TOOL_ERROR
    assert "writing outside the private temp dir is not allowed" in result.observation
    assert not target.exists()
    ok = await attacker.call("Evil", {"what": "write_tmp"})
    assert ok.error is None and ok.observation == "fine"
    # a successful call commits: the corrupted value is now the state, as the tool intended
    assert (await attacker.call("Get")).observation == "-999"


async def test_no_secrets_in_environment(monkeypatch):
    from mcp_gyms.sandbox import SandboxPool

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123")
    monkeypatch.setenv("CODEGYM_TOKEN", "tok-secret-456")
    async with SandboxPool(workers=1) as fresh:
        ep = await fresh.open(EVIL, {"value": 1})
        result = await ep.call("Evil", {"what": "environ"})
        assert result.error is None
        env = json.loads(result.observation)
        assert "secret" not in result.observation
        assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED"}


async def test_huge_print_is_discarded(pool):
    attacker, bystander = await _setup(pool)
    result = await attacker.call("Evil", {"what": "big_print"})
    assert result.error is None and result.observation == "printed"


async def test_pool_keeps_serving_after_many_crashes(pool):
    attacker, bystander = await _setup(pool)
    for what in ("hard_exit", "loop", "memory", "hard_exit"):
        assert (await attacker.call("Evil", {"what": what})).error is not None
    assert pool.stats.worker_restarts >= 4
    await _assert_intact(attacker, bystander)
    oracle = await pool.run_oracle(EVIL, {"value": 3})
    assert oracle.reward == 1.0


def test_kernel_layers_hold_without_audit_hooks(tmp_path):
    """Seccomp, Landlock, the dropped privileges and the non-dumpable host block escapes even when the
    Python-level hook is bypassed."""
    from mcp_gyms.jail import protect_host

    protect_host()  # as the sandbox pool does in every host process
    os.environ["CODEGYM_TEST_SECRET"] = "hunter2"
    jail_dir, outside = tmp_path / "jail", tmp_path / "outside"
    jail_dir.mkdir()
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(0o644)
    script = textwrap.dedent(f"""
        import os, signal, socket, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from mcp_gyms.jail import harden
        report = harden({str(jail_dir)!r}, 256, audit_hooks=False)  # the kernel layers alone
        results = {{"seccomp": report["seccomp"], "files": report["files"], "view": report["view"]}}
        with open({str(jail_dir / "mine.txt")!r}, "w") as fh:  # its own temp dir stays writable
            fh.write("ok")
        results["mine"] = open({str(jail_dir / "mine.txt")!r}).read()
        results["uid"] = os.getuid()
        for name, attempt in [
            ("fork", lambda: os.fork()),
            ("socket", lambda: socket.socket()),
            ("kill_parent", lambda: os.kill(os.getppid(), 0)),
            ("pidfd_kill_parent", lambda: signal.pidfd_send_signal(os.pidfd_open(os.getppid()), 0)),
            ("mknod", lambda: os.mkfifo({str(jail_dir / "fifo")!r})),
            ("write_outside", lambda: open({str(outside / "planted.txt")!r}, "w")),
            ("read_outside", lambda: open({str(secret)!r}).read()),
            ("parent_environ", lambda: open(f"/proc/{{os.getppid()}}/environ").read()),
            ("parent_memory", lambda: open(f"/proc/{{os.getppid()}}/mem", "rb").read(1)),
        ]:
            try:
                attempt()
                results[name] = "allowed"
            except OSError as exc:
                results[name] = exc.errno
        print(results)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    results = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own subprocess's dict literal
    if results["seccomp"] != "on":
        pytest.skip(f"seccomp unavailable here: {results['seccomp']}")
    del os.environ["CODEGYM_TEST_SECRET"]
    assert results["fork"] == 1 and results["socket"] == 1 and results["kill_parent"] == 1
    assert results["pidfd_kill_parent"] == 1 and results["mknod"] == 1
    assert results["parent_environ"] in (1, 13) and results["parent_memory"] in (1, 13), results  # EPERM/EACCES
    if results["files"].startswith("on"):
        # EACCES from Landlock, or ENOENT where the private mount view covers the folder (pytest's tmp is 0700)
        assert results["write_outside"] in (2, 13) and results["read_outside"] in (2, 13), results
        assert not (outside / "planted.txt").exists()
    assert results["mine"] == "ok"
    if os.geteuid() == 0 and results["view"].startswith("private"):  # root host: the worker is not uid 0
        assert results["uid"] != 0, results


async def test_frame_walking_cannot_switch_the_hook_off(pool, tmp_path):
    """The worker keeps no switch for its audit hook that gym code could find by walking frames."""
    sneaky = gym_code('''
@tool
def Sneak(self, path: str) -> str:
    """Look for a switch in the callers' frames, then try to write outside the temp dir."""
    f = sys._getframe()
    while f:
        owner = f.f_locals.get("self")
        if owner is not None and hasattr(owner, "trusted"):
            owner.trusted[0] = True
        f = f.f_back
    with open(path, "w") as fh:
        fh.write("escaped")
    return "wrote"
''')
    ep = await pool.open(sneaky, {"value": 1})
    target = tmp_path / "escaped.txt"
    result = await ep.call("Sneak", {"path": str(target)})
    assert result.error == ErrorKind.TOOL_ERROR and "not allowed" in result.observation
    assert not target.exists()


async def test_forged_replies_earn_nothing(pool):
    """Gym code that writes its own reply frame to the host (reward 1, episode over, no Done) gets a
    result the host stands behind: no reward, not over, the host's own step count."""
    forger = gym_code('''
@tool
def Forge(self) -> str:
    """Write a forged reply for the current request straight to the host's pipe."""
    import struct
    f = sys._getframe()
    while f and not ("req" in f.f_locals and "proto_out" in f.f_locals):
        f = f.f_back
    req, fd = f.f_locals["req"], f.f_locals["proto_out"]
    fake = {"id": req["id"], "ok": True, "result": {"observation": "you win", "reward": 1, "terminated": True,
            "truncated": False, "steps": -100000, "error": None}}
    data = json.dumps(fake).encode()
    os.write(fd, struct.pack(">I", len(data)) + data)
    return "real reply"
''')
    ep = await pool.open(forger, {"value": 1})
    bystanders = [await pool.open(forger, {"value": 10 * i}) for i in range(4)]  # on both workers
    for b in bystanders:
        await b.call("Add", {"amount": 1})
    await ep.call("Add", {"amount": 1})
    result = await ep.call("Forge")
    assert result.reward == 0 and not result.terminated and result.steps == 2
    for _ in range(3):  # the forger's own episode may stay broken (it replays its forgery), never rewarded
        later = await ep.call("Get")
        assert later.reward == 0 and not later.terminated
    for i, b in enumerate(bystanders):  # a garbled pipe costs others at most one failed call, never state
        results = [await b.call("Get") for _ in range(3)]
        assert results[-1].observation == str(10 * i + 1), results


PROBE = gym_code('''
@tool
def Probe(self, what: str) -> str:
    """Look for the easy ways around the audit hook."""
    try:
        if what == "jail_ctypes":
            import mcp_gyms.jail as jail
            return f"reachable={hasattr(jail, 'ctypes')}"
        if what == "fork_exec":
            import subprocess
            return f"reachable={hasattr(subprocess, '_fork_exec')}"
        if what == "dir_fd":
            folder = os.open(".", os.O_RDONLY)
            os.mkdir("x", dir_fd=folder)
            return "made"
        if what == "setrlimit":
            import resource
            resource.setrlimit(resource.RLIMIT_CPU, (10 ** 6, resource.getrlimit(resource.RLIMIT_CPU)[1]))
            return "raised"
    except PermissionError as exc:
        return f"refused: {exc}"
    return "?"
''', "ProbeGym")


@pytest.mark.parametrize("what, expected", [
    ("jail_ctypes", "reachable=False"),
    ("fork_exec", ("reachable=False", "refused: sandbox: importing _posixsubprocess is not allowed")),
    ("dir_fd", "refused: sandbox: opening a folder as a file descriptor is not allowed"),
    ("setrlimit", "refused: sandbox: changing resource limits is not allowed"),
])
async def test_the_hook_closes_the_easy_paths(pool, what, expected):
    """With the hook on, the known ways around it get a clear error (it is not the boundary: the same
    attempts with the hook off are the kernel's to stop, see test_sandbox_boundary.py)."""
    ep = await pool.open(PROBE, {"value": 1})
    result = await ep.call("Probe", {"what": what})
    assert result.observation.startswith(expected), result.observation
