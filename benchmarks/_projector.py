"""The projector measured as an operator runs it: `projector migrate`, then `run
--until-caught-up` or `rebuild --json`, each a subprocess, wall-timed.

What a step did is checked from the database itself (the stored offsets of the
served generation), never from the projector's log format.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._cpu import ClusterCpu, Meter, Postgres
from benchmarks._proc import BenchError, Processes, command, say, tail

ACTIVE_OFFSETS = (
    "SELECT coalesce(sum(o.next_offset), 0) FROM projection_offsets o"
    " JOIN generations g ON g.generation = o.generation WHERE g.status = 'active'"
)


@dataclass
class Projected:
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float  # the projector process (utime + stime)
    postgres: ClusterCpu  # the PostgreSQL cluster over the same window


def env_for(base: Mapping[str, str], database_url: str, source: str,
            **extra: str) -> dict[str, str]:
    env = dict(base)
    env.update({"DATABASE_URL": database_url, "EVENT_SOURCE": source,
                "PYTHONUNBUFFERED": "1", "LOG_FORMAT": "text"})
    env.update(extra)
    return env


def migrate(procs: Processes, env: Mapping[str, str]) -> None:
    procs.check("migrate", [*command("projector"), "migrate"], env, timeout=120)


def _measured(procs: Processes, name: str, args: list[str], env: Mapping[str, str],
              timeout: float, postgres: Postgres | None) -> tuple[Projected, Path]:
    meter = Meter(postgres)
    meter.start()
    done = procs.check(name, args, env, timeout)
    spent = meter.stop()
    return Projected(done.seconds, done.peak_rss_mb, done.cpu_seconds, spent.postgres), done.log


def run_until_caught_up(procs: Processes, env: Mapping[str, str], timeout: float,
                        postgres: Postgres | None = None) -> Projected:
    projected, _ = _measured(procs, "run", [*command("projector"), "run", "--until-caught-up"],
                             env, timeout, postgres)
    return projected


def rebuild(procs: Processes, env: Mapping[str, str], timeout: float,
            postgres: Postgres | None = None) -> tuple[Projected, dict[str, Any]]:
    """Wall seconds, CPU, peak RSS and the `--json` summary of a rebuild (a new generation)."""
    done, log = _measured(procs, "rebuild", [*command("projector"), "rebuild", "--from-offset",
                                             "earliest", "--json"], env, timeout, postgres)
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                summary: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if not summary.get("switched", True):
                raise BenchError(f"rebuild did not switch generations (log {log})")
            return done, summary
    raise BenchError(f"rebuild printed no JSON summary (log {log}):\n{tail(log)}")


def pg_offsets(database_url: str) -> int:
    """The sum of the served generation's next offsets: messages read, on every partition."""
    import psycopg

    from benchmarks._services import libpq

    with psycopg.connect(libpq(database_url), connect_timeout=10) as conn:
        row = conn.execute(ACTIVE_OFFSETS).fetchone()
    return int(row[0]) if row else 0


def expect_offsets(database_url: str, expected: int, what: str) -> None:
    got = pg_offsets(database_url)
    if got != expected:
        raise BenchError(f"after {what} the read model stands at offset {got}, not {expected}")


@dataclass
class SqliteRun:
    seconds: float
    first_tenth: float  # events/s over lines [0, 10%)
    last_tenth: float  # events/s over lines [90%, 100%)
    samples: int
    cpu_seconds: float  # the projector process (utime + stime)
    peak_rss_mb: float


def sqlite_run(procs: Processes, env: Mapping[str, str], db_path: Path, events: int,
               timeout: float, interval: float = 0.25) -> SqliteRun:
    """`projector run --until-caught-up` from a file into a fresh SQLite file.

    The benchmark polls ``projection_offsets.next_offset`` read-only (WAL lets a
    reader run beside the writer) and interpolates when 10% and 90% of the lines
    were passed. The first tenth starts at the last poll that still saw offset 0
    (the interpreter's start-up is not projection), the last tenth ends at the
    first poll that saw every line.
    """
    start = time.perf_counter()
    proc, log = procs.start("run-sqlite", [*command("projector"), "run", "--until-caught-up"],
                            env)
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    uri = f"file:{db_path}?mode=ro"
    cpu_seconds = peak_rss_mb = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        exited = pid != 0
        if exited:  # the child's own rusage, as Processes.run takes it
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu_seconds = usage.ru_utime + usage.ru_stime
            peak_rss_mb = usage.ru_maxrss / 1024
        now = time.perf_counter() - start
        offset = _sqlite_offset(uri)
        if offset is not None:
            samples.append((now, offset))
        if exited:
            break
        if time.monotonic() > deadline:
            procs.stop(proc)
            raise BenchError(f"SQLite projection did not finish within {timeout:.0f}s")
        time.sleep(interval)
    seconds = time.perf_counter() - start
    procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"projector run (SQLite) exited {proc.returncode} (log {log}):\n"
                         f"{tail(log)}")
    final = samples[-1][1] if samples else 0
    if final != events:
        raise BenchError(f"the SQLite read model stands at offset {final}, not {events}")
    zero = max((t for t, o in samples if o == 0), default=0.0)
    end = min(t for t, o in samples if o >= events)
    tenth = events / 10
    t10, t90 = _time_at(samples, tenth), _time_at(samples, events - tenth)
    return SqliteRun(seconds, tenth / max(t10 - zero, 1e-3), tenth / max(end - t90, 1e-3),
                     len(samples), cpu_seconds, peak_rss_mb)


def _sqlite_offset(uri: str) -> int | None:
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(ACTIVE_OFFSETS).fetchone()
        return int(row[0]) if row else 0
    except sqlite3.Error:
        return None  # not migrated yet, or locked for a moment
    finally:
        conn.close()


def _time_at(samples: list[tuple[float, int]], offset: float) -> float:
    """When the stream passed ``offset``, by linear interpolation between two polls."""
    previous = (0.0, 0)
    for t, o in samples:
        if o >= offset:
            t0, o0 = previous
            return t0 + (t - t0) * (offset - o0) / max(o - o0, 1)
        previous = (t, o)
    raise BenchError(f"the SQLite projection never passed offset {offset:.0f}")


def say_rate(what: str, events: int, seconds: float) -> None:
    say(f"  {what}: {events} events in {seconds:.1f}s = {events / seconds:,.0f} events/s")
