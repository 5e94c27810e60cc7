"""How far the lake is: `projector export status`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from projector.analytics.catalog import deliveries_table, events_table, open_catalog
from projector.analytics.layout import SNAPSHOT_OF_PROPERTY
from projector.analytics.settings import AnalyticsSettings
from projector.analytics.window import parse_state
from projector.store import analytics as reads


def export_status(engine: Engine, settings: AnalyticsSettings) -> dict[str, Any]:
    catalog = open_catalog(settings)
    events = events_table(catalog, create=False)
    current = deliveries_table(catalog, create=False)
    with engine.connect() as conn:
        generation = reads.active_generation(conn)
        served = reads.history_count(conn, generation)
        if events is None:
            return {"exported": False, "generation": generation, "readModelEvents": served,
                    "behind": served}
        state = parse_state(dict(events.properties))
        same = state.generation == generation
        behind = reads.history_count(conn, generation, state.watermark) if same else served
    days: dict[str, dict[str, int]] = {}
    for task in events.scan().plan_files():
        day = _day(int(task.file.partition[0]))
        entry = days.setdefault(day, {"rows": 0, "files": 0})
        entry["rows"] += task.file.record_count
        entry["files"] += 1
    snapshot = events.current_snapshot()
    lag = None
    if state.watermark is not None:
        lag = round((datetime.now(UTC) - state.watermark).total_seconds(), 1)
    return {
        "exported": True,
        "generation": generation,
        "exportedGeneration": state.generation,
        "watermark": state.watermark.isoformat() if state.watermark else None,
        "lagSeconds": lag,
        "rows": sum(d["rows"] for d in days.values()),
        "files": sum(d["files"] for d in days.values()),
        "readModelEvents": served,
        "behind": behind,
        "snapshots": len(events.snapshots()),
        "snapshotAt": (
            datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC).isoformat()
            if snapshot else None
        ),
        "deliveriesSnapshotOf": current.properties.get(SNAPSHOT_OF_PROPERTY) if current else None,
        "days": dict(sorted(days.items())),
    }


def _day(days: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=days)).isoformat()
