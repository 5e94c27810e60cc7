"""CPU time of the processes a step runs, from /proc, so another machine can be planned.

A rate on a shared 2-core machine says little about a machine with 8 cores; the CPU
seconds a step cost per event do. Linux counts them per process in
``/proc/<pid>/stat``: ``utime`` and ``stime`` (the process itself, all its threads)
and ``cutime`` and ``cstime`` (its children that exited and were waited for).

- A child that runs to completion is measured by ``os.wait4`` (``Processes.run``),
  whose rusage holds the same counters at the moment it exited.
- A process that keeps running (the API, the following projector) is measured by
  ``tree_seconds`` before and after: itself, its live descendants, and what its
  exited children left in its ``cutime``/``cstime``.
- PostgreSQL is one process tree under the postmaster: every backend, autovacuum
  worker and auxiliary process is its child, and a backend that disconnects leaves
  its CPU in the postmaster's ``cutime``/``cstime``. So the cluster's CPU over a
  step is exact even when the step's connections come and go. The auxiliary
  processes (WAL writer, checkpointer, background writer, launchers) are counted
  apart while they live; the rest is the backends serving the run (and the
  autovacuum workers it caused). The cluster must serve only the benchmark while a
  step runs (the benchmark's own services; no test run beside it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = float(os.sysconf("SC_CLK_TCK"))
PROC = Path("/proc")
AUXILIARY = ("checkpointer", "background writer", "walwriter", "autovacuum launcher",
             "logical replication launcher", "archiver", "stats collector", "startup",
             "walreceiver", "walsender")


@dataclass(frozen=True)
class _Stat:
    ppid: int
    own: float  # utime + stime, seconds
    children: float  # cutime + cstime, seconds


def _stat(pid: int) -> _Stat | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None  # exited meanwhile
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    return _Stat(int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK,
                 (int(fields[13]) + int(fields[14])) / TICK)


def _all() -> dict[int, _Stat]:
    stats: dict[int, _Stat] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def _descendants(root: int, stats: dict[int, _Stat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_seconds(root: int) -> float:
    """CPU seconds of ``root``: itself, its live descendants, and its reaped children."""
    stats = _all()
    if root not in stats:
        return 0.0
    return stats[root].children + sum(stats[p].own for p in _descendants(root, stats)
                                      if p in stats)


def self_seconds() -> float:
    """This process's CPU seconds (utime + stime, all threads)."""
    stat = _stat(os.getpid())
    return stat.own if stat else 0.0


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class ClusterCpu:
    total: float  # seconds: the postmaster, all its children, live and exited
    auxiliary: float  # seconds: the live auxiliary processes among them

    @property
    def backends(self) -> float:
        return self.total - self.auxiliary

    def __sub__(self, earlier: ClusterCpu) -> ClusterCpu:
        return ClusterCpu(self.total - earlier.total, self.auxiliary - earlier.auxiliary)


class Postgres:
    """The CPU of the PostgreSQL cluster whose postmaster is ``postmaster``."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster

    @classmethod
    def of(cls, libpq_url: str) -> Postgres | None:
        """The cluster behind a connection URL; None when it does not run on this machine."""
        import psycopg

        with psycopg.connect(libpq_url, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        stat = _stat(int(row[0])) if row else None
        if stat is None or "postgres" not in _cmdline(stat.ppid):
            return None
        return cls(stat.ppid)

    def sample(self) -> ClusterCpu:
        stats = _all()
        root = stats.get(self.postmaster)
        if root is None:
            return ClusterCpu(0.0, 0.0)
        total = root.children
        auxiliary = 0.0
        for pid in _descendants(self.postmaster, stats):
            stat = stats.get(pid)
            if stat is None:
                continue
            total += stat.own
            if pid != self.postmaster and _is_auxiliary(_cmdline(pid)):
                auxiliary += stat.own
        return ClusterCpu(total, auxiliary)


def _is_auxiliary(cmdline: str) -> bool:
    title = cmdline.removeprefix("postgres: ").strip()
    return title.startswith(AUXILIARY)


def per_event_us(seconds: float, events: int) -> float:
    """Microseconds of CPU per event (or per request)."""
    return seconds * 1e6 / max(events, 1)


@dataclass(frozen=True)
class Spent:
    process: float  # CPU seconds of the measured process tree
    postgres: ClusterCpu  # CPU seconds of the PostgreSQL cluster


class Meter:
    """CPU over a window: a live process tree (``pid``; None: none) and the cluster."""

    def __init__(self, postgres: Postgres | None, pid: int | None = None) -> None:
        self._postgres = postgres
        self._pid = pid
        self._start: tuple[float, ClusterCpu] | None = None

    def _sample(self) -> tuple[float, ClusterCpu]:
        process = tree_seconds(self._pid) if self._pid is not None else 0.0
        cluster = self._postgres.sample() if self._postgres else ClusterCpu(0.0, 0.0)
        return process, cluster

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> Spent:
        if self._start is None:
            raise RuntimeError("Meter.stop() before start()")
        process, cluster = self._sample()
        return Spent(process - self._start[0], cluster - self._start[1])
