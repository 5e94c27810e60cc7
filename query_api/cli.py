"""`query-api`: serve the GraphQL API over the read model with uvicorn.

Exit 0 after a clean shutdown; otherwise one clear line on stderr (bad flag or
setting, unreachable or unmigrated database, unsafe listener), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from query_api.errors import ConfigError, DatabaseUnavailable, QueryApiError
from query_api.settings import Settings

EPILOG = """\
settings (environment; flags of the same meaning win):
  DATABASE_URL             read model (default sqlite:///./delivery_read_model.db)
  EVENT_SOURCE             'kafka' (default) or the JSON Lines path the projector reads;
                           used to report end offsets and lag in projectionStatus
  KAFKA_BOOTSTRAP_SERVERS  default localhost:9092
  KAFKA_TOPIC              default delivery-events
  BUSINESS_TIMEZONE        zone that defines a day in riderDailyStats (default UTC)
  QUERY_API_TOKENS         comma-separated bearer tokens; when set every request to
                           /graphql and /metrics needs 'Authorization: Bearer <token>'
  QUERY_API_ENV            'development' (default) or 'production': no introspection,
                           no GraphiQL
  QUERY_API_HOST, QUERY_API_PORT            listen address (default 127.0.0.1:8000)
  QUERY_API_ALLOW_UNAUTHENTICATED=1         like --allow-unauthenticated
  QUERY_API_MAX_DEPTH (12), QUERY_API_MAX_ALIASES (30), QUERY_API_MAX_TOKENS (2000),
  QUERY_API_MAX_NODES (100000), QUERY_API_MAX_BODY_BYTES (65536)   limits on one request
  QUERY_API_MAX_COST (5000)      budget checked before any SQL: the `first` of every
                                 list field, summed over aliases and fragments
  QUERY_API_STATEMENT_TIMEOUT_SECONDS (5)   longest SQL statement; 0 turns it off
  QUERY_API_DB_CONCURRENCY (4)   operations reading the database at once (pooled
                                 connections, DB threads); the rest wait in a queue
  QUERY_API_QUEUE_TIMEOUT_SECONDS (10)      longest wait in that queue ("busy" after)
  QUERY_API_HEAVY_COST (200), QUERY_API_HEAVY_CONCURRENCY (4)   operations estimated
                                 over HEAVY_COST rows run on a separate event loop
                                 with their own slots, so they never hold up the rest

Without tokens the API listens only on a loopback address, unless
--allow-unauthenticated says something in front of it authenticates.
/healthz and /readyz never need a token.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="query-api",
        description="Serves the GraphQL API over the delivery read model (CQRS read side).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
    parser.add_argument("--database-url", help="SQLAlchemy URL of the read model (DATABASE_URL)")
    parser.add_argument("--event-source", help="'kafka' or a JSON Lines path (EVENT_SOURCE)")
    parser.add_argument("--bootstrap-servers", help="Kafka brokers (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic", help="Kafka topic (KAFKA_TOPIC)")
    parser.add_argument("--business-timezone", help="zone of a statistics day (BUSINESS_TIMEZONE)")
    parser.add_argument(
        "--production",
        action="store_true",
        help="production mode: introspection and GraphiQL off (QUERY_API_ENV=production)",
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve without QUERY_API_TOKENS on a non-loopback address "
        "(only behind something that authenticates)",
    )
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the port (default 1; query_api/workers.py)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(
        host=args.host,
        port=args.port,
        database_url=args.database_url,
        event_source=args.event_source,
        kafka_bootstrap_servers=args.bootstrap_servers,
        kafka_topic=args.topic,
        business_timezone=args.business_timezone,
        environment="production" if args.production else None,
        allow_unauthenticated=True if args.allow_unauthenticated else None,
    )


def check_database(settings: Settings) -> int:
    """The active generation, or ``DatabaseUnavailable`` with a one-line reason."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from query_api.session import connection_check
    from schema.db import SchemaError, make_engine, redacted

    try:
        url = make_url(settings.database_url)
    except ArgumentError as exc:
        raise ConfigError(f"DATABASE_URL is not usable: {exc}") from exc
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        path = Path(database)
        if not database.startswith("file:") and not path.is_file():
            raise DatabaseUnavailable(
                f"no read model at {path}; run `projector migrate` (and `projector run`) first"
            )
    try:
        engine = make_engine(settings.database_url, writer=False)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise ConfigError(f"DATABASE_URL is not usable: {exc}") from exc
    try:
        with engine.connect() as conn:
            return connection_check(conn)
    except SchemaError as exc:
        raise DatabaseUnavailable(f"{redacted(settings.database_url)}: {exc}") from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(
            f"cannot reach the read model at {redacted(settings.database_url)}: {reason}"
        ) from exc
    finally:
        engine.dispose()


def check_address(host: str, port: int) -> None:
    """Fail with the reason (address in use, not ours) before uvicorn hides it in its exit code."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = load_settings(args)
        if args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {args.workers}")
        refusal = settings.refuse_open_listener()
        if refusal:
            raise ConfigError(refusal)
        generation = check_database(settings)
        check_address(settings.host, settings.port)
    except QueryApiError as exc:
        print(f"query-api: error: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("query_api").info(
        "serving generation %s on http://%s:%s/graphql (%s%s)",
        generation, settings.host, settings.port, settings.environment,
        "" if settings.tokens else ", no tokens: unauthenticated",
    )
    import uvicorn

    from query_api.app import create_app

    options: dict[str, Any] = dict(
        log_level="debug" if args.verbose else "info",
        ws="websockets-sansio",
        # A WebSocket message is bounded like an HTTP body (QUERY_API_MAX_BODY_BYTES).
        ws_max_size=settings.max_body_bytes,
        lifespan="on",
    )
    if args.workers > 1:
        from query_api.workers import serve

        return serve(settings, args.workers, options)
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, **options)
    except (OSError, SystemExit) as exc:
        code = exc.code if isinstance(exc, SystemExit) else None
        if code in (None, 0) and isinstance(exc, SystemExit):
            return 0
        print(f"query-api: error: cannot serve on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

