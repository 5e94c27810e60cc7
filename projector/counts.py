"""What became of the messages a projector read: one counter type for a batch and a run.

``BatchResult`` (one batch, from the store), ``Totals`` (a projector's run, in the
loop) and a rebuild's ``Summary`` all count the same five things; they are this one
type, summed with ``add``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Counts:
    #: Messages read and applied in order, valid or not.
    messages: int = 0
    #: Distinct events new to the generation.
    applied: int = 0
    #: Later copies of an event id already held.
    duplicates: int = 0
    dead_letters: int = 0
    #: Deliveries whose current row was folded again from their history.
    refolded: int = 0

    def add(self, other: Counts) -> None:
        """Count ``other``'s messages on top of these."""
        for f in fields(Counts):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def counts(self) -> Counts:
        """Only the counters (a copy), without what a subclass adds."""
        return Counts(**{f.name: getattr(self, f.name) for f in fields(Counts)})
