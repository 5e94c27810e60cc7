"""What an operator may ask of ``projector rebuild`` and ``projector verify``.

A request is checked for contradictory flags when it is made, before anything is
opened: a bad combination is refused (``RebuildError``) without touching the read
model or the source.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from projector.errors import RebuildError
from projector.spec import OffsetSpec, parse_spec


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
