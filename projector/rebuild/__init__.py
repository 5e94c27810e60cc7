"""`projector rebuild` and `projector verify`: replay the source without downtime.

One module per mode, each a function of one ``RebuildContext`` (``context``):

- ``requests``: what an operator may ask (``RebuildRequest``, ``VerifyRequest``).
- ``new_generation``: into generation G+1 beside the serving G, then switched
  (default); ``--resume`` and ``--discard`` of an interrupted one.
- ``from_history``: G+1 from G's own history, then the topic (``--from-history``).
- ``switch``: what every new generation ends with: catch up, switch, retire G.
- ``in_place``: replay into G itself beside the live projector (``--in-place``).
- ``verify``: replay into a scratch generation and diff it with the live one.
"""

from __future__ import annotations

from projector.progress import Summary
from projector.rebuild.context import RebuildContext
from projector.rebuild.from_history import from_history
from projector.rebuild.in_place import in_place
from projector.rebuild.new_generation import discard, new_generation, resume
from projector.rebuild.requests import RebuildMode, RebuildRequest, VerifyRequest
from projector.rebuild.verify import run_verify
from projector.settings import Settings

__all__ = ["RebuildMode", "RebuildRequest", "VerifyRequest", "run_rebuild", "run_verify"]


def run_rebuild(settings: Settings, request: RebuildRequest) -> Summary:
    """Carry out a rebuild request; the summary says what was done."""
    ctx = RebuildContext.open(settings)
    if request.mode is RebuildMode.DISCARD:
        return discard(ctx)
    if request.mode is RebuildMode.RESUME:
        return resume(ctx, keep_old=request.keep_old)
    if request.mode is RebuildMode.FROM_HISTORY:
        return from_history(ctx, keep_old=request.keep_old)
    if request.mode is RebuildMode.IN_PLACE:
        return in_place(ctx, request.spec, allow_loss=request.allow_loss)
    return new_generation(
        ctx,
        request.spec,
        keep_old=request.keep_old,
        allow_empty=request.allow_empty,
        allow_loss=request.allow_loss,
    )
