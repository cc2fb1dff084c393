"""Run an untrusted Python program in a bubblewrap (`bwrap`) sandbox: a real subprocess with hard limits.

posttrain never runs model-generated code in its own process. `Sandbox.run(program)` starts
`bwrap ... python -I -S main.py` and returns a `SandboxResult` (exit code, capped stdout/stderr, timed_out,
duration). If `bwrap` is missing, `Sandbox()` raises `SandboxUnavailable`: there is no unsandboxed fallback.
Needs bubblewrap >= 0.8 (Debian 12, Ubuntu 24.04; `apt-get install bubblewrap`).

What the program sees:
- a root filesystem that bwrap builds from nothing and remounts read-only, holding only: the system libraries
  (`/usr/lib`, `/usr/lib64` and the `/lib*` links), the interpreter file and its prefix's `lib/` (the standard
  library; for a pyenv or python.org build also its own site-packages, readable but not on `sys.path`), all
  read-only; a fresh `/proc` of its own pid namespace; a minimal `/dev`; and `/tmp`, a new size-capped tmpfs that
  is the working directory and the only writable place. No `/etc`, no `/home`, nothing else of `/root`, no
  repository, no host `/tmp`, no virtualenv;
- the *base* interpreter of the running Python (`sys._base_executable` resolved: for a venv, the Python it was
  made from), started with `-I -S`: isolated mode ignores `PYTHON*` variables and the user site, `-S` skips
  `site`, so `sys.path` is the standard library alone and no installed package (ours, torch) is importable. The
  venv's own `bin/python` is only a link to it, and binding the venv would expose its packages for nothing;
- new namespaces for pid, network (only a loopback of its own: no route anywhere, not even to the host's
  localhost), IPC, UTS (hostname "sandbox") and cgroup; an empty environment but PATH, HOME, TMPDIR and LANG;
  a new session (no controlling terminal, so no TIOCSTI keystroke injection); no-new-privileges; no capabilities.

Limits (`SandboxLimits`), and the end of a run:
- rlimits, set by a small launcher inside the sandbox just before it execs the program: address space (per
  process), CPU seconds, largest file, processes, open files, no core dumps;
- a wall-clock timeout, counted from the launcher's hand-over, so interpreter start-up counts against it. Then
  the sandbox's pid 1 (through a pidfd, never a recycled pid) and bwrap's process group get SIGKILL; a pid
  namespace dies with its pid 1, and `--die-with-parent` ties the sandbox to bwrap and bwrap to us;
- `run` returns only once that pid 1 has exited (a normal exit included), that is once no process of the run
  is left, daemons included;
- stdout and stderr are read as they come and capped: the head and the tail are kept, so a final traceback or
  verdict line survives a flood;
- `stop_fd` ends a run early, the same way (SIGKILL, then wait for pid 1), once the host makes it readable: the
  code verifier stops the candidate's sandbox when the tests' sandbox is done.

Channels besides stdin/stdout/stderr: only the descriptors the caller hands over in `pass_fds` (pipe ends, for
the code verifier's two sandboxes to talk through), inherited under their host numbers. Two runs share nothing
else: each has its own pid, IPC and network namespaces, its own tmpfs and, as root, its own random uid.

Who the program runs as, and why:
- as root (our CI, containers), bwrap runs privileged, without a user namespace, and the launcher switches to a
  random unprivileged uid (above 2**20) before exec. With a user namespace instead, the program's host uid
  would be 0, and the kernel does not apply RLIMIT_NPROC to uid 0: a fork bomb would go unchecked. A fresh uid
  per run also keeps one sandbox's process count from starving another's. Like any unprivileged user, the
  program may then create user namespaces of its own (the mounts it inherits stay locked);
- as any other user, bwrap makes a user namespace (`--unshare-user`; `--disable-userns`: no nested ones), and
  RLIMIT_NPROC counts the processes of that namespace.

What it does not isolate: the kernel is shared (a kernel exploit escapes, as from any container); memory and CPU
time are limited per process, so the whole sandbox may use up to `processes * memory_bytes` (a cgroup would bound
the sum, and needs privileges we do not assume); the program can read the standard library, the system libraries
and `/proc`'s view of the machine (CPU count, memory, kernel version).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

WORKDIR = "/tmp"  # the sandbox's working directory: a fresh tmpfs, the only writable place
PROGRAM = "main.py"  # the program's file name inside WORKDIR
SETUP_TIMEOUT_S = 30.0  # bwrap and the launcher normally need milliseconds; past this the host is broken
KILL_WAIT_S = 5.0  # at the end, how long to wait for the sandbox's processes to be gone
_READ_CHUNK = 1 << 16
_LIB_DIRS = ("/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32")
_ENV = {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "LANG": "C.UTF-8"}

# Runs inside the sandbox as `python -I -S -c _LAUNCHER ready_fd uid memory cpu fsize nproc nofile program...`:
# sets the limits, drops to `uid` when it is >= 0 (root mode), tells the host the sandbox is up, then execs the
# program. Hard limits are never raised above what the launcher inherited (that would need CAP_SYS_RESOURCE).
_LAUNCHER = """\
import os, resource, sys
ready, uid, memory, cpu, fsize, nproc, nofile = map(int, sys.argv[1:8])
def limit(kind, soft, hard):
    inherited = resource.getrlimit(kind)[1]
    if inherited != resource.RLIM_INFINITY:
        hard = min(hard, inherited)
    resource.setrlimit(kind, (min(soft, hard), hard))
