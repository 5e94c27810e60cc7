"""`projector rebuild` and `projector verify` (issue #4): replay the source without downtime.

Rebuild into a new generation (default): create generation G+1 (``building``),
set its offsets to the SPEC, replay into it with its own projector (no consumer
group; the live one is not disturbed), and once it stands at least where the
active generation G stands on every partition, switch in one transaction
(``generations.switch``). The live projector, which follows the active
generation, is refused its next batch on G (GenerationChanged) and continues in
G+1 from G+1's offsets. G's rows are then deleted unless ``--keep-old``. Until
the switch G is never written by us, so a failed or killed rebuild leaves it
serving, untouched; the building generation keeps its offsets and is resumed
(``--resume``) or dropped (``--discard``).

In place (``--in-place``): see ``_in_place``. From the served generation's history
(``--from-history``): see ``_from_history``. Verify: see ``run_verify``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import Engine

from projector import retention
from projector.bootstrap import open_engine, open_reader, open_source, open_store
from projector.errors import GenerationChanged, RebuildError
from projector.loop import Mode, Projector, Totals
from projector.progress import Progress, Summary
from projector.runtime import install_stop_signals, owner_name
from projector.settings import Settings
from projector.sources.base import EventSource, TopicPartition
from projector.sources.history import HistorySource
from projector.spec import OffsetSpec, parse_spec, resolve
from projector.store import ReadModelStore, generations
from projector.store.generations import NotCaughtUp
from projector.store.history import history_page
from projector.store.retention import served_before_start_of_active
from projector.store.verify import diff_generations
from schema.lifecycle import GenerationPurpose, GenerationStatus

log = logging.getLogger("projector.rebuild")

#: Catch-up rounds before the switch: each round replays to the end offsets seen
#: at its start; the switch then checks, under lock, that nothing is left behind.
MAX_ROUNDS = 50
HEARTBEAT_EVERY = 5.0
#: An in-place rebuild leaves a partition to the live projector that took it back,
#: but takes it again if its offset has not moved for this long below the target.
STALL_AFTER = 30.0
VERIFY_ROUNDS = 3
#: After a switch, the old generation's rows are deleted only after this pause.
RETIRE_GRACE_SECONDS = 3.0


# -- requests -----------------------------------------------------------------------------
class RebuildMode(enum.Enum):
    NEW_GENERATION = "new-generation"  # replay beside the active generation, then switch
    IN_PLACE = "in-place"  # replay into the active generation
    RESUME = "resume"  # continue an interrupted rebuild from its stored offsets
    DISCARD = "discard"  # give an interrupted rebuild up
    FROM_HISTORY = "from-history"  # from the served generation's history, then the topic


@dataclass(frozen=True)
class RebuildRequest:
    """What an operator asked of ``projector rebuild``, checked for contradictions."""

    mode: RebuildMode = RebuildMode.NEW_GENERATION
    spec: OffsetSpec = field(default_factory=lambda: parse_spec("earliest"))
    keep_old: bool = False
    allow_empty: bool = False
    #: Rebuild from the topic even if it no longer holds events the served generation has.
    allow_loss: bool = False

    @classmethod
    def of(
        cls,
        *,
        from_offset: str = "earliest",
        in_place: bool = False,
        resume: bool = False,
        discard: bool = False,
        keep_old: bool = False,
        allow_empty: bool = False,
        allow_loss: bool = False,
        from_history: bool = False,
    ) -> RebuildRequest:
        """The request for these flags; contradictory ones raise ``RebuildError``."""
        chosen = [name for name, on in (("resume", resume), ("discard", discard),
                                        ("in-place", in_place), ("from-history", from_history))
                  if on]
        if len(chosen) > 1:
            raise RebuildError(f"{' and '.join('--' + c for c in chosen)} cannot be used together")
        if (resume or discard) and from_offset.strip().lower() != "earliest":
            raise RebuildError(
                "--from-offset cannot be used with --resume or --discard: an interrupted"
                " rebuild continues from its stored offsets"
            )
        if keep_old and (in_place or discard):
            raise RebuildError("--keep-old only applies to a rebuild into a new generation")
        if allow_loss and (resume or discard or from_history):
            raise RebuildError("--allow-loss only applies to a rebuild from the topic")
        if from_history and from_offset.strip().lower() != "earliest":
            raise RebuildError(
                "--from-offset cannot be used with --from-history: the history is read whole,"
                " then the topic from where it ends"
            )
        if from_history and allow_empty:
            raise RebuildError("--allow-empty only applies to a rebuild from the topic")
        mode = (
            RebuildMode.FROM_HISTORY if from_history
            else RebuildMode.RESUME if resume
            else RebuildMode.DISCARD if discard
            else RebuildMode.IN_PLACE if in_place
            else RebuildMode.NEW_GENERATION
        )
        return cls(mode, parse_spec(from_offset), keep_old, allow_empty, allow_loss)


@dataclass(frozen=True)
class VerifyRequest:
    spec: OffsetSpec = field(default_factory=lambda: parse_spec("earliest"))
    #: Most differences listed (all are counted).
    limit: int = 20

    @classmethod
    def of(cls, *, from_offset: str = "earliest", limit: int = 20) -> VerifyRequest:
        if limit < 0:
            raise RebuildError("--limit must not be negative")
        return cls(parse_spec(from_offset), limit)


# -- entry points ---------------------------------------------------------------------
def run_rebuild(settings: Settings, request: RebuildRequest) -> Summary:
    """Carry out a rebuild request; the summary says what was done."""
    engine = open_engine(settings)
    store = open_store(settings, engine)
    if request.mode is RebuildMode.DISCARD:
        return _discard(engine)
    if request.mode is RebuildMode.RESUME:
        return _resume(settings, engine, store, keep_old=request.keep_old)
    if request.mode is RebuildMode.FROM_HISTORY:
        summary = _from_history(settings, engine, store)
        _after_switch(engine, summary, request.keep_old)
        return summary
    if request.mode is RebuildMode.IN_PLACE:
        return _in_place(settings, engine, store, request.spec, allow_loss=request.allow_loss)
    return _new_generation(
        settings,
        engine,
        store,
        request.spec,
        keep_old=request.keep_old,
        allow_empty=request.allow_empty,
        allow_loss=request.allow_loss,
    )


# -- a rebuild into a new generation ------------------------------------------------------
def _new_generation(
    settings: Settings,
    engine: Engine,
    store: ReadModelStore,
    spec: OffsetSpec,
    *,
    keep_old: bool,
    allow_empty: bool = False,
    allow_loss: bool = False,
) -> Summary:
    owner = owner_name()
    source, partitions = _assigned_source(settings)
    try:
        _guard_retention(engine, source, partitions, allow_loss=allow_loss)
        starts = _start_offsets(source, partitions, spec)
        if not allow_empty:
            _refuse_empty(engine, source, partitions, starts, spec)
        new, old = generations.create(
            engine, purpose=GenerationPurpose.REBUILD, from_spec=spec.text, owner=owner
        )
        log.info("building generation %s from %s while generation %s serves", new, spec.text, old)
        try:
            store.set_offsets(new, starts)
        except BaseException:
            generations.release(engine, new, owner)
            raise
        summary = Summary("rebuild", "new-generation", spec.text, new, old)
        _build_and_switch(settings, engine, store, source, partitions, new, starts, owner, summary)
    finally:
        source.close()
    _after_switch(engine, summary, keep_old)
    return summary


def _resume(
    settings: Settings, engine: Engine, store: ReadModelStore, *, keep_old: bool
) -> Summary:
    owner = owner_name()
    found = generations.running_build(engine)
    if (
        found is None
        or found.status != GenerationStatus.BUILDING
        or found.purpose != GenerationPurpose.REBUILD
    ):
        raise RebuildError("there is no interrupted rebuild to resume")
    generations.take_over(engine, found.generation, owner)
    spec_text = found.from_spec or "earliest"
    if spec_text == HISTORY_SPEC:
        old = generations.active_number(engine)
        log.info("resuming generation %s from the history of generation %s", found.generation, old)
        summary = Summary("rebuild", "resume", spec_text, found.generation, old)
        _continue_from_history(settings, engine, store, found.generation, old, owner, summary)
        _after_switch(engine, summary, keep_old)
        return summary
    source, partitions = _assigned_source(settings)
    try:
        stored = store.offsets(found.generation)
        missing = [tp for tp in partitions if tp not in stored]
        if missing:  # killed between creating the generation and setting its offsets
            starts = _start_offsets(source, partitions, parse_spec(spec_text))
            store.set_offsets(found.generation, {tp: starts[tp] for tp in missing})
            stored.update({tp: starts[tp] for tp in missing})
        old = generations.active_number(engine)
        log.info(
            "resuming generation %s (from %s) at its stored offsets", found.generation, spec_text
        )
        summary = Summary("rebuild", "resume", spec_text, found.generation, old)
        _build_and_switch(
            settings, engine, store, source, partitions, found.generation, stored, owner, summary
        )
    finally:
        source.close()
    _after_switch(engine, summary, keep_old)
    return summary


def _discard(engine: Engine) -> Summary:
    found = generations.running_build(engine)
    if found is None or found.status != GenerationStatus.BUILDING:
        raise RebuildError("there is no interrupted rebuild to discard")
    if found.alive:
        raise generations.refuse_running(found)
    generations.discard(engine, found.generation)
    log.info("discarded generation %s (%s)", found.generation, found.describe())
    current = generations.active_number(engine)
    return Summary("rebuild", "discard", found.from_spec or "earliest", found.generation, current)


def _build_and_switch(
    settings: Settings,
    engine: Engine,
    store: ReadModelStore,
    source: EventSource,
    partitions: list[TopicPartition],
    new: int,
    starts: dict[TopicPartition, int],
    owner: str,
    summary: Summary,
    *,
    totals: Totals | None = None,
) -> None:
    """Replay into ``new`` until it is at least where the active generation is, then switch.

    ``totals``: what an earlier phase of the same rebuild did (the history), counted on.
    """
    assert summary.previous_generation is not None
    old = summary.previous_generation
    beat = _Heartbeat(engine, new, owner)
    try:
        with Progress("rebuild", starts) as progress:
            projector = _projector(
                settings, source, store, Mode.building(new), progress, beat
            )
            if totals is not None:
                projector.totals = totals
            targets: dict[TopicPartition, int] = {}
            for _round in range(MAX_ROUNDS):
                ends = source.end_offsets(partitions)
                targets = {tp: max(ends.get(tp, 0), targets.get(tp, 0)) for tp in partitions}
                _catch_up(projector, targets, "rebuild", new)
                try:
                    generations.switch(engine, old, new, owner)
                    break
                except NotCaughtUp as exc:
                    targets.update(exc.behind)  # the live projector moved on meanwhile
                    log.info("generation %s not yet where %s is; one more round", new, old)
            else:
                raise RebuildError(
                    f"generation {new} did not catch up with generation {old} in {MAX_ROUNDS}"
                    " rounds (is the source growing faster than the rebuild?); resume with"
                    " `projector rebuild --resume`"
                )
            progress.final(store.offsets(new), targets, projector.totals)
    except BaseException:
        generations.release(engine, new, owner)
        raise
    summary.take(projector.totals)
    summary.switched = True
    log.info("generation %s is active; generation %s retired", new, old)


def _after_switch(engine: Engine, summary: Summary, keep_old: bool) -> None:
    summary.kept_old = keep_old
    if not keep_old and summary.previous_generation is not None:
        # A query that read the old generation number just before the switch is
        # still reading its rows: give such requests time to finish first.
        time.sleep(RETIRE_GRACE_SECONDS)
        gone = generations.drop_rows(engine, summary.previous_generation)
        log.info("deleted %s rows of generation %s", gone, summary.previous_generation)


# -- from the history ---------------------------------------------------------------------
#: ``from_spec`` of a generation built from the history.
HISTORY_SPEC = "history"


def _from_history(settings: Settings, engine: Engine, store: ReadModelStore) -> Summary:
    """Build a new generation from the served one's history, catch up, switch.

    The served generation G keeps every event as received (type, ``data``, version) at
    its source position, and its pending dead letters as raw bytes. They are read
    back per source partition in offset order (``HistorySource``) into G+1, up to
    where G stood when this started, so G+1 then stands at exactly G's offsets; from
    there it catches up from the topic and switches like any rebuild. Every message
    goes through the parser again: a build that knows more versions, or a fixed
    parser, folds what G kept as unknown or dead-lettered, without a topic that still
    holds everything. An interrupted one resumes the same way (``_resume``).
    """
    owner = owner_name()
    new, old = generations.create(
        engine, purpose=GenerationPurpose.REBUILD, from_spec=HISTORY_SPEC, owner=owner
    )
    log.info("building generation %s from the history of generation %s", new, old)
    summary = Summary("rebuild", "from-history", HISTORY_SPEC, new, old)
    try:
        ends = store.offsets(old)
        store.set_offsets(new, {tp: 0 for tp in ends})
    except BaseException:
        generations.release(engine, new, owner)
        raise
    _continue_from_history(settings, engine, store, new, old, owner, summary)
    return summary


def _continue_from_history(
    settings: Settings,
    engine: Engine,
    store: ReadModelStore,
    new: int,
    old: int,
    owner: str,
    summary: Summary,
) -> None:
    """Replay ``old``'s history from ``new``'s stored offsets, then the topic; switch."""
    try:
        totals = _replay_history(settings, engine, store, new, old, owner)
    except BaseException:
        generations.release(engine, new, owner)
        raise
    source, partitions = _assigned_source(settings)
    try:
        stored = store.offsets(new)
        missing = {tp: 0 for tp in partitions if tp not in stored}
        if missing:  # a partition the served generation never read: from its start
            begins = source.beginning_offsets(list(missing))
            store.set_offsets(new, begins)
            stored.update(begins)
        _build_and_switch(
            settings, engine, store, source, partitions, new, stored, owner, summary,
            totals=totals,
        )
    finally:
        source.close()


def _replay_history(
    settings: Settings, engine: Engine, store: ReadModelStore, new: int, old: int, owner: str
) -> Totals:
    """``old``'s history into ``new``, up to where ``old`` stands now."""
    ends = store.offsets(old)
    starts = store.offsets(new)
    missing = {tp: 0 for tp in ends if tp not in starts}
    if missing:
        store.set_offsets(new, missing)
        starts.update(missing)
    source = HistorySource(ends, partial(history_page, engine, old))
    source.assign(list(ends))
    targets = {tp: max(end, starts.get(tp, 0)) for tp, end in ends.items()}
    beat = _Heartbeat(engine, new, owner)
    with Progress("from-history", starts) as progress:
        projector = _projector(settings, source, store, Mode.building(new), progress, beat)
        _catch_up(projector, targets, "rebuild", new)
        at: dict[TopicPartition, int] = store.offsets(new)
        progress.final(at, targets, projector.totals)
    log.info(
        "history of generation %s replayed into generation %s: %s messages, %s dead letters;"
        " catching up from the topic",
        old, new, projector.totals.messages, projector.totals.dead_letters,
    )
    return projector.totals


