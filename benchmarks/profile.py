"""Where the projector's CPU goes: py-spy on the projector, pg_stat_statements and
auto_explain (EXPLAIN ANALYZE, BUFFERS of sampled batch statements) on PostgreSQL.

    .venv/bin/python -m benchmarks.profile [--events N] [--rate HZ] [--out DIR]

1. Kafka -> PostgreSQL: the benchmark's stream of N events in a fresh topic,
   `projector run --until-caught-up` into a fresh database under ``py-spy record``
   (raw collapsed stacks, the main thread apart), with pg_stat_statements reset
   after `migrate`; then the statements' costs per call and per event;
2. JSON Lines -> SQLite: the same stream from the file, under ``py-spy record``.

Writes ``kafka-pg.txt``, ``sqlite.txt`` (collapsed stacks), ``statements.json`` and
``summary.txt`` (top frames by self and by inclusive share) into ``--out``.

PostgreSQL must have loaded the two extensions (a restart after ALTER SYSTEM):
    ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements, auto_explain;
then ``scripts/services down && scripts/services up``. auto_explain is switched
on for the benchmark database only, for a sample of statements (``--explain-rate``),
so the plans in the server log are those of the real batches.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _cpu, _projector, _services, _stream
from benchmarks._proc import ROOT, BenchError, Processes, command, say

STATEMENTS = """
SELECT query, calls, total_exec_time, rows, shared_blks_hit, shared_blks_read,
       shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_written,
       temp_blks_written, wal_records, wal_bytes
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)
ORDER BY total_exec_time DESC
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="stream size (200,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=int, default=97, help="py-spy samples per second (97)")
    parser.add_argument("--explain-rate", type=float, default=0.05,
                        help="share of statements auto_explain logs with ANALYZE (0.05)")
    parser.add_argument("--gil", action="store_true",
                        help="py-spy --gil: only samples of the thread holding the GIL")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / ".profile")
    parser.add_argument("--skip-sqlite", action="store_true")
    return parser


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
        "py-spy")
    if not found:
        raise BenchError("py-spy is missing: scripts/bootstrap installs it with the test extras")
    return found


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds (utime + stime) of each thread of ``pid``, by its thread id."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    found: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        found[tid] = (int(fields[11]) + int(fields[12])) / tick
    return found


def record(procs: Processes, name: str, out: Path, rate: int, env: dict[str, str],
           timeout: float, gil: bool) -> tuple[float, dict[str, float]]:
    """``py-spy record`` around `projector run --until-caught-up`: its wall seconds and
    the CPU seconds of each of the projector's threads (polled from /proc every 0.2 s,
    the last value seen: at most 0.2 s of a thread's end is missed)."""
    args = [py_spy(), "record", "--rate", str(rate), "--format", "raw", "--threads",
            *(["--gil"] if gil else []), "--output", str(out), "--", *command("projector"),
            "run", "--until-caught-up"]
    start = time.perf_counter()
    proc, log = procs.start(name, args, env)
    threads: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            threads.update(_threads(int(child)))
        if time.monotonic() > deadline:
            procs.stop(proc)
            raise BenchError(f"{name} did not finish within {timeout:.0f}s")
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"{name} exited {proc.returncode} (log {log})")
    return seconds, threads


def _package(frame: str) -> str:
    """The package a frame belongs to: ``name (path/to/file.py:line)`` -> ``path``."""
    where = frame.rpartition("(")[2]
    if where.startswith(("projector/", "schema/")):
        return where.split(":")[0]
    head = where.split("/")[0]
    return head if where.count("/") else f"stdlib/{where.split(':')[0]}"


def summarise(stacks: Path, events: int, thread_cpu: dict[str, float], top: int = 25) -> str:
    """Per thread (busiest first): its CPU per event from /proc, then its frames by own
    and by inclusive samples, each share also as µs per event (share x the thread's CPU)."""
    threads: Counter[str] = Counter()
    lines: list[tuple[str, list[str], int]] = []
    for line in stacks.read_text().splitlines():
        path, _, count = line.rpartition(" ")
        thread, *frames = path.split(";")
        threads[thread] += int(count)
        lines.append((thread, frames, int(count)))
    everything = sum(threads.values())
    total_cpu = sum(thread_cpu.values())
    out = [f"{stacks.name}: {everything} samples; the process's threads: "
           f"{1e6 * total_cpu / events:.1f} µs CPU per event in all"]
    for thread, total in threads.most_common(3):
        tid = thread.split("(")[-1].split(")")[0]
        cpu_us = 1e6 * thread_cpu.get(tid, 0.0) / events
        own: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        for name, frames, samples in lines:
            if name != thread or not frames:
                continue
            own[frames[-1]] += samples
            packages[_package(frames[-1])] += samples
            for frame in set(frames):
                inclusive[frame] += samples
        out.append(f"\n{thread}: {total} samples ({100 * total / everything:.0f}%), "
                   f"CPU {cpu_us:.1f} µs per event (/proc)")

        def row(c: int, total: int = total, cpu_us: float = cpu_us) -> str:
            return f"  {100 * c / total:5.1f}% {c * cpu_us / total:6.1f} µs"

        out.append("  own samples by package or module:")
        out += [f"{row(c)}  {p}" for p, c in packages.most_common(12)]
        out.append(f"  top {top} frames by own samples:")
        out += [f"{row(c)}  {frame}" for frame, c in own.most_common(top)]
        out.append(f"  top {top} frames of projector/ and schema/ by inclusive samples:")
        ours = [(f, c) for f, c in inclusive.most_common()
                if _package(f).startswith(("projector/", "schema/"))]
        out += [f"{row(c)}  {frame}" for frame, c in ours[:top]]
    return "\n".join(out)