limit(resource.RLIMIT_AS, memory, memory)
limit(resource.RLIMIT_CPU, cpu, cpu + 1)
limit(resource.RLIMIT_FSIZE, fsize, fsize)
limit(resource.RLIMIT_NPROC, nproc, nproc)
limit(resource.RLIMIT_NOFILE, nofile, nofile)
limit(resource.RLIMIT_CORE, 0, 0)
if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
os.write(ready, b"1")
os.close(ready)
os.execv(sys.executable, [sys.executable, "-I", "-S", *sys.argv[8:]])
"""


class SandboxUnavailable(RuntimeError):
    """bubblewrap is not installed (or not usable): model code must not run at all then."""


class SandboxError(RuntimeError):
    """The sandbox itself failed to start: a host problem, never the program's doing."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Memory, CPU and file size are per process; see the module docstring."""

    timeout_s: float = 10.0  # wall clock for the program; then every process in the sandbox is killed
    cpu_s: int = 10  # RLIMIT_CPU: SIGXCPU at this many CPU seconds, SIGKILL one second later
    memory_bytes: int = 512 << 20  # RLIMIT_AS: virtual memory per process (MemoryError beyond)
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file the program may write
    disk_bytes: int = 64 << 20  # size of the /tmp tmpfs, all files together
    processes: int = 16  # RLIMIT_NPROC: processes and threads, the program's own included
    open_files: int = 256  # RLIMIT_NOFILE
    output_bytes: int = 64 << 10  # stdout and stderr each: this many bytes kept (half head, half tail)


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did. `exit_code` is bwrap's: the program's status, 128 + N when signal N killed it."""

    exit_code: int  # after a timeout: -9, the SIGKILL that ended the sandbox
    stdout: str  # decoded as UTF-8 (invalid bytes replaced); capped, with a "[... N bytes dropped ...]" line
    stderr: str
    timed_out: bool
    duration_s: float  # wall time from the program's start to the sandbox's end
    output_truncated: bool = False  # stdout or stderr exceeded output_bytes

    @property
    def ok(self) -> bool:
        """Exited with status 0 before the timeout."""
        return self.exit_code == 0 and not self.timed_out


def base_interpreter() -> str:
    """The real path of the Python this venv was made from (of `sys.executable` outside a venv)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


