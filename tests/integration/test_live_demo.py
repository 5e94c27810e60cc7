"""The live demo: `projector simulate --follow --rate N` to a file and to a real Kafka
topic, and `scripts/demo` itself (its three processes up, the page served, data
moving, and Ctrl-C stopping all of them with no process left behind)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from schema.events import parse_message
from tests.api_support import free_port
from tests.helpers import ROOT, projector_env, run_projector, wait_until

pytestmark = pytest.mark.integration

STOPPED = re.compile(r"simulate: stopped after (\d+) events")


def follow(args: list[str], env: dict[str, str], seconds: float) -> tuple[str, float]:
    """Runs `projector simulate --follow ...` for ``seconds``, then SIGINT; (stdout, run time)."""
    proc = subprocess.Popen([sys.executable, "-m", "projector.cli", "simulate", "--follow",
                             *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "simulating from ...": the stream starts now
    started = time.monotonic()
    if not first.startswith("simulating from"):
        proc.kill()
        _, err = proc.communicate(timeout=20)
        raise AssertionError(f"simulate --follow began with {first!r}: {err}")
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err
    return first + out, elapsed


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def test_follow_appends_a_steady_seeded_stream_to_a_file(tmp_path: Path) -> None:
    env = projector_env("sqlite:///unused.db", "kafka")
    stream = tmp_path / "live.jsonl"
    out, elapsed = follow(["--rate", "40", "--seed", "5", "--out", str(stream)], env, 3.0)
    written = int(STOPPED.search(out).group(1))  # type: ignore[union-attr]
    lines = _lines(stream)
    rate = len(lines) / elapsed
    print(f"follow to a file: {len(lines)} events in {elapsed:.2f} s = {rate:.1f}/s (asked 40)")
    assert len(lines) == written
    assert 0.75 * 40 <= rate <= 1.1 * 40
    events = [parse_message(line, None) for line in lines]  # every one valid
    by_delivery: dict[str, list[int]] = defaultdict(list)
    for event in events:
        by_delivery[event.delivery_id].append(event.sequence or 0)
    assert len(by_delivery) > 5
    for sequences in by_delivery.values():  # each delivery's events in its own order
        assert sequences == sorted(sequences) and sequences[0] == 1

    # The same seed and first delivery give the same events (only the times differ);
    # without --first-delivery, a second run continues after the file's deliveries.
    again = tmp_path / "again.jsonl"
    follow(["--rate", "40", "--seed", "5", "--first-delivery", "1", "--out", str(again)],
           env, 1.0)
    replay = [parse_message(line, None) for line in _lines(again)]
    assert [(e.event_id, e.event_type, e.delivery_id) for e in replay] == \
        [(e.event_id, e.event_type, e.delivery_id) for e in events[:len(replay)]]
    highest = max(int(d.split("-")[1]) for d in by_delivery)
    out, _ = follow(["--rate", "40", "--seed", "5", "--out", str(stream)], env, 0.5)
    assert f"simulating from D-{highest + 1:06d}" in out
    assert len(_lines(stream)) > len(lines)


def test_follow_produces_a_steady_stream_to_kafka(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    topic = topic_factory(3)
    env = projector_env("sqlite:///unused.db", "kafka", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                        KAFKA_TOPIC=topic)
    out, elapsed = follow(["--rate", "30", "--seed", "2"], env, 3.0)
    written = int(STOPPED.search(out).group(1))  # type: ignore[union-attr]
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])
    finally:
        consumer.close()
    total = sum(ends.values())
    print(f"follow to Kafka: {total} messages in {elapsed:.2f} s = {total / elapsed:.1f}/s "
          f"(asked 30), partitions {sorted(ends.values())}")
    assert total == written
    assert 0.7 * 30 <= total / elapsed <= 1.1 * 30
    assert sum(1 for n in ends.values() if n) >= 2  # keyed by delivery id: spread


def _group_members(pgid: int) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry}: {stat[:stat.rindex(')') + 1]}")
    return found


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bytes(response.read())
    except OSError:
        return None


def test_the_demo_shows_moving_data_and_ctrl_c_stops_all_three(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "EVENT_SOURCE", "QUERY_API_TOKENS", "QUERY_API_ENV",
                        "QUERY_API_UI")}
    env.update(DEMO_DIR=str(tmp_path / "demo"), PORT=str(port), DELIVERIES="40", RATE="20")
    log = (tmp_path / "demo.out").open("w+")
    proc = subprocess.Popen([str(ROOT / "scripts" / "demo")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    pgid = proc.pid
    try:
        def printed() -> str:
            log.flush()
            text = Path(log.name).read_text()
            assert proc.poll() is None, f"scripts/demo exited {proc.returncode}:\n{text}"
            return text if "Ctrl-C stops all three" in text else ""

        text = wait_until(printed, timeout=180, interval=0.2, message="the demo to start")
        assert f"http://127.0.0.1:{port}/" in text
        assert text.count("{ ") >= 3  # the three example queries
        page = _get(f"http://127.0.0.1:{port}/")
        assert page is not None and b"/ui/app.js" in page

        def next_offset() -> int:
            body = json.dumps({"query": "{ projectionStatus { partitions { nextOffset } } }"})
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql", data=body.encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                data = json.load(response)["data"]
            return int(data["projectionStatus"]["partitions"][0]["nextOffset"])

        before = next_offset()
        wait_until(lambda: next_offset() >= before + 20, timeout=15,
                   message="the projection to move with the simulator")
        members = _group_members(pgid)
        print(f"demo: {len(members)} processes in its group; data moved from offset {before}")
        assert len(members) >= 4  # the script, the simulator, the projector, the API

        os.killpg(pgid, signal.SIGINT)  # what Ctrl-C in a terminal does
        started = time.monotonic()
        proc.wait(timeout=30)
        print(f"demo: Ctrl-C -> exit {proc.returncode} in {time.monotonic() - started:.2f} s")
        assert proc.returncode == 130
        wait_until(lambda: not _group_members(pgid), timeout=10,
                   message="no process of the demo left")
        assert _get(f"http://127.0.0.1:{port}/healthz") is None
        assert STOPPED.search((tmp_path / "demo" / "simulator.log").read_text())
    finally:
        if proc.poll() is None or _group_members(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rate", "0", "--out", "x.jsonl"], "--rate must be more than 0"),
        (["--to-outbox", "postgresql://nobody@127.0.0.1:9/x"], "not --to-outbox"),
    ],
)
def test_follow_refuses_bad_flags_in_one_line(args: list[str], needle: str,
                                              tmp_path: Path) -> None:
    proc = run_projector(["simulate", "--follow", *args], projector_env("sqlite:///unused.db"),
                         timeout=60, check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
