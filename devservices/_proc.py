"""Processes, ports, files and the lock: the operating-system edge of the tool."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from devservices.errors import ServicesError


def say(message: str) -> None:
    """Progress goes to stderr: stdout is for lines a shell evaluates."""
    print(f"services: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def cmdline(pid: int) -> str | None:
    """The command line of a live process, words joined by spaces (None: no such process)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def pid_matches(pid: int | None, needle: str) -> bool:
    """The process is alive and its command line contains ``needle``: a recycled pid,
    or a zombie (empty command line), is not ours."""
    if pid is None or pid <= 0:
        return False
    line = cmdline(pid)
    return line is not None and needle in line


def pids_matching(needle: str) -> list[int]:
    own = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != own and pid_matches(int(entry.name), needle):
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Running (a zombie child of ours has finished: it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def terminate(pid: int, what: str, grace: float, first: signal.Signals = signal.SIGTERM) -> None:
    """``first``, then SIGKILL after ``grace`` seconds; fails if the process outlives both."""
    signal_pid(pid, first)
    if wait_gone(pid, grace):
        return
    say(f"{what} did not stop within {grace:.0f}s; killing it")
    signal_pid(pid, signal.SIGKILL)
    if not wait_gone(pid, 10):
        raise ServicesError(f"could not kill {what} pid {pid}")


# ---------------------------------------------------------------- ports


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int) -> bool:
    """Nothing listens on or holds 127.0.0.1:port."""
    with socket.socket() as s:
        # like the servers themselves (Java, PostgreSQL): TIME_WAIT leftovers do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_ports(
    previous: Sequence[int | None],
    is_free: Callable[[int], bool] = port_free,
    fresh: Callable[[int], list[int]] = free_ports,
) -> list[int]:
    """The previous ports while they are all set, distinct and free, else new ones:
    a restarted service keeps its address whenever it can."""
    known = [p for p in previous if p is not None]
    if len(known) == len(previous) and len(set(known)) == len(known) and all(map(is_free, known)):
        return known
    return fresh(len(previous))


# ---------------------------------------------------------------- files


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a file, read from its end (logs can be large)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block = 64 * 1024
        data = b""
        while size > 0 and data.count(b"\n") <= count:
            step = min(block, size)
            size -= step
            f.seek(size)
            data = f.read(step) + data
    return data.decode("utf-8", "replace").splitlines()[-count:]


def log_tail(path: Path, title: str, count: int = 60) -> None:
    """A failing start shows why: the service's own last words, on stderr."""
    if path.is_file() and path.stat().st_size > 0:
        print(f"----- last lines of {path} ({title}) -----", file=sys.stderr)
        for line in tail_lines(path, count):
            print(line, file=sys.stderr)
        print("-----", file=sys.stderr, flush=True)
    else:
        print(f"(no {title} log at {path})", file=sys.stderr, flush=True)


@contextmanager
def locked(directory: Path, timeout: float = 300) -> Iterator[None]:
    """One command at a time per services directory (flock(2)): an `up` and a `down` never
    interleave their reads and writes of the state file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    with path.open("w") as f:  # not inherited by children (PEP 446)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ServicesError(
                        f"another scripts/services command holds {path}"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
