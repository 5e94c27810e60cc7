"""What resolvers reach: the app's long-lived services and the request's read session."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from query_api.database import ReadDatabase
from query_api.feed import ChangeFeed
from query_api.limits.lanes import HeavyLane
from query_api.offsets import EndOffsets
from query_api.session import ReadSession
from query_api.settings import Settings


@dataclass
class Services:
    """Owned by the app's lifespan: built at start, closed at shutdown."""

    settings: Settings
    database: ReadDatabase
    end_offsets: EndOffsets
    feed: ChangeFeed
    #: Where operations estimated as heavy run (None: everything on the main loop).
    heavy: HeavyLane | None = None

    @property
    def engine(self) -> Engine:
        return self.database.engine

    def new_session(self) -> ReadSession:
        return ReadSession(self.database, max_nodes=self.settings.max_nodes,
                           max_payload_bytes=self.settings.max_payload_bytes)


#: The session of the operation being executed (set by ``extensions.OperationScope``).
current_session: ContextVar[ReadSession | None] = ContextVar("current_session", default=None)


@dataclass
class Context:
    services: Services
    request: Any = None
    response: Any = None
    #: graphql-transport-ws ``connection_init`` payload (strawberry fills it in).
    connection_params: dict[str, Any] | None = None
    _session: ReadSession | None = field(default=None, repr=False)

    @property
    def session(self) -> ReadSession:
        """The current operation's session: one per operation, even on a shared WebSocket."""
        session = current_session.get()
        if session is not None:
            return session
        if self._session is None:  # outside an operation scope (direct calls in tests)
            self._session = self.services.new_session()
        return self._session
