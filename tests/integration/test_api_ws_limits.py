"""WebSocket limits against a real server (issue #20), on the SQLite read model:
the connection-init timeout, and one shared change poll for every subscriber, on the
heavy lane's loop (the flood: tests/fault/test_ws_flood.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.api_support import copy_stream, live_server, project, settings_for
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

TOKENS = ("alpha", "beta", "gamma")
SUBSCRIPTION = 'subscription { deliveryUpdated(id: "D-1001") { id state } }'
PROBE = '{ delivery(id: "D-1001") { id state } }'


async def _open(base: str, token: str) -> ClientConnection | int:
    """An acknowledged socket, or the HTTP status that refused it."""
    try:
        ws = await connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           additional_headers={"Authorization": f"Bearer {token}"},
                           open_timeout=20, max_queue=None, ping_interval=None)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
    assert ack == {"type": "connection_ack"}, ack
    return ws


def test_a_socket_that_never_initialises_is_closed(tmp_path: Path) -> None:
    stream = copy_stream("api_happy.jsonl", tmp_path)
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    project(url, stream)
    with live_server(settings_for(url, stream, ws_init_timeout_seconds=1.0)) as (base, _):
        async def silent() -> tuple[int | None, float]:
            async with connect(f"ws://{base}/graphql",
                               subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
                start = time.monotonic()
                try:
                    await asyncio.wait_for(ws.recv(), timeout=10)
                except Exception:  # noqa: BLE001 - the close is what we wait for
                    pass
                return ws.close_code, time.monotonic() - start

        code, waited = asyncio.run(silent())
    assert code == 4408 and 0.5 < waited < 5, (code, waited)


def test_sqlite_subscribers_share_one_poll(tmp_path: Path) -> None:
    """Two hundred subscribers, idle, cost one statement per poll interval, not one each
    (that changes still reach them through the poll: tests/e2e/test_api_*subscription.py)."""
    stream = copy_stream("api_happy.jsonl", tmp_path)
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    project(url, stream)
    with live_server(settings_for(url, stream)) as (base, app):
        feed = app.state.services.feed
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(str(args[2])[:40])

        async def scenario() -> tuple[int, int]:
            sockets = [await _open(base, "x") for _ in range(2)]
            for i, ws in enumerate(sockets):
                assert not isinstance(ws, int)
                for j in range(100):
                    query = (SUBSCRIPTION if j % 2 else
                             'subscription { deliveriesUpdated { id } }')
                    await ws.send(json.dumps({"id": f"{i}-{j}", "type": "subscribe",
                                              "payload": {"query": query}}))
            await asyncio.to_thread(wait_until, lambda: feed.subscriber_count == 200,
                                    timeout=30, message="200 subscribers")
            # subscriptions run on the heavy lane: the feed's poll lives on the lane's loop
            lane = app.state.services.heavy.loop
            assert lane is not None and feed._listener.get_loop() is lane
            event.listen(app.state.services.engine, "before_cursor_execute", count)
            for _ in range(60):  # until the subscribers' first reads are done (bounded)
                seen = len(statements)
                await asyncio.sleep(1.0)
                if len(statements) - seen <= 4:
                    break
            del statements[:]
            polls = feed.polls
            await asyncio.sleep(3.0)
            event.remove(app.state.services.engine, "before_cursor_execute", count)
            for ws in sockets:
                assert not isinstance(ws, int)
                await ws.close()
            return len(statements), feed.polls - polls

        ran, polls = asyncio.run(scenario())
    # 3 s at 0.5 s: about six polls, each one statement (and SQLite's BEGIN); no
    # subscriber reads anything of its own while nothing changes
    assert 3 <= polls <= 8 and ran <= 2 * polls + 2, (ran, polls, statements)
    assert all(s.startswith("SELECT delivery_events.delivery_id, max(") or s == "BEGIN"
               for s in statements), statements
