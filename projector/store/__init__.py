"""The read model as the projector sees it: the ports, cut by caller, and their SQL adapters.

- ``base``: the ports (``ProjectionStore`` for the loop, ``RepairStore``,
  ``GenerationLifecycle``; ``ReadModelStore`` a rebuild's), claims, batch results.
- ``sql``: ``SqlStore``, the transaction of a batch (fence, dead letters, history,
  rows, notification) on SQLite or PostgreSQL.
- ``generations``: the lifecycle's statements; ``lifecycle``: ``SqlGenerations``, the
  ``GenerationLifecycle`` adapter over them.
- ``pg`` / ``sqlite``: each dialect's fixed statements for the tables.
- ``rows``: a history row as the writers send it, JSON as text (``schema.rows``
  says which column holds which field).
- ``failures``: which database errors are retried, by error code.
"""

from __future__ import annotations

from projector.store.base import (
    BatchResult,
    Claim,
    GenerationLifecycle,
    ProjectionStore,
    ReadModelStore,
    RepairStore,
)
from projector.store.sql import SqlStore, deliveries_since
from schema.notify import NOTIFY_CHANNEL

__all__ = [
    "NOTIFY_CHANNEL",
    "BatchResult",
    "Claim",
    "GenerationLifecycle",
    "ProjectionStore",
    "ReadModelStore",
    "RepairStore",
    "SqlStore",
    "deliveries_since",
]
