"""``create_app(settings)``: the Starlette application of the query API.

Routes: ``/graphql`` (HTTP and graphql-transport-ws), ``/healthz`` (the process
is up), ``/readyz`` (the read model is reachable and migrated), ``/metrics``
(Prometheus), and the back-office page at ``/`` when ``settings.serves_ui``
(``query_api.ui``). The lifespan owns the engine, the end-offset probe and the change
feed; nothing connects before it starts.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from query_api.context import Services
from query_api.database import ReadDatabase
from query_api.feed import ChangeFeed
from query_api.limits.auth import BearerAuth
from query_api.limits.body import BodyLimit
from query_api.limits.lanes import HeavyLane
from query_api.limits.operations import operation_counts
from query_api.limits.shape import MAX_NESTING
from query_api.limits.sockets import SocketLimit, socket_counts
from query_api.metrics import Metrics
from query_api.offsets import EndOffsets
from query_api.request_counter import CountRequests
from query_api.schema import build_schema
from query_api.session import ReadSession, connection_check
from query_api.settings import Settings
from query_api.ui import PATHS as UI_PATHS
from query_api.ui import routes as ui_routes
from query_api.view import GraphQLApp
from schema.db import SchemaError

log = logging.getLogger(__name__)

OPEN_PATHS = ("/healthz", "/readyz")
PATHS = ("/graphql", "/healthz", "/readyz", "/metrics")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    metrics = Metrics()

    schema = build_schema(settings, metrics.observe)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        database = ReadDatabase(settings)
        heavy = HeavyLane()
        heavy.start()
        database.heavy_loop = heavy.loop

        def new_session() -> ReadSession:
            return ReadSession(database, max_nodes=settings.max_nodes,
                               max_payload_bytes=settings.max_payload_bytes)

        services = Services(
            settings=settings,
            database=database,
            end_offsets=EndOffsets(settings),
            feed=ChangeFeed(database.engine, settings, new_session),
            heavy=heavy,
        )
        app.state.services = services
        metrics.bind(services)
        try:
            yield
        finally:
            await heavy.run(services.feed.stop)  # the feed lives on the lane (subscriptions)
            heavy.stop()
            services.end_offsets.close()
            database.dispose()

    def services() -> Services:
        return app.state.services  # type: ignore[no-any-return]

    operations = operation_counts(
        settings.ws_max_subscriptions, settings.ws_max_subscriptions_per_client
    )
    graphql = GraphQLApp(
        schema,
        services=services,
        tokens=settings.tokens,
        max_nesting=MAX_NESTING,
        operation_counts=operations,
        max_subscriptions_per_connection=settings.ws_max_operations_per_socket,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
        graphql_ide=None if settings.production else "graphiql",
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        def check() -> int:
            with services().engine.connect() as conn:
                return connection_check(conn)

        try:
            generation = await anyio.to_thread.run_sync(check)
        except SchemaError as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        except SQLAlchemyError as exc:
            log.warning("readyz: the read model is unreachable: %s", exc)
            return JSONResponse(
                {"status": "unavailable", "reason": "the read-model database is unreachable"},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "generation": generation})

    def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
    ]
    open_paths: tuple[str, ...] = OPEN_PATHS
    if settings.serves_ui:  # the back-office page at `/`: files only, its data needs a token
        routes += ui_routes()
        open_paths += UI_PATHS
    sockets = socket_counts(settings.ws_max_sockets, settings.ws_max_sockets_per_client)
    metrics.bind_websockets(sockets, operations)
    middleware = [
        Middleware(CountRequests, count=_counter(metrics), paths=PATHS),
        Middleware(BearerAuth, tokens=settings.tokens, open_paths=open_paths),
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        Middleware(SocketLimit, counts=sockets),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    return app


def _counter(metrics: Metrics) -> Callable[[str, str, int], None]:
    def count(path: str, method: str, status: int) -> None:
        metrics.http_requests.labels(path, method, str(status)).inc()

    return count
