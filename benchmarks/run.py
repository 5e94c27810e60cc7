"""One benchmark command for the read model, against the real services.

    scripts/bench [--quick] [--events N] [--seed S] [--keep-logs]

It starts Kafka and PostgreSQL with the script the tests use (``scripts/services
up``; services already running are reused and left running), then measures, each
against a baseline in the same run where one exists:

1. projector: a simulated stream of N events in a fresh 3-partition topic, projected
   from empty into a fresh PostgreSQL database by `projector run --until-caught-up`
   (wall time, peak RSS); baseline: a bare kafka-python consumer decoding the topic;
2. rebuild: `projector rebuild --from-offset earliest` of that database;
3. memory: steps 1 and 2 again on the first quarter of the stream (250,000 of
   1,000,000 events), so the peak RSS at N/4 and at N can be compared;
4. SQLite: the same N events from a JSON Lines file into a fresh SQLite file, the
   rate over the first and the last tenth of the stream;
5. API: `query-api --production` with a token, `delivery(id)` over random ids, 16
   connections with wrk; baseline: a bare Starlette endpoint (benchmarks/bare_api.py);
6. freshness: at a steady 5,000 events/s into Kafka with `projector run` following,
   the time from produce to visible through GraphQL.

Beside each rate it reports the CPU time per event (per request for the API) of
the process doing the work and of the PostgreSQL cluster serving it, from the
kernel's utime + stime (benchmarks/_cpu.py): on a shared machine the rates move
with the load, the CPU per event much less, and it is what a larger machine is
planned from.

Progress goes to stderr; stdout gets a table and, as its last line, one JSON object.
Every process, database and topic the run creates is removed at the end, also on
an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import _api, _cpu, _freshness, _projector, _services, _stream
from benchmarks._proc import BenchError, Processes, command, say

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 25_000

REQUIRED = (
    "events", "raw_consume_events_per_s", "projector_events_per_s", "projector_vs_raw",
    "rebuild_events_per_s", "rebuild_seconds", "sqlite_events_per_s_first_tenth",
    "sqlite_events_per_s_last_tenth", "api_raw_rps", "api_graphql_rps", "api_vs_raw",
    "api_p99_ms", "freshness_p50_ms", "freshness_p99_ms", "projector_peak_rss_mb",
    "projector_cpu_us_per_event", "projector_pg_cpu_us_per_event", "rebuild_cpu_us_per_event",
    "rebuild_pg_cpu_us_per_event", "sqlite_cpu_us_per_event", "rebuild_peak_rss_mb",
    "memory_quarter_events", "projector_peak_rss_mb_quarter", "rebuild_peak_rss_mb_quarter",
    "projector_rss_vs_quarter", "rebuild_rss_vs_quarter", "api_cpu_us_per_request",
    "api_raw_cpu_us_per_request", "freshness_rate", "freshness_projector_cpu_us_per_event",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"small inputs ({QUICK_EVENTS:,} events, short runs)")
    parser.add_argument("--events", type=int,
                        help=f"stream size (default {FULL_EVENTS:,}; --quick {QUICK_EVENTS:,})")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (1)")
    parser.add_argument("--api-seconds", type=float,
                        help="measured seconds per API run (15; --quick 4)")
    parser.add_argument("--freshness-seconds", type=float,
                        help="seconds of paced load (20; --quick 5)")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="also measure query-api --workers N (default 1: not)")
    parser.add_argument("--freshness-rate", type=float, default=5000.0,
                        help="events/s of paced load for freshness (5,000)")
    parser.add_argument("--step-timeout", type=float,
                        help="longest any projector step may take (default 120 + events/300 s)")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the processes' logs (always kept after a failure)")
    return parser


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: like Ctrl-C, nothing on the way may swallow it."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    events = args.events if args.events is not None else (
        QUICK_EVENTS if args.quick else FULL_EVENTS)
    if events < 100:
        print("bench: error: --events must be at least 100", file=sys.stderr)
        return 2
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C stops the run even when a shell started it with SIGINT ignored (`cmd &`).
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    procs = Processes(log_dir)
    # Processes first (they hold the database and the topic), then the rest, newest first.
    cleanups: list[tuple[str, Callable[[], None]]] = []
    failed = True
    try:
        results = _run(args, events, procs, cleanups)
        failed = False
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"bench: interrupted ({str(exc) or 'SIGINT'}); cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"bench: error: unexpected {type(exc).__name__}: {exc} (BENCH_DEBUG=1 shows "
              "the traceback)", file=sys.stderr)
        return 1
    finally:
        for what, cleanup in [("processes", procs.stop_all), *reversed(cleanups)]:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - clean up the rest, say what was left
                say(f"clean-up of {what} failed: {exc}")
        for db in log_dir.glob("read_model.db*"):
            db.unlink(missing_ok=True)  # the SQLite read model: large, and of no use after
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if failed or args.keep_logs:
            say(f"logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    print_table(results)
    print(json.dumps(results), flush=True)
    return 0


def _run(args: argparse.Namespace, events: int, procs: Processes,
         cleanups: list[tuple[str, Callable[[], None]]]) -> dict[str, Any]:
    quick = bool(args.quick)
    timeout = args.step_timeout or 120 + events / 300
    api_seconds = args.api_seconds or (4.0 if quick else 15.0)
    fresh_seconds = args.freshness_seconds or (5.0 if quick else 20.0)
    r: dict[str, Any] = {"events": events, "mode": "quick" if quick else "full",
                         "date": datetime.now(UTC).isoformat(timespec="seconds"),
                         "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]}
    began = time.perf_counter()

    wrk = _services.ensure_tool("wrk", "wrk")
    services, stop_services = _services.services_up()
    if stop_services is not None:
        cleanups.append(("services", stop_services))
    base_env = {**os.environ, **services}
    bootstrap = services["KAFKA_BOOTSTRAP_SERVERS"]

    stream = _stream.stream_file(procs, events, args.seed, timeout)

    say(f"kafka: a fresh topic with 3 partitions; producing {events:,} events")
    topic, delete_topic = _services.create_topic(bootstrap)
    cleanups.append((f"topic {topic}", delete_topic))
    seconds = _stream.produce_file(bootstrap, topic, stream, timeout)
    r["produce_events_per_s"] = events / seconds
    _projector.say_rate("produced", events, seconds)

    say("baseline: a bare kafka-python consumer reads and JSON-decodes the topic")
    cpu_before = _cpu.self_seconds()
    seconds = _stream.raw_consume(bootstrap, topic, events, timeout)
    r["raw_consume_cpu_us_per_event"] = _cpu.per_event_us(_cpu.self_seconds() - cpu_before,
                                                          events)
    r["raw_consume_events_per_s"] = events / seconds
    r["raw_consume_seconds"] = seconds
    _projector.say_rate("raw consume", events, seconds)

    say("projector: migrate, then run --until-caught-up, Kafka -> a fresh PostgreSQL database")
    pg_url, drop = _services.create_database(services["TEST_DATABASE_URL"],
                                             services["TEST_DATABASE_ADMIN_URL"])
    cleanups.append(("the benchmark database", drop))
    group = _services.unique("bench-projector")
    pg_env = _projector.env_for(base_env, pg_url, "kafka", KAFKA_TOPIC=topic,
                                KAFKA_GROUP_ID=group, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    _projector.migrate(procs, pg_env)
    postgres = _cpu.Postgres.of(_services.libpq(pg_url))
    if postgres is None:
        raise BenchError("PostgreSQL does not run on this machine: its CPU cannot be read")
    projected = _projector.run_until_caught_up(procs, pg_env, timeout, postgres)
    _projector.expect_offsets(pg_url, events, "projector run")
    r["projector_events_per_s"] = events / projected.seconds
    r["projector_seconds"] = projected.seconds
    r["projector_vs_raw"] = r["projector_events_per_s"] / r["raw_consume_events_per_s"]
    r["projector_peak_rss_mb"] = projected.peak_rss_mb
    _cpu_figures(r, "projector", projected.cpu_seconds, projected.postgres, events)
    _projector.say_rate("projector", events, projected.seconds)
    say(f"  peak RSS {projected.peak_rss_mb:.0f} MB; {_cpu_note(r, 'projector')}")

    say("rebuild: projector rebuild --from-offset earliest --json (a new generation)")
    rebuilt, summary = _projector.rebuild(procs, pg_env, timeout, postgres)
    _projector.expect_offsets(pg_url, events, "the rebuild")
    r["rebuild_seconds"] = rebuilt.seconds
    r["rebuild_events_per_s"] = events / rebuilt.seconds
    r["rebuild_summary_seconds"] = summary.get("seconds")
    r["rebuild_summary_events_per_s"] = summary.get("events_per_second")
    r["rebuild_peak_rss_mb"] = rebuilt.peak_rss_mb
    _cpu_figures(r, "rebuild", rebuilt.cpu_seconds, rebuilt.postgres, events)
    _projector.say_rate("rebuild (wall)", events, rebuilt.seconds)
    say(f"  peak RSS {rebuilt.peak_rss_mb:.0f} MB; {_cpu_note(r, 'rebuild')}")

    quarter = events // 4
    say(f"memory: the first {quarter:,} events into a fresh topic and database, "
        "run --until-caught-up and rebuild again")
    topic_q, delete_q = _services.create_topic(bootstrap)
    cleanups.append((f"topic {topic_q}", delete_q))
    _stream.produce_file(bootstrap, topic_q, stream, timeout, limit=quarter)
    pg_url_q, drop_q = _services.create_database(services["TEST_DATABASE_URL"],
                                                 services["TEST_DATABASE_ADMIN_URL"])
    cleanups.append(("the quarter-size database", drop_q))
    env_q = _projector.env_for(base_env, pg_url_q, "kafka", KAFKA_TOPIC=topic_q,
                               KAFKA_GROUP_ID=_services.unique("bench-quarter"),
                               KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    _projector.migrate(procs, env_q)
    projected_q = _projector.run_until_caught_up(procs, env_q, timeout, postgres)
    _projector.expect_offsets(pg_url_q, quarter, "projector run (a quarter)")
    rebuilt_q, _ = _projector.rebuild(procs, env_q, timeout, postgres)
    _projector.expect_offsets(pg_url_q, quarter, "the rebuild (a quarter)")
    drop_q()
    cleanups.remove(("the quarter-size database", drop_q))
    r["memory_quarter_events"] = quarter
    r["projector_peak_rss_mb_quarter"] = projected_q.peak_rss_mb
    r["rebuild_peak_rss_mb_quarter"] = rebuilt_q.peak_rss_mb
    r["projector_rss_vs_quarter"] = projected.peak_rss_mb / projected_q.peak_rss_mb
    r["rebuild_rss_vs_quarter"] = rebuilt.peak_rss_mb / rebuilt_q.peak_rss_mb
    r["projector_events_per_s_quarter"] = quarter / projected_q.seconds
    r["rebuild_seconds_quarter"] = rebuilt_q.seconds
    _cpu_figures(r, "projector_quarter", projected_q.cpu_seconds, projected_q.postgres, quarter)
    _cpu_figures(r, "rebuild_quarter", rebuilt_q.cpu_seconds, rebuilt_q.postgres, quarter)
    # Between N/4 and N: the process's start-up (imports, connecting, joining the group)
    # cancels out, what is left is the CPU each further event costs.
    for step, full, part in (("projector", projected, projected_q),
                             ("rebuild", rebuilt, rebuilt_q)):
        extra = events - quarter
        r[f"{step}_marginal_cpu_us_per_event"] = _cpu.per_event_us(
            full.cpu_seconds - part.cpu_seconds, extra)
        r[f"{step}_marginal_pg_cpu_us_per_event"] = _cpu.per_event_us(
            full.postgres.total - part.postgres.total, extra)
    say(f"  peak RSS at {quarter:,} / {events:,} events: projector "
        f"{projected_q.peak_rss_mb:.0f} / {projected.peak_rss_mb:.0f} MB, rebuild "
        f"{rebuilt_q.peak_rss_mb:.0f} / {rebuilt.peak_rss_mb:.0f} MB")

    say("sqlite: projector run --until-caught-up, JSON Lines file -> a fresh SQLite file")
    db_path = procs.log_dir / "read_model.db"
    sqlite_env = _projector.env_for(base_env, f"sqlite:///{db_path}", str(stream))
    _projector.migrate(procs, sqlite_env)
    sq = _projector.sqlite_run(procs, sqlite_env, db_path, events, timeout)
    r["sqlite_events_per_s"] = events / sq.seconds
    r["sqlite_events_per_s_first_tenth"] = sq.first_tenth
    r["sqlite_events_per_s_last_tenth"] = sq.last_tenth
    r["sqlite_last_vs_first"] = sq.last_tenth / sq.first_tenth
    r["sqlite_cpu_us_per_event"] = _cpu.per_event_us(sq.cpu_seconds, events)
    r["sqlite_peak_rss_mb"] = sq.peak_rss_mb
    _projector.say_rate("sqlite", events, sq.seconds)
    say(f"  first tenth {sq.first_tenth:,.0f} events/s, last tenth {sq.last_tenth:,.0f}"
        f" events/s ({sq.samples} polls)")

    say(f"api: query-api --production and the bare baseline, wrk -c{_api.CONNECTIONS}, "
        f"{api_seconds:.0f}s each after a warm-up")
    token = _api.new_token()
    ids = _api.sample_ids(pg_url, 2000)
    script = _api.write_script(procs.log_dir / "delivery.lua", ids, token)
    kafka_env = {"EVENT_SOURCE": "kafka", "KAFKA_TOPIC": topic,
                 "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    graphql = _api.start_query_api(procs, base_env, pg_url, kafka_env, token)
    bare = _api.start_bare(procs, base_env, pg_url, token)
    _api.same_answers(graphql, bare, ids, token)
    warmup = 1.0 if quick else 3.0
    raw_load = _api.wrk(wrk, script, bare, api_seconds, warmup, postgres)
    procs.stop(bare.proc)
    api_load = _api.wrk(wrk, script, graphql, api_seconds, warmup, postgres)
    r["api_raw_rps"] = raw_load.rps
    r["api_raw_p99_ms"] = raw_load.p99_ms
    r["api_raw_p50_ms"] = raw_load.p50_ms
    r["api_graphql_rps"] = api_load.rps
    r["api_p99_ms"] = api_load.p99_ms
    r["api_p50_ms"] = api_load.p50_ms
    r["api_vs_raw"] = api_load.rps / raw_load.rps
    r["api_p99_vs_raw"] = api_load.p99_ms / raw_load.p99_ms
    for key, load in (("api_raw", raw_load), ("api", api_load)):
        r[f"{key}_cpu_us_per_request"] = _cpu.per_event_us(load.cpu_seconds, load.requests)
        r[f"{key}_pg_cpu_us_per_request"] = _cpu.per_event_us(load.postgres.total,
                                                              load.requests)
    if args.api_workers > 1:
        say(f"api: query-api --workers {args.api_workers}, the same load")
        many = _api.start_query_api(procs, base_env, pg_url, kafka_env, token,
                                    workers=args.api_workers)
        many_load = _api.wrk(wrk, script, many, api_seconds, warmup, postgres)
        procs.stop(many.proc)
        r["api_workers"] = args.api_workers
        r["api_workers_rps"] = many_load.rps
        r["api_workers_p50_ms"] = many_load.p50_ms
        r["api_workers_p99_ms"] = many_load.p99_ms
        r["api_workers_vs_raw"] = many_load.rps / raw_load.rps
        r["api_workers_p99_vs_raw"] = many_load.p99_ms / raw_load.p99_ms
        r["api_workers_cpu_us_per_request"] = _cpu.per_event_us(many_load.cpu_seconds,
                                                                many_load.requests)

    say(f"freshness: projector run (continuous) + the API, {args.freshness_rate:,.0f} "
        f"events/s for {fresh_seconds:.0f}s, a probe every 50 ms")
    follower, follower_log = procs.start("run-follow", [*command("projector"),
                                                        "run"], pg_env)
    meter = _cpu.Meter(postgres, follower.pid)
    meter.start()
    fresh = _freshness.measure(bootstrap, topic, graphql, token, fresh_seconds,
                               rate=args.freshness_rate)
    spent = meter.stop()
    if follower.poll() is not None:
        raise BenchError(f"projector run exited {follower.returncode} during the freshness "
                         f"run (log {follower_log})")
    procs.stop(follower)
    procs.stop(graphql.proc)
    r["freshness_p50_ms"] = fresh.p50_ms
    r["freshness_p99_ms"] = fresh.p99_ms
    r["freshness_probes"] = fresh.probes
    r["freshness_lost"] = fresh.lost
    r["freshness_produce_events_per_s"] = fresh.events_per_s
    r["freshness_rate"] = args.freshness_rate
    # The window also holds the warm-up (joining the group, the first probe): a little
    # idle CPU over the paced events.
    r["freshness_projector_cpu_us_per_event"] = _cpu.per_event_us(spent.process, fresh.events)
    r["freshness_pg_cpu_us_per_event"] = _cpu.per_event_us(spent.postgres.total, fresh.events)
    say(f"  {fresh.probes} probes: p50 {fresh.p50_ms:.0f} ms, p99 {fresh.p99_ms:.0f} ms "
        f"at {fresh.events_per_s:,.0f} events/s")

    r["total_seconds"] = time.perf_counter() - began
    return _checked(r)


def _cpu_figures(r: dict[str, Any], step: str, process: float, postgres: _cpu.ClusterCpu,
                 events: int) -> None:
    """CPU per event of a step: its process, the cluster, and the cluster's backends."""
    r[f"{step}_cpu_us_per_event"] = _cpu.per_event_us(process, events)
    r[f"{step}_pg_cpu_us_per_event"] = _cpu.per_event_us(postgres.total, events)
    r[f"{step}_pg_backend_cpu_us_per_event"] = _cpu.per_event_us(postgres.backends, events)


