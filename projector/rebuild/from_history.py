"""``--from-history``: a new generation from the served one's own history, then the topic.

The served generation G keeps every event as received (type, ``data``, version) at
its source position, and its pending dead letters as raw bytes. They are read back
per source partition in offset order (``HistorySource``) into G+1, up to where G
stood when this started, so G+1 then stands at exactly G's offsets; from there it
catches up from the topic and switches like any rebuild. Every message goes through
the parser again: a build that knows more versions, or a fixed parser, folds what G
kept as unknown or dead-lettered, without a topic that still holds everything. An
interrupted one resumes the same way (``new_generation.resume``).
"""

from __future__ import annotations

import logging

from projector.loop import Mode, Totals
from projector.progress import Progress, Summary
from projector.rebuild import bulk
from projector.rebuild.context import RebuildContext, catch_up
from projector.rebuild.switch import Build, retire
from projector.sources.base import TopicPartition
from projector.sources.history import HistorySource
from schema.lifecycle import GenerationPurpose

log = logging.getLogger("projector.rebuild")

#: ``from_spec`` of a generation built from the history.
HISTORY_SPEC = "history"


def from_history(ctx: RebuildContext, *, keep_old: bool) -> Summary:
    """Build a new generation from the served one's history, catch up, switch, retire."""
    in_bulk = bulk.applies(ctx)
    new, old = ctx.generations.create(
        purpose=GenerationPurpose.REBUILD, from_spec=HISTORY_SPEC, owner=ctx.owner,
        partitions=not in_bulk,
    )
    log.info("building generation %s from the history of generation %s", new, old)
    build = Build(ctx, new, old, Summary("rebuild", "from-history", HISTORY_SPEC, new, old))
    try:
        ends = ctx.store.offsets(old)
        ctx.store.set_offsets(new, {tp: 0 for tp in ends})
    except BaseException:
        build.release()
        raise
    continue_from_history(build, in_bulk=in_bulk)
    retire(ctx, build.summary, keep_old)
    return build.summary


def continue_from_history(build: Build, *, in_bulk: bool = False) -> None:
    """Replay ``old``'s history from ``new``'s stored offsets, then the topic; switch.

    ``in_bulk``: the history is bulk-loaded (``bulk``) into ``new``'s bare tables.
    """
    ctx = build.ctx
    try:
        totals = _replay_history(build, in_bulk=in_bulk)
    except BaseException:
        build.release()
        raise
    source, partitions = ctx.assigned_source()
    try:
        stored = ctx.store.offsets(build.new)
        missing = {tp: 0 for tp in partitions if tp not in stored}
        if missing:  # a partition the served generation never read: from its start
            begins = source.beginning_offsets(list(missing))
            ctx.store.set_offsets(build.new, begins)
            stored.update(begins)
        build.replay_and_switch(source, partitions, stored, totals=totals)
    finally:
        source.close()


def _replay_history(build: Build, *, in_bulk: bool = False) -> Totals:
    """``old``'s history into ``new``, up to where ``old`` stands now."""
    ctx, new, old = build.ctx, build.new, build.old
    ends = ctx.store.offsets(old)
    starts = ctx.store.offsets(new)
    missing = {tp: 0 for tp in ends if tp not in starts}
    if missing:
        ctx.store.set_offsets(new, missing)
        starts.update(missing)
    source = HistorySource(ends, ctx.generations.history_pages(old))
    source.assign(list(ends))
    targets = {tp: max(end, starts.get(tp, 0)) for tp, end in ends.items()}
    if in_bulk:
        totals = bulk.bulk_round(build, source, starts, targets)
        log.info(
            "history of generation %s bulk-loaded into generation %s: %s messages, %s dead"
            " letters; catching up from the topic",
            old, new, totals.messages, totals.dead_letters,
        )
        return totals
    with Progress("from-history", starts, also=ctx.heartbeat(new)) as progress:
        projector = ctx.projector(source, Mode.building(new), progress)
        catch_up(projector, targets, "rebuild", new)
        at: dict[TopicPartition, int] = ctx.store.offsets(new)
        progress.final(at, targets, projector.totals)
    log.info(
        "history of generation %s replayed into generation %s: %s messages, %s dead letters;"
        " catching up from the topic",
        old, new, projector.totals.messages, projector.totals.dead_letters,
    )
    return projector.totals
