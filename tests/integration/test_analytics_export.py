"""`projector export`: the history into Iceberg exactly once, on SQLite and PostgreSQL catalogs
(the catalog in the read model's own database, as by default) and a file:// warehouse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from projector.analytics.errors import ConcurrentExport
from projector.analytics.export import Exporter
from projector.analytics.layout import (
    GENERATION_PROPERTY,
    SNAPSHOT_WHOLE_PROPERTY,
    WATERMARK_PROPERTY,
)
from schema.db import make_engine
from schema.tables import dead_letters, deliveries, delivery_events
from tests.analytics_support import (
    analytics_settings,
    assert_exactly_once,
    lake_env,
    projector,
    table_property,
)
from tests.helpers import ROOT, encode, wait_until

pytestmark = pytest.mark.integration


def _simulate(path: Path, deliveries: int, seed: int, start: str = "2026-11-24T20:00:00Z") -> Path:
    code, _ = projector(["simulate", "--deliveries", str(deliveries), "--seed", str(seed),
                         "--start", start, "--out", str(path)], {})
    assert code == 0
    return path


def _project(env: dict[str, str], stream: Path) -> None:
    assert projector(["migrate"], env)[0] == 0
    assert projector(["run", "--until-caught-up"], {**env, "EVENT_SOURCE": str(stream)})[0] == 0


def _export(env: dict[str, str]) -> dict[str, object]:
    code, out = projector(["export", "--json"], env)
    assert code == 0
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
def lake(db_url: str, tmp_path: Path) -> dict[str, str]:
    return lake_env(db_url, tmp_path / "warehouse")


def test_each_event_is_exported_once_across_runs_and_new_events(lake: dict[str, str], tmp_path: Path) -> None:
    stream = _simulate(tmp_path / "a.jsonl", 120, seed=5)
    _project(lake, stream)
    first = _export(lake)
    assert first["rows"] == assert_exactly_once(lake) > 0
    assert first["deliveries"] == 120
    again = _export(lake)
    assert again["rows"] == 0 and again["committed"] is False
    assert again["droppedAlreadyExported"] == first["rows"]  # read again in the overlap
    # More events: the same file grows (the file source reads on from its offset).
    more = _simulate(tmp_path / "b.jsonl", 40, seed=6, start="2026-11-26T10:00:00Z")
    with stream.open("a", encoding="utf-8") as out:
        out.write(more.read_text(encoding="utf-8").replace('"D-', '"E-'))
    _project(lake, stream)
    third = _export(lake)
    assert third["rows"] and third["rows"] == assert_exactly_once(lake) - first["rows"]  # type: ignore[operator]
    assert table_property(lake, GENERATION_PROPERTY) == "1"
    assert table_property(lake, WATERMARK_PROPERTY) == third["watermark"]


def test_event_rows_carry_the_folds_ids_at_that_event(lake: dict[str, str], tmp_path: Path) -> None:
    events = [
        {"eventId": "c", "eventType": "배달생성", "deliveryId": "D-1",
         "occurrenceDateTime": "2026-11-25T10:00:00Z", "data": {"orderId": "O-1", "shopId": "S-1"}},
        {"eventId": "a1", "eventType": "DeliveryRiderAssigned", "deliveryId": "D-1",
         "occurrenceDateTime": "2026-11-25T10:01:00Z", "data": {"riderId": "R-1"}},
        {"eventId": "u", "eventType": "DeliveryRiderUnassigned", "deliveryId": "D-1",
         "occurrenceDateTime": "2026-11-25T10:02:00Z", "data": {}},
        {"eventId": "x", "eventType": "SomethingNew", "deliveryId": "D-1",
         "occurrenceDateTime": "2026-11-25T10:03:00Z", "data": {"k": 1}},
        {"eventId": "a2", "eventType": "DeliveryRiderAssigned", "deliveryId": "D-1",
         "occurrenceDateTime": "2026-11-26T00:30:00Z", "data": {"riderId": "R-2"}},
    ]
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"\n".join(encode(e) for e in events) + b"\n")
    _project(lake, stream)
    _export(lake)
    code, out = projector(["analytics", "select event_id, event_type, known, event_version, "
                           "order_id, shop_id, rider_id, data, "
                           "strftime(occurred_at, '%Y-%m-%d') AS day from delivery_events "
                           "order by occurred_at", "--json"], lake)
    assert code == 0
    got = [(r["event_id"], r["event_type"], r["known"], r["order_id"], r["rider_id"], r["day"])
           for r in json.loads(out)]
    assert got == [
        ("c", "DeliveryCreated", True, "O-1", None, "2026-11-25"),
        ("a1", "DeliveryRiderAssigned", True, "O-1", "R-1", "2026-11-25"),
        ("u", "DeliveryRiderUnassigned", True, "O-1", None, "2026-11-25"),
        ("x", "SomethingNew", False, "O-1", None, "2026-11-25"),
        ("a2", "DeliveryRiderAssigned", True, "O-1", "R-2", "2026-11-26"),
    ]
    assert {r["event_version"] for r in json.loads(out)} == {1}
    assert json.loads(json.loads(out)[3]["data"]) == {"k": 1}
    code, out = projector(["analytics", "select delivery_id, state, rider_id, event_count "
                           "from deliveries", "--json"], lake)
    assert json.loads(out) == [{"delivery_id": "D-1", "state": "ASSIGNED", "rider_id": "R-2",
                                "event_count": 5}]


def test_a_second_exporter_at_once_fails_its_commit(lake: dict[str, str], tmp_path: Path) -> None:
    _project(lake, _simulate(tmp_path / "a.jsonl", 50, seed=7))
    settings = analytics_settings(lake)
    engine = make_engine(lake["DATABASE_URL"], writer=False)
    one, two = Exporter(engine, settings), Exporter(engine, settings)
    plan_one, plan_two = one.plan(), two.plan()  # both read the same table metadata
    assert plan_one.rows.num_rows == plan_two.rows.num_rows > 0
    one.commit(plan_one)
    with pytest.raises(ConcurrentExport, match="another writer committed"):
        two.commit(plan_two)
    assert assert_exactly_once(lake) == plan_one.rows.num_rows
    engine.dispose()


def test_a_batch_committed_late_inside_the_overlap_is_exported_once(lake: dict[str, str], tmp_path: Path) -> None:
    _project(lake, _simulate(tmp_path / "a.jsonl", 30, seed=8))
    first = _export(lake)
    watermark = datetime.fromisoformat(str(first["watermark"]))
    # A transaction that stamped its rows before the watermark but committed after it.
    engine = make_engine(lake["DATABASE_URL"])
    with engine.begin() as conn:
        row = conn.execute(select(delivery_events).limit(1)).mappings().one()
        late = dict(row, event_id="late-1", offset=10_000,
                    applied_at=watermark - timedelta(seconds=30))
        conn.execute(insert(delivery_events).values(**late))
        # Past the overlap: not found again (the settle lag is what keeps this from happening).
        lost = dict(row, event_id="too-late", offset=10_001,
                    applied_at=watermark - timedelta(seconds=600))
        conn.execute(insert(delivery_events).values(**lost))
    engine.dispose()
    second = _export(lake)
    assert second["rows"] == 1
    days, rows, distinct = __import__("tests.analytics_support", fromlist=["x"]).lake_per_day(lake)
    assert rows == distinct == int(first["rows"]) + 1  # type: ignore[call-overload]


def _served(db_url: str) -> list[tuple[object, ...]]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            c = deliveries.c
            query = select(c.delivery_id, c.state, c.rider_id, c.event_count, c.last_event_at)
            return sorted(tuple(r) for r in conn.execute(query))
    finally:
        engine.dispose()


def test_the_snapshot_patched_with_the_windows_deliveries_is_the_served_rows(lake: dict[str, str], tmp_path: Path) -> None:
    stream = _simulate(tmp_path / "a.jsonl", 60, seed=12)
    _project(lake, stream)
    assert _export(lake)["deliveries"] == 60
    whole_at = table_property(lake, SNAPSHOT_WHOLE_PROPERTY)
    # Later events of the same deliveries (the same ids, other event ids) and new ones.
    more = _simulate(tmp_path / "b.jsonl", 30, seed=13, start="2026-11-26T10:00:00Z")
    newer = _simulate(tmp_path / "c.jsonl", 10, seed=14, start="2026-11-26T11:00:00Z")
    with stream.open("a", encoding="utf-8") as out:
        out.write(more.read_text(encoding="utf-8"))
        out.write(newer.read_text(encoding="utf-8").replace('"D-', '"E-'))
    _project(lake, stream)
    assert _export(lake)["deliveries"] == 70
    assert table_property(lake, SNAPSHOT_WHOLE_PROPERTY) == whole_at  # patched, not read whole
    code, out = projector(["analytics", "select delivery_id, state, rider_id, event_count, "
                           "last_event_at from deliveries", "--json"], lake)
    assert code == 0
    lake_rows = sorted(
        (r["delivery_id"], r["state"], r["rider_id"], r["event_count"],
         datetime.fromisoformat(r["last_event_at"]))
        for r in json.loads(out)
    )
    assert lake_rows == _served(lake["DATABASE_URL"])


def test_a_rebuild_switch_adds_nothing_already_there(lake: dict[str, str], tmp_path: Path) -> None:
    stream = _simulate(tmp_path / "a.jsonl", 60, seed=9)
    _project(lake, stream)
    first = _export(lake)
    code, _ = projector(["rebuild", "--from-offset", "earliest"], {**lake, "EVENT_SOURCE": str(stream)})
    assert code == 0
    switched = _export(lake)
    assert switched["generation"] == 2 and switched["rows"] == 0
    assert table_property(lake, GENERATION_PROPERTY) == "2"
    assert assert_exactly_once(lake) == first["rows"]
    assert _export(lake)["committed"] is False


def test_a_replayed_dead_letter_appears_in_the_next_export(lake: dict[str, str], tmp_path: Path) -> None:
    _project(lake, _simulate(tmp_path / "a.jsonl", 20, seed=10))
    first = _export(lake)
    engine = make_engine(lake["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(dead_letters.insert().values(
            generation=1, topic="delivery-events", partition=0, offset=99_999, key=b"D-77",
            value=encode({"eventId": "dl-1", "eventType": "DeliveryCreated",
                          "occurrenceDateTime": "2026-11-25T07:00:00Z",
                          "data": {"orderId": "O-77", "shopId": "S-77"}}),
            headers=[], error_code="INVALID_JSON", reason="rejected by an older parser",
            status="pending", created_at=datetime.now(UTC)))
    engine.dispose()
    assert projector(["dead-letters", "replay"], lake)[0] == 0
    second = _export(lake)
    assert second["rows"] == 1
    assert assert_exactly_once(lake) == int(first["rows"]) + 1  # type: ignore[call-overload]
    code, out = projector(["analytics", "select order_id from delivery_events where event_id = 'dl-1'",
                           "--json"], lake)
    assert json.loads(out) == [{"order_id": "O-77"}]


@pytest.mark.parametrize("where", ["before", "after"])
def test_kill_9_before_or_after_the_commit_loses_and_doubles_nothing(
    lake: dict[str, str], tmp_path: Path, where: str
) -> None:
    stream = _simulate(tmp_path / "a.jsonl", 80, seed=11)
    _project(lake, stream)
    env = {**os.environ, **lake, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.analytics_pause", where, "export"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the pause (or the process ends)
        assert line.strip() == "PAUSED", (line, proc.stderr.read() if proc.stderr else "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after = _export(lake)
    total = assert_exactly_once(lake)
    assert after["rows"] == (total if where == "before" else 0)
    assert after["deliveries"] == 80  # the snapshot is (re)placed by the run after the kill
    wait_until(lambda: _export(lake)["committed"] is False, timeout=30)


def test_compact_makes_one_file_per_closed_day_and_status_tells(lake: dict[str, str], tmp_path: Path) -> None:
    stream = _simulate(tmp_path / "a.jsonl", 60, seed=12)
    _project(lake, stream)
    _export(lake)
    more = _simulate(tmp_path / "b.jsonl", 60, seed=13)
    with stream.open("a", encoding="utf-8") as out:
        out.write(more.read_text(encoding="utf-8").replace('"D-', '"F-'))
    _project(lake, stream)
    _export(lake)
    code, out = projector(["export", "status", "--json"], lake)
    before = json.loads(out)
    assert code == 0 and before["behind"] == 0 and before["rows"] == before["readModelEvents"]
    assert any(d["files"] > 1 for d in before["days"].values())
    code, out = projector(["export", "compact", "--older-than", "2d", "--json"],
                          {**lake, "ANALYTICS_SNAPSHOT_RETENTION_HOURS": "0"})
    result = json.loads(out)
    assert code == 0 and result["days"] and result["snapshots_expired"] > 0
    after = json.loads(projector(["export", "status", "--json"], lake)[1])
    assert all(d["files"] == 1 for d in after["days"].values())
    assert {k: v["rows"] for k, v in after["days"].items()} == {
        k: v["rows"] for k, v in before["days"].items()}
    assert after["watermark"] == before["watermark"]
    assert assert_exactly_once(lake) == after["rows"]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """moto's S3 server, started through devservices; a failed start fails the test."""
    from devservices.s3 import S3Server

    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


def test_an_s3_warehouse_on_a_local_s3_server(sqlite_url: str, tmp_path: Path, s3_server) -> None:  # type: ignore[no-untyped-def]
    from devservices import s3

    s3_server.create_bucket("lake")
    env = lake_env(sqlite_url, "s3://lake/delivery", ANALYTICS_S3_ENDPOINT=s3_server.endpoint,
                   AWS_ACCESS_KEY_ID=s3.ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=s3.SECRET_ACCESS_KEY,
                   AWS_REGION=s3.REGION)
    stream = _simulate(tmp_path / "a.jsonl", 60, seed=14)
    _project(env, stream)
    first = _export(env)
    assert first["rows"] == assert_exactly_once(env) > 0
    assert _export(env)["rows"] == 0
    code, out = projector(["analytics", "select count(*) AS n from deliveries", "--json"], env)
    assert code == 0 and json.loads(out) == [{"n": 60}]
    # The files are in the bucket, not on disk.
    listing = __import__("urllib.request", fromlist=["x"]).urlopen(
        f"{s3_server.endpoint}/lake?list-type=2&prefix=delivery/", timeout=10).read().decode()
    assert ".parquet" in listing and "metadata.json" in listing
