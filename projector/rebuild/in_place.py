"""``--in-place``: reset the active generation's checkpoints to SPEC and replay into it.

Events already held are skipped by id (``apply_batch``), missing ones are inserted.
``apply_batch`` does not refold a delivery for an event it already holds, so a
delivery whose current row was lost while its history stayed would not come back
from the replay alone: at the end every delivery with a history row at or after
the reset offsets, and every delivery with history but no row, is refolded from its
full history (``SqlStore.refold``), which also corrects rows that an event
re-inserted into a partial history folded wrongly meanwhile.

A checkpoint is never moved forward: a partition whose live offset is below the SPEC
starts at the live offset, so nothing between them is skipped.

The live projector owns the same partitions. Setting the checkpoints bumps their
epochs, so its batch in flight is refused (Fenced); it then claims the partitions
back (bumping again) and continues from the reset offsets itself. This rebuild does
not fight it: a partition taken from it is left to the live projector
(``Mode.in_place``) and it waits until the stored offsets reach the end offsets seen
at start (taking the partition again if it stands still for ``STALL_AFTER``), then
refolds. Either way every offset is applied once, and the refold covers what the
live projector replayed, since it is found from the history rows.
"""

from __future__ import annotations

import logging

from projector.loop import Mode
from projector.progress import Progress, Summary
from projector.rebuild.context import RebuildContext, catch_up, start_offsets
from projector.spec import OffsetSpec

log = logging.getLogger("projector.rebuild")

#: An in-place rebuild leaves a partition to the live projector that took it back,
#: but takes it again if its offset has not moved for this long below the target.
STALL_AFTER = 30.0


def in_place(ctx: RebuildContext, spec: OffsetSpec, *, allow_loss: bool = False) -> Summary:
    store = ctx.store
    generation = ctx.generations.mark_in_place(ctx.owner, spec.text)
    summary = Summary("rebuild", "in-place", spec.text, generation)
    try:
        source, partitions = ctx.assigned_source()
        try:
            ctx.guard_retention(source, partitions, allow_loss=allow_loss)
            wanted = start_offsets(source, partitions, spec)
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
            mode = Mode.in_place(generation, retake_after=STALL_AFTER)
            with Progress("in-place", starts, also=ctx.heartbeat(generation)) as progress:
                projector = ctx.projector(source, mode, progress)
                catch_up(projector, ends, "in-place rebuild", generation)
                progress.final(store.offsets(generation), ends, projector.totals)
        finally:
            source.close()
        touched = store.deliveries_replayed(generation, starts)
        lost = store.deliveries_without_row(generation)
        log.info("refolding %s deliveries (%s had lost their row)", len(touched | lost), len(lost))
        summary.take(projector.totals)
        summary.counts.refolded = store.refold(generation, touched | lost)
    finally:
        ctx.generations.release(generation, ctx.owner, clear_owner=True)
    return summary
