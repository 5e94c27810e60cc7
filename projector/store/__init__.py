"""The read model as the projector sees it: the ``ReadModelStore`` port and its SQL adapter.

- ``base``: the port (``ReadModelStore``), claims, batch results, batch parsing.
- ``sql``: ``SqlStore``, the transaction of a batch (fence, dead letters, history,
  rows, notification) on SQLite or PostgreSQL.
- ``pg`` / ``sqlite``: each dialect's fixed statements for the tables.
- ``rows``: a history row as the writers send it, JSON as text (``schema.rows``
  says which column holds which field).
- ``failures``: which database errors are retried, by error code.
"""

from __future__ import annotations

from projector.store.base import BatchResult, Claim, PreparedBatch, ReadModelStore, prepare_batch
from projector.store.sql import SqlStore, deliveries_since
from schema.notify import NOTIFY_CHANNEL

__all__ = [
    "NOTIFY_CHANNEL",
    "BatchResult",
    "Claim",
    "PreparedBatch",
    "ReadModelStore",
    "SqlStore",
    "deliveries_since",
    "prepare_batch",
]
