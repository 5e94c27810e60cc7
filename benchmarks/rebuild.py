"""The rebuild alone, the replay of the live path against the bulk load, in one run.

    .venv/bin/python -m benchmarks.rebuild [--events 200000] [--rounds 2] [--seed 7]

One simulated stream (cached in benchmarks/.cache/) in a fresh 3-partition topic,
projected once into a fresh PostgreSQL database (`projector run --until-caught-up`);
then `projector rebuild --from-offset earliest --json` of that database, alternately
with ``PROJECTOR_REBUILD_BULK=0`` (the live path's replay) and ``=1`` (the bulk load),
``--rounds`` times each. For each rebuild: wall seconds, the projector's and
PostgreSQL's CPU per event (benchmarks/_cpu.py), peak RSS, and the load average at
its start. Prints a table and, as the last line, one JSON object with the same-run
ratios (replay / bulk, medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _cpu, _projector, _services, _stream
from benchmarks._proc import BenchError, Processes, command, say

MODES = (("replay", "0"), ("bulk", "1"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.rebuild", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--py-spy", metavar="DIR", type=Path,
                        help="one more bulk rebuild under py-spy (97 Hz, --gil, --threads),"
                             " its collapsed stacks and the load's phase times written to DIR")
    args = parser.parse_args(argv)
    procs = Processes(Path(tempfile.mkdtemp(prefix="bench-rebuild-")))
    cleanups: list[Callable[[], None]] = []
    try:
        result = _run(args, procs, cleanups)
    except BenchError as exc:
        print(f"bench rebuild: error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        for cleanup in reversed(cleanups):
            cleanup()
    print(json.dumps(result), flush=True)
    return 0


def _run(args: argparse.Namespace, procs: Processes, cleanups: list[Any]) -> dict[str, Any]:
    events = args.events
    timeout = 120 + events / 300
    services, stop = _services.services_up()
    if stop is not None:
        cleanups.append(stop)
    bootstrap = services["KAFKA_BOOTSTRAP_SERVERS"]
    stream = _stream.stream_file(procs, events, args.seed, timeout)
    topic, delete_topic = _services.create_topic(bootstrap)
    cleanups.append(delete_topic)
    _stream.produce_file(bootstrap, topic, stream, timeout)
    pg_url, drop = _services.create_database(services["TEST_DATABASE_URL"],
                                             services["TEST_DATABASE_ADMIN_URL"])
    cleanups.append(drop)
    env = _projector.env_for({**os.environ, **services}, pg_url, "kafka", KAFKA_TOPIC=topic,
                             KAFKA_GROUP_ID=_services.unique("bench-rebuild"),
                             KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    _projector.migrate(procs, env)
    postgres = _cpu.Postgres.of(_services.libpq(pg_url))
    if postgres is None:
        raise BenchError("PostgreSQL does not run on this machine: its CPU cannot be read")
    _projector.run_until_caught_up(procs, env, timeout, postgres)
    _projector.expect_offsets(pg_url, events, "projector run")
    runs: list[dict[str, Any]] = []
    for round_ in range(1, args.rounds + 1):
        for name, flag in MODES:
            load = os.getloadavg()[0]
            done, summary = _projector.rebuild(
                procs, {**env, "PROJECTOR_REBUILD_BULK": flag}, timeout, postgres)
            _projector.expect_offsets(pg_url, events, f"the {name} rebuild")
            run = {
                "mode": name, "round": round_, "seconds": round(done.seconds, 2),
                "events_per_s": round(events / done.seconds),
                "cpu_us_per_event": round(_cpu.per_event_us(done.cpu_seconds, events), 1),
                "pg_cpu_us_per_event": round(_cpu.per_event_us(done.postgres.total, events), 1),
                "peak_rss_mb": round(done.peak_rss_mb), "load_at_start": round(load, 2),
                "summary_events": summary.get("events"),
                "duplicates": summary.get("duplicates"),
                "dead_letters": summary.get("dead_letters"),
            }
            runs.append(run)
            say(f"{name} round {round_}: {run['seconds']} s, {run['events_per_s']:,} events/s,"
                f" CPU/event {run['cpu_us_per_event']} µs, PostgreSQL"
                f" {run['pg_cpu_us_per_event']} µs, RSS {run['peak_rss_mb']} MB,"
                f" load {run['load_at_start']}")
    if args.py_spy is not None:
        _profile(args.py_spy, procs, env, timeout)
    med = {name: statistics.median(r["seconds"] for r in runs if r["mode"] == name)
           for name, _ in MODES}
    return {"events": events, "cpus": os.cpu_count(), "runs": runs,
            "replay_seconds_median": med["replay"], "bulk_seconds_median": med["bulk"],
            "replay_vs_bulk": round(med["replay"] / med["bulk"], 2)}


def _profile(out: Path, procs: Processes, env: dict[str, str], timeout: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    args = [str(spy), "record", "-r", "97", "--gil", "--threads", "-f", "raw",
            "-o", str(out / "bulk-rebuild.txt"), "--", *command("projector"),
            "rebuild", "--from-offset", "earliest", "--json"]
    done = procs.check("rebuild-py-spy", args, {**env, "PROJECTOR_REBUILD_BULK": "1"}, timeout)
    phases = [line for line in done.log.read_text(errors="replace").splitlines()
              if "bulk load of generation" in line]
    (out / "phases.txt").write_text("\n".join(phases) + "\n")
    say(f"py-spy: {out / 'bulk-rebuild.txt'}; {phases[-1] if phases else 'no phase line'}")


if __name__ == "__main__":
    raise SystemExit(main())
