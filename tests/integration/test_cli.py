"""`projector` as an operator uses it: a JSON Lines stream, status counts, clear errors."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from tests.helpers import encode, make_event, projector_env, run_projector, table_rows, write_jsonl

pytestmark = pytest.mark.integration


def _stream(tmp_path: Path) -> Path:
    lines: list[dict | bytes] = [
        make_event("DeliveryCreated", "D-1", "2026-11-25T10:00:00+09:00", event_id="a1"),
        make_event("배차완료", "D-1", "2026-11-25 01:05:00", event_id="a2", data={"riderId": "R-7"}),
        b"   ",  # white space only: skipped, keeps its number
        make_event("DeliveryCancelled", "D-2", "2026-11-25T03:00:00Z", event_id="b2"),  # before its create
        make_event("DeliveryCreated", "D-2", "2026-11-25T02:00:00Z", event_id="b1"),
        make_event("DeliveryCreated", "D-2", "2026-11-25T02:00:00Z", event_id="b1"),  # duplicate
        b'{"eventId": "broken"',  # poison
        make_event("DeliveryRiderCheered", "D-1", "2026-11-25T04:00:00Z", event_id="a3"),  # unknown type
        make_event("DeliveryRiderAssigned", "D-3", "2026-11-25T05:00:00Z", event_id="c1", data={}),  # poison
        make_event("DeliveryCompleted", "D-1", "2026-11-25T01:30:00Z", event_id="a4",
                   occurenceDateTime="2026-11-25T01:30:00Z"),
    ]
    return write_jsonl(tmp_path / "stream.jsonl", lines)


def test_a_json_lines_stream_gives_status_counts_that_follow_the_contract(db_url: str, tmp_path: Path) -> None:
    stream = _stream(tmp_path)
    env = projector_env(db_url, str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    status = json.loads(run_projector(["status", "--json"], env).stdout)
    assert status == {
        "partitions": [{"topic": str(stream.resolve()), "partition": 0, "nextOffset": 10,
                        "endOffset": 10, "lag": 0, "eventsGoneFromSource": 0}],
        "eventsApplied": 6,  # a1 a2 a3 a4 b1 b2; the duplicate counts once
        "unknownEvents": 1,
        "deadLetters": 2,
        "lastEventAt": "2026-11-25T04:00:00+00:00",
        "generation": 1,
        "messagesRead": 9,  # ten lines, one of only white space
        "duplicates": 1,
    }
    text = run_projector(["status", "--no-source"], env).stdout
    assert "messages read: 9 = 6 applied + 1 duplicates + 2 dead letters" in text, text
    rows = table_rows(db_url)
    assert rows["D-1"]["state"] == "DELIVERED" and rows["D-1"]["rider_id"] == "R-7"
    assert rows["D-1"]["event_count"] == 4
    assert rows["D-2"]["state"] == "CANCELLED" and rows["D-2"]["order_id"] == "O-1"
    assert "D-3" not in rows

    # Dead letters keep their bytes; replay parses them again with the current code,
    # which still rejects both.
    out = run_projector(["dead-letters", "replay"], env)
    assert "0 replayed, 2 still invalid" in out.stderr


def test_run_again_is_a_no_op_and_appended_lines_are_picked_up(sqlite_url: str, tmp_path: Path) -> None:
    stream = _stream(tmp_path)
    env = projector_env(sqlite_url, str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    before = table_rows(sqlite_url)
    run_projector(["run", "--until-caught-up"], env)
    assert table_rows(sqlite_url) == before
    with stream.open("ab") as fh:
        fh.write(encode(make_event("DeliveryRiderAssigned", "D-9", "2026-11-25T06:00:00Z",
                                   event_id="z1")) + b"\n")
    run_projector(["run", "--until-caught-up"], env)
    assert table_rows(sqlite_url)["D-9"]["state"] == "ASSIGNED"


@pytest.mark.parametrize("command", [[], ["migrate"], ["run"], ["rebuild"], ["verify"], ["status"],
                                     ["dead-letters"], ["dead-letters", "list"],
                                     ["dead-letters", "replay"], ["simulate"]])
def test_every_command_has_help(command: list[str], sqlite_url: str) -> None:
    out = run_projector([*command, "--help"], projector_env(sqlite_url))
    assert out.stdout.startswith("usage: projector")
    assert "DATABASE_URL" in out.stdout or "ACTION" in out.stdout or command[:1] == ["dead-letters"]


@pytest.mark.parametrize(
    ("args", "env_extra", "needle"),
    [
        (["run", "--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        (["status", "--no-source"], {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/x"},
         "is unavailable"),
        (["run", "--until-caught-up"], {"EVENT_SOURCE": "/nonexistent/stream.jsonl"}, "does not exist"),
        (["run"], {"SOURCE_TIMEZONE": "Mars/Olympus"}, "not a known time zone"),
        (["status"], {}, "not migrated"),
    ],
)
def test_errors_are_one_clear_line(args: list[str], env_extra: dict[str, str], needle: str,
                                   sqlite_url: str) -> None:
    env = projector_env(sqlite_url, **env_extra)
    if "DATABASE_URL" not in env_extra and args[0] == "run":
        run_projector(["migrate"], projector_env(sqlite_url))
    out = run_projector(args, env, check=False, timeout=60)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("projector: error:") and needle in lines[0], lines[0]


def test_a_dead_letter_that_parses_now_is_replayed_into_the_read_model(db_url: str, tmp_path: Path) -> None:
    """As after a parser fix: the stored bytes are valid for the current code."""
    from datetime import datetime

    from schema.db import make_engine
    from schema.tables import dead_letters

    stream = _stream(tmp_path)
    env = projector_env(db_url, str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(dead_letters.insert().values(
            generation=1, topic="old-topic", partition=0, offset=41, key=b"D-7",
            value=encode({"eventId": "r1", "eventType": "DeliveryCreated",
                          "occurrenceDateTime": "2026-11-25T07:00:00Z",
                          "data": {"orderId": "O-7", "shopId": "S-7"}}),
            headers=[], error_code="INVALID_JSON", reason="rejected by an older parser",
            status="pending", created_at=datetime.now(UTC)))
    engine.dispose()
    out = run_projector(["dead-letters", "replay"], env)
    assert "1 replayed, 2 still invalid" in out.stderr
    assert table_rows(db_url)["D-7"]["order_id"] == "O-7"  # deliveryId from the stored key
    status = json.loads(run_projector(["status", "--json", "--no-source"], env).stdout)
    assert (status["deadLetters"], status["eventsApplied"]) == (2, 7)
    listed = run_projector(["dead-letters", "list", "--all", "--json"], env).stdout.splitlines()
    assert sorted(json.loads(line)["status"] for line in listed) == ["pending", "pending", "replayed"]


#: What a terminal would obey: C0 (a newline ends a line of output), DEL, C1, bidi controls.
_OBEYED = ({chr(c) for c in range(0x20)} - {"\n"}) | {chr(c) for c in range(0x7F, 0xA0)} | {
    "\u061c", "\u200e", "\u200f", "\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A))}


def test_text_output_shows_control_characters_escaped_never_raw(sqlite_url: str,
                                                                tmp_path: Path) -> None:
    """Issue #9 hole 3: a crafted message must not retitle, recolour or rewrite the terminal."""
    from datetime import datetime

    from schema.db import make_engine
    from schema.tables import dead_letters

    stream = write_jsonl(tmp_path / "str\x1b[31meam.jsonl", [
        make_event("DeliveryCreated", "D-1", event_id="a1"),
        b'{"eventId": "\x1b]0;pwned\x07", "x": "\r\x1b[2J\xc2\x9b31m\xe2\x80\xae"',  # poison
        make_event("DeliveryCreated", "D-\x1b[5m", event_id="e-\u202e1",
                   occurrenceDateTime="\x1b[31m2026"),  # unreadable time, shown in the reason
    ])
    env = projector_env(sqlite_url, str(stream))
    run_projector(["migrate"], env)
    ran = run_projector(["run", "--until-caught-up"], env)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:  # as after a parser fix: valid now, ids full of controls
        conn.execute(dead_letters.insert().values(
            generation=1, topic="old\x1b[2Jtopic", partition=0, offset=7, key=b"D-\x1b[41m",
            value=encode({"eventId": "r\u202e1", "eventType": "Delivery\x07Poked",
                          "occurrenceDateTime": "2026-11-25T07:00:00Z"}),
            headers=[], error_code="INVALID_JSON", reason="old \x1b[1mparser\x1b[0m",
            status="pending", created_at=datetime.now(UTC)))
    engine.dispose()
    listed = run_projector(["dead-letters", "list"], env)
    assert "\\x1b]0;pwned\\x07" in listed.stdout and "\\r\\x1b[2J\\x9b31m\\u202e" in listed.stdout
    assert "old \\x1b[1mparser" in listed.stdout and "old\\x1b[2Jtopic" in listed.stdout
    as_json = run_projector(["dead-letters", "list", "--json"], env)
    values = [json.loads(line)["value"] for line in as_json.stdout.splitlines()]
    assert any("\x1b]0;pwned\x07" in v for v in values)  # JSON keeps the value exact
    status = run_projector(["status"], env)
    status_json = run_projector(["status", "--json"], env)
    assert json.loads(status_json.stdout)["partitions"][0]["topic"] == str(stream.resolve())
    replayed = run_projector(["dead-letters", "replay"], env)
    assert "r\\u202e1" in replayed.stdout and "Delivery\\x07Poked" in replayed.stdout
    assert "D-\\x1b[41m" in replayed.stdout
    for out in (ran, listed, as_json, status, status_json, replayed):
        shown = {c for c in out.stdout + out.stderr if c in _OBEYED}
        assert not shown, (out.args, shown, out.stdout, out.stderr)