# -- in place -----------------------------------------------------------------------------
def _in_place(
    settings: Settings,
    engine: Engine,
    store: ReadModelStore,
    spec: OffsetSpec,
    *,
    allow_loss: bool = False,
) -> Summary:
    """Reset the active generation's checkpoints to SPEC and replay into it.

    Events already held are skipped by id (``apply_batch``), missing ones are
    inserted. ``apply_batch`` does not refold a delivery for an event it already
    holds, so a delivery whose current row was lost while its history stayed would
    not come back from the replay alone: at the end every delivery with a history
    row at or after the reset offsets, and every delivery with history but no row,
    is refolded from its full history (``SqlStore.refold``), which also corrects
    rows that an event re-inserted into a partial history folded wrongly meanwhile.

    A checkpoint is never moved forward: a partition whose live offset is below
    the SPEC starts at the live offset, so nothing between them is skipped.

    The live projector owns the same partitions. Setting the checkpoints bumps
    their epochs, so its batch in flight is refused (Fenced); it then claims the
    partitions back (bumping again) and continues from the reset offsets itself.
    This rebuild does not fight it: a partition taken from it is left to the live
    projector (``yield_when_fenced``) and it waits until the stored offsets reach
    the end offsets seen at start (taking the partition again if it stalls), then
    refolds. Either way every offset is applied once, and the refold covers what
    the live projector replayed, since it is found from the history rows.
    """
    owner = owner_name()
    generation = generations.mark_in_place(engine, owner, spec.text)
    summary = Summary("rebuild", "in-place", spec.text, generation)
    try:
        source, partitions = _assigned_source(settings)
        try:
            _guard_retention(engine, source, partitions, allow_loss=allow_loss)
            wanted = _start_offsets(source, partitions, spec)
            stored = store.offsets(generation)
            begins = source.beginning_offsets(partitions)
            starts = {tp: min(wanted[tp], stored.get(tp, begins.get(tp, 0))) for tp in partitions}
            for tp in partitions:
                if starts[tp] < wanted[tp]:
                    log.info(
                        "partition %s starts at %s, where the live projection stands",
                        tp.partition,
                        starts[tp],
                    )
            store.set_offsets(generation, starts)
            ends = source.end_offsets(partitions)
            beat = _Heartbeat(engine, generation, owner)
            with Progress("in-place", starts) as progress:
                projector = _projector(
                    settings, source, store, Mode.in_place(generation), progress, beat
                )
                _catch_up(projector, ends, "in-place rebuild", generation)
                progress.final(store.offsets(generation), ends, projector.totals)
        finally:
            source.close()
        touched = store.deliveries_replayed(generation, starts)
        lost = store.deliveries_without_row(generation)
        log.info("refolding %s deliveries (%s had lost their row)", len(touched | lost), len(lost))
        summary.take(projector.totals)
        summary.refolded = store.refold(generation, touched | lost)
    finally:
        generations.release(engine, generation, owner, clear_owner=True)
    return summary


