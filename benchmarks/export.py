"""The analytics export's speed: a first export of N events, then an incremental one.

    scripts/bench-export [--events N] [--new K] [--database-url URL] [--stream FILE] [--base DIR]

1. `projector simulate` writes about N events (default 1,000,000) to a JSON Lines file
   (or ``--stream`` gives one), `projector run --until-caught-up` projects it into a
   fresh read model (SQLite in a temporary directory, or ``--database-url``);
2. the first export of all of it into a fresh ``file://`` warehouse, catalog in the
   read model's database (target: at most 30 s at 1,000,000 events);
3. K more events (default 10,000, new deliveries) are appended and projected, and
   the incremental export that takes them is timed (target: at most 2 s).

The export times are measured in this process around ``Exporter.run_once`` (the
reads, the fold, the Parquet files and the commits; not Python's start-up), as wall
time and as the CPU seconds of this process (all its threads): on a shared machine the
CPU seconds tell what the export itself costs, the wall time what it waited.

``--base DIR`` (SQLite) keeps step 1 for the next run: the first run projects into
DIR and keeps the read model and both streams there, later runs copy them, so two
builds can be compared on the same read model without projecting it again.
Progress goes to stderr; stdout gets the figures and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Events per delivery of the simulator, near enough to size a stream.
EVENTS_PER_DELIVERY = 4.25
FIRST_TARGET_S = 30.0
INCREMENTAL_TARGET_S = 2.0


def _say(message: str) -> None:
    print(f"bench-export: {message}", file=sys.stderr, flush=True)


def _projector(args: Sequence[str], env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "projector.cli", *args], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench-export: projector {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def _simulate(path: Path, events: int, seed: int, start: str, env: dict[str, str]) -> int:
    deliveries = max(1, round(events / EVENTS_PER_DELIVERY))
    out = _projector(["simulate", "--deliveries", str(deliveries), "--seed", str(seed),
                      "--start", start, "--out", str(path)], env)
    found = re.search(r"wrote (\d+) events", out)
    return int(found.group(1)) if found else 0


def _export(env: dict[str, str]) -> tuple[float, float, int]:
    from projector.analytics.export import Exporter
    from projector.analytics.settings import AnalyticsSettings
    from schema.db import make_engine

    settings = AnalyticsSettings.from_env(env, env["DATABASE_URL"])
    engine = make_engine(env["DATABASE_URL"], writer=False)
    try:
        exporter = Exporter(engine, settings, progress=False)
        started, cpu = time.perf_counter(), time.process_time()
        result = exporter.run_once()
        return time.perf_counter() - started, time.process_time() - cpu, result.rows
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="first export's size")
    parser.add_argument("--new", type=int, default=10_000, help="incremental export's size")
    parser.add_argument("--database-url", help="read model (default: a fresh SQLite file)")
    parser.add_argument("--stream", type=Path, help="an existing JSON Lines stream to project")
    parser.add_argument("--base", type=Path,
                        help="reuse (or first make) the projected read model kept in DIR")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.base is not None and args.database_url:
        parser.error("--base keeps a SQLite read model; it does not go with --database-url")
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        url = args.database_url or f"sqlite:///{work / 'read_model.db'}"
        env = {**os.environ, "DATABASE_URL": url, "ANALYTICS_WAREHOUSE": str(work / "lake"),
               "ANALYTICS_SETTLE_SECONDS": "0", "PYTHONUNBUFFERED": "1"}
        env.pop("ANALYTICS_CATALOG_URL", None)
        stream, extra = work / "stream.jsonl", work / "new.jsonl"
        base = args.base
        projected_s: float | None = None
        if base is not None and (base / "read_model.db").exists():
            for name in ("read_model.db", "stream.jsonl", "new.jsonl"):
                shutil.copyfile(base / name, work / name)
            _projector(["migrate"], env)  # kept by an older build, perhaps
            _say(f"read model of {base}")
        else:
            if args.stream:
                shutil.copyfile(args.stream, stream)
                _say(f"stream {args.stream}")
            else:
                _say(f"simulating about {args.events} events")
                _simulate(stream, args.events, 1, "2026-11-20T00:00:00Z", env)
            _simulate(extra, args.new, 2, "2026-11-30T00:00:00Z", env)
            _projector(["migrate"], env)
            _say("projecting them into the read model")
            t0 = time.perf_counter()
            _projector(["run", "--until-caught-up"], {**env, "EVENT_SOURCE": str(stream)})
            projected_s = time.perf_counter() - t0
            if base is not None:
                base.mkdir(parents=True, exist_ok=True)
                for name in ("read_model.db", "stream.jsonl", "new.jsonl"):
                    shutil.copyfile(work / name, base / name)
        _say("first export")
        first_s, first_cpu, first_rows = _export(env)
        _say(f"first export: {first_rows} events in {first_s:.2f} s")
        with stream.open("a", encoding="utf-8") as out:
            out.write(extra.read_text(encoding="utf-8").replace('"D-', '"N-'))
        _projector(["run", "--until-caught-up"], {**env, "EVENT_SOURCE": str(stream)})
        _say("incremental export")
        inc_s, inc_cpu, inc_rows = _export(env)
        figures: dict[str, Any] = {
            "database": url.split(":", 1)[0],
            "first_export_events": first_rows,
            "first_export_seconds": round(first_s, 2),
            "first_export_events_per_s": round(first_rows / first_s) if first_s else None,
            "first_export_cpu_seconds": round(first_cpu, 2),
            "first_export_within_target": first_s <= FIRST_TARGET_S,
            "incremental_export_events": inc_rows,
            "incremental_export_seconds": round(inc_s, 2),
            "incremental_export_cpu_seconds": round(inc_cpu, 2),
            "incremental_export_within_target": inc_s <= INCREMENTAL_TARGET_S,
            "projection_seconds": None if projected_s is None else round(projected_s, 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count(),
        }
        print(f"first export        {first_rows:>9} events  {first_s:8.2f} s "
              f"(target <= {FIRST_TARGET_S:.0f} s), {first_cpu:.2f} CPU s")
        print(f"incremental export  {inc_rows:>9} events  {inc_s:8.2f} s "
              f"(target <= {INCREMENTAL_TARGET_S:.0f} s), {inc_cpu:.2f} CPU s")
        print(f"load average {figures['load_average_1m']} on {figures['cores']} cores")
        print(json.dumps(figures))
        return 0
    finally:
        if args.keep:
            _say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