def _status(env: dict[str, str]) -> dict:
    doc = json.loads(run_projector(["status", "--json", "--no-source"], env).stdout)
    assert doc["messagesRead"] == doc["eventsApplied"] + doc["duplicates"] + doc["deadLetters"]
    return {k: doc[k] for k in ("messagesRead", "eventsApplied", "duplicates", "deadLetters",
                                "generation")}


def test_status_counts_add_up_after_an_in_place_rebuild_and_a_rebuild(db_url: str,
                                                                      tmp_path: Path) -> None:
    """Issue #9 hole 5: messages read = applied + duplicates + dead letters, whatever ran."""
    stream = _stream(tmp_path)
    env = projector_env(db_url, str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    counts = {"messagesRead": 9, "eventsApplied": 6, "duplicates": 1, "deadLetters": 2,
              "generation": 1}
    assert _status(env) == counts
    run_projector(["rebuild", "--in-place"], env)  # reads all nine again: counted once
    assert _status(env) == counts
    with stream.open("ab") as fh:  # one new event and one more copy of an applied one
        for event in (make_event("DeliveryCreated", "D-9", event_id="z1"),
                      make_event("DeliveryCreated", "D-2", "2026-11-25T02:00:00Z",
                                 event_id="b1")):
            fh.write(encode(event) + b"\n")
    run_projector(["run", "--until-caught-up"], env)
    counts.update(messagesRead=11, eventsApplied=7, duplicates=2)
    assert _status(env) == counts
    run_projector(["rebuild"], env)  # a new generation reads everything once
    assert _status(env) == {**counts, "generation": 2}


def test_replaying_a_dead_letter_whose_event_was_applied_says_so(db_url: str,
                                                                tmp_path: Path) -> None:
    """As after a parser fix: an older parser refused the copy of b1 at offset 5, which
    the producer had sent again; replayed now, it is a duplicate, not a new event."""
    from datetime import datetime

    from sqlalchemy import update

    from schema.db import make_engine
    from schema.tables import dead_letters, projection_offsets

    stream = _stream(tmp_path)
    env = projector_env(db_url, str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    engine = make_engine(db_url)
    with engine.begin() as conn:  # offset 5 as the older parser left it: a dead letter
        conn.execute(update(projection_offsets).values(
            duplicates=projection_offsets.c.duplicates - 1))
        conn.execute(dead_letters.insert().values(
            generation=1, topic=str(stream.resolve()), partition=0, offset=5, key=None,
            value=stream.read_bytes().splitlines()[5], headers=[], error_code="INVALID_JSON",
            reason="rejected by an older parser", status="pending",
            created_at=datetime.now(UTC)))
    engine.dispose()
    before = _status(env)
    assert (before["duplicates"], before["deadLetters"]) == (0, 3)
    out = run_projector(["dead-letters", "replay"], env)
    assert "already applied as event b1 (DeliveryCreated of D-2)" in out.stdout, out.stdout
    assert "replayed as event" not in out.stdout
    assert "0 replayed, 2 still invalid, 1 already applied" in out.stderr, out.stderr
    assert _status(env) == {**before, "duplicates": 1, "deadLetters": 2}
