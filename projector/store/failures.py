"""Which database failures are worth retrying: decided by error code, never by message text.

A retryable failure (the server went away, a deadlock or serialization failure, a
busy SQLite file) becomes ``StoreUnavailable``: the loop backs off and tries the
whole batch again. Anything else (a constraint violated, a bad statement) is a
bug or bad data and is raised as it is, loudly.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from sqlalchemy.exc import DBAPIError

#: SQLSTATE classes and codes (PostgreSQL) after which the same work may succeed.
RETRYABLE_SQLSTATE_CLASSES: Final = frozenset({"08", "53", "57"})  # connection, resources, operator
RETRYABLE_SQLSTATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "55006",  # object_in_use
    }
)
#: SQLite primary result codes after which the same work may succeed.
RETRYABLE_SQLITE_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_PROTOCOL,
    }
)


#: The server ended a session that stood idle inside a transaction past its bound.
IDLE_IN_TRANSACTION_TIMEOUT: Final = "25P03"


def is_stalled(exc: BaseException) -> bool:
    """True when PostgreSQL ended our session for standing still inside a transaction."""
    return getattr(driver_error(exc), "sqlstate", None) == IDLE_IN_TRANSACTION_TIMEOUT


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrapper, if any."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def is_retryable(exc: BaseException) -> bool:
    """True for a failure of the connection or of concurrency, not of the statement."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = driver_error(exc)
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(orig, sqlite3.Error) and code is not None:
        return code & 0xFF in RETRYABLE_SQLITE_CODES
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in RETRYABLE_SQLSTATES or sqlstate[:2] in RETRYABLE_SQLSTATE_CLASSES
    # psycopg raises OperationalError/InterfaceError without a SQLSTATE when the
    # connection itself is gone (refused, reset, closed under it).
    return _is_psycopg_connection_error(orig)


def _is_psycopg_connection_error(orig: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError))


def is_database_error(exc: BaseException) -> bool:
    """An error raised by SQLAlchemy or by a database driver (sqlite3, psycopg)."""
    if isinstance(exc, (DBAPIError, sqlite3.Error)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, psycopg.Error)


def first_line(exc: BaseException) -> str:
    """The driver's message, first line only, for logs and one-line errors."""
    orig = driver_error(exc)
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
