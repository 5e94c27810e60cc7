"""The analytics export: the read model's history as Apache Iceberg tables, read with DuckDB.

- ``settings``: where the catalog and the warehouse are, the window of an export.
- ``layout``: the two tables' Iceberg schemas, partitioning and Arrow columns.
- ``window``: the pure decision of which applied times an export reads (watermark,
  overlap, settle lag) and what it stores with the data.
- ``catalog``: the Iceberg SQL catalog and the tables, created on first use.
- ``export``: one export run: read, fold the ids at each event, append, commit once.
- ``compact`` / ``status``: small files and how far the lake is.
- ``query``: DuckDB over the tables, for ``projector analytics``.

The read model's own SQL is in ``projector.store.analytics``.
"""

from __future__ import annotations