# -- verify -------------------------------------------------------------------------------
def run_verify(settings: Settings, request: VerifyRequest) -> Summary:
    """Replay into a scratch generation up to the live offsets and diff it row by row.

    Same offsets: the live offsets are read, and the scratch projector replays
    exactly up to them (``Projector(limits=...)``). The live projector keeps
    running, so the comparison reads the live generation in one snapshot
    (REPEATABLE READ on PostgreSQL, one read transaction on SQLite/WAL); if its
    offsets moved past the scratch's, the scratch is extended (up to
    ``VERIFY_ROUNDS``) and, failing that, the deliveries that received events
    beyond the scratch's offsets are left out of the diff and counted
    (``skipped_moved``). The scratch generation is deleted at the end.
    """
    spec = request.spec
    engine = open_engine(settings)
    store = open_store(settings, engine)
    owner = owner_name()
    source, partitions = _assigned_source(settings)
    reader = open_reader(settings)
    scratch: int | None = None
    try:
        starts = _start_offsets(source, partitions, spec)
        scratch, live = generations.create(
            engine, purpose=GenerationPurpose.VERIFY, from_spec=spec.text, owner=owner
        )
        summary = Summary("verify", "verify", spec.text, scratch, live)
        beat = _Heartbeat(engine, scratch, owner)
        limits = _live_limits(store, live, partitions, starts)
        starts = {tp: min(starts[tp], limits[tp]) for tp in partitions}
        store.set_offsets(scratch, starts)
        with Progress("verify", starts) as progress:
            projector = _projector(
                settings, source, store, Mode.building(scratch), progress, beat
            )
            for attempt in range(1, VERIFY_ROUNDS + 1):
                projector.limits = dict(limits)
                _catch_up(projector, limits, "verify", scratch)
                result = diff_generations(
                    reader, live, scratch, request.limit, final=attempt == VERIFY_ROUNDS
                )
                if result is not None:
                    break
                limits = _live_limits(store, live, partitions, starts)
                log.info("the live generation moved on during the replay; extending the scratch")
            progress.final(store.offsets(scratch), limits, projector.totals)
        assert result is not None
        summary.take(projector.totals)
        summary.differences, summary.skipped_moved, summary.first_differences = result
    finally:
        source.close()
        reader.dispose()
        if scratch is not None:
            generations.forget(engine, scratch)
    return summary


