"""Lock a sandbox worker process down before it runs untrusted gym code.

Every promise below rests on the kernel, not on Python; the tests in
``tests/test_sandbox_adversarial.py`` check each one with the audit hook switched off.

1. **Clean process.** The host starts the worker with an environment of a few harmless variables (no
   API keys or tokens), in a private temp dir, in its own session; the worker dies with its parent
   (``PR_SET_PDEATHSIG``). Each worker hosts the episodes of one gym only (see :mod:`mcp_gyms.sandbox`).
2. **Not root toward the machine.** As root, the worker moves into a private mount namespace, gets a
   small tmpfs as its temp dir (a disk quota), makes the Python installation reachable there if a
   folder above it is closed to other users (``/root``: a tmpfs over it with the installation bind-mounted
   back, read-only), and then becomes an unprivileged uid of its own (one per worker, owning no file
   outside its temp dir). The kernel then refuses it every signal to another process, every change of
   another user's file (mode, owner, times, extended attributes) and every ``/proc`` file of the host.
   Where the mount namespace cannot be made, it becomes that uid only if the installation is readable by
   anyone, else it stays uid 0 without any capability (the weakest case; the layers below still hold).
3. **Kernel: seccomp.** A BPF filter makes ``socket``/``connect``/``bind``, ``fork``/``vfork``/
   ``execve``, process-creating ``clone``/``clone3``, ``ptrace``, signals to any process but the
   worker itself (``kill``, pidfds, queued signals, and signal delivery set up with ``fcntl``
   ``F_SETOWN``/``F_SETSIG``/``F_SETLEASE``/``F_NOTIFY`` or ``ioctl`` ``FIOSETOWN``), every file metadata
   change (``chmod``, ``chown``, ``utime*``, ``*xattr``), other processes' memory and resource limits,
   device nodes, mounts and namespaces fail with ``EPERM``, whatever Python-level trick reaches them.
4. **Kernel: Landlock** (Linux 5.13+, where enabled). Writes only inside the private temp dir; reads
   only in the Python installation, this package, the system libraries and the temp dir; from ABI 4 no
   TCP bind or connect; from ABI 6 (Linux 6.12) no signal to any process outside the worker's own
   Landlock domain, by any route, and no abstract unix socket outside it.
5. **Kernel: network namespace.** Where permitted, a fresh network namespace with no interfaces.
6. **Resource limits.** Address space (memory), file size, open files, core dumps; a CPU-time limit is
   re-armed before every call. The host's wall-clock deadline (SIGKILL) is the bound that holds even if
   gym code raised its own soft CPU limit.
7. **CPython audit hook** — clear error messages, *not* a boundary: gym code can switch it off (it can
   walk ``gc.get_objects()`` and patch the hook's code). It names the problem before the kernel says no:
   process creation, sockets, native code, threads, rlimit changes, environment changes, opening
   folders as descriptors (the way to ``dir_fd=`` tricks), and file access outside the allowed roots.

What holds on a kernel without these features: without Landlock, the uid and the mount namespace keep
files and other processes safe (the worker owns nothing outside its temp dir); without Landlock ABI 6
the seccomp rules and the per-worker uid still stop every signal route we know of; without seccomp
(no ``CONFIG_SECCOMP_FILTER``) the worker still runs as its own uid, in its namespaces, under its
limits. Where none of the namespace, uid or Landlock layers is available (a non-root host on an old
kernel), the worker runs as the host's user: it cannot fork, exec, connect or signal (seccomp), but it
can read what that user can read — run untrusted gyms on a kernel with Landlock.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import stat
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["harden", "JailReport"]

# --- Landlock (numbers shared by every architecture) --------------------------------------------
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1  # execute ... make_sym: every right of Landlock ABI 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_FS_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV  # valid on a file
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_NET_TCP = (1 << 0) | (1 << 1)  # bind, connect (ABI 4)
_SCOPES = (1 << 0) | (1 << 1)  # abstract unix sockets, signals (ABI 6)
#: Read (and map) only: where the dynamic loader finds shared libraries for extension modules.
_SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache")

# --- seccomp ----------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_EPERM = 1
_CLONE_THREAD = 0x00010000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06

_ARCH = {
    # machine: (AUDIT_ARCH, {syscall: nr})
    "x86_64": (
        0xC000003E,
        {"socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43, "accept4": 288,
         "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone": 56, "clone3": 435, "ptrace": 101,
         "kill": 62, "tkill": 200, "tgkill": 234, "unshare": 272, "setns": 308, "mount": 165,
         "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "process_vm_readv": 310, "process_vm_writev": 311,
         "mknod": 133, "mknodat": 259, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250,
         "add_key": 248, "request_key": 249, "chroot": 161, "pivot_root": 155, "umount2": 166, "setuid": 105,
         "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117, "setresgid": 119,
         "name_to_handle_at": 303, "open_by_handle_at": 304, "kexec_load": 246, "init_module": 175,
         "finit_module": 313, "delete_module": 176, "prlimit64": 302, "fcntl": 72, "ioctl": 16,
         "chmod": 90, "fchmod": 91, "fchmodat": 268, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
         "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280, "setxattr": 188, "lsetxattr": 189,
         "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199},
    ),
    "aarch64": (
        0xC00000B7,
        {"socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "listen": 201, "accept": 202,
         "accept4": 242, "execve": 221, "execveat": 281, "clone": 220, "clone3": 435, "ptrace": 117,
         "kill": 129, "tkill": 130, "tgkill": 131, "unshare": 97, "setns": 268, "mount": 40,
         "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "process_vm_readv": 270, "process_vm_writev": 271,
         "mknodat": 33, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
         "request_key": 218, "chroot": 51, "pivot_root": 41, "umount2": 39, "setuid": 146, "setgid": 144,
         "setreuid": 145, "setregid": 143, "setresuid": 147, "setresgid": 149, "name_to_handle_at": 264,
         "open_by_handle_at": 265, "kexec_load": 104, "init_module": 105, "finit_module": 273,
         "delete_module": 106, "prlimit64": 261, "fcntl": 25, "ioctl": 29, "fchmod": 52, "fchmodat": 53,
         "fchownat": 54, "fchown": 55, "utimensat": 88, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7,
         "removexattr": 14, "lremovexattr": 15, "fremovexattr": 16},
    ),
}
# New syscalls share one number on every architecture.
_COMMON = {"pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438, "io_uring_setup": 425,
           "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
           "fsconfig": 431, "fsmount": 432, "fspick": 433, "landlock_create_ruleset": 444,
           "fchmodat2": 452, "setxattrat": 463, "removexattrat": 466}
_DENY = ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "fork", "vfork", "execve",
         "execveat", "clone3", "ptrace", "unshare", "setns", "mount", "umount2", "chroot", "pivot_root",
         # signals by other routes than kill(2) (pidfds, queued signals), other processes' memory
         "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
         "process_vm_readv", "process_vm_writev",
         # device nodes and FIFOs anywhere, kernel attack surface the worker never needs
         "mknod", "mknodat", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
         "io_uring_setup", "io_uring_enter", "io_uring_register", "open_tree", "move_mount", "fsopen", "fsconfig",
         "fsmount", "fspick", "name_to_handle_at", "open_by_handle_at", "kexec_load", "init_module",
         "finit_module", "delete_module",
         # identity changes (the worker drops to an unprivileged user before the filter goes on)
         "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
         # file metadata: nothing outside the temp dir may change in any way, and inside it nothing needs to
         "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
         "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
         "fremovexattr", "setxattrat", "removexattrat")
#: fcntl commands that make the kernel send signals for us (to a pid of our choosing) or lease files.
_FCNTL_DENY = {"F_SETOWN": 8, "F_SETSIG": 10, "F_SETOWN_EX": 15, "F_SETLEASE": 1024, "F_NOTIFY": 1026}
#: ioctl requests with the same effect as F_SETOWN.
_IOCTL_DENY = {"FIOSETOWN": 0x8901, "SIOCSPGRP": 0x8902}
_X32_BIT = 0x40000000


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _seccomp_program(audit_arch: int, numbers: dict[str, int], own_pid: int) -> bytes:
    """deny-list filter: the listed syscalls -> EPERM; clone without CLONE_THREAD -> EPERM;
    kill/tkill/tgkill/prlimit64 aimed at anyone but this process -> EPERM; fcntl/ioctl commands that
    arrange signal delivery -> EPERM; everything else allowed."""
    deny = _SECCOMP_RET_ERRNO | _EPERM
    numbers = {**_COMMON, **numbers}
    prog = [
        _bpf(_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        _bpf(_JEQ_K, 1, 0, audit_arch),
        _bpf(_RET_K, 0, 0, deny),  # another ABI (e.g. 32-bit compat): refuse
        _bpf(_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        _bpf(_JSET_K, 0, 1, _X32_BIT),  # x32 syscalls carry the same arch with this bit set: refuse
        _bpf(_RET_K, 0, 0, deny),
    ]
    for name in _DENY:
        if name in numbers:
            prog += [_bpf(_JEQ_K, 0, 1, numbers[name]), _bpf(_RET_K, 0, 0, deny)]
    # clone: allowed only for threads (flags in args[0], low word)
    prog += [
        _bpf(_JEQ_K, 0, 3, numbers["clone"]),
        _bpf(_LD_W_ABS, 0, 0, 16),
        _bpf(_JSET_K, 1, 0, _CLONE_THREAD),
        _bpf(_RET_K, 0, 0, deny),
        _bpf(_LD_W_ABS, 0, 0, 0),  # reload nr (the clone branch returns above or falls through to allow)
    ]
    # signals and other processes' resource limits: only our own pid (args[0], low word; prlimit's 0 = self)
    prog += [
        _bpf(_JEQ_K, 0, 5, numbers["prlimit64"]),
        _bpf(_LD_W_ABS, 0, 0, 16),
        _bpf(_JEQ_K, 2, 0, 0),
        _bpf(_JEQ_K, 1, 0, own_pid),
        _bpf(_RET_K, 0, 0, deny),
        _bpf(_LD_W_ABS, 0, 0, 0),
    ]
    for name in ("kill", "tkill", "tgkill"):
        prog += [
            _bpf(_JEQ_K, 0, 4, numbers[name]),
            _bpf(_LD_W_ABS, 0, 0, 16),
            _bpf(_JEQ_K, 1, 0, own_pid),
            _bpf(_RET_K, 0, 0, deny),
            _bpf(_LD_W_ABS, 0, 0, 0),
        ]
    # fcntl/ioctl: refuse the commands that arrange signal delivery (args[1], low word)
    for name, commands in (("fcntl", _FCNTL_DENY), ("ioctl", _IOCTL_DENY)):
        prog += [_bpf(_JEQ_K, 0, 2 + 2 * len(commands), numbers[name]), _bpf(_LD_W_ABS, 0, 0, 24)]
        for command in commands.values():
            prog += [_bpf(_JEQ_K, 0, 1, command), _bpf(_RET_K, 0, 0, deny)]
        prog.append(_bpf(_LD_W_ABS, 0, 0, 0))
    prog.append(_bpf(_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    return b"".join(prog)


class JailReport(dict):
    """What :func:`harden` managed to set up (sent to the host in the worker's hello)."""


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _install_seccomp(libc: Any) -> str:
    machine = platform.machine()
    if machine not in _ARCH:
        return f"unavailable (no syscall table for {machine})"
    audit_arch, numbers = _ARCH[machine]
    program = _seccomp_program(audit_arch, numbers, os.getpid())
    count = len(program) // 8
    buf = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(count, ctypes.addressof(buf))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"unavailable (no_new_privs: errno {ctypes.get_errno()})"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return f"unavailable (errno {ctypes.get_errno()})"
    return "on"


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _confine_files(libc: Any, writable: Iterable[str], readable: Iterable[str]) -> str:
    """Landlock: every filesystem right is handled; ``writable`` paths get them all, ``readable`` paths
    read/execute only, anything else nothing. Paths that do not exist are skipped."""
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        return f"unavailable (errno {ctypes.get_errno()}: the kernel has no Landlock, or it is disabled)"
    handled = (_FS_ABI1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
               | (_FS_IOCTL_DEV if abi >= 5 else 0))
    # ABI 4: TCP bind/connect handled with no rule (none allowed); ABI 6: signals and abstract unix
    # sockets scoped to this domain. The struct is passed only as far as this kernel knows it.
    attr = _RulesetAttr(handled, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"unavailable (create_ruleset: errno {ctypes.get_errno()})"
    try:
        rules = [(path, handled) for path in writable] + [(path, _FS_READ) for path in readable]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= _FS_FILE_RIGHTS
                rule = _PathBeneathAttr(access & handled, fd)
                if libc.syscall(_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    return f"unavailable (add_rule {path}: errno {ctypes.get_errno()})"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"unavailable (no_new_privs: errno {ctypes.get_errno()})"
        if libc.syscall(_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return f"unavailable (restrict_self: errno {ctypes.get_errno()})"
    finally:
        os.close(ruleset)
    scopes = ", no TCP" if abi >= 4 else ""
    scopes += ", signals and abstract sockets scoped" if abi >= 6 else ""
    return f"on (Landlock ABI {abi}{scopes})"


def _isolate_network(libc: Any) -> str:
    if libc.unshare(_CLONE_NEWNET) == 0:
        return "namespace"
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return "user+network namespace"
    return f"no namespace (errno {ctypes.get_errno()}); seccomp and audit hooks block sockets"


# --- audit hooks ------------------------------------------------------------------------------
_BLOCKED_EVENTS = {
    "os.system": "running shell commands",
    "os.exec": "executing programs",
    "os.posix_spawn": "starting processes",
    "os.spawn": "starting processes",
    "os.fork": "forking",
    "os.forkpty": "forking",
    "subprocess.Popen": "starting processes",
    "pty.spawn": "starting processes",
    "os.kill": "sending signals",
    "os.killpg": "sending signals",
    "signal.pthread_kill": "sending signals",
    "socket.__new__": "network access",
    "socket.connect": "network access",
    "socket.bind": "network access",
    "socket.getaddrinfo": "network access",
    "socket.gethostbyname": "network access",
    "socket.sendto": "network access",
    "ctypes.dlopen": "loading native code",
    "ctypes.dlsym": "loading native code",
    "ctypes.cdata": "raw memory access",
    "ctypes.call_function": "calling native code",
    "_thread.start_new_thread": "starting threads",
    "os.putenv": "changing the environment",
    "os.unsetenv": "changing the environment",
    "os.chdir": "changing directory",
    "os.chroot": "changing root",
    "sys.unraisablehook": "replacing hooks",
    "resource.prlimit": "changing resource limits",
    "os.chmod": "changing file metadata",
    "os.chown": "changing file metadata",
    "os.utime": "changing file metadata",
    "os.chflags": "changing file metadata",
    "os.setxattr": "changing file metadata",
    "os.removexattr": "changing file metadata",
    "webbrowser.open": "opening a browser",
    "urllib.Request": "network access",
    "http.client.connect": "network access",
    "ftplib.connect": "network access",
    "smtplib.connect": "network access",
}
_BLOCKED_MODULES = {"ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "_multiprocessing", "_xxsubinterpreters"}
#: Events that change files: (positions of their path arguments, positions of their dir_fd arguments).
_PATH_EVENTS_WRITE = {
    "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)),
    "os.truncate": ((0,), ()), "shutil.rmtree": ((0,), (1,)), "shutil.move": ((0, 1), ()),
    "shutil.copyfile": ((0, 1), ()),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class SandboxViolation(PermissionError):
    """Raised inside the worker when gym code tries something the sandbox forbids."""


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _make_hook(tmpdir: str, read_roots: tuple[str, ...], cpu_arming: Any = None) -> Callable[[str, tuple], None]:
    write_roots = (tmpdir,)
    realpath = os.path.realpath
    fspath = os.fsdecode
    isdir = os.path.isdir
    caller = sys._getframe
    folder_flags = getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_PATH", 0)

    def check_path(path: Any, writing: bool, event: str) -> None:
        if isinstance(path, int):
            raise SandboxViolation(f"sandbox: {event} on a raw file descriptor is not allowed")
        if path is None:
            return
        resolved = realpath(fspath(path))
        if writing and not _under(resolved, write_roots):
            raise SandboxViolation(f"sandbox: writing outside the private temp dir is not allowed ({resolved})")
        if not writing and not _under(resolved, read_roots):
            raise SandboxViolation(f"sandbox: reading {resolved} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event in _BLOCKED_EVENTS:
            raise SandboxViolation(f"sandbox: {_BLOCKED_EVENTS[event]} is not allowed ({event})")
        if event == "import":
            if str(args[0]).split(".")[0] in _BLOCKED_MODULES:
                raise SandboxViolation(f"sandbox: importing {args[0]} is not allowed")
        elif event == "open":
            path, mode, flags = args
            writing = bool(flags & _WRITE_FLAGS) if flags else any(c in str(mode or "r") for c in "wax+")
            check_path(path, writing, "open")
            # a folder as a descriptor is the way to dir_fd= paths this hook cannot see
            if isinstance(path, (str, bytes)) and ((flags or 0) & folder_flags or isdir(path)):
                raise SandboxViolation(f"sandbox: opening a folder as a file descriptor is not allowed ({path!r})")
        elif event == "resource.setrlimit" and (cpu_arming is None or caller(1).f_code is not cpu_arming):
            # only the worker's own per-call arming (frame 1: the Python code that called setrlimit)
            raise SandboxViolation("sandbox: changing resource limits is not allowed (resource.setrlimit)")
        elif event in _PATH_EVENTS_WRITE:
            paths, dir_fds = _PATH_EVENTS_WRITE[event]
            if any(i < len(args) and args[i] not in (None, -1, -100) for i in dir_fds):  # -1: none, -100: AT_FDCWD
                raise SandboxViolation(f"sandbox: {event} with dir_fd= is not allowed")
            for i in paths:
                if i < len(args):
                    check_path(args[i], True, event)
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            check_path(args[0], False, event)

    return hook


#: Workers become uid/gid ``_UID_BASE + their pid``: a uid of their own, owning nothing on the machine.
_UID_BASE = 0x70000000
_MAX_OPEN_FILES = 64
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18


def _readable_by_anyone(path: str) -> bool:
    """Whether every folder down to ``path`` lets other users through (so an unprivileged uid can import)."""
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _closed_ancestor(path: str) -> str | None:
    """The topmost folder above ``path`` that other users cannot pass through (``/root``), if any."""
    parts = os.path.realpath(path).split("/")[1:]
    for i in range(1, len(parts)):
        folder = "/" + "/".join(parts[:i])
        try:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return None
    return None


def _drop_capabilities(libc: Any) -> None:
    for cap in range(64):  # the bounding set first, so nothing can be regained
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    if libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _mount(libc: Any, source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _private_view(libc: Any, tmpdir: str, roots: Iterable[str], uid: int, disk_mb: int) -> str:
    """As root, in a mount namespace of this worker's own (nothing propagates back to the machine):
    a ``disk_mb`` tmpfs owned by ``uid`` as the temp dir, and every folder that closes a read root to
    other users (``/root`` above a pyenv Python) covered by a tmpfs into which only the needed roots
    are bind-mounted back, read-only. Raises OSError if the namespace cannot be made private."""
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE, None)  # first, or later mounts would leak out
    covered: dict[str, list[str]] = {}
    for root in sorted({os.path.realpath(r) for r in (*roots, tmpdir)}):
        closed = _closed_ancestor(root)
        if closed is not None and os.path.exists(root):
            kept = covered.setdefault(closed, [])
            if not any(_under(root, (k,)) for k in kept):
                kept.append(root)
    for closed, kept in covered.items():
        handles = {root: os.open(root, os.O_PATH | os.O_CLOEXEC) for root in kept}  # before the cover hides them
        try:
            _mount(libc, "tmpfs", closed, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
            for root, fd in handles.items():
                os.makedirs(root, mode=0o755, exist_ok=True)
                _mount(libc, f"/proc/self/fd/{fd}", root, None, _MS_BIND | _MS_REC, None)
                _mount(libc, None, root, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
        finally:
            for fd in handles.values():
                os.close(fd)
    _mount(libc, "tmpfs", tmpdir, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={disk_mb}m,mode=0700,uid={uid},gid={uid}")
    return f"private mount namespace, {disk_mb} MiB tmpfs temp dir" + (
        f", {', '.join(covered)} covered" if covered else "")


def _drop_privileges(libc: Any, tmpdir: str, roots: tuple[str, ...], disk_mb: int) -> tuple[str, str]:
    """As root: build the private view (see :func:`_private_view`) and become a uid of this worker's own;
    without a mount namespace, become that uid only if the Python installation is readable by anyone,
    else stay uid 0 with every capability dropped. Returns (user, filesystem view) for the report.
    Either way the host is non-dumpable (see :func:`protect_host`), so its /proc files stay closed."""
    if os.geteuid() != 0:
        return f"uid {os.geteuid()} (not root: unchanged)", "shared (not root: no mount namespace)"
    uid = _UID_BASE + os.getpid()
    try:
        view = _private_view(libc, tmpdir, roots, uid, disk_mb)
    except OSError as exc:
        view = f"shared ({exc})"
    if _readable_by_anyone(os.path.dirname(tmpdir)) and all(_readable_by_anyone(p) for p in roots if os.path.exists(p)):
        if not view.startswith("private"):
            os.chown(tmpdir, uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # also clears every capability
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # keep this worker's own /proc files closed to others
        return f"uid {uid} (a uid of its own)", view
    _drop_capabilities(libc)
    return "uid 0 without capabilities (the Python installation is not readable by other users)", view


def protect_host() -> None:
    """Make the calling (host) process non-dumpable: its /proc/<pid>/environ, mem, maps... then need
    CAP_SYS_PTRACE, which no worker has. Called by the sandbox pool before it starts workers."""
    _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


# --- the whole lockdown -----------------------------------------------------------------------
def _read_roots(tmpdir: str) -> tuple[str, ...]:
    """Where gym code may read: the Python installation and its packages, this package, the temp dir;
    not the project folder around the package (its .git, .env, data) nor anything else on the machine."""
    package = os.path.dirname(os.path.realpath(__file__))
    project = os.path.dirname(package)
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path) if p}
    return tuple(sorted(roots - {project})) + (
        package, os.path.realpath(tmpdir), "/dev/null", "/dev/urandom", "/usr/share/zoneinfo")


def harden(tmpdir: str, memory_mb: int, preload: Iterable[str] = (), *, audit_hooks: bool = True,
           disk_mb: int = 32, cpu_arming: Any = None) -> JailReport:
    """Lock this process down. Call once, after the worker's own imports, before any gym code.

    Every rlimit but the CPU one has hard = soft and no capability is left to raise a hard limit, so
    gym code can only lower them; the worker moves the CPU soft limit per call (``cpu_arming``: the one
    code object the audit hook lets change rlimits). ``disk_mb`` bounds the temp dir where a private
    tmpfs can be mounted. ``audit_hooks=False`` leaves the Python-level layer out (to test the kernel
    layers alone). Afterwards no module attribute leads to ctypes or process creation any more.
    """
    report = JailReport()
    libc = _libc()
    for module in preload:  # modules gym code commonly uses, imported while reads are unrestricted
        try:
            __import__(module)
        except ImportError:
            pass
    report["network"] = _isolate_network(libc)
    # memory: address space = what the interpreter uses now + the per-worker budget
    with open("/proc/self/statm") as fh:
        vm_bytes = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = vm_bytes + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    file_limit = min(64, disk_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    resource.setrlimit(resource.RLIMIT_NOFILE, (_MAX_OPEN_FILES, _MAX_OPEN_FILES))
    report["memory_limit_mb"] = memory_mb
    read_roots = _read_roots(tmpdir)
    report["user"], report["view"] = _drop_privileges(libc, tmpdir, read_roots[:-4], disk_mb)
    libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # after the uid change, which clears it
    report["files"] = _confine_files(libc, (tmpdir, "/dev/null"), (*read_roots, *_SYSTEM_LIBRARIES))
    report["seccomp"] = _install_seccomp(libc)
    os.chdir(tmpdir)
    for key in list(os.environ):
        if key not in ("PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED"):
            del os.environ[key]
    del libc
    _forget_native_code()
    if audit_hooks:
        sys.addaudithook(_make_hook(os.path.realpath(tmpdir), read_roots, cpu_arming))
    report["audit_hooks"] = "on (clear errors only)" if audit_hooks else "off"
    return report


_SWEPT: set[str] = set()  # modules whose attributes :func:`forget_native_attributes` already cleaned


def forget_native_attributes() -> None:
    """Delete the attributes of loaded modules (but this one, which the lockdown still needs) that lead
    to ctypes or process creation (``subprocess._fork_exec``, ``numpy.core._internal.ctypes``...).
    The zygote does it once for every worker it forks; a worker does it for modules loaded since."""
    for name, module in list(sys.modules.items()):
        if name in _SWEPT or name == __name__ or name.split(".")[0] in _BLOCKED_MODULES:
            continue
        _SWEPT.add(name)
        try:
            attributes = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in attributes:
            origins = (value.__name__ if isinstance(value, type(sys)) else getattr(value, "__module__", None),
                       getattr(type(value), "__module__", None))
            if any(isinstance(o, str) and o.split(".")[0] in _BLOCKED_MODULES for o in origins):
                try:
                    delattr(module, attr)
                except (AttributeError, TypeError):
                    pass


def _forget_native_code() -> None:
    """Drop every reference this process holds to ctypes and process-creation modules: the modules
    themselves, this module's own handles, and attributes of loaded modules that point into them.
    Gym code that gets past the audit hook can import them again; the kernel layers are what hold
    then — this only keeps the easy paths closed."""
    forget_native_attributes()
    for name in list(sys.modules):
        if name.split(".")[0] in _BLOCKED_MODULES:
            del sys.modules[name]
    own = globals()
    for name in ("ctypes", "_RulesetAttr", "_PathBeneathAttr", "_libc"):
        own.pop(name, None)
    gc.collect()