def _cpu_note(r: dict[str, Any], step: str) -> str:
    return (f"CPU per event: process {r[f'{step}_cpu_us_per_event']:.0f} µs, PostgreSQL "
            f"{r[f'{step}_pg_cpu_us_per_event']:.0f} µs (backends "
            f"{r[f'{step}_pg_backend_cpu_us_per_event']:.0f} µs)")


def _checked(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
    for key in REQUIRED:
        value = out.get(key)
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise BenchError(f"the run produced no usable figure for {key}: {value!r}")
    return out


def print_table(r: dict[str, Any]) -> None:
    n = r["events"]

    def f(key: str, unit: str = "", digits: int = 0) -> str:
        value = r.get(key)
        if not isinstance(value, int | float):
            return "-"
        return f"{value:,.{digits}f}{unit}"

    def cpu(step: str, per: str = "event") -> str:
        return (f"{f(f'{step}_cpu_us_per_{per}'):>6} {f(f'{step}_pg_cpu_us_per_{per}'):>6}")

    rows = [
        ("bare kafka-python consumer + json (baseline)", f("raw_consume_events_per_s"),
         f"{f('raw_consume_cpu_us_per_event'):>6} {'-':>6}", ""),
        ("projector run --until-caught-up, Kafka -> PostgreSQL",
         f("projector_events_per_s"), cpu("projector"),
         f"{f('projector_vs_raw', 'x', 2)} of baseline, {f('projector_seconds', ' s', 1)}, "
         f"peak RSS {f('projector_peak_rss_mb', ' MB')}"),
        ("projector rebuild --from-offset earliest", f("rebuild_events_per_s"), cpu("rebuild"),
         f"{f('rebuild_seconds', ' s', 1)} wall "
         f"({f('rebuild_summary_events_per_s')} events/s by its summary), "
         f"peak RSS {f('rebuild_peak_rss_mb', ' MB')}"),
        (f"the same on the first {f('memory_quarter_events')} events: run",
         f("projector_events_per_s_quarter"), cpu("projector_quarter"),
         f"peak RSS {f('projector_peak_rss_mb_quarter', ' MB')} "
         f"(N: {f('projector_rss_vs_quarter', 'x', 2)} of it)"),
        ("  and rebuild", "", cpu("rebuild_quarter"),
         f"{f('rebuild_seconds_quarter', ' s', 1)}, peak RSS "
         f"{f('rebuild_peak_rss_mb_quarter', ' MB')} "
         f"(N: {f('rebuild_rss_vs_quarter', 'x', 2)} of it)"),
        ("each event past the first quarter: run", "", cpu("projector_marginal"),
         "CPU(N) - CPU(N/4) over 3N/4 events: without start-up"),
        ("  and rebuild", "", cpu("rebuild_marginal"), ""),
        ("JSON Lines -> SQLite, first tenth", f("sqlite_events_per_s_first_tenth"),
         f"{f('sqlite_cpu_us_per_event'):>6} {'-':>6}", f"overall {f('sqlite_events_per_s')}"),
        ("JSON Lines -> SQLite, last tenth", f("sqlite_events_per_s_last_tenth"), "",
         f"{f('sqlite_last_vs_first', 'x', 2)} of the first tenth"),
    ]
    api = [
        ("bare Starlette endpoint (baseline)", f("api_raw_rps"), cpu("api_raw", "request"),
         f"p50 {f('api_raw_p50_ms', ' ms', 1)}, p99 {f('api_raw_p99_ms', ' ms', 1)}"),
        ("query-api delivery(id), five fields", f("api_graphql_rps"), cpu("api", "request"),
         f"{f('api_vs_raw', 'x', 2)} of baseline; p50 {f('api_p50_ms', ' ms', 1)}, "
         f"p99 {f('api_p99_ms', ' ms', 1)} ({f('api_p99_vs_raw', 'x', 2)})"),
    ]
    if "api_workers" in r:
        api.append((f"query-api --workers {r['api_workers']}", f("api_workers_rps"),
                    f"{f('api_workers_cpu_us_per_request'):>6} {'-':>6}",
                    f"{f('api_workers_vs_raw', 'x', 2)} of baseline; p50 "
                    f"{f('api_workers_p50_ms', ' ms', 1)}, p99 "
                    f"{f('api_workers_p99_ms', ' ms', 1)} "
                    f"({f('api_workers_p99_vs_raw', 'x', 2)})"))
    print(f"\nRead-model benchmark, {r['mode']} mode: {n:,} events, {r['date']}, "
          f"{r['cpus']} CPUs, load average {r['load_avg_at_start']:.2f} at start\n")
    width = max(len(w) for w, _, _, _ in rows + api)
    print(f"{'projection':<{width}}  {'events/s':>9}  {'CPU µs/event':>13}  notes")
    print(f"{'':<{width}}  {'':>9}  {'proc':>6} {'pg':>6}")
    for work, figure, cpus, note in rows:
        print(f"{work:<{width}}  {figure:>9}  {cpus:>13}  {note}")
    print(f"\n{'API (PostgreSQL, wrk, 16 connections)':<{width}}  {'req/s':>9}  "
          f"{'CPU µs/req':>13}  notes")
    for work, figure, cpus, note in api:
        print(f"{work:<{width}}  {figure:>9}  {cpus:>13}  {note}")
    print(f"\nfreshness at {f('freshness_produce_events_per_s')} events/s into Kafka: "
          f"p50 {f('freshness_p50_ms', ' ms')}, p99 {f('freshness_p99_ms', ' ms')} "
          f"over {r.get('freshness_probes', 0)} probes ({r.get('freshness_lost', 0)} not "
          f"seen in time); CPU µs/event: projector "
          f"{f('freshness_projector_cpu_us_per_event')}, PostgreSQL "
          f"{f('freshness_pg_cpu_us_per_event')}; whole run {f('total_seconds', ' s')}\n")


if __name__ == "__main__":
    raise SystemExit(main())
