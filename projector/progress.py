"""Progress of a rebuild or verify, and its summary.

On a terminal: one tqdm bar per partition (events done of the replay's range, with
events/s and ETA). Off a terminal (logs, CI, systemd): a plain log line every
``interval`` seconds. Either way it is fed by the projector loop's progress hook,
which runs at most once a second, and it writes to stderr only: stdout carries the
summary (``--json``: one JSON object, for machines).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any

from projector.counts import Counts
from projector.loop import Totals
from projector.sources.base import TopicPartition

log = logging.getLogger("projector.rebuild")


@dataclass
class Summary:
    """What a rebuild or verify did; ``--json`` prints these fields, ``counts`` flattened.

    In the JSON the messages read are ``events`` (and their rate ``events_per_second``):
    the names the command has always printed, which scripts read.
    """

    command: str
    mode: str  # new-generation | in-place | resume | verify
    from_spec: str
    generation: int
    previous_generation: int | None = None
    counts: Counts = field(default_factory=Counts)
    seconds: float = 0.0
    messages_per_second: float = 0.0
    switched: bool = False
    kept_old: bool = False
    differences: int | None = None
    skipped_moved: int | None = None
    first_differences: list[str] = field(default_factory=list)

    def take(self, totals: Totals) -> None:
        refolded = self.counts.refolded
        self.counts = totals.counts()
        self.counts.refolded += refolded
        self.seconds = round(totals.seconds, 3)
        rate = totals.messages / totals.seconds if totals.seconds else 0.0
        self.messages_per_second = round(rate, 1)

    def to_json(self) -> str:
        c = self.counts
        data: dict[str, Any] = {
            "command": self.command, "mode": self.mode, "from_spec": self.from_spec,
            "generation": self.generation, "previous_generation": self.previous_generation,
            "events": c.messages, "applied": c.applied, "duplicates": c.duplicates,
            "dead_letters": c.dead_letters, "refolded": c.refolded, "seconds": self.seconds,
            "events_per_second": self.messages_per_second, "switched": self.switched,
            "kept_old": self.kept_old, "differences": self.differences,
            "skipped_moved": self.skipped_moved,
            "first_differences": list(self.first_differences),
        }
        return json.dumps({k: v for k, v in data.items() if v is not None}, ensure_ascii=False)

    def to_text(self) -> str:
        c = self.counts
        lines = [
            f"{self.command} ({self.mode}) from {self.from_spec}: generation {self.generation}",
            f"  {c.messages} messages in {self.seconds:.1f}s"
            f" ({self.messages_per_second:.0f} messages/s):"
            f" {c.applied} applied, {c.duplicates} duplicates,"
            f" {c.dead_letters} dead letters, {c.refolded} refolded",
        ]
        if self.switched:
            old = "kept" if self.kept_old else "deleted"
            lines.append(
                f"  generation {self.generation} is now active; generation"
                f" {self.previous_generation} retired ({old})"
            )
        if self.differences is not None:
            lines.append(f"  differences: {self.differences}"
                         + (f" ({self.skipped_moved} deliveries moved on in the live generation"
                            " during the replay, not compared)" if self.skipped_moved else ""))
            lines.extend(f"    {d}" for d in self.first_differences)
        return "\n".join(lines)


class Progress(AbstractContextManager["Progress"]):
    """A projector ``progress`` hook: bars on a terminal, log lines elsewhere."""

    def __init__(
        self,
        label: str,
        starts: Mapping[TopicPartition, int],
        *,
        stream: IO[str] | None = None,
        interval: float = 10.0,
        tty: bool | None = None,
        also: Callable[[], None] | None = None,
    ) -> None:
        self.label = label
        self.starts = dict(starts)
        self.stream = stream or sys.stderr
        self.interval = interval
        self.tty = self.stream.isatty() if tty is None else tty
        self.also = also  # e.g. the builder's heartbeat, at the same pace
        self._bars: dict[TopicPartition, Any] = {}
        self._last_line = 0.0
        self._redirect: Any = None

    def __enter__(self) -> Progress:
        if self.tty:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self._redirect is not None:
            self._redirect.__exit__(*exc)
            self._redirect = None

    def __call__(
        self,
        positions: dict[TopicPartition, int],
        targets: dict[TopicPartition, int] | None,
        totals: Totals,
    ) -> None:
        if self.also is not None:
            self.also()
        targets = targets or {}
        if self.tty:
            self._bars_update(positions, targets)
        elif time.monotonic() - self._last_line >= self.interval:
            self._last_line = time.monotonic()
            self._log_line(positions, targets, totals)

    def final(self, positions: dict[TopicPartition, int], targets: dict[TopicPartition, int],
              totals: Totals) -> None:
        """Always show where it ended, whatever the pace."""
        if self.tty:
            self._bars_update(positions, targets)
        else:
            self._log_line(positions, targets, totals)

    # -- terminal -------------------------------------------------------------------
    def _bars_update(self, positions: Mapping[TopicPartition, int],
                     targets: Mapping[TopicPartition, int]) -> None:
        from tqdm import tqdm

        for tp in sorted(targets):
            start = self.starts.get(tp, 0)
            total = max(targets[tp] - start, 0)
            done = min(max(positions.get(tp, start) - start, 0), total)
            bar = self._bars.get(tp)
            if bar is None:
                bar = tqdm(
                    total=total, desc=f"{self.label} p{tp.partition}", unit="ev",
                    file=self.stream, position=len(self._bars), leave=True, dynamic_ncols=True,
                    smoothing=0.1,
                )
                self._bars[tp] = bar
            if bar.total != total:
                bar.total = total
            if done > bar.n:
                bar.update(done - bar.n)
            else:
                bar.refresh()

    # -- logs -----------------------------------------------------------------------
    def _log_line(self, positions: Mapping[TopicPartition, int],
                  targets: Mapping[TopicPartition, int], totals: Totals) -> None:
        done = remaining = 0
        parts = []
        for tp in sorted(targets):
            start = self.starts.get(tp, 0)
            pos = min(positions.get(tp, start), targets[tp])
            done += max(pos - start, 0)
            remaining += max(targets[tp] - pos, 0)
            parts.append(f"p{tp.partition} {pos}/{targets[tp]}")
        total = done + remaining
        rate = totals.messages / totals.seconds if totals.seconds > 0 else 0.0
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
        pct = 100.0 * done / total if total else 100.0
        log.info(
            "%s: %s/%s events (%.1f%%), %.0f events/s, ETA %s, %s dead letters [%s]",
            self.label, done, total, pct, rate, eta, totals.dead_letters, ", ".join(parts),
        )
