"""A fork server for sandbox workers: start a worker in milliseconds, not a fresh interpreter's 150 ms.

Every gym gets worker processes of its own (see :mod:`mcp_gyms.sandbox`), so workers start often. The
zygote is a process that imported the worker's code and the modules gym code commonly uses once, and
forks a worker on request; each child then locks itself down (:func:`mcp_gyms.jail.harden`) before it
sees any gym code, so no two workers share anything but read-only, copy-on-write memory. The zygote
itself runs no gym code: it is started by the host with a clean environment and only ever forks.

Protocol, over a ``SOCK_SEQPACKET`` unix socket pair (one message per packet, JSON):

- host -> zygote: ``{"config": {...}}`` with two file descriptors attached (the worker's request pipe's
  read end, its reply pipe's write end);
- zygote -> host: ``{"pid": n}`` with the child's pidfd attached (the host signals through it, so a
  recycled pid is never hit), and ``{"exited": n, "code": c}`` when a child ends (``c`` as
  :attr:`subprocess.Popen.returncode`: negative for a signal).

The zygote dies with its host (``PR_SET_PDEATHSIG``), and its children with it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

_MAX_MESSAGE = 1 << 20
_STARTUP_TIMEOUT_S = 60.0
_READ_AHEAD = 1 << 20  # bytes of replies buffered from a worker before the host stops reading its pipe


# --- the host's side ----------------------------------------------------------------------------------
class ZygoteLost(RuntimeError):
    """The zygote died or broke protocol (it is started again on the next fork)."""


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _PipeProtocol(asyncio.Protocol):
    """What the event loop reads from a worker's reply pipe goes into ``reader``'s buffer."""

    def __init__(self, reader: _PipeReader) -> None:
        self.reader = reader

    def data_received(self, data: bytes) -> None:
        self.reader._received(data)

    def eof_received(self) -> None:
        self.reader._ended()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader._ended()


class _PipeReader(ByteReceiveStream):
    """The reading end of a pipe, as an anyio stream.

    On asyncio the pipe stays registered with the event loop for as long as the stream is open (a read
    transport fills a buffer as replies arrive; reading pauses while more than :data:`_READ_AHEAD`
    bytes wait), so a wait for a reply costs no syscall of its own. Elsewhere it waits with
    ``anyio.wait_readable`` and reads."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._transport: asyncio.ReadTransport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None

    def _received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _READ_AHEAD and self._transport is not None:
            self._transport.pause_reading()
        self._wake()

    def _ended(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(self.fd, "rb", buffering=0)  # the transport owns the fd from now on
        try:
            self._transport, _ = await loop.connect_read_pipe(lambda: _PipeProtocol(self), pipe)
        except BaseException:
            pipe.close()
            self.fd = -1
            raise

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.fd < 0:
            raise anyio.ClosedResourceError
        if not _on_asyncio():
            return await self._receive_polling(max_bytes)
        if self._transport is None:
            await self._connect()
        while not self._buffer:
            if self._eof:
                raise anyio.EndOfStream
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if self.fd < 0:
                raise anyio.ClosedResourceError
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._transport is not None and len(self._buffer) <= _READ_AHEAD and not self._eof:
            self._transport.resume_reading()  # a no-op unless paused
        return data

    async def _receive_polling(self, max_bytes: int) -> bytes:
        while True:
            if self.fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self.fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self.fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            if self._transport is not None:
                self._transport.close()  # closes the fd
            else:
                os.close(fd)
            self._wake()


class _PipeWriter(ByteSendStream):
    """The writing end of a pipe, as an anyio stream."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            if self.fd < 0:
                raise anyio.ClosedResourceError
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await anyio.wait_writable(self.fd)
            except (BrokenPipeError, ConnectionResetError):
                raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class WorkerProcess:
    """A worker forked by the zygote, with what :class:`mcp_gyms.sandbox` uses of a process:
    ``pid``, ``stdin``/``stdout`` streams, ``returncode``, ``wait()``, ``kill()``, ``aclose()``."""

    def __init__(self, zygote: Zygote, pid: int, pidfd: int, stdin: _PipeWriter, stdout: _PipeReader) -> None:
        self.zygote = zygote
        self.pid = pid
        self.pidfd = pidfd
        self.stdin = stdin
        self.stdout = stdout
        self.exited = anyio.Event()
        self.code: int | None = None

    @property
    def returncode(self) -> int | None:
        self.zygote.poll()
        return self.code

    async def wait(self) -> int:
        while self.code is None:
            await self.zygote.pump(self)
        return self.code

    def kill(self) -> None:
        if self.code is None and self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def aclose(self) -> None:
        await self.stdin.aclose()
        await self.stdout.aclose()
        if self.pidfd >= 0:
            fd, self.pidfd = self.pidfd, -1
            os.close(fd)


class Zygote:
    """The host's handle on a zygote process: started on the first :meth:`fork`, again after it died."""

    def __init__(self, package_parent: str, env: dict[str, str], keep_stderr: bool = False,
                 preload: tuple[str, ...] = ()) -> None:
        self.package_parent = package_parent
        self.preload = preload
        self.env = env
        self.keep_stderr = keep_stderr
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None
        self.children: dict[int, WorkerProcess] = {}
        self.lock = anyio.Lock()

    async def _start(self) -> None:
        host_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bootstrap = (f"import sys; sys.path.insert(0, {self.package_parent!r}); "
                     "from mcp_gyms.zygote import main; main()")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", bootstrap, str(zygote_end.fileno()), json.dumps(list(self.preload))],
                pass_fds=[zygote_end.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=None if self.keep_stderr else subprocess.DEVNULL, env=self.env, cwd="/",
                start_new_session=True)
        finally:
            zygote_end.close()
        host_end.setblocking(False)
        self.channel = host_end
        with anyio.move_on_after(_STARTUP_TIMEOUT_S):
            message, _ = await self._receive()
            if message.get("ready"):
                return
        await self.aclose()
        raise ZygoteLost("the sandbox's fork server did not start")

    async def _receive(self) -> tuple[dict[str, Any], list[int]]:
        assert self.channel is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.channel, _MAX_MESSAGE, 1)
            except BlockingIOError:
                await anyio.wait_readable(self.channel)
                continue
            except OSError as exc:
                raise ZygoteLost(f"the sandbox's fork server is gone: {exc}") from None
            if not data:
                raise ZygoteLost("the sandbox's fork server is gone")
            return json.loads(data), fds

    def _dispatch(self, message: dict[str, Any]) -> None:
        child = self.children.pop(message["exited"], None) if "exited" in message else None
        if child is not None:
            child.code = int(message["code"])
            child.exited.set()

    def _orphan_all(self) -> None:
        """The zygote died: its children died with it (PR_SET_PDEATHSIG, SIGKILL)."""
        for child in self.children.values():
            child.code = -signal.SIGKILL
            child.exited.set()
        self.children.clear()
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def poll(self) -> None:
        """Take the exit notices that have arrived, without waiting."""
        if self.channel is None or self.lock.locked():
            return
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.channel, _MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError:
                self._orphan_all()
                return
            if not data:
                self._orphan_all()
                return
            for fd in fds:
                os.close(fd)
            self._dispatch(json.loads(data))

    async def pump(self, child: WorkerProcess) -> None:
        """Take the next message from the zygote (one task at a time), unless ``child`` already ended."""
        async with self.lock:
            if child.code is not None:
                return
            if self.channel is None:
                child.code = -signal.SIGKILL
                return
            try:
                message, fds = await self._receive()
            except ZygoteLost:
                self._orphan_all()
                return
            for fd in fds:
                os.close(fd)
            self._dispatch(message)

    async def fork(self, config: dict[str, Any]) -> WorkerProcess:
        """A new worker running :func:`mcp_gyms.sandbox_worker.serve` with ``config``."""
        async with self.lock:
            if self.process is not None and self.process.poll() is not None:
                self._orphan_all()
            if self.channel is None:
                await self._start()
            assert self.channel is not None
            request_read, request_write = os.pipe()
            reply_read, reply_write = os.pipe()
            try:
                socket.send_fds(self.channel, [json.dumps({"config": config}).encode()], [request_read, reply_write])
            except OSError as exc:
                for fd in (request_read, request_write, reply_read, reply_write):
                    os.close(fd)
                self._orphan_all()
                raise ZygoteLost(f"the sandbox's fork server is gone: {exc}") from None
            finally:
                if self.channel is not None:
                    os.close(request_read)
                    os.close(reply_write)
            while True:
                try:
                    message, fds = await self._receive()
                except ZygoteLost:
                    os.close(request_write)
                    os.close(reply_read)
                    self._orphan_all()
                    raise
                if "pid" in message and fds:
                    child = WorkerProcess(self, int(message["pid"]), fds[0], _PipeWriter(request_write),
                                          _PipeReader(reply_read))
                    self.children[child.pid] = child
                    return child
                for fd in fds:
                    os.close(fd)
                self._dispatch(message)

    async def aclose(self) -> None:
        """Stop the zygote (its live children die with it)."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.process is not None:
            process, self.process = self.process, None
            process.kill()
            await anyio.to_thread.run_sync(process.wait)
        for child in self.children.values():
            child.code = -signal.SIGKILL
            child.exited.set()
        self.children.clear()


def package_parent() -> str:
    """The folder that holds the ``mcp_gyms`` package (put on the zygote's ``sys.path``)."""
    return str(Path(__file__).resolve().parent.parent)


# --- the zygote's side --------------------------------------------------------------------------------


def _child(config: dict[str, Any], proto_in: int, proto_out: int, closing: list[int]) -> None:
    """In the forked child: a session of its own, fds 0-2 on /dev/null, nothing of the zygote's open,
    the zygote's signal set-up undone; then become the worker."""
    from .sandbox_worker import serve

    for fd in closing:
        os.close(fd)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if not (fd == 2 and config.get("keep_stderr")):
            os.dup2(devnull, fd)
    os.dup2(proto_in, 3)
    os.dup2(proto_out, 4)
    os.closerange(5, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 4096)
    os.chdir(config["tmpdir"])
    os.environ.clear()
    os.environ.update(config["env"])
    tempfile.tempdir = None
    serve(config, 3, 4)


def main() -> None:
    """The zygote's loop: ``python -I -c '...main()' FD PRELOAD`` where FD is its end of the socket pair
    and PRELOAD a JSON list of more modules to import (beyond the worker's usual ones)."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the host
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: its /proc files (mem!) need a capability no worker has
    del libc
    channel = socket.socket(fileno=int(sys.argv[1]))
    from . import sandbox_worker

    for module in (*sandbox_worker._PRELOAD, *json.loads(sys.argv[2])):  # once here, shared by every worker
        try:
            __import__(module)
        except ImportError:
            pass
    from .jail import forget_native_attributes

    _warm_up()

    del ctypes
    forget_native_attributes()  # once here rather than in every worker
    gc.freeze()  # what exists now stays shared: no collection in a worker touches (and so copies) it
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    channel.sendmsg([b'{"ready": true}'])
    while True:
        readable, _, _ = select.select([channel, wake_read], [], [])
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(channel)
        if channel in readable:
            try:
                message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 2)
            except ConnectionError:
                return
            if not message:  # the host closed its end
                return
            if len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            config = json.loads(message)["config"]
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    _child(config, fds[0], fds[1], [channel.fileno(), wake_read, wake_write])
                    code = 0
                except BaseException:  # noqa: BLE001 - the worker could not start: say why where stderr goes
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            pidfd = os.pidfd_open(pid)
            try:
                socket.send_fds(channel, [json.dumps({"pid": pid}).encode()], [pidfd])
            finally:
                os.close(pidfd)
            _reap(channel)


_WARM_UP_GYM = """
from mcp_gyms import Gym, tool

class WarmUp(Gym):
    answer_type = int

    def setup(self, task):
        self.values = list(task["values"])

    def observe(self):
        return f"{len(self.values)} values"

    @classmethod
    def reference_answer(cls, task):
        return sum(task["values"])

    @tool
    def Value(self, index: int) -> int:
        \"\"\"The value at ``index``.\"\"\"
        return self.values[index]

    @staticmethod
    def solve(call):
        call("Observe")
        call("Done", answer=sum(int(call("Value", index=i)) for i in range(40)))
"""


def _warm_up() -> None:
    """Run a small gym of our own through the worker's code paths, so every worker starts with the
    interpreter's specialised (quickened) bytecode for them instead of warming it up again."""
    from .sandbox_worker import WorkerEpisode, load_gym_class

    cls = load_gym_class(_WARM_UP_GYM, "WarmUp", "warm-up")
    for _ in range(3):
        task = {"values": list(range(40))}
        WorkerEpisode(cls, json.dumps(task), task).run_oracle()


def _reap(channel: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        channel.sendmsg([json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}).encode()])
