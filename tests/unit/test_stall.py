"""The projector's own bound on its PostgreSQL sessions, and how it notices a stand-still."""

from __future__ import annotations

import pytest

from projector.bootstrap import session_options
from projector.errors import ConfigError
from projector.settings import Settings
from projector.stall import StallWatch

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_gap_between_ticks_past_the_bound_is_a_stand_still() -> None:
    clock = Clock()
    watch = StallWatch(8.0, tick_s=0.25, clock=clock)
    began = clock()
    for _ in range(10):  # running normally
        clock.t += 0.25
        watch.tick()
    assert not watch.stood_still(began)
    clock.t += 9.0  # frozen; the thread has not ticked yet after the thaw
    assert watch.stood_still(began)
    watch.tick()  # now it has, and the pause is recorded
    assert watch.longest_pause_since(began) == pytest.approx(9.0)
    assert watch.stood_still(began)
    clock.t += 1.0
    watch.tick()
    assert not watch.stood_still(clock.t - 0.5), "a pause before the transaction began"


def test_a_transaction_begun_after_the_thaw_did_not_stand_still() -> None:
    clock = Clock()
    watch = StallWatch(8.0, tick_s=0.25, clock=clock)
    watch.tick()
    clock.t += 12.0  # frozen outside any transaction
    began = clock()  # thawed: a transaction begins before the thread has ticked
    clock.t += 0.01
    assert not watch.stood_still(began)
    watch.tick()
    assert not watch.stood_still(began)


def test_a_short_pause_is_not_a_stand_still_and_zero_turns_it_off() -> None:
    clock = Clock()
    watch = StallWatch(8.0, clock=clock)
    began = clock()
    clock.t += 3.0
    watch.tick()
    assert not watch.stood_still(began)
    off = StallWatch(0.0, clock=clock)
    clock.t += 60.0
    assert not off.stood_still(began)


def test_the_session_bounds_are_settings_with_defaults() -> None:
    assert Settings.from_env({}).idle_in_transaction_timeout_ms == 10000
    assert Settings.from_env({}).statement_timeout_ms == 60000
    settings = Settings.from_env({"PROJECTOR_IDLE_IN_TRANSACTION_TIMEOUT_MS": "3000",
                                  "PROJECTOR_STATEMENT_TIMEOUT_MS": "0"})
    assert session_options(settings) == (
        "-c idle_in_transaction_session_timeout=3000 -c statement_timeout=0")
    with pytest.raises(ConfigError, match="PROJECTOR_STATEMENT_TIMEOUT_MS"):
        Settings.from_env({"PROJECTOR_STATEMENT_TIMEOUT_MS": "-1"})
