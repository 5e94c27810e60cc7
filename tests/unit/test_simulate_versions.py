"""``projector simulate --versions``: a share of version-2 events and a few of a future version."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.simulate import (
    LiveConfig,
    SimulationConfig,
    encode,
    follow_file,
    parse_versions,
    simulate,
)
from schema.events import parse_message

pytestmark = pytest.mark.unit


def test_a_share_of_the_events_is_written_at_version_2_and_a_few_at_a_future_version() -> None:
    config = SimulationConfig(deliveries=200, seed=5, versions=parse_versions("2:0.5,3:0.02"))
    stream = simulate(config)
    assert [encode(e) for e in stream] == [encode(e) for e in simulate(config)]  # seeded
    events = [parse_message(encode(e), None) for e in stream]  # every one valid
    versioned = [e for e in events if e.event_type in ("DeliveryCreated", "DeliveryRiderAssigned")]
    at_2 = sum(1 for e in versioned if e.version == 2)
    assert 0.4 < at_2 / len(versioned) < 0.6
    future = [e for e in events if e.version == 3]
    assert 0 < len(future) < 0.05 * len(events) and not any(e.known for e in future)
    assert all(e.version == 1 for e in events if e.version not in (2, 3))
    plain = simulate(SimulationConfig(deliveries=200, seed=5))
    assert [e["eventId"] for e in plain] == [e["eventId"] for e in stream]
    assert all("eventVersion" not in e for e in plain)


@pytest.mark.parametrize("spec", ["2", "1:0.5", "2:1.5", "2:0.6,3:0.6", "x:0.1", "2:0.1,2:0.2"])
def test_a_bad_versions_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="--versions"):
        parse_versions(spec)


def test_the_live_stream_carries_versions_too_and_both_copies_of_a_duplicate_alike(
    tmp_path: Path,
) -> None:
    config = LiveConfig(rate=100_000, seed=4, first_delivery=1, in_flight=50, duplicate_ratio=0.2,
                        versions=parse_versions("2:0.5,3:0.05"))
    out = tmp_path / "live.jsonl"
    def stopped() -> bool:
        return out.exists() and out.stat().st_size > 400_000

    written = follow_file(str(out), config, stopped)
    events = [parse_message(line, None) for line in out.read_bytes().splitlines()]
    assert len(events) == written > 1000
    versioned = [e for e in events if e.event_type in ("DeliveryCreated", "DeliveryRiderAssigned")]
    assert 0.4 < sum(1 for e in versioned if e.version == 2) / len(versioned) < 0.6
    assert any(e.version == 3 and not e.known for e in events)
    by_id: dict[str, set[int]] = {}
    for event in events:
        by_id.setdefault(event.event_id, set()).add(event.version)
    assert all(len(versions) == 1 for versions in by_id.values())
    assert sum(1 for e in events) > len(by_id)  # duplicates were written, each alike
