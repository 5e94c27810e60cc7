"""The command handlers behind `projector`: settings and parsed flags in, an exit code out."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Engine

from projector.analytics.cli import cmd_analytics, cmd_export
from projector.bootstrap import (
    migrate_read_model,
    open_engine,
    open_parser,
    open_source,
    open_store,
)
from projector.errors import ConfigError, ProjectorError, SourceUnavailable
from projector.loop import Projector, stderr_progress
from projector.progress import Summary
from projector.rebuild import RebuildRequest, VerifyRequest, run_rebuild, run_verify
from projector.runtime import install_stop_signals
from projector.settings import Settings
from projector.sources.base import TopicPartition
from projector.store import RepairStore
from projector.store import dead_letters as dead_letter_queries
from projector.store.retention import served_before_start_of
from projector.store.status import read_status
from projector.terminal import escape_json_text, json_line, printable, printable_lines
from schema import status as status_queries
from schema.db import redacted
from schema.events import EventParseError

log = logging.getLogger("projector")


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    before, after = migrate_read_model(settings)
    where = redacted(settings.database_url)
    if before == after:
        print(f"read model at {where} is up to date (revision {after})")
    else:
        print(f"read model at {where} migrated from {before or 'nothing'} to revision {after}")
    return 0


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings)
    store = open_store(settings, engine, watch_stalls=True)
    source = open_source(settings, group=True)
    projector = Projector(
        source,
        store,
        parser=open_parser(settings),
        batch_size=settings.batch_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        progress=stderr_progress if args.until_caught_up else _EveryHalfMinute(),
        pipeline=True,
    )
    install_stop_signals(projector.stop)
    try:
        totals = projector.run(until_caught_up=args.until_caught_up)
    finally:
        source.close()
    log.info(
        "projected %s messages: %s applied, %s duplicates, %s dead letters, %s refolded, in %.1fs",
        totals.messages,
        totals.applied,
        totals.duplicates,
        totals.dead_letters,
        totals.refolded,
        totals.seconds,
    )
    return 0


class _EveryHalfMinute:
    """A progress line at most every 30 s while following the source."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, positions: dict[TopicPartition, int], targets: Any, totals: Any) -> None:
        if time.monotonic() - self._last >= 30:
            self._last = time.monotonic()
            stderr_progress(positions, targets, totals)


def collect_status(settings: Settings, ask_source: bool = True) -> dict[str, Any]:
    engine = open_engine(settings, writer=False)
    generation, offsets, counts = read_status(engine)
    ends: dict[tuple[str, int], int] | None = None
    gone: dict[TopicPartition, int] | None = None
    if ask_source:
        source = open_source(settings, group=False)
        try:
            partitions = source.partitions()
            ends = {(tp.topic, tp.partition): e for tp, e in source.end_offsets(partitions).items()}
            begins = source.beginning_offsets(partitions)
            gone = served_before_start_of(engine, generation, begins)
            known = {(p.topic, p.partition) for p in offsets}
            for tp in partitions:
                if (tp.topic, tp.partition) not in known:
                    offsets.append(status_queries.PartitionOffset(tp.topic, tp.partition, 0))
            offsets.sort(key=lambda p: (p.topic, p.partition))
        except SourceUnavailable as exc:
            log.warning("end offsets unknown: %s", exc)
            ends = gone = None
        finally:
            source.close()
    doc = status_queries.status_document(generation, offsets, ends, counts)
    for p in doc["partitions"]:
        # Served events below the partition's start offset (retention, deleted records);
        # null when the source was not asked.
        p["eventsGoneFromSource"] = (
            None if gone is None else gone.get(TopicPartition(p["topic"], p["partition"]), 0)
        )
    return doc


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    doc = collect_status(settings, ask_source=not args.no_source)
    if args.json:
        print(json_line(doc))
        return 0
    print(f"generation {doc['generation']}")
    print(f"{'topic':<40} {'partition':>9} {'next':>10} {'end':>10} {'lag':>8} {'gone':>8}")
    for p in doc["partitions"]:
        end = "?" if p["endOffset"] is None else p["endOffset"]
        lag = "?" if p["lag"] is None else p["lag"]
        gone = "?" if p["eventsGoneFromSource"] is None else p["eventsGoneFromSource"]
        topic = printable(p["topic"])[-40:]
        print(
            f"{topic:<40} {p['partition']:>9} {p['nextOffset']:>10} {end:>10} {lag:>8} {gone:>8}"
        )
    lost = sum(p["eventsGoneFromSource"] or 0 for p in doc["partitions"])
    if lost:
        print(
            f"the topic no longer holds {lost} served events (gone): a rebuild from the topic"
            " would lose them; `projector rebuild --from-history` keeps them"
        )
    print(
        f"events applied: {doc['eventsApplied']}  unknown: {doc['unknownEvents']}  "
        f"dead letters: {doc['deadLetters']}  last event: {doc['lastEventAt'] or '-'}"
    )
    print(
        f"messages read: {doc['messagesRead']} = {doc['eventsApplied']} applied"
        f" + {doc['duplicates']} duplicates + {doc['deadLetters']} dead letters"
        + _unexplained(doc)
    )
    return 0


