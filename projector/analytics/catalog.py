"""The Iceberg SQL catalog and the two tables, created on first use.

The catalog is pyiceberg's ``SqlCatalog``: two tables (``iceberg_tables``,
``iceberg_namespace_properties``) in ``ANALYTICS_CATALOG_URL``, by default the read
model's own database. A commit there is one conditional UPDATE of the table's
metadata location: a second writer that read the same metadata fails it
(``CommitFailedException``), and this package never retries it.
"""

from __future__ import annotations

from typing import Any

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.table import Table

from projector.analytics.errors import AnalyticsError
from projector.analytics.layout import (
    DELIVERIES_SCHEMA,
    DELIVERIES_TABLE,
    EVENTS_PARTITIONING,
    EVENTS_SCHEMA,
    EVENTS_TABLE,
    NAMESPACE,
)
from projector.analytics.settings import AnalyticsSettings
from schema.db import redacted

#: Parquet with zstd; data files up to 512 MiB (compaction makes one per closed day).
#: No commit retries: pyiceberg retries a failed commit 4 times by default, rebasing
#: the append onto the other writer's snapshot; a second exporter must fail instead.
TABLE_PROPERTIES = {
    "commit.retry.num-retries": "0",
    "write.parquet.compression-codec": "zstd",
    "write.target-file-size-bytes": str(512 * 1024 * 1024),
    "format-version": "2",
}


def open_catalog(settings: AnalyticsSettings) -> SqlCatalog:
    try:
        return SqlCatalog("delivery", **settings.catalog_properties())
    except Exception as exc:  # noqa: BLE001 - driver and connection errors of all kinds
        raise AnalyticsError(
            f"analytics catalog {redacted(settings.catalog_url)} is unavailable: {exc}"
        ) from exc


def events_table(catalog: SqlCatalog, *, create: bool) -> Table | None:
    return _table(catalog, EVENTS_TABLE, create, schema=EVENTS_SCHEMA,
                  partition_spec=EVENTS_PARTITIONING)


def deliveries_table(catalog: SqlCatalog, *, create: bool) -> Table | None:
    return _table(catalog, DELIVERIES_TABLE, create, schema=DELIVERIES_SCHEMA)


def _table(catalog: SqlCatalog, name: str, create: bool, **spec: Any) -> Table | None:
    try:
        table = catalog.load_table(name)
    except NoSuchTableError:
        if not create:
            return None
    else:
        if table.properties.get("commit.retry.num-retries") != "0":
            table = table.transaction().set_properties(TABLE_PROPERTIES).commit_transaction()
        return table
    try:
        catalog.create_namespace(NAMESPACE)
    except NamespaceAlreadyExistsError:
        pass
    return catalog.create_table_if_not_exists(name, properties=TABLE_PROPERTIES, **spec)


def require(table: Table | None, name: str) -> Table:
    if table is None:
        raise AnalyticsError(f"no table {name} yet: run `projector export` first")
    return table
