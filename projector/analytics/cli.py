"""`projector export [compact|status]` and `projector analytics SQL`: flags and handlers.

Registered by ``projector.cli``; the Iceberg and DuckDB modules are imported only
when one of these commands runs, so the other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable
from datetime import timedelta

from projector.settings import Settings
from projector.terminal import json_line

log = logging.getLogger("projector.analytics")

EPILOG = """\
analytics settings (environment):
  ANALYTICS_WAREHOUSE        path, file://... or s3://bucket/prefix
                             (default: <sqlite file stem>-warehouse beside it, or ./warehouse)
  ANALYTICS_CATALOG_URL      SQLAlchemy URL of the Iceberg SQL catalog (default DATABASE_URL)
  ANALYTICS_OVERLAP_SECONDS  how far behind the watermark an export looks again (120)
  ANALYTICS_SETTLE_SECONDS   how recent an applied time is left for the next export (2)
  ANALYTICS_SNAPSHOT_RETENTION_HOURS  snapshots kept by `export compact` (168)
  ANALYTICS_S3_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  for s3://
"""

Adder = Callable[[str, str, str], argparse.ArgumentParser]


def add_commands(add: Adder, parser_class: type[argparse.ArgumentParser]) -> None:
    export = add(
        "export",
        "export the history to the Iceberg tables (exactly once)",
        "Appends the served generation's history rows not yet exported to the Iceberg table\n"
        "delivery.delivery_events (partitioned by day of occurrence) and replaces the\n"
        "snapshot table delivery.deliveries. One run exports what is there and exits 0.",
    )
    export.epilog = EPILOG
    _analytics_flags(export)
    export.add_argument("--follow", action="store_true", help="keep exporting every --interval")
    export.add_argument("--interval", type=float, default=10.0,
                        help="--follow: seconds between exports (10)")
    export.add_argument("--json", action="store_true", help="print each result as JSON")
    actions = export.add_subparsers(dest="export_action", metavar="ACTION",
                                    parser_class=parser_class)
    compact = actions.add_parser(
        "compact", help="rewrite each closed day into one file; expire old snapshots"
    )
    _analytics_flags(compact)
    compact.add_argument("--older-than", default="2d",
                         help="days older than this are closed (2d; also h, m)")
    compact.add_argument("--json", action="store_true", help="print the result as JSON")
    status = actions.add_parser("status", help="watermark, rows, files per day, lag")
    _analytics_flags(status)
    status.add_argument("--json", action="store_true", help="one JSON object")

    query = add(
        "analytics",
        "run one DuckDB SQL statement over the exported tables",
        "Runs SQL in DuckDB over the views delivery_events and deliveries (the Iceberg\n"
        "tables, read with no network). Prints a table, or with --json a JSON array.",
    )
    query.epilog = EPILOG
    _analytics_flags(query)
    query.add_argument("sql", metavar="SQL", help="one DuckDB statement")
    query.add_argument("--json", action="store_true", help="one JSON array of row objects")


def _analytics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", help="ANALYTICS_WAREHOUSE")
    parser.add_argument("--catalog-url", help="ANALYTICS_CATALOG_URL")


def _settings(settings: Settings, args: argparse.Namespace) -> object:
    from projector.analytics.settings import AnalyticsSettings

    env = dict(os.environ)
    if getattr(args, "warehouse", None):
        env["ANALYTICS_WAREHOUSE"] = args.warehouse
    if getattr(args, "catalog_url", None):
        env["ANALYTICS_CATALOG_URL"] = args.catalog_url
    return AnalyticsSettings.from_env(env, settings.database_url)


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from projector.analytics.compact import compact, parse_age
    from projector.analytics.export import Exporter
    from projector.analytics.settings import AnalyticsSettings
    from projector.analytics.status import export_status
    from projector.bootstrap import open_engine
    from projector.runtime import install_stop_signals

    analytics = _settings(settings, args)
    assert isinstance(analytics, AnalyticsSettings)
    action = getattr(args, "export_action", None)
    if action == "status":
        doc = export_status(open_engine(settings, writer=False), analytics)
        print(json_line(doc) if args.json else _status_text(doc))
        return 0
    if action == "compact":
        from projector.analytics.catalog import events_table, open_catalog, require
        from projector.analytics.layout import EVENTS_TABLE

        table = require(events_table(open_catalog(analytics), create=False), EVENTS_TABLE)
        done = compact(table, parse_age(args.older_than),
                         timedelta(hours=analytics.snapshot_retention_hours))
        if args.json:
            print(json_line(done.__dict__))
        else:
            print(f"compacted {len(done.days)} day(s): {done.files_before} -> "
                  f"{done.files_after} data files; {done.snapshots_expired} "
                  "snapshot(s) expired")
        return 0
    exporter = Exporter(open_engine(settings, writer=False), analytics)
    stop = threading.Event()
    if args.follow:
        install_stop_signals(stop.set)
    while True:
        result = exporter.run_once()
        if args.json:
            print(json_line(result.as_json()), flush=True)
        else:
            print(
                f"exported {result.rows} event(s) of generation {result.generation} up to "
                f"{result.watermark.isoformat()} in {result.seconds:.1f}s"
                + (f"; {result.dropped} already in the lake" if result.dropped else "")
                + (f"; deliveries snapshot: {result.deliveries} row(s)"
                   if result.deliveries is not None else ""),
                flush=True,
            )
        if not args.follow or stop.wait(max(args.interval, 0.1)):
            return 0


def _status_text(doc: dict[str, object]) -> str:
    if not doc.get("exported"):
        return f"nothing exported yet; the read model holds {doc['readModelEvents']} event(s)"
    lines = [
        f"generation {doc['exportedGeneration']} (served: {doc['generation']}), "
        f"watermark {doc['watermark']} ({doc['lagSeconds']} s ago)",
        f"rows {doc['rows']} in {doc['files']} file(s), {doc['snapshots']} snapshot(s); "
        f"read model {doc['readModelEvents']} event(s), {doc['behind']} applied after the "
        "watermark",
        f"{'day':<12} {'rows':>10} {'files':>6}",
    ]
    days = doc["days"]
    assert isinstance(days, dict)
    for day, entry in days.items():
        lines.append(f"{day:<12} {entry['rows']:>10} {entry['files']:>6}")
    return "\n".join(lines)


def cmd_analytics(settings: Settings, args: argparse.Namespace) -> int:
    from projector.analytics import query
    from projector.analytics.settings import AnalyticsSettings

    analytics = _settings(settings, args)
    assert isinstance(analytics, AnalyticsSettings)
    con = query.connect(analytics)
    try:
        table = query.run(con, args.sql)
    finally:
        con.close()
    sys.stdout.write((query.as_json(table) if args.json else query.as_text(table)) + "\n")
    return 0