def _unexplained(doc: Mapping[str, Any]) -> str:
    """What the counts leave unexplained, when they do not add up (README: status)."""
    gap = doc["messagesRead"] - doc["eventsApplied"] - doc["duplicates"] - doc["deadLetters"]
    return "" if gap == 0 else f" (and {gap:+} not explained by the counts)"


def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    engine = open_engine(settings, writer=args.action != "list")
    if args.action == "list":
        return _dead_letters_list(engine, args)
    return _dead_letters_replay(engine, settings, args)


def _dead_letters_list(engine: Engine, args: argparse.Namespace) -> int:
    rows = dead_letter_queries.listed(engine, pending_only=not args.all, limit=args.limit)
    for r in rows:
        value = r.value.decode("utf-8", errors="replace") if r.value is not None else None
        if args.json:
            print(
                json_line(
                    {
                        "id": r.id,
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "key": r.key.decode("utf-8", errors="replace")
                        if r.key is not None
                        else None,
                        "value": value,
                        "errorCode": r.error_code,
                        "reason": r.reason,
                        "status": r.status,
                        "createdAt": r.created_at.isoformat(),
                    }
                )
            )
        else:
            shown = printable((value or "")[:80])
            print(
                f"#{r.id} {printable(r.topic)}:{r.partition}@{r.offset}"
                f" {printable(r.error_code)} {printable(r.status)}: {printable(r.reason)}"
                f"\n    {shown}"
            )
    if not args.json:
        print(f"{len(rows)} dead letter(s)", file=sys.stderr)
    return 0