class Sandbox:
    """Runs Python programs under bwrap with `limits`; safe to call from several threads at once."""

    def __init__(self, limits: SandboxLimits | None = None, python: str | None = None):
        self.limits = limits or SandboxLimits()
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed, and posttrain never runs model code unsandboxed: "
                "install it with `apt-get install bubblewrap` (.ci/run does this)"
            )
        self.bwrap = bwrap
        self.python = os.path.realpath(python or base_interpreter())
        self.as_root = os.geteuid() == 0
        self._filesystem = _filesystem_args(self.python)

    def run(
        self,
        program: str,
        files: Mapping[str, str] | None = None,
        stdin: str = "",
        args: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
        stop_fd: int | None = None,
    ) -> SandboxResult:
        """Run `program` as `WORKDIR/main.py` with `files` (name -> text) beside it, `stdin` and `args` as argv.

        `pass_fds`: host descriptors (pipe ends, say) handed over to the program, which inherits them under the
        same numbers: its only channel besides stdin/stdout/stderr. `run` closes the host's copies once bwrap has
        started (or failed to), so the far end of a pipe sees EOF as soon as the sandbox is gone. `stop_fd`: a
        host descriptor that ends the run (as a timeout does, but with `timed_out` False) once it turns readable:
        a byte written to its pipe, or the pipe's write end closed; the caller keeps and closes it.
        """
        descriptors = {name: _memfd(name, text) for name, text in {PROGRAM: program, **(files or {})}.items()}
        (info_read, info_write), (ready_read, ready_write) = os.pipe(), os.pipe()
        ours = (*descriptors.values(), info_write, ready_write, *pass_fds)  # the child's copies; closed once started
        try:
            process = subprocess.Popen(
                self._command(descriptors, info_write, ready_write, args),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=ours,
                cwd="/",
                start_new_session=True,  # bwrap leads its own process group, which the timeout kills
            )
        except OSError:
            os.close(info_read)
            os.close(ready_read)
            raise
        finally:
            for fd in ours:
                os.close(fd)
        with process:
            streams = _Streams(process, info_read, ready_read, stdin.encode(), self.limits.output_bytes, stop_fd)
            return _supervise(process, streams, self.limits)

    def _command(self, files: Mapping[str, int], info_fd: int, ready_fd: int, args: Sequence[str]) -> list[str]:
        limits = self.limits
        uid = _random_uid() if self.as_root else -1
        if self.as_root:  # privileged bwrap; the launcher needs exactly these two capabilities to drop to `uid`
            identity = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            identity = ["--unshare-user", "--disable-userns"]
        environment = [arg for name, value in _ENV.items() for arg in ("--setenv", name, value)]
        workdir = ["--perms", "01777", "--size", str(limits.disk_bytes), "--tmpfs", WORKDIR]
        for name, fd in files.items():
            workdir += ["--perms", "0444", "--file", str(fd), f"{WORKDIR}/{name}"]
        rlimits = (limits.memory_bytes, limits.cpu_s, limits.file_bytes, limits.processes, limits.open_files)
        return [
            self.bwrap,
            *("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"),
            *("--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv", "--info-fd", str(info_fd)),
            *identity,
            *environment,
            *self._filesystem,
            *workdir,
            *("--remount-ro", "/", "--chdir", WORKDIR),
            *(self.python, "-I", "-S", "-c", _LAUNCHER, str(ready_fd), str(uid), *map(str, rlimits)),
            *(PROGRAM, *args),
        ]


def _filesystem_args(python: str) -> list[str]:
    """bwrap arguments for the read-only part of the tree: system libraries, the interpreter, /proc and /dev.

    Directories on the way to a bind are made 0755 first: bwrap would otherwise copy the host's modes, and
    `/root` (0700 on the host) would hide a pyenv interpreter from the unprivileged program.
    """
    args: list[str] = []
    made: set[str] = {"/"}
    bound: list[str] = []

    def parents(path: str) -> None:
        parent = os.path.dirname(path)
        if parent not in made:
            parents(parent)
            args.extend(["--perms", "0755", "--dir", parent])
            made.add(parent)

    def bind(path: str) -> None:
        if any(path == b or path.startswith(b + "/") for b in bound):
            return
        parents(path)
        args.extend(["--ro-bind", path, path])
        bound.append(path)

    for path in _LIB_DIRS:
        if os.path.islink(path):
            args.extend(["--symlink", os.readlink(path), path])
        elif os.path.isdir(path):
            bind(path)
    bind(python)
    prefix_lib = os.path.join(os.path.dirname(os.path.dirname(python)), "lib")  # stdlib, libpython
    if os.path.isdir(prefix_lib):
        bind(prefix_lib)
    return [*args, "--proc", "/proc", "--dev", "/dev"]


