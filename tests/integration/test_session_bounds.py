"""The projector bounds its own PostgreSQL sessions (migrations excepted)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from projector.bootstrap import open_engine
from projector.settings import Settings

pytestmark = pytest.mark.integration


def test_projector_sessions_carry_their_bounds_and_migrations_none(pg_url: str) -> None:
    settings = Settings(database_url=pg_url, idle_in_transaction_timeout_ms=4000,
                        statement_timeout_ms=20000)
    for bounded, expected in ((True, ("4s", "20s")), (False, ("0", "0"))):
        engine = open_engine(settings, check=False, bounded=bounded)
        try:
            with engine.connect() as conn:
                got = (conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar(),
                       conn.execute(text("SHOW statement_timeout")).scalar())
        finally:
            engine.dispose()
        assert got == expected
