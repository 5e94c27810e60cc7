"""A generation built beside the active one: replay until it has caught up, switch, retire.

Until the switch the active generation is never written by a rebuild, so a failed or
killed one leaves it serving, untouched; the building generation keeps its offsets
and is resumed (``--resume``) or dropped (``--discard``). The switch is one
transaction (``GenerationLifecycle.switch``) that checks, under lock, that the new
generation stands at least where the active one stands on every partition.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from projector.errors import RebuildError
from projector.loop import Mode, Totals
from projector.progress import Progress, Summary
from projector.rebuild.context import RebuildContext, catch_up
from projector.sources.base import MessageSource, TopicPartition
from projector.store.generations import NotCaughtUp

log = logging.getLogger("projector.rebuild")

#: Catch-up rounds before the switch: each round replays to the end offsets seen
#: at its start; the switch then checks, under lock, that nothing is left behind.
MAX_ROUNDS = 50
#: After a switch, the old generation's rows are deleted only after this pause.
RETIRE_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class Build:
    """Generation ``new`` being built by this process while ``old`` serves."""

    ctx: RebuildContext
    new: int
    old: int
    summary: Summary

    def release(self) -> None:
        """Give the building generation up to a later ``--resume``: its offsets stay."""
        self.ctx.generations.release(self.new, self.ctx.owner)

    def replay_and_switch(
        self,
        source: MessageSource,
        partitions: list[TopicPartition],
        starts: dict[TopicPartition, int],
        *,
        totals: Totals | None = None,
    ) -> None:
        """Replay into ``new`` until it is at least where ``old`` is, then switch.

        ``totals``: what an earlier phase of the same rebuild did (the history), counted on.
        """
        ctx, new, old = self.ctx, self.new, self.old
        try:
            with Progress("rebuild", starts, also=ctx.heartbeat(new)) as progress:
                projector = ctx.projector(source, Mode.building(new), progress)
                if totals is not None:
                    projector.totals = totals
                targets: dict[TopicPartition, int] = {}
                for _round in range(MAX_ROUNDS):
                    ends = source.end_offsets(partitions)
                    targets = {tp: max(ends.get(tp, 0), targets.get(tp, 0)) for tp in partitions}
                    catch_up(projector, targets, "rebuild", new)
                    try:
                        ctx.generations.switch(old, new, ctx.owner)
                        break
                    except NotCaughtUp as exc:
                        targets.update(exc.behind)  # the live projector moved on meanwhile
                        log.info("generation %s not yet where %s is; one more round", new, old)
                else:
                    raise RebuildError(
                        f"generation {new} did not catch up with generation {old} in"
                        f" {MAX_ROUNDS} rounds (is the source growing faster than the"
                        " rebuild?); resume with `projector rebuild --resume`"
                    )
                progress.final(ctx.store.offsets(new), targets, projector.totals)
        except BaseException:
            self.release()
            raise
        self.summary.take(projector.totals)
        self.summary.switched = True
        log.info("generation %s is active; generation %s retired", new, old)


def retire(ctx: RebuildContext, summary: Summary, keep_old: bool) -> None:
    """After a switch: delete the previous generation's rows, unless ``--keep-old``."""
    summary.kept_old = keep_old
    if not keep_old and summary.previous_generation is not None:
        # A query that read the old generation number just before the switch is
        # still reading its rows: give such requests time to finish first.
        time.sleep(RETIRE_GRACE_SECONDS)
        gone = ctx.generations.drop_rows(summary.previous_generation)
        log.info("deleted %s rows of generation %s", gone, summary.previous_generation)
