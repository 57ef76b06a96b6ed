"""Detached background processes of the local stack: pid files, ownership checks, ports, logs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL_LINES = 30


class StackError(Exception):
    """An expected failure of the local stack, with a message that names what failed."""


@dataclass(frozen=True)
class ProcessSpec:
    """How to find, start and recognise one long-running process of the stack."""

    name: str
    argv: tuple[str, ...]
    pid_file: Path
    log_file: Path
    # Every one of these must appear in /proc/<pid>/cmdline before we signal the pid,
    # so a recycled pid or a stranger's process is never killed.
    cmdline_markers: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None


# What the stack writes is its owner's alone: Kafka's log segments and FerretDB's SQLite
# files hold customer references, the config and secrets files passwords. Processes the
# stack starts inherit this umask, so the files they create are private from the start.
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create the directory if missing and make it 0700 either way (an older stack's dir
    is tightened, not left as it was)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def make_private(path: Path) -> None:
    """Tighten a file or a tree the stack wrote: directories 0700, files without any group or
    other rights. Symbolic links are left alone, never followed; what a running broker
    deletes meanwhile (a log segment, a deleted topic's dir) is skipped."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            return
        if not stat.S_ISDIR(mode):
            if mode & 0o077:
                path.chmod(stat.S_IMODE(mode) & 0o700)
            return
        path.chmod(0o700)
        children = [Path(entry.path) for entry in os.scandir(path)]
    except FileNotFoundError:
        return
    for child in children:
        make_private(child)


def open_private_log(path: Path) -> int:
    """A log file opened for appending, created 0600 (and tightened if it was not)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return fd


# The shell starts the service in the background and exits, so the service is adopted by
# init: it survives the command that started it and never lingers as a zombie of a long
# test session that killed it.
LAUNCHER = '"$@" </dev/null >>"$0" 2>&1 & echo $!'


def launch(spec: ProcessSpec) -> int:
    """Start the process detached, its output going to its log file; returns its pid."""
    private_dir(spec.pid_file.parent)
    if shutil.which(spec.argv[0]) is None:
        raise StackError(f"cannot start {spec.name}: {spec.argv[0]} not found")
    with os.fdopen(open_private_log(spec.log_file), "a") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {spec.name}\n")
    result = subprocess.run(
        ["/bin/sh", "-c", LAUNCHER, str(spec.log_file), *spec.argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **(spec.env or {})},
        cwd=spec.cwd,
        start_new_session=True,
        umask=PRIVATE_UMASK,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip().isdigit():
        raise StackError(f"cannot start {spec.name}: {result.stderr.strip() or 'no pid'}")
    pid = int(result.stdout.strip())
    spec.pid_file.write_text(f"{pid}\n")
    return pid


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # A zombie has an empty cmdline: it is dead for our purposes.
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def owns(pid: int, markers: Sequence[str]) -> bool:
    """Whether pid is alive and is the process the markers describe."""
    cmdline = _cmdline(pid)
    if cmdline is None:
        return False
    return all(any(marker in arg for arg in cmdline) for marker in markers)


def _started_at(pid: int) -> float | None:
    """When the process started, in seconds since the epoch (from /proc), or None."""
    try:
        # Field 22 of stat, after the parenthesised command name: clock ticks after boot.
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


# How much later than its process a pid file may be written (it is written right after launch).
PID_FILE_SLACK_S = 5.0


def running_pid(spec: ProcessSpec) -> int | None:
    """The pid of our running process, or None (a stale pid file is removed).

    The command line alone does not prove it is ours: on a busy machine pids are reused, and
    another stack's `python -m lotline.stock` has the same command line. A process that started
    after our pid file was written is someone else's."""
    pid = read_pid(spec.pid_file)
    if pid is None:
        return None
    started = _started_at(pid)
    try:
        written = spec.pid_file.stat().st_mtime
    except FileNotFoundError:
        return None
    if owns(pid, spec.cmdline_markers) and (
        started is None or started <= written + PID_FILE_SLACK_S
    ):
        return pid
    spec.pid_file.unlink(missing_ok=True)
    return None


def _signal(pid: int, signum: int) -> None:
    # Our processes lead their own session; signalling the group also reaches any helper
    # they forked.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _gone(pid: int) -> bool:
    """Whether the process has fully exited. A killed JVM shows as a zombie while its other
    threads still unwind and hold its sockets, so the zombie leader alone is not enough."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        tasks = sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X") and tasks <= 1


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return _gone(pid)


def stop(spec: ProcessSpec, timeout: float) -> bool:
    """SIGTERM, wait, then SIGKILL. Returns whether there was a process to stop."""
    pid = running_pid(spec)
    if pid is None:
        return False
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _signal(pid, signal.SIGKILL)
        if not _wait_gone(pid, 10):
            raise StackError(f"{spec.name} (pid {pid}) did not die after SIGKILL")
    spec.pid_file.unlink(missing_ok=True)
    return True


def kill(spec: ProcessSpec) -> bool:
    """SIGKILL at once, as a crash would. Returns whether there was a process to kill."""
    pid = running_pid(spec)
    if pid is None:
        return False
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10):
        raise StackError(f"{spec.name} (pid {pid}) did not die after SIGKILL")
    spec.pid_file.unlink(missing_ok=True)
    return True


def log_tail(log_file: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with log_file.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


class ProcessDied(StackError):
    """The process exited while it was being waited for."""


def wait_until_ready(
    name: str,
    alive: Callable[[], bool],
    is_ready: Callable[[], bool],
    timeout: float,
    log_file: Path,
) -> None:
    """Poll is_ready until it answers; fail early, with the log, if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise ProcessDied(
                f"{name} exited while starting; last lines of {log_file}:\n{log_tail(log_file)}"
            )
        if is_ready():
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"{name} was not ready within {timeout:.0f} s; last lines of "
                f"{log_file}:\n{log_tail(log_file)}"
            )
        time.sleep(0.25)


def wait_ready(spec: ProcessSpec, pid: int, is_ready: Callable[[], bool], timeout: float) -> None:
    """wait_until_ready for a process of the stack; its pid file goes if it dies."""
    try:
        wait_until_ready(spec.name, lambda: not _gone(pid), is_ready, timeout, spec.log_file)
    except ProcessDied:
        spec.pid_file.unlink(missing_ok=True)
        raise


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel picks it), for a process started next."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(port: int, owner: str, setting: str, host: str = "127.0.0.1") -> None:
    """Fail with the port, who holds it and how to move ours, when we could not listen."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT from our last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return
        except OSError:
            pass
    holder = _listener_of(port)
    by = f" by {holder}" if holder else ""
    raise StackError(
        f"port {port} for {owner} is already taken{by}; stop it or set {setting} to another port"
    )


def _listener_of(port: int) -> str | None:
    """Best effort 'pid N (command)' of whoever listens on the port, from /proc."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # State 0A is LISTEN.
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        cmdline = _cmdline(int(proc.name)) or ["?"]
                        return f"pid {proc.name} ({' '.join(cmdline)[:120]})"
    return None
