"""Who a client is, for the per-client WebSocket limits: its token, else its address.

A bearer token names a client better than an address (many clients share a NAT,
one client may hold several addresses); without one, the address is all there
is. The token itself is never kept: only a short digest of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from starlette.types import Scope

from query_api._asgi import header


def client_key(scope: Scope, params: Mapping[str, Any] | None = None) -> str:
    """``token:<digest>`` for a request carrying ``Authorization`` (header, or the
    ``connection_init`` ``params``), else ``address:<ip>``."""
    presented: object = header(scope, b"authorization")
    if presented is None and params:
        presented = params.get("Authorization") or params.get("authorization")
    if isinstance(presented, str) and presented.strip():
        digest = hashlib.sha256(presented.strip().encode("utf-8", "surrogatepass")).hexdigest()
        return f"token:{digest[:16]}"
    client = scope.get("client")
    return f"address:{client[0] if client else 'unknown'}"


class Counts:
    """How many of something are held, on the whole server and per client, each bounded.

    Pure bookkeeping on one event loop: ``enter`` says why not (or takes one),
    ``leave`` gives one back.
    """

    def __init__(self, what: str, max_total: int, max_per_client: int,
                 total_setting: str, client_setting: str) -> None:
        self.what = what
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._settings = (total_setting, client_setting)
        self.total = 0
        self._per_client: dict[str, int] = {}
        #: Refusals since start by the bound that refused: "server", "client" (and
        #: "socket", counted by the caller that holds that bound).
        self.refused: dict[str, int] = {"server": 0, "client": 0, "socket": 0}

    def held_by(self, client: str) -> int:
        return self._per_client.get(client, 0)

    def enter(self, client: str) -> str | None:
        """Take one for ``client``; or, when a bound is reached, the reason (nothing taken)."""
        if self.total >= self.max_total:
            self.refused["server"] += 1
            return (f"the server holds {self.total} {self.what}, its most"
                    f" ({self._settings[0]}); try again later")
        held = self._per_client.get(client, 0)
        if held >= self.max_per_client:
            self.refused["client"] += 1
            return (f"this client holds {held} {self.what}, the most one client may"
                    f" ({self._settings[1]}); close some first")
        self.total += 1
        self._per_client[client] = held + 1
        return None

    def leave(self, client: str) -> None:
        held = self._per_client.get(client, 0)
        if held <= 0:
            return
        self.total -= 1
        if held == 1:
            del self._per_client[client]
        else:
            self._per_client[client] = held - 1
