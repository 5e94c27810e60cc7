"""Settings: one frozen object, read from the environment once at start.

Flags of ``query-api`` override single fields through ``with_overrides``; nothing
here connects to anything. The contract's variables (its section Settings), their
parsing and ``with_overrides`` are ``schema.settings.SharedSettings``' (the projector
reads them the same way); the limits, lanes and listener settings are the API's own.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo

from query_api.errors import ConfigError
from schema import settings as shared
from schema.settings import SettingError, SharedSettings

ENVIRONMENTS = ("development", "production")


@dataclass(frozen=True)
class Settings(SharedSettings):
    """The contract's variables (``SharedSettings``) and the API's own."""

    #: Accepted bearer tokens; empty means the API is open (loopback only, see cli).
    tokens: tuple[str, ...] = ()
    #: ``production`` turns introspection and GraphiQL off.
    environment: str = "development"
    #: Serve the back-office page at ``/`` (QUERY_API_UI); None: on in development,
    #: off in production.
    ui: bool | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    allow_unauthenticated: bool = False
    # Limits: a query deeper, longer or with more aliases than this is refused.
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    max_body_bytes: int = 64 * 1024
    #: Most result nodes a query may ask for (`first` of each connection multiplied
    #: down the tree, summed over aliases; a `first` from a variable counts as 500).
    max_nodes: int = 100_000
    #: The static cost budget (``query_api.limits.cost``): the `first` of every list field,
    #: summed over aliases and fragments, checked before any SQL runs.
    max_cost: int = 5000
    #: Most bytes of event data (history payloads, as stored) one operation may read
    #: (``query_api.limits.payload``); a page past it is refused before it is read.
    max_payload_bytes: int = 32 * 1024 * 1024
    #: Operations reading the database at once: pooled connections and DB worker
    #: threads. Further operations wait in a cheap asynchronous queue.
    db_concurrency: int = 4
    #: An operation estimated over this many rows runs on the heavy lane
    #: (``query_api.limits.lanes``), which has its own ``heavy_concurrency`` slots.
    heavy_cost: int = 200
    heavy_concurrency: int = 4
    #: Longest wait in that queue before the operation is refused as busy.
    queue_timeout_seconds: float = 10.0
    #: Longest run of one SQL statement (PostgreSQL statement_timeout, SQLite
    #: interrupt); 0 turns it off.
    statement_timeout_seconds: float = 5.0
    #: Bounded caches of parsed and validated documents.
    document_cache_size: int = 256
    #: How often a subscription re-reads its delivery on SQLite (no LISTEN/NOTIFY there).
    poll_interval_seconds: float = 0.5
    #: WebSockets open at once, on the whole server and per client (``query_api.limits.sockets``;
    #: a client is its bearer token when the upgrade carries one, else its address).
    ws_max_sockets: int = 1000
    ws_max_sockets_per_client: int = 100
    #: Operations (subscriptions, and queries sent over a socket) running at once: per
    #: socket, on the whole server, and per client (its token, else its address).
    ws_max_operations_per_socket: int = 100
    ws_max_subscriptions: int = 10_000
    ws_max_subscriptions_per_client: int = 1000
    #: A socket that has not sent ``connection_init`` by then is closed (4408).
    ws_init_timeout_seconds: float = 10.0
    #: Asking the source for its end offsets: timeout, and how long an answer is reused.
    end_offsets_timeout_seconds: float = 2.0
    end_offsets_cache_seconds: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        try:
            return cls._from_env(env)
        except SettingError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def _from_env(cls, env: Mapping[str, str]) -> Settings:
        d = cls()
        common = SharedSettings.from_env(env)
        _int, _float, _bool = shared.integer, shared.number, shared.flag
        settings = cls(
            **common.as_fields(),
            tokens=parse_tokens(env.get("QUERY_API_TOKENS", "")),
            environment=(env.get("QUERY_API_ENV") or d.environment).strip().lower(),
            ui=_bool(env, "QUERY_API_UI", False) if env.get("QUERY_API_UI", "").strip() else None,
            host=env.get("QUERY_API_HOST") or d.host,
            port=_int(env, "QUERY_API_PORT", d.port),
            allow_unauthenticated=_bool(
                env, "QUERY_API_ALLOW_UNAUTHENTICATED", d.allow_unauthenticated
            ),
            max_depth=_int(env, "QUERY_API_MAX_DEPTH", d.max_depth),
            max_aliases=_int(env, "QUERY_API_MAX_ALIASES", d.max_aliases),
            max_tokens=_int(env, "QUERY_API_MAX_TOKENS", d.max_tokens),
            max_body_bytes=_int(env, "QUERY_API_MAX_BODY_BYTES", d.max_body_bytes),
            max_nodes=_int(env, "QUERY_API_MAX_NODES", d.max_nodes),
            max_cost=_int(env, "QUERY_API_MAX_COST", d.max_cost),
            max_payload_bytes=_int(env, "QUERY_API_MAX_PAYLOAD_BYTES", d.max_payload_bytes),
            db_concurrency=_int(env, "QUERY_API_DB_CONCURRENCY", d.db_concurrency),
            heavy_cost=_int(env, "QUERY_API_HEAVY_COST", d.heavy_cost),
            heavy_concurrency=_int(env, "QUERY_API_HEAVY_CONCURRENCY", d.heavy_concurrency),
            queue_timeout_seconds=_float(
                env, "QUERY_API_QUEUE_TIMEOUT_SECONDS", d.queue_timeout_seconds
            ),
            statement_timeout_seconds=_float(
                env, "QUERY_API_STATEMENT_TIMEOUT_SECONDS", d.statement_timeout_seconds
            ),
            ws_max_sockets=_int(env, "QUERY_API_WS_MAX_SOCKETS", d.ws_max_sockets),
            ws_max_sockets_per_client=_int(
                env, "QUERY_API_WS_MAX_SOCKETS_PER_CLIENT", d.ws_max_sockets_per_client
            ),
            ws_max_operations_per_socket=_int(
                env, "QUERY_API_WS_MAX_OPERATIONS_PER_SOCKET", d.ws_max_operations_per_socket
            ),
            ws_max_subscriptions=_int(
                env, "QUERY_API_WS_MAX_SUBSCRIPTIONS", d.ws_max_subscriptions
            ),
            ws_max_subscriptions_per_client=_int(
                env, "QUERY_API_WS_MAX_SUBSCRIPTIONS_PER_CLIENT", d.ws_max_subscriptions_per_client
            ),
            ws_init_timeout_seconds=_float(
                env, "QUERY_API_WS_INIT_TIMEOUT_SECONDS", d.ws_init_timeout_seconds
            ),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        self.business_tz  # noqa: B018 - raises on a bad zone
        if self.environment not in ENVIRONMENTS:
            raise ConfigError(
                f"QUERY_API_ENV={self.environment!r} must be one of {', '.join(ENVIRONMENTS)}"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not between 0 and 65535")
        for name in ("max_depth", "max_aliases", "max_tokens", "max_body_bytes", "max_nodes",
                     "max_cost", "max_payload_bytes", "db_concurrency", "heavy_concurrency",
                     "ws_max_sockets", "ws_max_sockets_per_client",
                     "ws_max_operations_per_socket", "ws_max_subscriptions",
                     "ws_max_subscriptions_per_client"):
            if getattr(self, name) < 1:
                raise ConfigError(f"QUERY_API_{name.upper()} must be at least 1")
        if self.heavy_cost < 0:
            raise ConfigError("QUERY_API_HEAVY_COST must be 0 or more")
        if not self.ws_init_timeout_seconds > 0:
            raise ConfigError("QUERY_API_WS_INIT_TIMEOUT_SECONDS must be more than 0")
        if not self.queue_timeout_seconds > 0:
            raise ConfigError("QUERY_API_QUEUE_TIMEOUT_SECONDS must be more than 0")
        if not self.statement_timeout_seconds >= 0:
            raise ConfigError("QUERY_API_STATEMENT_TIMEOUT_SECONDS must be 0 (off) or more")
        if any(not t or any(c.isspace() for c in t) for t in self.tokens):
            raise ConfigError("QUERY_API_TOKENS holds an empty token or one with white space")

    @property
    def business_tz(self) -> tzinfo:
        try:
            return shared.time_zone(self.business_timezone, "BUSINESS_TIMEZONE")
        except SettingError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def serves_ui(self) -> bool:
        """Whether ``/`` serves the back-office page: QUERY_API_UI, else development only."""
        return (not self.production) if self.ui is None else self.ui

    def refuse_open_listener(self) -> str | None:
        """Why serving with these settings would be unsafe, or None.

        With no tokens anyone who can reach the port reads the whole read model, so an
        open API only listens on a loopback address unless explicitly allowed.
        """
        if self.tokens or self.allow_unauthenticated or is_loopback(self.host):
            return None
        return (
            f"refusing to listen on {self.host} without QUERY_API_TOKENS; set tokens, "
            "or pass --allow-unauthenticated (QUERY_API_ALLOW_UNAUTHENTICATED=1) "
            "if something in front of the API authenticates"
        )


def parse_tokens(raw: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in raw.split(",") if t.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