def _admin(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return _services.libpq(make_url(url).set(database=database).render_as_string(
        hide_password=False))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import psycopg
    from sqlalchemy.engine import make_url

    args.out.mkdir(parents=True, exist_ok=True)
    procs = Processes(args.out)
    timeout = 300 + args.events / 100
    cleanups = []
    try:
        services, _ = _services.services_up()
        base_env = {**os.environ, **services}
        bootstrap = services["KAFKA_BOOTSTRAP_SERVERS"]
        stream = _stream.stream_file(procs, args.events, args.seed, timeout)
        topic, delete = _services.create_topic(bootstrap)
        cleanups.append(delete)
        say(f"producing {args.events:,} events into {topic}")
        _stream.produce_file(bootstrap, topic, stream, timeout)
        pg_url, drop = _services.create_database(services["TEST_DATABASE_URL"],
                                                 services["TEST_DATABASE_ADMIN_URL"])
        cleanups.append(drop)
        name = str(make_url(pg_url).database)
        env = _projector.env_for(base_env, pg_url, "kafka", KAFKA_TOPIC=topic,
                                 KAFKA_GROUP_ID=_services.unique("profile"),
                                 KAFKA_BOOTSTRAP_SERVERS=bootstrap)
        _projector.migrate(procs, env)
        admin = _admin(services["TEST_DATABASE_ADMIN_URL"], name)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            for setting, value in (("auto_explain.log_min_duration", "0"),
                                   ("auto_explain.log_analyze", "on"),
                                   ("auto_explain.log_buffers", "on"),
                                   ("auto_explain.log_nested_statements", "on"),
                                   ("auto_explain.sample_rate", str(args.explain_rate))):
                conn.execute(f'ALTER DATABASE "{name}" SET {setting} = {value}')
            conn.execute("SELECT pg_stat_statements_reset()")
        say("Kafka -> PostgreSQL under py-spy")
        postgres = _cpu.Postgres.of(_services.libpq(pg_url))
        meter = _cpu.Meter(postgres)
        meter.start()
        seconds, threads = record(procs, "profile-kafka-pg", args.out / "kafka-pg.txt",
                                  args.rate, env, timeout, args.gil)
        pg_cpu = meter.stop().postgres
        _projector.expect_offsets(pg_url, args.events, "the profiled run")
        say(f"  {args.events:,} events in {seconds:.1f}s = {args.events / seconds:,.0f}/s")
        with psycopg.connect(admin, autocommit=True) as conn:
            cursor = conn.execute(STATEMENTS, [name])
            names = [d.name for d in cursor.description or ()]
            statements: list[dict[str, Any]] = [dict(zip(names, r, strict=True))
                                                for r in cursor.fetchall()]
        for s in statements:
            s["us_per_call"] = 1000 * s["total_exec_time"] / max(s["calls"], 1)
            s["us_per_event"] = 1000 * s["total_exec_time"] / args.events
            s["wal_bytes"] = int(s["wal_bytes"])
        (args.out / "statements.json").write_text(json.dumps(statements, indent=1,
                                                             default=str))
        report = [f"Kafka -> PostgreSQL: {args.events} events, {seconds:.1f} s wall under "
                  f"py-spy at {args.rate} Hz{' --gil' if args.gil else ''}, load average "
                  f"{os.getloadavg()[0]:.1f} at the end",
                  summarise(args.out / "kafka-pg.txt", args.events, threads), "",
                  "statements by total execution time (µs per event over the run):"]
        report.insert(-1, f"PostgreSQL cluster CPU over the run (/proc): "
                          f"{_cpu.per_event_us(pg_cpu.total, args.events):.1f} µs per event, "
                          f"backends {_cpu.per_event_us(pg_cpu.backends, args.events):.1f}")
        report += [f"  {s['us_per_event']:7.2f} µs/event {s['calls']:7d} calls "
                   f"{s['us_per_call']:9.1f} µs/call {s['rows']:8d} rows  "
                   f"{' '.join(s['query'].split())[:110]}" for s in statements[:15]]
        if not args.skip_sqlite:
            db = args.out / "read_model.db"
            for old in args.out.glob("read_model.db*"):
                old.unlink()
            sqlite_env = _projector.env_for(base_env, f"sqlite:///{db}", str(stream))
            _projector.migrate(procs, sqlite_env)
            say("JSON Lines -> SQLite under py-spy")
            seconds, threads = record(procs, "profile-sqlite", args.out / "sqlite.txt",
                                      args.rate, sqlite_env, timeout, args.gil)
            report += ["", f"JSON Lines -> SQLite: {args.events} events, {seconds:.1f} s",
                       summarise(args.out / "sqlite.txt", args.events, threads)]
            for old in args.out.glob("read_model.db*"):
                old.unlink()
        (args.out / "summary.txt").write_text("\n".join(report) + "\n")
        print("\n".join(report))
        say(f"written to {args.out}")
        return 0
    except BenchError as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - clean up the rest
                say(f"clean-up failed: {exc}")


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    say(f"{time.perf_counter() - started:.0f}s")
    raise SystemExit(code)

