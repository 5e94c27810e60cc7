"""The cyclic garbage collector, set for a long-running batch loop.

A projector's hot loop allocates many short-lived containers (a parsed event,
its data dict, row tuples) that reference counting frees at once; almost none
form cycles. With Python's defaults (700, 10, 10) a young collection runs every
700 net container allocations, and every tenth of those walks the middle
generation; every full collection walks the whole heap, start-up included
(SQLAlchemy, kafka-python, psycopg: some hundred thousand objects that live as
long as the process).

So, once start-up has imported everything: one collection, then ``gc.freeze()``
moves the survivors to a permanent generation no collection scans again, and a
larger first threshold lets a batch's garbage be freed by reference counting
before the collector looks at it. Collections still run, so a real cycle is
still freed, a little later.
"""

from __future__ import annotations

import gc
from typing import Final

#: (young, middle, old). The young threshold is larger than a batch of
#: 2,000 events' cycles-free containers would need; the older ones as before.
THRESHOLDS: Final = (50_000, 20, 10)


def freeze_after_start_up(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Collect once, move the survivors out of the collector's reach, raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
