"""Lock a sandbox worker process down before it runs untrusted gym code.

Layers, each tested by the adversarial suite (``tests/test_sandbox_adversarial.py``):

1. **Clean process.** The host starts the worker with an environment of a few harmless variables
   (no API keys or tokens), in a private temp dir, in its own session; the worker dies with its parent
   (``PR_SET_PDEATHSIG``).
2. **Kernel: seccomp.** A BPF filter makes ``socket``/``connect``/``bind``, ``fork``/``vfork``/
   ``execve``, process-creating ``clone``/``clone3``, ``ptrace`` and signals to any process but the
   worker itself fail with ``EPERM`` — whatever Python-level trick reaches them.
3. **Kernel: network namespace.** Where permitted (root, or unprivileged user namespaces), the worker
   moves into a fresh network namespace with no interfaces at all.
4. **Resource limits.** Address space (memory, shared by the worker's episodes), file size, open
   files, core dumps; a CPU-time limit is re-armed before every call by the worker loop. Privileges
   are dropped (uid "nobody" where the Python installation is world-readable, else uid 0 with no
   capabilities), and the host makes itself non-dumpable, so its /proc files are closed to workers.
5. **Kernel: Landlock** (Linux 5.13+, where enabled). The filesystem is confined whatever the uid:
   writes only inside the private temp dir, reads only in the Python installation, this package, the
   system libraries and the temp dir. This matters most where the worker must stay uid 0 (without
   capabilities, but still the owner of root's files): gym code that got past the audit hook could
   otherwise write or read root-owned files anywhere.
6. **CPython audit hooks.** Clear errors before the kernel says no: process creation, sockets, ctypes,
   threads, rlimit changes, environment changes, writes outside the private temp dir, and reads outside
   the Python installation and the temp dir (so ``/proc/<parent>/environ`` and secret files stay
   unread).

What this does not defend: malicious gym code tampering with *other episodes of the same worker*
through the interpreter's memory (they share a process by design, for speed). The host never trusts
the worker: it reads JSON only, bounds frame sizes, and treats a garbled reply as a crashed worker.
"""

from __future__ import annotations

import ctypes
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
         "finit_module": 313, "delete_module": 176, "prlimit64": 302},
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
         "delete_module": 106, "prlimit64": 261},
    ),
}
# New syscalls share one number on every architecture.
_COMMON = {"pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438, "io_uring_setup": 425,
           "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
           "fsconfig": 431, "fsmount": 432, "fspick": 433, "landlock_create_ruleset": 444}
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
         "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid")
_X32_BIT = 0x40000000


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _seccomp_program(audit_arch: int, numbers: dict[str, int], own_pid: int) -> bytes:
    """deny-list filter: the listed syscalls -> EPERM; clone without CLONE_THREAD -> EPERM;
    kill/tkill/tgkill aimed at anyone but this process -> EPERM; everything else allowed."""
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
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]  # the later fields (network, scopes) stay unhandled


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
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
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
    return f"on (Landlock ABI {abi})"


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
    "resource.prlimit": "changing resource limits",
    "os.putenv": "changing the environment",
    "os.unsetenv": "changing the environment",
    "os.chdir": "changing directory",
    "os.chroot": "changing root",
    "sys.unraisablehook": "replacing hooks",
    "webbrowser.open": "opening a browser",
    "urllib.Request": "network access",
    "http.client.connect": "network access",
    "ftplib.connect": "network access",
    "smtplib.connect": "network access",
}
_BLOCKED_MODULES = {"ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "_multiprocessing", "_xxsubinterpreters"}
_PATH_EVENTS_WRITE = {
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
    "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "os.chflags", "os.setxattr",
    "os.removexattr",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class SandboxViolation(PermissionError):
    """Raised inside the worker when gym code tries something the sandbox forbids."""


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _make_hook(tmpdir: str, read_roots: tuple[str, ...]) -> Callable[[str, tuple], None]:
    write_roots = (tmpdir,)
    realpath = os.path.realpath
    fspath = os.fsdecode

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
        elif event in _PATH_EVENTS_WRITE:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)):
                    check_path(arg, True, event)
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            check_path(args[0], False, event)

    return hook


_UNPRIVILEGED = 65534  # "nobody"
_MAX_OPEN_FILES = 64


def _readable_by_anyone(path: str) -> bool:
    """Whether every folder down to ``path`` lets other users through (so "nobody" can import)."""
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


def _drop_capabilities(libc: Any) -> None:
    for cap in range(64):  # the bounding set first, so nothing can be regained
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    if libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _drop_privileges(libc: Any, tmpdir: str) -> str:
    """As root: become the unprivileged user "nobody" when the Python installation is readable by
    anyone (the kernel then refuses every file the user doesn't own or can't read), else stay uid 0
    with every capability dropped (no CAP_SYS_PTRACE, CAP_DAC_OVERRIDE, ...). Either way the host is
    non-dumpable (see :func:`protect_host`), so its /proc files stay closed to the worker."""
    if os.geteuid() != 0:
        return f"uid {os.geteuid()} (not root: unchanged)"
    if all(_readable_by_anyone(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(__file__))):
        os.chown(tmpdir, _UNPRIVILEGED, _UNPRIVILEGED)
        os.setgroups([])
        os.setgid(_UNPRIVILEGED)
        os.setuid(_UNPRIVILEGED)  # also clears every capability
        return f"uid {_UNPRIVILEGED} (nobody)"
    _drop_capabilities(libc)
    return "uid 0 without capabilities (the Python installation is not readable by other users)"


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


def harden(tmpdir: str, memory_mb: int, preload: Iterable[str] = (), *, audit_hooks: bool = True) -> JailReport:
    """Lock this process down. Call once, after the worker's own imports, before any gym code.

    Nothing can switch the hooks off again. Every rlimit but the CPU one has hard = soft and no
    capability is left to raise a hard limit, so gym code can only lower them; the worker moves the CPU
    soft limit per call, and gym code that raises it back still meets the host's wall-clock kill.
    ``audit_hooks=False`` leaves the Python-level layer out (to test the kernel layers alone).
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
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024 * 1024, 64 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (_MAX_OPEN_FILES, _MAX_OPEN_FILES))
    report["memory_limit_mb"] = memory_mb
    report["user"] = _drop_privileges(libc, tmpdir)
    libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # after the uid change, which clears it
    read_roots = _read_roots(tmpdir)
    report["files"] = _confine_files(libc, (tmpdir, "/dev/null"), (*read_roots, *_SYSTEM_LIBRARIES))
    report["seccomp"] = _install_seccomp(libc)
    os.chdir(tmpdir)
    for key in list(os.environ):
        if key not in ("PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED"):
            del os.environ[key]
    # forget native-code and process modules so a later `import` goes through the hook
    for name in list(sys.modules):
        if name.split(".")[0] in _BLOCKED_MODULES:
            del sys.modules[name]
    if audit_hooks:
        sys.addaudithook(_make_hook(os.path.realpath(tmpdir), read_roots))
    report["audit_hooks"] = "on" if audit_hooks else "off"
    return report
