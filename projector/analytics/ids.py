"""The delivery's order, shop and rider ids after each of its events, for a whole history at once.

The lake's event rows carry the ids the fold (``schema.fold``) holds after that event,
so a query can group events by rider or shop without a join. Folding a million
events one ``Event`` at a time was most of a first export's time; yet only these
three fields are wanted, and the fold's rules for them are few. Over a delivery's
events in fold order:

- its order and shop ids are those of the last ``DeliveryCreated`` before the first
  terminal event (DELIVERED or CANCELLED: the fold ignores every event after it);
- its rider id is set by the last of these before the first terminal event: a
  ``DeliveryRiderAssigned`` (its rider), a ``DeliveryRiderUnassigned`` before the first
  pick-up (none: it clears an assigned rider, and there is none to clear otherwise),
  the first ``DeliveryPickedUp`` when it names a rider (that rider); nothing else
  moves it. An event the fold reads as unknown (an unknown type, or a known type at
  a version this build does not read) moves nothing.

So each id is carried forward from the last event that set it: window functions
over the history in fold order, run by DuckDB over the Arrow columns, with the ids
read out of the JSON text where each version holds them (``ID_PATHS``). This is a
second statement of those rules: ``tests/unit/test_analytics_ids.py`` holds it to
``schema.fold.steps`` over arbitrary histories of every type and version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from schema.events import EventType
from schema.versions import SHAPES

#: Per (type, version) that sets an id: the JSON path of each id the fold reads from
#: it (upcasting moves version 1's ``shopId`` to ``shop.id``, ``riderId`` to ``rider.id``).
ID_PATHS: Final[Mapping[tuple[str, int], Mapping[str, str]]] = {
    (EventType.CREATED.value, 1): {"order_id": "$.orderId", "shop_id": "$.shopId"},
    (EventType.CREATED.value, 2): {"order_id": "$.orderId", "shop_id": "$.shop.id"},
    (EventType.RIDER_ASSIGNED.value, 1): {"rider_id": "$.riderId"},
    (EventType.RIDER_ASSIGNED.value, 2): {"rider_id": "$.rider.id"},
    (EventType.PICKED_UP.value, 1): {"rider_id": "$.riderId"},
}
_SETTERS: Final = (EventType.CREATED.value, EventType.RIDER_ASSIGNED.value,
                   EventType.PICKED_UP.value)

_missing = {key for key in SHAPES if key[0] in _SETTERS} ^ set(ID_PATHS)
if _missing:
    raise RuntimeError(f"ID_PATHS and schema.versions.SHAPES disagree on {sorted(_missing)}")

#: The fold order (the contract, Folding rules, rule 1): event ids compare as bytes,
#: that is by code points in UTF-8.
FOLD_ORDER: Final = [("delivery_id", "ascending"), ("occurred_at", "ascending"),
                     ("_sequence", "ascending"), ("event_id", "ascending")]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _kind_sql() -> str:
    """The type as the fold reads it: NULL for an unknown one (or an unread version)."""
    cases = " OR ".join(
        f"(event_type = {_quote(t)} AND event_version = {v})" for t, v in sorted(SHAPES)
    )
    return f"CASE WHEN known <> 0 AND ({cases}) THEN event_type END"


def _path_sql(field: str) -> str:
    arms = " ".join(
        f"WHEN kind = {_quote(t)} AND event_version = {v} THEN"
        f" json_extract_string(data, {_quote(paths[field])})"
        for (t, v), paths in sorted(ID_PATHS.items()) if field in paths
    )
    return f"CASE {arms} END"


_CREATED = _quote(EventType.CREATED.value)
_ASSIGNED = _quote(EventType.RIDER_ASSIGNED.value)
_UNASSIGNED = _quote(EventType.RIDER_UNASSIGNED.value)
_PICKED_UP = _quote(EventType.PICKED_UP.value)
_TERMINAL = f"{_quote(EventType.COMPLETED.value)}, {_quote(EventType.CANCELLED.value)}"

#: Over ``history`` (pos: fold order; grp: the delivery), the three ids at each event.
IDS_SQL: Final = f"""
WITH kinds AS (
    SELECT pos, grp, kind,
           {_path_sql("order_id")} AS order_at,
           {_path_sql("shop_id")} AS shop_at,
           {_path_sql("rider_id")} AS rider_at
    FROM (SELECT pos, grp, data, event_version, {_kind_sql()} AS kind FROM history)
), before AS (
    SELECT *,
           coalesce(bool_or(kind IN ({_TERMINAL})) OVER earlier, false) AS ended,
           coalesce(bool_or(kind = {_PICKED_UP}) OVER earlier, false) AS picked_up
    FROM kinds
    WINDOW earlier AS (PARTITION BY grp ORDER BY pos
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), sets AS (
    SELECT pos, grp,
           CASE WHEN NOT ended AND kind = {_CREATED}
                THEN {{'order_id': order_at, 'shop_id': shop_at}} END AS created,
           CASE WHEN ended THEN NULL
                WHEN kind = {_ASSIGNED} THEN {{'rider_id': rider_at}}
                WHEN kind = {_UNASSIGNED} AND NOT picked_up THEN {{'rider_id': NULL::VARCHAR}}
                WHEN kind = {_PICKED_UP} AND NOT picked_up AND rider_at IS NOT NULL
                THEN {{'rider_id': rider_at}}
           END AS rider
    FROM before
)
SELECT (last_value(created IGNORE NULLS) OVER upto).order_id AS order_id,
       (last_value(created IGNORE NULLS) OVER upto).shop_id AS shop_id,
       (last_value(rider IGNORE NULLS) OVER upto).rider_id AS rider_id
FROM sets
WINDOW upto AS (PARTITION BY grp ORDER BY pos ROWS UNBOUNDED PRECEDING)
ORDER BY pos
"""


def in_fold_order(history: pa.Table) -> pa.Table:
    """``history`` sorted by delivery, then in fold order."""
    keyed = history.append_column("_sequence", pc.fill_null(history.column("sequence"), 0))
    return history.take(pc.sort_indices(keyed, sort_keys=FOLD_ORDER))


def ids_at_events(ordered: pa.Table) -> pa.Table:
    """``order_id``, ``shop_id``, ``rider_id`` after each event of ``ordered`` (histories
    of whole deliveries, each in fold order, as ``in_fold_order`` gives), row for row.

    ``ordered`` needs the columns ``delivery_id``, ``event_type``, ``known``,
    ``event_version`` and ``data`` (JSON text).
    """
    count = ordered.num_rows
    names = ("order_id", "shop_id", "rider_id")
    if count == 0:
        return pa.table({n: pa.array([], pa.string()) for n in names})
    delivery = ordered.column("delivery_id").combine_chunks()
    changed = pc.not_equal(delivery.slice(1), delivery.slice(0, count - 1))
    starts = pa.concat_arrays([pa.array([True]), changed])
    history = pa.table({
        "pos": pa.array(range(count), pa.int64()),
        "grp": pc.cumulative_sum(pc.cast(starts, pa.int64())),
        "event_type": ordered.column("event_type"),
        "known": ordered.column("known"),
        "event_version": ordered.column("event_version"),
        "data": ordered.column("data"),
    })
    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    })
    try:
        con.register("history", history)
        found = con.execute(IDS_SQL).to_arrow_table()
    finally:
        con.close()
    return pa.table({n: found.column(n).cast(pa.string()) for n in names})
