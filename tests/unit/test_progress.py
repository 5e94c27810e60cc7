"""Rebuild progress: bars per partition on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import io
import json
import logging

import pytest

from projector.loop import Totals
from projector.progress import Progress, Summary
from projector.sources.base import TopicPartition

pytestmark = pytest.mark.unit

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_each_partition_gets_a_bar_with_rate_and_eta() -> None:
    out = Terminal()
    with Progress("rebuild", {P0: 0, P1: 100}, stream=out) as progress:
        progress({P0: 250, P1: 150}, {P0: 1000, P1: 200}, Totals())
        progress({P0: 1000, P1: 200}, {P0: 1000, P1: 200}, Totals())
    text = out.getvalue()
    assert "rebuild p0" in text and "rebuild p1" in text
    # Each bar covers its partition's replay range: p1 from its start offset 100.
    assert "0/1000" in text and "0/100 " in text
    assert "1000/1000" in text and "100/100" in text
    assert "ev/s" in text and "<" in text  # tqdm's rate and remaining time


def test_off_a_terminal_it_logs_plain_lines_with_rate_and_eta(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="projector.rebuild")
    out = io.StringIO()
    totals = Totals(messages=300, dead_letters=2)
    totals.started -= 3.0  # three seconds in: 100 events/s
    with Progress("rebuild", {P0: 0, P1: 0}, stream=out, interval=0) as progress:
        progress({P0: 200, P1: 100}, {P0: 400, P1: 200}, totals)
    assert out.getvalue() == ""  # no bar characters in logs
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "300/600 events (50.0%)" in lines[0]
    assert "100 events/s" in lines[0] and "ETA 3s" in lines[0] and "2 dead letters" in lines[0]
    assert "p0 200/400" in lines[0] and "p1 100/200" in lines[0]


def test_the_summary_is_one_json_object_for_machines() -> None:
    summary = Summary("rebuild", "new-generation", "earliest", 2, 1)
    totals = Totals(messages=500, applied=480, duplicates=20, dead_letters=3)
    totals.started -= 2.0
    summary.take(totals)
    summary.switched = True
    data = json.loads(summary.to_json())
    assert data["events"] == 500 and data["dead_letters"] == 3 and data["applied"] == 480
    assert 1.9 < data["seconds"] < 5 and 100 < data["events_per_second"] <= 250
    assert "generation 2 is now active; generation 1 retired (deleted)" in summary.to_text()