def _random_uid() -> int:
    """An unprivileged uid no account uses, so each root-mode run has a process count of its own."""
    return (1 << 20) + secrets.randbelow(1 << 24)


def _memfd(name: str, text: str) -> int:
    """An in-memory file holding `text`, positioned at its start, for bwrap's `--file FD DEST`."""
    fd = os.memfd_create(name, 0)  # not close-on-exec: bwrap reads it
    data = memoryview(text.encode())
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class _CappedBuffer:
    """Keeps the first and the last `cap // 2` bytes of a stream and counts what falls between."""

    def __init__(self, cap: int):
        self.half = max(cap // 2, 1)
        self.head, self.tail, self.dropped = bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[max(room, 0) :]
        if len(self.tail) > 2 * self.half:  # trim now and then, not on every chunk
            self.dropped += len(self.tail) - self.half
            del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        if len(self.tail) > self.half:
            self.dropped += len(self.tail) - self.half
            del self.tail[: len(self.tail) - self.half]
        gap = f"\n[... {self.dropped} bytes dropped ...]\n".encode() if self.dropped else b""
        return bytes(self.head + gap + self.tail).decode("utf-8", errors="replace")


class _Streams:
    """The pipes to and from a sandbox: stdin fed, stdout/stderr capped, bwrap's info and the ready byte noted.

    bwrap's `--info-fd` names the sandbox's pid 1 (a bwrap process in the host's pid namespace); a pidfd on it is
    taken at once, while it cannot have been reaped, so a later wait or kill can never hit a recycled pid.
    """

    def __init__(
        self,
        process: subprocess.Popen,
        info_fd: int,
        ready_fd: int,
        stdin: bytes,
        output_bytes: int,
        stop_fd: int | None = None,
    ):
        self.process, self.info_fd, self.ready_fd, self.stop_fd = process, info_fd, ready_fd, stop_fd
        self.info, self.init_pidfd, self.ready_at, self.stopped = b"", None, None, False
        self.outputs = {process.stdout.fileno(): _CappedBuffer(output_bytes)}
        self.outputs[process.stderr.fileno()] = _CappedBuffer(output_bytes)
        self.selector = selectors.DefaultSelector()
        for fd in (*self.outputs, info_fd, ready_fd, *([] if stop_fd is None else [stop_fd])):
            self.selector.register(fd, selectors.EVENT_READ)
        self.stdin_fd, self.pending = process.stdin.fileno(), memoryview(stdin)
        os.set_blocking(self.stdin_fd, False)
        self.selector.register(self.stdin_fd, selectors.EVENT_WRITE)

    def pump(self, deadline: Callable[[], float]) -> bool:
        """Move data until every pipe is closed (True), or `deadline()` passes or the stop fd fires (False)."""
        while len(self.selector.get_map()) > (self.stop_fd is not None) and not self.stopped:
            remaining = deadline() - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in self.selector.select(remaining):
                self._step(key.fd)
        return not self.stopped

    def wait_exit(self, deadline: Callable[[], float]) -> None:
        """Once the output is closed: block until bwrap exits, `deadline()` passes or the stop fd fires."""
        bwrap = os.pidfd_open(self.process.pid)  # our child, not yet reaped: never a recycled pid
        try:
            waiting = select.poll()
            for fd in (bwrap, self.stop_fd):
                if fd is not None:
                    waiting.register(fd, select.POLLIN)
            events = waiting.poll(max(deadline() - time.monotonic(), 0) * 1000)
            self.stopped = any(fd == self.stop_fd for fd, _ in events)
        finally:
            os.close(bwrap)

    def _step(self, fd: int) -> None:
        if fd == self.stop_fd:
            self.stopped = True
            return
        if fd == self.stdin_fd:
            try:
                self.pending = self.pending[os.write(fd, self.pending) :]
            except BrokenPipeError:  # the program closed its stdin: the rest is not wanted
                self.pending = self.pending[:0]
            if not self.pending:
                self.selector.unregister(fd)
                self.process.stdin.close()
            return
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            self.selector.unregister(fd)
        elif fd == self.ready_fd:
            self.ready_at = self.ready_at or time.monotonic()  # once: more bytes must not move the deadline
        elif fd == self.info_fd:
            self.info += chunk
            self._open_init()
        else:
            self.outputs[fd].add(chunk)

    def _open_init(self) -> None:
        """Take a pidfd on the pid bwrap reported, if it is bwrap's child (-1 when it is gone already)."""
        match = re.search(rb'"child-pid"\s*:\s*(\d+)', self.info)
        if match is None or self.init_pidfd is not None:
            return
        pid, self.init_pidfd = int(match.group(1)), -1
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone: nothing left to wait for
            return
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:  # gone between the two calls
            status = ""
        if re.search(rf"^PPid:\s*{self.process.pid}$", status, re.MULTILINE):
            self.init_pidfd = pidfd
        else:
            os.close(pidfd)

    def end_sandbox(self, kill: bool) -> None:
        """Wait until the sandbox's pid 1 has exited, which is after every process inside it (SIGKILL first if
        `kill`); then drain what output is left."""
        if kill:
            if self.init_pidfd is not None and self.init_pidfd >= 0:
                _signal_pidfd(self.init_pidfd)
            _kill_group(self.process)
        if self.init_pidfd is not None and self.init_pidfd >= 0:
            exited = select.poll()  # a pidfd turns readable when its process has exited
            exited.register(self.init_pidfd, select.POLLIN)
            exited.poll(KILL_WAIT_S * 1000)
        end = time.monotonic() + KILL_WAIT_S
        self.pump(lambda: end)

    def close(self) -> None:
        self.selector.close()
        for fd in (self.info_fd, self.ready_fd, self.init_pidfd):
            if fd is not None and fd >= 0:
                os.close(fd)


def _supervise(process: subprocess.Popen, streams: _Streams, limits: SandboxLimits) -> SandboxResult:
    """Feed stdin, collect output and enforce the timeout: SETUP_TIMEOUT_S until ready, then limits.timeout_s;
    end early, and not as a timeout, when the stop fd fires."""
    start = time.monotonic()

    def deadline() -> float:
        return start + SETUP_TIMEOUT_S if streams.ready_at is None else streams.ready_at + limits.timeout_s

    try:
        if streams.pump(deadline):  # the program closed its output; it may still be running
            streams.wait_exit(deadline)
        timed_out = process.poll() is None and not streams.stopped
    finally:
        ended = time.monotonic()
        streams.end_sandbox(kill=process.poll() is None)
        streams.close()
        process.wait()
    stdout, stderr = (buffer.text() for buffer in streams.outputs.values())
    if streams.ready_at is None and not streams.stopped:
        state = "timed out" if timed_out else f"exited with {process.returncode}"
        raise SandboxError(f"bwrap did not start the program ({state} during set-up): {stderr.strip()}")
    truncated = any(buffer.dropped for buffer in streams.outputs.values())
    duration_s = ended - (streams.ready_at or ended)  # 0 when stopped before the program started
    return SandboxResult(process.returncode, stdout, stderr, timed_out, duration_s, truncated)


def _signal_pidfd(pidfd: int) -> None:
    """SIGKILL the process behind `pidfd`: the sandbox's pid 1, whose death kills its whole pid namespace."""
    with contextlib.suppress(ProcessLookupError):  # it exited on its own meanwhile
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL bwrap's process group; the sandboxed processes follow through `--die-with-parent`."""
    with contextlib.suppress(ProcessLookupError):  # it exited on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
