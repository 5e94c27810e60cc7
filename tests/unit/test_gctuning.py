"""The projector's GC setting: start-up frozen out of the collector's reach, a larger young threshold."""

from __future__ import annotations

import gc

import pytest

from projector.gctuning import THRESHOLDS, freeze_after_start_up

pytestmark = pytest.mark.unit


def test_start_up_is_frozen_and_the_thresholds_are_raised() -> None:
    before = gc.get_threshold()
    try:
        freeze_after_start_up()
        assert gc.get_freeze_count() > 1000  # this interpreter's modules, at the least
        assert gc.get_threshold() == THRESHOLDS
        assert gc.isenabled()  # collections still run: a real cycle is still freed

        class Node:
            other: object = None

        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