def _dead_letters_replay(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    """Parse pending dead letters again; apply the valid ones as events, keep the rest."""
    store: RepairStore = open_store(settings, engine)
    parser = open_parser(settings)
    generation, letters = dead_letter_queries.pending(engine, args.ids)
    fixed = still = copies = 0
    for letter_id, message in letters:
        try:
            event = parser.event(message)
        except EventParseError as exc:
            still += 1
            print(f"#{letter_id} still invalid: {exc.code.value}: {printable(exc.reason)}")
            continue
        result = store.apply_replayed(generation, message, event, letter_id)
        what = (
            f"{printable(event.event_id)}"
            f" ({printable(event.event_type)} of {printable(event.delivery_id)})"
        )
        if result.applied:
            fixed += 1
            print(f"#{letter_id} replayed as event {what}")
        else:  # a later copy of an event already applied: a duplicate now
            copies += 1
            print(f"#{letter_id} already applied as event {what}")
    print(
        f"{fixed} replayed, {still} still invalid"
        + (f", {copies} already applied" if copies else ""),
        file=sys.stderr,
    )
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from producer.simulate import DEFAULT_START, SimulationConfig, encode, simulate

    if args.deliveries is None:  # --follow writes no backlog unless asked to
        args.deliveries = 0 if args.follow else 100
    if args.deliveries < 0:
        raise ConfigError("--deliveries must not be negative")
    if args.follow:
        if getattr(args, "to_outbox", None):
            raise ConfigError("--follow writes to a file (--out) or to Kafka, not --to-outbox")
        return _simulate_follow(settings, args)
    start = DEFAULT_START
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise ConfigError(f"--start {args.start!r} is not an ISO-8601 time") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    config = SimulationConfig(
        deliveries=args.deliveries,
        seed=args.seed,
        start=start,
        late_ratio=args.late_ratio,
        duplicate_ratio=args.duplicate_ratio,
        versions=_versions(args),
    )
    stream = simulate(config)
    if getattr(args, "to_outbox", None):
        from producer.outbox import simulate_to_outbox

        return simulate_to_outbox(args.to_outbox, stream, args.deliveries,
                                  args.outbox_payload, args.outbox_delete)
    if args.out:
        try:
            with open(args.out, "wb") as fh:
                for event in stream:
                    fh.write(encode(event) + b"\n")
        except OSError as exc:
            raise ProjectorError(f"cannot write {args.out}: {exc.strerror}") from exc
        print(f"wrote {len(stream)} events of {args.deliveries} deliveries to {args.out}")
        return 0
    from producer.produce import produce

    produce(settings, [(e["deliveryId"].encode(), encode(e)) for e in stream], args.partitions)
    print(
        f"produced {len(stream)} events of {args.deliveries} deliveries to "
        f"{settings.kafka_topic} at {settings.kafka_bootstrap_servers}"
    )
    return 0


def _simulate_follow(settings: Settings, args: argparse.Namespace) -> int:
    """``simulate --follow``: the live stream at ``--rate`` until SIGINT or SIGTERM."""
    from producer.simulate import LiveConfig, follow_file, follow_kafka, next_delivery_number

    if not args.rate > 0:
        raise ConfigError("--rate must be more than 0 events a second")
    if args.out and args.deliveries > 0 and next_delivery_number(args.out) == 1:
        cmd_simulate(settings, argparse.Namespace(**{**vars(args), "follow": False}))
    first = args.first_delivery
    if first is None:
        first = next_delivery_number(args.out) if args.out else int(time.time())
    config = LiveConfig(rate=args.rate, seed=args.seed, first_delivery=first,
                        versions=_versions(args))
    stop = _StopFlag()
    install_stop_signals(stop.set)
    where = args.out or f"{settings.kafka_topic} at {settings.kafka_bootstrap_servers}"
    print(f"simulating from D-{first:06d} at {args.rate:g} events/s to {where} "
          "(Ctrl-C stops)", flush=True)
    if args.out:
        try:
            count = follow_file(args.out, config, stop.is_set)
        except OSError as exc:
            raise ProjectorError(f"cannot append to {args.out}: {exc.strerror}") from exc
    else:
        count = follow_kafka(settings, config, stop.is_set, args.partitions)
    print(f"simulate: stopped after {count} events", flush=True)
    return 0


def _versions(args: argparse.Namespace) -> tuple[tuple[int, float], ...]:
    """``--versions V:SHARE,...`` read, or none (every event at version 1)."""
    if not getattr(args, "versions", None):
        return ()
    from producer.simulate import parse_versions

    try:
        return parse_versions(args.versions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class _StopFlag:
    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    request = RebuildRequest.of(
        from_offset=args.from_offset,
        in_place=args.in_place,
        resume=args.resume,
        discard=args.discard,
        keep_old=args.keep_old,
        allow_empty=args.allow_empty,
        allow_loss=args.allow_loss,
        from_history=args.from_history,
    )
    summary = run_rebuild(settings, request)
    print(_summary_text(summary, args.json), flush=True)
    return 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    summary = run_verify(settings, VerifyRequest.of(from_offset=args.from_offset, limit=args.limit))
    print(_summary_text(summary, args.json), flush=True)
    return 1 if summary.differences else 0


def _summary_text(summary: Summary, as_json: bool) -> str:
    """A rebuild's or verify's summary; delivery ids in it are shown, never obeyed."""
    return escape_json_text(summary.to_json()) if as_json else printable_lines(summary.to_text())


Command = Callable[[Settings, argparse.Namespace], int]

#: Every `projector` command, by the name the command line uses.
COMMANDS: Final[Mapping[str, Command]] = {
    "migrate": cmd_migrate,
    "run": cmd_run,
    "rebuild": cmd_rebuild,
    "verify": cmd_verify,
    "status": cmd_status,
    "dead-letters": cmd_dead_letters,
    "simulate": cmd_simulate,
    "export": cmd_export,
    "analytics": cmd_analytics,
}
