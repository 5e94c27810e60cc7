"""The export's window: which applied times one run reads, and what it commits (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from projector.analytics.settings import default_warehouse, warehouse_uri
from projector.analytics.window import ExportedState, next_window, parse_state, state_properties

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
OVERLAP, SETTLE = timedelta(minutes=5), timedelta(seconds=2)


def _next(state: ExportedState, generation: int = 1, now: datetime = NOW):  # type: ignore[no-untyped-def]
    return next_window(state, generation, now, overlap=OVERLAP, settle=SETTLE)


def test_the_first_export_reads_everything_up_to_the_settle_lag() -> None:
    w = _next(ExportedState(None, None))
    assert w.first and w.lower is None and w.upper == NOW - SETTLE and w.since == w.upper


def test_a_next_export_reads_the_overlap_again_and_drops_the_lakes_ids_there() -> None:
    mark = NOW - timedelta(minutes=30)
    w = _next(ExportedState(mark, 1, since=mark - timedelta(days=1)))
    assert w.lower == mark - OVERLAP == w.drop_lake_ids_since and not w.drop_all_lake_ids
    assert w.upper == NOW - SETTLE


def test_a_switch_of_generation_reads_the_new_one_whole_against_every_lake_id() -> None:
    w = _next(ExportedState(NOW - timedelta(hours=1), 1), generation=2)
    assert w.generation == 2 and w.lower is None and w.drop_all_lake_ids and not w.first


def test_an_overlap_reaching_back_before_the_switch_checks_every_lake_id() -> None:
    switched = NOW - timedelta(minutes=1)
    w = _next(ExportedState(switched, 2, since=switched), generation=2)
    assert w.drop_all_lake_ids and w.lower == switched - OVERLAP and w.since == switched


def test_a_clock_gone_back_never_reads_less_than_the_last_export() -> None:
    mark = NOW + timedelta(minutes=10)
    assert _next(ExportedState(mark, 1, since=mark - timedelta(days=1))).upper == mark


def test_the_state_round_trips_through_the_table_properties() -> None:
    w = _next(ExportedState(None, None), generation=3)
    assert parse_state(state_properties(w)) == ExportedState(w.upper, 3, w.upper)
    assert parse_state({}) == ExportedState(None, None)


def test_the_warehouse_defaults_beside_the_sqlite_file() -> None:
    assert default_warehouse("sqlite:////data/rm.db") == "/data/rm-warehouse"
    assert default_warehouse("postgresql+psycopg://u@h/db") == "./warehouse"
    assert warehouse_uri("/data/w") == "file:///data/w"
    assert warehouse_uri("s3://bucket/p/") == "s3://bucket/p"
