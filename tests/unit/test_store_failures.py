"""Which database failures the projector retries: by SQLSTATE or SQLite code, never by wording."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from psycopg import errors as pg
from sqlalchemy.exc import IntegrityError, OperationalError

from projector.store.failures import is_database_error, is_retryable

pytestmark = pytest.mark.unit


def _sqlite(code: int, message: str = "some text") -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize("exc", [
    pg.SerializationFailure(), pg.DeadlockDetected(), pg.LockNotAvailable(),
    pg.AdminShutdown(), pg.CannotConnectNow(), pg.QueryCanceled(), pg.TooManyConnections(),
    pg.ConnectionFailure(),
    psycopg.OperationalError("connection is bad"),  # no SQLSTATE: the connection is gone
    psycopg.InterfaceError("the connection is closed"),
    _sqlite(sqlite3.SQLITE_BUSY), _sqlite(sqlite3.SQLITE_LOCKED),
    _sqlite(sqlite3.SQLITE_BUSY | (1 << 8)),  # an extended code of BUSY (BUSY_RECOVERY)
], ids=lambda e: type(e).__name__)
def test_retryable(exc: BaseException) -> None:
    assert is_database_error(exc)
    assert is_retryable(exc)
    assert is_retryable(OperationalError("stmt", {}, exc))  # as SQLAlchemy wraps it


@pytest.mark.parametrize("exc", [
    pg.UniqueViolation(), pg.UndefinedTable(), pg.SyntaxError(), pg.NumericValueOutOfRange(),
    pg.InsufficientPrivilege(),
    # The words the old text match retried forever: a bad statement that mentions them.
    pg.UndefinedColumn('column "connection_timeout_locked" does not exist'),
    _sqlite(sqlite3.SQLITE_CONSTRAINT, "UNIQUE constraint failed: deadlock.connection"),
    _sqlite(sqlite3.SQLITE_ERROR, "no such table: timeout"),
], ids=lambda e: type(e).__name__)
def test_not_retryable(exc: BaseException) -> None:
    assert is_database_error(exc)
    assert not is_retryable(exc)
    assert not is_retryable(IntegrityError("stmt", {}, exc))


def test_other_errors_are_not_database_errors() -> None:
    assert not is_database_error(ValueError("connection timeout"))
