"""The projector measured as an operator runs it: `projector migrate`, then `run
--until-caught-up` or `rebuild --json`, each a subprocess, wall-timed.

What a step did is checked from the database itself (the stored offsets of the
served generation), never from the projector's log format.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._proc import BenchError, Processes, command, say, tail

ACTIVE_OFFSETS = (
    "SELECT coalesce(sum(o.next_offset), 0) FROM projection_offsets o"
    " JOIN generations g ON g.generation = o.generation WHERE g.status = 'active'"
)


@dataclass
class Projected:
    seconds: float
    peak_rss_mb: float


def env_for(base: Mapping[str, str], database_url: str, source: str,
            **extra: str) -> dict[str, str]:
    env = dict(base)
    env.update({"DATABASE_URL": database_url, "EVENT_SOURCE": source,
                "PYTHONUNBUFFERED": "1", "LOG_FORMAT": "text"})
    env.update(extra)
    return env


def migrate(procs: Processes, env: Mapping[str, str]) -> None:
    procs.check("migrate", [*command("projector"), "migrate"], env, timeout=120)


def run_until_caught_up(procs: Processes, env: Mapping[str, str], timeout: float) -> Projected:
    done = procs.check("run", [*command("projector"), "run", "--until-caught-up"], env, timeout)
    return Projected(done.seconds, done.peak_rss_mb)


def rebuild(procs: Processes, env: Mapping[str, str],
            timeout: float) -> tuple[float, dict[str, Any]]:
    """Wall seconds and the `--json` summary of a rebuild into a new generation."""
    done = procs.check("rebuild", [*command("projector"), "rebuild", "--from-offset",
                                   "earliest", "--json"], env, timeout)
    for line in reversed(done.log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                summary: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if not summary.get("switched", True):
                raise BenchError(f"rebuild did not switch generations (log {done.log})")
            return done.seconds, summary
    raise BenchError(f"rebuild printed no JSON summary (log {done.log}):\n{tail(done.log)}")


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
    while True:
        exited = proc.poll() is not None
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
                     len(samples))


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
