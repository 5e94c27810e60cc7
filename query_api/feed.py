"""Change notifications for ``deliveryUpdated``.

On PostgreSQL the projector sends a notification (``schema.notify``) after each
committed batch; one LISTEN connection per process (opened on the first
subscriber) wakes the subscribers of those ids. On SQLite there is no such
channel, so one poll per process (started with the first subscriber, stopped
after the last) asks every ``poll_interval_seconds`` which deliveries had an
event applied since its last look, and wakes the subscribers of those ids the
same way: a thousand subscribers cost one statement per interval, not a
thousand. Either way a subscriber compares the whole current row with the one
it last saw and pushes only real changes; on PostgreSQL a slow poll also runs as
a safety net for notifications lost while the LISTEN connection was
re-established (the SQLite poll loses nothing: it reads the table).

``changes(filter)`` serves ``deliveriesUpdated``: every delivery that changes and
matches the filter, found from the ids the listener or the poll names; while
neither is up, from the history's ``applied_at`` by each subscriber itself.

The feed yields rows, each with the read session it was read in (open until the
consumer asks for the next one); the GraphQL layer turns them into types.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import RowMapping, make_url

from query_api import reads
from query_api.errors import Busy
from query_api.session import ReadSession
from query_api.settings import Settings
from schema.notify import NOTIFY_CHANNEL, parse_notification

log = logging.getLogger(__name__)

#: On PostgreSQL, how often a subscriber re-reads its row even without a notification.
SAFETY_POLL_SECONDS = 10.0
#: A filtered subscription looks this far behind the newest change it saw.
CHANGE_MARGIN = timedelta(seconds=2)
#: Most rows one look of a filtered subscription pushes (the newest first).
MAX_PUSH = 500
#: Fingerprints a filtered subscription keeps, to push each change once.
MAX_REMEMBERED = 10_000
#: After the SQLite poll failed, how long before it is tried again.
RETRY_SECONDS = 2.0


class _Watcher:
    """A filtered subscriber: woken with the ids a notification named, or everything."""

    def __init__(self) -> None:
        self.signal = asyncio.Event()
        self.ids: set[str] = set()
        self.everything = False


class ChangeFeed:
    def __init__(
        self, engine: Engine, settings: Settings, new_session: Callable[[], ReadSession]
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._new_session = new_session
        self._pg = engine.dialect.name == "postgresql"
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self._watchers: set[_Watcher] = set()
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        #: Statements the shared SQLite poll has run (a test counts them).
        self.polls = 0
        self._poll_failed_at = -RETRY_SECONDS
        self._said_not_up = False
        self._in_flight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values()) + len(self._watchers)

    @property
    def listening(self) -> bool:
        return self._ready.is_set()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
            self._listener = None

    async def updates(self, delivery_id: str) -> AsyncIterator[tuple[RowMapping, ReadSession]]:
        """Each new state of ``delivery_id`` after the moment of subscribing, with its session."""
        signal = asyncio.Event()
        self._subscribers.setdefault(delivery_id, set()).add(signal)
        try:
            await self._start_watching()
            seen = await self._current(delivery_id)
            while True:
                await self._sleep(signal)
                signal.clear()
                session = self._new_session()
                try:
                    row = await session.run(reads.delivery_fingerprint, delivery_id)
                    current = _fingerprint(row)
                    if row is not None and current is not None and current != seen:
                        seen = current
                        # Its fields (history too) are resolved in this session's snapshot.
                        yield row, session
                finally:
                    await session.aclose()
        finally:
            subscribers = self._subscribers.get(delivery_id)
            if subscribers is not None:
                subscribers.discard(signal)
                if not subscribers:
                    del self._subscribers[delivery_id]

    async def _current(self, delivery_id: str) -> dict[str, Any] | None:
        return _fingerprint(await self._once(reads.delivery_fingerprint, delivery_id))

    async def changes(
        self, spec: reads.DeliveryFilterSpec
    ) -> AsyncIterator[tuple[RowMapping, ReadSession]]:
        """Each delivery that changes after the moment of subscribing and then matches
        ``spec``, with its session (``deliveriesUpdated``).

        On PostgreSQL the notifications name the changed ids; on SQLite (or while
        LISTEN is down) the subscriber asks which deliveries had an event applied
        since its last look, ``CHANGE_MARGIN`` back so that a batch committed
        out of order is not missed; the fingerprint of each row pushed keeps a second
        look from pushing it twice.
        """
        watcher = _Watcher()
        self._watchers.add(watcher)
        try:
            await self._start_watching()
            pushed: dict[str, dict[str, Any]] = {}
            since = await self._once(reads.newest_applied)
            if since is not None:  # rows changed just before subscribing are not news
                ids, _ = await self._once(reads.changed_since, since - CHANGE_MARGIN)
                for row in await self._once(reads.matching_deliveries, spec, ids, MAX_PUSH):
                    pushed[row["delivery_id"]] = _fingerprint(row) or {}
            while True:
                await self._sleep(watcher.signal)
                listening = self._ready.is_set()
                watcher.signal.clear()
                named, watcher.ids, everything = watcher.ids, set(), watcher.everything
                watcher.everything = False
                session = self._new_session()
                try:
                    if listening and not everything:
                        ids = sorted(named)
                    else:
                        start = None if since is None else since - CHANGE_MARGIN
                        ids, since = await session.run(reads.changed_since, start)
                    rows = await session.run(reads.matching_deliveries, spec, ids, MAX_PUSH)
                    for row in reversed(rows):  # oldest first: the newest ends on top
                        current = _fingerprint(row) or {}
                        if pushed.get(row["delivery_id"]) != current:
                            pushed[row["delivery_id"]] = current
                            while len(pushed) > MAX_REMEMBERED:
                                del pushed[next(iter(pushed))]
                            yield row, session
                finally:
                    await session.aclose()
        finally:
            self._watchers.discard(watcher)

    async def _once(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a session of its own. Calls with the same arguments while one
        runs share its statement and its answer (read-only, never changed by a caller): a
        burst of subscribers to one delivery, or with one filter, reads once, not once
        each. One caller going away does not cancel the others' read."""
        key = (fn, *(tuple(a) if isinstance(a, list) else a for a in args))
        running = self._in_flight.get(key)
        if running is None:
            running = asyncio.ensure_future(self._read(fn, *args))
            self._in_flight[key] = running
            running.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(running)

    def _forget(self, key: tuple[Any, ...], done: asyncio.Future[Any]) -> None:
        self._in_flight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: whoever still waits gets it from the shield

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        session = self._new_session()
        try:
            return await session.run(fn, *args)
        finally:
            await session.aclose()

    def _ensure_watching(self) -> None:
        """The process's one listener (PostgreSQL) or poll (SQLite), started if it is not
        running (a failed poll is retried after ``RETRY_SECONDS``)."""
        if self._listener is not None and not self._listener.done():
            return
        if not self._pg and time.monotonic() < self._poll_failed_at + RETRY_SECONDS:
            return
        work = self._listen() if self._pg else self._poll()
        self._listener = asyncio.create_task(work, name="delivery-updated-listener")

    async def _start_watching(self) -> None:
        """Start the listener or poll and give it a moment to come up; meanwhile, and
        whenever it is down, subscribers poll."""
        self._ensure_watching()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=5)
        except TimeoutError:
            if not self._said_not_up:  # once until it is up, not once per subscriber
                self._said_not_up = True
                log.warning("%s is not up; subscriptions poll meanwhile",
                            f"LISTEN {NOTIFY_CHANNEL}" if self._pg else "the change poll")

    async def _sleep(self, signal: asyncio.Event) -> None:
        """Until ``signal`` (a change named), or the subscriber's own poll is due: at
        ``poll_interval_seconds`` while nothing watches for it, the safety interval on
        PostgreSQL, never on SQLite (its shared poll misses nothing and wakes everyone
        when it stops)."""
        if self._ready.is_set() and not self._pg:
            await signal.wait()
            return
        self._ensure_watching()
        timeout = SAFETY_POLL_SECONDS if self._ready.is_set() else (
            self._settings.poll_interval_seconds)
        try:
            await asyncio.wait_for(signal.wait(), timeout=timeout)
        except TimeoutError:
            pass

    # -- SQLite: one poll for every subscriber -----------------------------------
    async def _poll(self) -> None:
        """Every ``poll_interval_seconds``, the ids whose events were applied since the
        last look (``CHANGE_MARGIN`` back, as a filtered subscriber looks), each woken once
        per new ``applied_at``; ends when the last subscriber has gone."""
        seen: dict[str, Any] = {}
        since: Any = None
        try:
            since = await self._once(reads.newest_applied)
            if since is not None:  # what was applied before the poll started is not news
                seen = dict(await self._once(reads.applied_since, since - CHANGE_MARGIN))
            self._ready.set()
            self._said_not_up = False
            while self.subscriber_count:
                await asyncio.sleep(self._settings.poll_interval_seconds)
                start = None if since is None else since - CHANGE_MARGIN
                try:
                    found = await self._once(reads.applied_since, start)
                except Busy:  # slots taken (a burst of subscribers): look again next time,
                    continue  # rather than send every subscriber polling on its own
                rows = [(i, at) for i, at in found if at is not None]
                self.polls += 1
                woken = [i for i, at in rows if seen.get(i) != at]
                for delivery_id, at in rows:
                    seen[delivery_id] = at
                    if since is None or at > since:
                        since = at
                if since is not None:  # forget what the next look cannot return again
                    horizon = since - CHANGE_MARGIN
                    seen = {i: at for i, at in seen.items() if at >= horizon}
                if woken:
                    self._wake(woken)
        except Exception as exc:  # noqa: BLE001 - subscribers fall back to their own polls
            self._poll_failed_at = time.monotonic()
            log.warning("the change poll stopped (%s); subscriptions poll meanwhile", exc)
        finally:
            self._ready.clear()
            self._wake(None)  # whoever waits without a timeout looks once, then polls

    # -- PostgreSQL LISTEN ------------------------------------------------------

    def _wake(self, ids: list[str] | None) -> None:
        if ids is None:
            targets = [s for group in self._subscribers.values() for s in group]
        else:
            targets = [s for i in ids for s in self._subscribers.get(i, ())]
        for signal in targets:
            signal.set()
        for watcher in self._watchers:
            if ids is None:
                watcher.everything = True
            else:
                watcher.ids.update(ids)
            watcher.signal.set()

    def _dispatch(self, payload: str) -> None:
        parsed = parse_notification(payload)
        self._wake(parsed[1] if parsed is not None else None)  # unreadable: every one looks

    async def _listen(self) -> None:
        import psycopg

        conninfo = (
            make_url(self._engine.url.render_as_string(hide_password=False))
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._ready.set()
                    self._said_not_up = False
                    self._wake(None)  # whatever changed while we were not listening
                    backoff = 0.5
                    async for note in conn.notifies():
                        self._dispatch(note.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN %s lost (%s); retrying in %.1fs", NOTIFY_CHANNEL, exc, backoff)
            self._ready.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def _fingerprint(row: Any) -> dict[str, Any] | None:
    """What a subscriber sees of a row: a rebuild's switch alone is no change."""
    if row is None:
        return None
    return {key: value for key, value in dict(row).items() if key != "generation"}
