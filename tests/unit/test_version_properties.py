"""Properties of event versions over the fixed test streams and simulated ones.

Replacing any set of version-1 events by their version-2 equivalents (and back)
gives the same rows, lineage and transitions; a version this build does not know
changes no state; a build that learns a version folds, from the history as received,
what an older build kept as unknown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.simulate import SimulationConfig, simulate
from schema.events import make_event
from schema.versions import REGISTRY
from tests.versions_support import as_v1, as_v2, bodies, encoded, events, outcome

pytestmark = pytest.mark.unit

STREAMS = sorted((Path(__file__).parent.parent / "streams").glob("*.jsonl"))
PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OLD = REGISTRY.lacking("DeliveryCreated", 2).lacking("DeliveryRiderAssigned", 2)


def _fixed(path: Path) -> list[dict[str, Any] | bytes]:
    return bodies(line for line in path.read_bytes().split(b"\n") if line.strip())


def _simulated(seed: int) -> list[dict[str, Any] | bytes]:
    stream = simulate(SimulationConfig(deliveries=12, seed=seed))
    return bodies(encoded(stream))


def _replaceable(stream: list[dict[str, Any] | bytes], form: Any) -> list[int]:
    return [i for i, b in enumerate(stream) if isinstance(b, dict) and form(b) is not None]


def _replaced(stream: list[dict[str, Any] | bytes], chosen: set[int], form: Any
              ) -> list[dict[str, Any] | bytes]:
    return [form(b) if i in chosen else b for i, b in enumerate(stream)]  # type: ignore[arg-type]


def _unknown_type(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "eventType": "DeliveryFromTheFuture"}


def test_the_fixed_streams_have_events_of_both_versioned_types() -> None:
    assert STREAMS
    total = sum(len(_replaceable(_fixed(p), as_v2)) for p in STREAMS)
    assert total >= 10


def _check_v1_v2_swaps(stream: list[dict[str, Any] | bytes], data: st.DataObject) -> None:
    expected = outcome(events(stream))
    candidates = _replaceable(stream, as_v2)
    chosen = data.draw(st.sets(st.sampled_from(candidates)) if candidates else st.just(set()))
    mixed = _replaced(stream, chosen, as_v2)
    assert outcome(events(mixed)) == expected
    everything_v2 = _replaced(stream, set(candidates), as_v2)
    assert outcome(events(everything_v2)) == expected
    back = _replaceable(everything_v2, as_v1)
    assert sorted(back) == sorted(candidates)
    undo = data.draw(st.sets(st.sampled_from(back)) if back else st.just(set()))
    assert outcome(events(_replaced(everything_v2, undo, as_v1))) == expected


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
@PROPERTY
@given(data=st.data())
def test_fixed_streams_fold_alike_with_any_events_at_version_2(path: Path,
                                                               data: st.DataObject) -> None:
    _check_v1_v2_swaps(_fixed(path), data)


@PROPERTY
@given(seed=st.integers(0, 10_000), data=st.data())
def test_simulated_streams_fold_alike_with_any_events_at_version_2(
        seed: int, data: st.DataObject) -> None:
    _check_v1_v2_swaps(_simulated(seed), data)


def _check_unknown_versions(stream: list[dict[str, Any] | bytes], data: st.DataObject) -> None:
    """An event at version 3 folds exactly as an event of an unknown type would."""
    candidates = [i for i, b in enumerate(stream) if isinstance(b, dict)]
    chosen = data.draw(st.sets(st.sampled_from(candidates)) if candidates else st.just(set()))
    version = data.draw(st.integers(3, 2**31 - 1))
    future = _replaced(stream, chosen, lambda b: {**b, "eventVersion": version})
    unknown = _replaced(stream, chosen, _unknown_type)
    found = events(future)
    assert all(not e.known for e in found if e.version == version)
    assert outcome(found) == outcome(events(unknown))


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
@PROPERTY
@given(data=st.data())
def test_unknown_versions_change_no_state_in_fixed_streams(path: Path,
                                                           data: st.DataObject) -> None:
    _check_unknown_versions(_fixed(path), data)


@PROPERTY
@given(seed=st.integers(0, 10_000), data=st.data())
def test_unknown_versions_change_no_state_in_simulated_streams(seed: int,
                                                               data: st.DataObject) -> None:
    _check_unknown_versions(_simulated(seed), data)


def _check_rebuild_from_history(stream: list[dict[str, Any] | bytes], data: st.DataObject) -> None:
    """A build without version 2 keeps those events as unknown; the history as received,
    read again by a build with version 2, folds them as the contract says."""
    candidates = _replaceable(stream, as_v2)
    chosen = data.draw(st.sets(st.sampled_from(candidates)) if candidates else st.just(set()))
    mixed = _replaced(stream, chosen, as_v2)
    before = events(mixed, OLD)
    as_unknown = [_unknown_type(b) if i in chosen and isinstance(b, dict) else b
                  for i, b in enumerate(mixed)]
    assert outcome(before) == outcome(events(as_unknown))
    history = [make_event(e.event_id, e.event_type, e.delivery_id, e.occurred_at, e.sequence,
                          e.received_data, version=e.version) for e in before]
    assert outcome(history) == outcome(events(stream))


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
@PROPERTY
@given(data=st.data())
def test_a_rebuild_from_history_folds_what_an_older_build_kept_as_unknown(
        path: Path, data: st.DataObject) -> None:
    _check_rebuild_from_history(_fixed(path), data)


@PROPERTY
@given(seed=st.integers(0, 10_000), data=st.data())
def test_a_rebuild_from_history_of_a_simulated_stream(seed: int, data: st.DataObject) -> None:
    _check_rebuild_from_history(_simulated(seed), data)
