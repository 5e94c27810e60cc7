"""The hot path's own encoding of rows agrees with what SQLAlchemy writes and reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from projector.store.rows import json_text, jsonb_text, load_json
from projector.store.sqlite import _read_time, sqlite_time
from schema.tables import UtcDateTime

pytestmark = pytest.mark.unit

_instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5))]),
)


@given(_instants)
def test_sqlite_times_are_written_and_read_as_sqlalchemy_does(value: datetime) -> None:
    dialect = sqlite.dialect()
    column = UtcDateTime()
    impl = column.dialect_impl(dialect)
    bind = impl.impl_instance.bind_processor(dialect)  # type: ignore[attr-defined]
    assert bind is not None
    expected = bind(column.process_bind_param(value, dialect))
    assert sqlite_time(value) == expected
    assert _read_time(expected) == value


@given(st.recursive(
    st.none() | st.booleans() | st.text() | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
))
def test_json_documents_survive_the_round_trip_with_their_number_types(value: object) -> None:
    back = load_json(json_text(value))
    assert back == value
    assert repr(back) == repr(value)


def test_jsonb_text_writes_a_nul_as_u_fffd_and_leaves_other_text_alone() -> None:
    plain = json_text({"a": "b\\u0000", "n": 18446744073709551616})  # an escaped backslash
    assert jsonb_text(plain) == plain
    text = json_text({"k\x00": ["\x00", {"v": "a\x00b"}], "n": 18446744073709551616})
    assert "\\u0000" in text
    assert json.loads(jsonb_text(text)) == {
        "k\ufffd": ["\ufffd", {"v": "a\ufffdb"}], "n": 18446744073709551616}
