"""The API baseline: a bare Starlette endpoint in its own uvicorn process.

It does the least work `delivery(id) { id state riderId eventCount lastEventAt }`
needs: check the same bearer token, read the id from the request's variables, run
the primary-key SELECT of the served generation on a pooled connection, and return
the JSON the GraphQL answer holds. No GraphQL parsing, validation or resolvers:
the gap between the two is what the API's machinery costs.

    BARE_API_TOKEN=t DATABASE_URL=postgresql+psycopg://... python -m benchmarks.bare_api --port 8001
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: The served generation and the row, by primary key, in one statement.
SELECT = text(
    "SELECT delivery_id, state, rider_id, event_count, last_event_at FROM deliveries"
    " WHERE generation = (SELECT generation FROM generations WHERE status = 'active')"
    " AND delivery_id = :id"
)


def _iso(value: datetime | str) -> str:
    """DateTime as the API serializes it: UTC, with an offset (SQLite hands back text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def create_app(database_url: str, token: str) -> Starlette:
    expected = f"Bearer {token}".encode()
    engine: Engine | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal engine
        engine = create_engine(database_url, pool_size=16, max_overflow=8, pool_pre_ping=False)
        try:
            yield
        finally:
            engine.dispose()

    def fetch(delivery_id: str) -> dict[str, Any] | None:
        assert engine is not None
        with engine.connect() as conn:
            row = conn.execute(SELECT, {"id": delivery_id}).first()
        if row is None:
            return None
        return {"id": row.delivery_id, "state": row.state, "riderId": row.rider_id,
                "eventCount": row.event_count, "lastEventAt": _iso(row.last_event_at)}

    async def graphql(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"errors": [{"message": "unauthorized"}]}, status_code=401)
        try:
            body = json.loads(await request.body())
            delivery_id = str(body["variables"]["id"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"errors": [{"message": "bad request"}]}, status_code=400)
        delivery = await run_in_threadpool(fetch, delivery_id)
        return JSONResponse({"data": {"delivery": delivery}})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/graphql", graphql, methods=["POST"]),
                Route("/healthz", healthz, methods=["GET"])],
        lifespan=lifespan,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="bare Starlette baseline for the API benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvicorn

    app = create_app(os.environ["DATABASE_URL"], os.environ["BARE_API_TOKEN"])
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", lifespan="on")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