def _live_limits(
    store: ReadModelStore,
    live: int,
    partitions: list[TopicPartition],
    starts: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Where the live generation stands; a partition it never read stands at its start."""
    stored = store.offsets(live)
    return {tp: stored.get(tp, starts[tp]) for tp in partitions}


# -- shared plumbing ---------------------------------------------------------------------
def _assigned_source(settings: Settings) -> tuple[EventSource, list[TopicPartition]]:
    """The source without a consumer group, assigned every partition."""
    source = open_source(settings, group=False)
    try:
        partitions = source.partitions()
        source.assign(partitions)
    except BaseException:
        source.close()
        raise
    return source, partitions


def _guard_retention(
    engine: Engine,
    source: EventSource,
    partitions: Sequence[TopicPartition],
    *,
    allow_loss: bool,
) -> None:
    """Refuse a rebuild from the topic that would drop served events (``projector.retention``)."""
    begins = source.beginning_offsets(partitions)
    current, served = served_before_start_of_active(engine, begins)
    gone = retention.Gone.of(current, served)
    retention.check(gone, allow_loss=allow_loss)
    if gone.total:
        log.warning("--allow-loss: rebuilding anyway; %s", gone.describe())


def _refuse_empty(
    engine: Engine,
    source: EventSource,
    partitions: Sequence[TopicPartition],
    starts: dict[TopicPartition, int],
    spec: OffsetSpec,
) -> None:
    """A SPEC past every end (a mistyped year in @TIME) would swap the model for an empty one."""
    ends = source.end_offsets(partitions)
    if any(starts[tp] < ends.get(tp, 0) for tp in partitions):
        return
    current, held = generations.events_held(engine)
    if held:
        raise RebuildError(
            f"--from-offset {spec.text} leaves nothing to replay: the new generation would be"
            f" empty while generation {current} holds {held} events; pass --allow-empty to do it"
        )


def _start_offsets(
    source: EventSource, partitions: Sequence[TopicPartition], spec: OffsetSpec
) -> dict[TopicPartition, int]:
    begins = source.beginning_offsets(partitions)
    ends = source.end_offsets(partitions)
    times = None
    if spec.timestamp_ms is not None:
        times = source.offsets_for_time(partitions, spec.timestamp_ms)
    return resolve(spec, partitions, begins, ends, times)


class _Heartbeat:
    def __init__(self, engine: Engine, generation: int, owner: str) -> None:
        self.engine, self.generation, self.owner = engine, generation, owner
        self._last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self._last >= HEARTBEAT_EVERY:
            self._last = time.monotonic()
            generations.heartbeat(self.engine, self.generation, self.owner)


def _projector(
    settings: Settings,
    source: EventSource,
    store: ReadModelStore,
    mode: Mode,
    progress: Progress,
    beat: Callable[[], None],
) -> Projector:
    stalled: dict[TopicPartition, tuple[int, float]] = {}

    def hook(
        positions: dict[TopicPartition, int],
        targets: dict[TopicPartition, int] | None,
        totals: Totals,
    ) -> None:
        beat()
        progress(positions, targets, totals)
        # In place: take back a partition left to a live projector that stopped moving it.
        for tp in list(projector.released):
            at = positions.get(tp, 0)
            seen = stalled.get(tp)
            if seen is None or seen[0] != at:
                stalled[tp] = (at, time.monotonic())
            elif time.monotonic() - seen[1] > STALL_AFTER and at < (targets or {}).get(tp, 0):
                log.info(
                    "partition %s has not moved for %.0fs; replaying it here",
                    tp.partition,
                    STALL_AFTER,
                )
                projector.released.discard(tp)

    projector = Projector(
        source,
        store,
        mode,
        batch_size=settings.batch_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        progress=hook,
        pipeline=True,
    )
    install_stop_signals(projector.stop)
    return projector


def _catch_up(
    projector: Projector, targets: dict[TopicPartition, int], what: str, generation: int
) -> None:
    try:
        projector.run(targets=targets)
    except GenerationChanged as exc:
        raise RebuildError(f"{what} of generation {generation} stopped: {exc}") from exc
    if projector.stop_event.is_set():
        raise RebuildError(
            f"{what} of generation {generation} interrupted; its offsets are kept"
            + ("; continue with `projector rebuild --resume`" if what == "rebuild" else "")
        )
