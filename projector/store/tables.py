"""The dialect port: what ``SqlStore`` asks of each database's fixed statements.

``PgTables`` and ``SqliteTables`` implement it, each through the batch's own
driver connection (``raw``), inside the transaction ``SqlStore`` holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from projector.store.rows import HistoryRow
from schema.events import Event
from schema.fold import DeliveryRow


class DialectTables(Protocol):
    def insert_history(
        self, raw: Any, generation: int, rows: Sequence[HistoryRow], applied_at: datetime
    ) -> set[str]:
        """Insert the rows whose event id is new (``rows`` hold distinct ids); those ids."""
        ...

    def load_rows(self, raw: Any, generation: int, ids: Sequence[str]) -> dict[str, DeliveryRow]:
        """The current rows of the deliveries ``ids`` (those that have one)."""
        ...

    def load_history(
        self, raw: Any, generation: int, ids: Sequence[str]
    ) -> dict[str, list[Event]]:
        """The whole history of each of the deliveries ``ids``."""
        ...

    def upsert_rows(self, raw: Any, generation: int, rows: Sequence[DeliveryRow]) -> None: ...

    def lock_deliveries(self, raw: Any, generation: int, ids: Iterable[str]) -> None:
        """Serialise writers of the same deliveries until the transaction ends."""
        ...

    def notify(self, raw: Any, generation: int, ids: Iterable[str]) -> None:
        """Tell listeners these deliveries changed, if the transaction commits."""
        ...
