"""``--from-offset SPEC``: where a rebuild starts, per partition (the contract, section Commands).

Pure: parsing needs nothing, and ``resolve`` is given the source's beginning and
end offsets (and, for ``@TIME``, what ``offsets_for_time`` answered) instead of
asking the source itself, so every rule here is unit tested without a broker.

Forms: ``earliest`` (default), ``N`` (every partition), ``P:N,P:N,...`` (a
partition not named starts at earliest), ``@TIME`` (ISO-8601, or milliseconds
since the epoch; a time without an offset is UTC). Offsets name the *next*
message to read, so the end offset itself is allowed (nothing to replay there).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from projector.errors import SpecError
from projector.sources.base import TopicPartition

EARLIEST = "earliest"

_INT = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class OffsetSpec:
    """A parsed SPEC; exactly one of its forms is set."""

    text: str
    every: int | None = None  # ``N``
    per_partition: Mapping[int, int] = field(default_factory=dict)  # ``P:N,...``
    timestamp_ms: int | None = None  # ``@TIME``

    @property
    def is_time(self) -> bool:
        return self.timestamp_ms is not None


def parse_spec(text: str | None) -> OffsetSpec:
    """Parse a SPEC; raises ``SpecError`` with one line saying what is wrong."""
    raw = (text or "").strip()
    if not raw:
        raise SpecError("empty --from-offset SPEC; use earliest, N, P:N,P:N,... or @TIME")
    if raw.lower() == EARLIEST:
        return OffsetSpec(EARLIEST)
    if raw.startswith("@"):
        return OffsetSpec(raw, timestamp_ms=_parse_time(raw[1:], raw))
    if _INT.fullmatch(raw):
        return OffsetSpec(raw, every=int(raw))
    if ":" in raw:
        return OffsetSpec(raw, per_partition=_parse_pairs(raw))
    raise SpecError(
        f"--from-offset {raw!r} is not a SPEC: use earliest, N, P:N,P:N,... or @TIME"
        " (e.g. @2026-11-25T00:00:00Z)"
    )


def _parse_pairs(raw: str) -> dict[int, int]:
    pairs: dict[int, int] = {}
    for item in raw.split(","):
        item = item.strip()
        parts = item.split(":")
        if len(parts) != 2 or not all(_INT.fullmatch(p.strip()) for p in parts):
            raise SpecError(
                f"--from-offset {raw!r}: {item!r} is not PARTITION:OFFSET"
                " (two non-negative integers, e.g. 0:120)"
            )
        partition, offset = (int(p) for p in parts)
        if partition in pairs:
            raise SpecError(f"--from-offset {raw!r}: partition {partition} is named twice")
        pairs[partition] = offset
    return pairs


def _parse_time(value: str, raw: str) -> int:
    value = value.strip()
    if _INT.fullmatch(value):
        return int(value)  # milliseconds since the epoch, as Kafka timestamps are
    try:
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise SpecError(
            f"--from-offset {raw!r}: {value!r} is not an ISO-8601 time"
            " (e.g. @2026-11-25T00:00:00Z) or epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ms = int(when.timestamp() * 1000)
    if ms < 0:
        raise SpecError(f"--from-offset {raw!r}: the time is before 1970")
    return ms


def resolve(
    spec: OffsetSpec,
    partitions: Sequence[TopicPartition],
    beginnings: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    times: Mapping[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """The first offset to read, per partition; raises ``SpecError`` for what does not exist.

    ``times`` is the source's ``offsets_for_time`` answer, needed for ``@TIME`` only.
    """
    known = {tp.partition: tp for tp in partitions}
    unknown = sorted(set(spec.per_partition) - set(known))
    if unknown:
        topic = partitions[0].topic if partitions else "the source"
        raise SpecError(
            f"--from-offset {spec.text!r}: partition {unknown[0]} does not exist in {topic}"
            f" (partitions: {', '.join(str(p) for p in sorted(known)) or 'none'})"
        )
    out: dict[TopicPartition, int] = {}
    for tp in partitions:
        begin, end = beginnings.get(tp, 0), ends.get(tp, 0)
        if spec.is_time:
            if times is None:
                raise ValueError("resolve() needs offsets_for_time for an @TIME SPEC")
            out[tp] = min(max(times.get(tp, end), begin), end)
            continue
        if spec.every is not None:
            wanted = spec.every
        elif tp.partition in spec.per_partition:
            wanted = spec.per_partition[tp.partition]
        else:
            out[tp] = begin
            continue
        if wanted > end:
            raise SpecError(
                f"--from-offset {spec.text!r}: offset {wanted} is beyond the end of partition"
                f" {tp.partition} ({_held(begin, end)})"
            )
        if wanted < begin:
            raise SpecError(
                f"--from-offset {spec.text!r}: offset {wanted} is before the beginning of"
                f" partition {tp.partition} ({_held(begin, end)})"
            )
        out[tp] = wanted
    return out


def _held(begin: int, end: int) -> str:
    if end <= begin:
        return f"it holds no messages; its end offset is {end}"
    return f"it holds offsets {begin}..{end - 1}; its end offset is {end}"
