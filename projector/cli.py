"""`projector`: migrate, run, rebuild, verify, status, dead letters, simulate.

Every command is configured by the environment (the contract, section Settings) and by flags of
the same meaning. Exit 0 on success; otherwise one clear line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from sqlalchemy.exc import OperationalError, ProgrammingError

from producer.errors import ProducerError
from projector.analytics.cli import add_commands as analytics_commands
from projector.errors import ProjectorError
from projector.settings import Settings
from projector.terminal import json_line, printable, printable_lines
from schema.db import redacted

log = logging.getLogger("projector")

EPILOG = """\
settings (environment; flags of the same name win):
  DATABASE_URL             read model (default sqlite:///./delivery_read_model.db)
  EVENT_SOURCE             'kafka' (default) or the path of a JSON Lines file
  KAFKA_BOOTSTRAP_SERVERS  default localhost:9092
  KAFKA_TOPIC              default delivery-events
  KAFKA_GROUP_ID           default delivery-projector
  SOURCE_TIMEZONE          zone of times without an offset (default UTC)
  BUSINESS_TIMEZONE        zone that defines a statistics day (default UTC)
  PROJECTOR_BATCH_SIZE, PROJECTOR_BATCH_MAX_WAIT_MS   batching (2000, 200)
  LOG_FORMAT               'text' (default) or 'json'
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="projector",
        description="Folds the delivery event stream into the read model (CQRS read side).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = _Parser(add_help=False)
    common.add_argument("--database-url", help="SQLAlchemy URL of the read model (DATABASE_URL)")
    common.add_argument("--event-source", help="'kafka' or a JSON Lines path (EVENT_SOURCE)")
    common.add_argument("--bootstrap-servers", help="Kafka brokers (KAFKA_BOOTSTRAP_SERVERS)")
    common.add_argument("--topic", help="Kafka topic (KAFKA_TOPIC)")
    common.add_argument("--group-id", help="Kafka consumer group (KAFKA_GROUP_ID)")
    common.add_argument("--source-timezone", help="zone of times without offset (SOURCE_TIMEZONE)")
    common.add_argument("--batch-size", type=int, help="messages per transaction (default 2000)")
    common.add_argument("--batch-max-wait-ms", type=int, help="longest wait to fill a batch")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help_text,
            description=description,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    add(
        "migrate",
        "create or upgrade the read-model tables",
        "Creates the read-model tables, or upgrades them to this version (Alembic).",
    )

    run = add(
        "run",
        "project the event source continuously",
        "Projects the event source into the active generation until stopped (SIGINT/SIGTERM).",
    )
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="stop with exit 0 once every partition reaches the end offset seen at start",
    )

    rebuild = add(
        "rebuild",
        "rebuild the read model by replaying from an offset",
        "Replays the source into a new generation while the current one keeps serving,\n"
        "then switches atomically once caught up.",
    )
    rebuild.add_argument(
        "--from-offset",
        default="earliest",
        metavar="SPEC",
        help="earliest (default), N, P:N,P:N,..., or @2026-11-25T00:00:00Z",
    )
    rebuild.add_argument(
        "--in-place",
        action="store_true",
        help="replay into the current generation instead of a new one",
    )
    rebuild.add_argument(
        "--keep-old", action="store_true", help="keep the old generation's rows after the switch"
    )
    rebuild.add_argument(
        "--allow-empty",
        action="store_true",
        help="switch even if SPEC leaves nothing to replay (the read model would be emptied)",
    )
    rebuild.add_argument(
        "--from-history",
        action="store_true",
        help="rebuild into a new generation from the served generation's own history (and"
        " its pending dead letters), then catch up from the topic where the history ends",
    )
    rebuild.add_argument(
        "--allow-loss",
        action="store_true",
        help="rebuild from the topic even if retention removed events the served generation"
        " holds (they are lost; --from-history keeps them)",
    )
    rebuild.add_argument("--resume", action="store_true", help="resume an interrupted rebuild")
    rebuild.add_argument("--discard", action="store_true", help="discard an interrupted rebuild")
    rebuild.add_argument("--json", action="store_true", help="print the summary as JSON")

    verify = add(
        "verify",
        "replay into a scratch generation and diff it against the live one",
        "Rebuilds into a scratch generation and compares it with the active one row by row;\n"
        "exits 1 and lists the first differences if they disagree.",
    )
    verify.add_argument(
        "--from-offset",
        default="earliest",
        metavar="SPEC",
        help="where the replay starts (default earliest)",
    )
    verify.add_argument("--limit", type=int, default=20, help="differences to list (default 20)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")

    status = add(
        "status",
        "offsets, end offsets, lag, counts, generation",
        "Shows how far the projection is, per partition, and what it holds.",
    )
    status.add_argument("--json", action="store_true", help="one JSON object (ProjectionStatus)")
    status.add_argument(
        "--no-source", action="store_true", help="do not ask the source for end offsets"
    )

    dead = add(
        "dead-letters",
        "show or replay dead letters",
        "Messages that could not be read are kept as dead letters.",
    )
    dead_sub = dead.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    dl_list = dead_sub.add_parser("list", parents=[common], help="show dead letters")
    dl_list.add_argument("--all", action="store_true", help="include replayed ones")
    dl_list.add_argument("--limit", type=int, default=100)
    dl_list.add_argument("--json", action="store_true", help="JSON Lines output")
    dl_replay = dead_sub.add_parser(
        "replay", parents=[common], help="parse dead letters again and apply those now valid"
    )
    dl_replay.add_argument(
        "--id", type=int, action="append", dest="ids", help="only this dead letter (repeatable)"
    )

    sim = add(
        "simulate",
        "write a realistic synthetic stream",
        "Writes a seeded synthetic delivery stream to a JSON Lines file (--out) or to Kafka.",
    )
    sim.add_argument(
        "--deliveries", type=int, help="number of deliveries (100; with --follow: 0)"
    )
    sim.add_argument("--seed", type=int, default=1, help="random seed (1)")
    sim.add_argument("--out", help="JSON Lines file to write; without it, produce to Kafka")
    sim.add_argument(
        "--to-outbox",
        metavar="URL",
        help="instead: write each event as the delivery core does, in its own PostgreSQL "
        "transaction with a deliveries_core row, to the outbox table that Debezium relays "
        "(tables created when missing: sql/outbox.sql)",
    )
    sim.add_argument("--outbox-payload", choices=("jsonb", "text"), default="jsonb",
                     help="--to-outbox: payload column type when creating the table (jsonb)")
    sim.add_argument("--outbox-delete", action="store_true",
                     help="--to-outbox: delete each outbox row in the transaction that "
                     "inserted it (Debezium reads the insert from the log)")
    sim.add_argument("--start", help="first occurrence time, ISO-8601 (2026-11-25T00:00:00Z)")
    sim.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="partitions when the Kafka topic must be created (3)",
    )
    sim.add_argument("--late-ratio", type=float, default=0.03)
    sim.add_argument("--duplicate-ratio", type=float, default=0.03)
    sim.add_argument(
        "--versions",
        metavar="V:SHARE,...",
        help="write a share of the events at later versions, e.g. 2:0.3,3:0.01 (30%% at "
        "version 2 where the type has one, 1%% at a future version 3); default: all at 1",
    )
    sim.add_argument(
        "--follow",
        action="store_true",
        help="keep appending new deliveries (times: the wall clock) until Ctrl-C or SIGTERM; "
        "to a file it appends, after --deliveries N written first when N > 0",
    )
    sim.add_argument("--rate", type=float, default=5.0, help="--follow: events a second (5)")
    sim.add_argument(
        "--first-delivery",
        type=int,
        help="--follow: number of the first new delivery (D-N); default: after the "
        "highest in the file, or from the clock for Kafka",
    )
    analytics_commands(add, _Parser)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(
        database_url=args.database_url,
        event_source=args.event_source,
        kafka_bootstrap_servers=args.bootstrap_servers,
        kafka_topic=args.topic,
        kafka_group_id=args.group_id,
        source_timezone=args.source_timezone,
        batch_size=args.batch_size,
        batch_max_wait_ms=args.batch_max_wait_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    settings: Settings | None = None
    try:
        settings = settings_from(args)
        from projector.commands import COMMANDS
        from projector.gctuning import freeze_after_start_up

        freeze_after_start_up()  # everything is imported: what lives now lives to the end
        return int(COMMANDS[args.command](settings, args))
    except KeyboardInterrupt:
        print("projector: interrupted", file=sys.stderr)
        return 130
    except ProjectorError as exc:
        return _fail(str(exc), exc.exit_code)
    except ProducerError as exc:
        return _fail(str(exc), 1)
    except OperationalError as exc:
        where = redacted(settings.database_url) if settings is not None else "the database"
        return _fail(f"database {where} is unavailable: {_first_line(exc)}", 1)
    except ProgrammingError as exc:
        return _fail(
            f"database error (is the read model migrated? run `projector migrate`): "
            f"{_first_line(exc)}",
            1,
        )
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback on request
        if os.environ.get("PROJECTOR_DEBUG"):
            traceback.print_exc()
        return _fail(
            f"unexpected {type(exc).__name__}: {_first_line(exc)}"
            " (set PROJECTOR_DEBUG=1 for details)",
            70,
        )


def _fail(message: str, code: int) -> int:
    line = printable(" ".join(message.split()))  # one line, whatever the message held
    if len(line) > 500:
        line = line[:497] + "..."
    print(f"projector: error: {line}", file=sys.stderr)
    return code


def _first_line(exc: Any) -> str:
    orig = getattr(exc, "orig", None)
    try:
        text = str(orig if orig is not None else exc).strip()
    except Exception:  # noqa: BLE001 - a message that cannot even be printed
        return type(exc).__name__
    return text.splitlines()[0][:300] if text else type(exc).__name__


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json_line(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


class _TextFormatter(logging.Formatter):
    """Log lines as text; a topic, an id or a reason in them is shown, never obeyed."""

    def format(self, record: logging.LogRecord) -> str:
        return printable_lines(super().format(record))


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LOG_FORMAT", "text") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        # kafka-python logs every reconnect attempt; our own retries say what matters.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        logging.getLogger("alembic").setLevel(logging.WARNING)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
