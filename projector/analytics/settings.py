"""Where the analytics catalog and warehouse are, and the window of an export.

``ANALYTICS_WAREHOUSE`` defaults to a directory beside the SQLite file of the read
model (``<file stem>-warehouse``), or ``./warehouse`` for a server database;
``ANALYTICS_CATALOG_URL`` defaults to ``DATABASE_URL`` (the Iceberg SQL catalog's
two tables then live in the read model's own database).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

from projector.analytics.errors import AnalyticsError
from schema import settings as shared
from schema.settings import SettingError

#: How far behind the watermark an export looks again: a batch whose applied time is
#: older than its commit (a long transaction, a clock behind) is still found. Twice
#: the longest a projector transaction can last on PostgreSQL (its statement bound,
#: 60 s), and every row applied in it is read again by the next export.
DEFAULT_OVERLAP_SECONDS: Final = 120.0
#: How recent an applied time an export does not read yet: a transaction still open
#: now commits rows stamped before it; the next export takes them.
DEFAULT_SETTLE_SECONDS: Final = 2.0
#: Snapshots older than this are expired by `export compact` (the newest always stays).
DEFAULT_SNAPSHOT_RETENTION_HOURS: Final = 168.0


@dataclass(frozen=True)
class AnalyticsSettings:
    warehouse: str
    catalog_url: str
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    snapshot_retention_hours: float = DEFAULT_SNAPSHOT_RETENTION_HOURS
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], database_url: str) -> AnalyticsSettings:
        try:
            settings = cls(
                warehouse=warehouse_uri(
                    shared.text(env, "ANALYTICS_WAREHOUSE", default_warehouse(database_url))
                ),
                catalog_url=shared.text(env, "ANALYTICS_CATALOG_URL", database_url),
                overlap_seconds=shared.number(
                    env, "ANALYTICS_OVERLAP_SECONDS", DEFAULT_OVERLAP_SECONDS
                ),
                settle_seconds=shared.number(
                    env, "ANALYTICS_SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS
                ),
                snapshot_retention_hours=shared.number(
                    env, "ANALYTICS_SNAPSHOT_RETENTION_HOURS", DEFAULT_SNAPSHOT_RETENTION_HOURS
                ),
                s3_endpoint=shared.text(env, "ANALYTICS_S3_ENDPOINT", ""),
                s3_region=shared.text(env, "AWS_REGION", "us-east-1"),
                s3_access_key_id=shared.text(env, "AWS_ACCESS_KEY_ID", ""),
                s3_secret_access_key=shared.text(env, "AWS_SECRET_ACCESS_KEY", ""),
            )
        except SettingError as exc:
            raise AnalyticsError(str(exc)) from None
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.overlap_seconds < 0 or self.settle_seconds < 0:
            raise AnalyticsError(
                "ANALYTICS_OVERLAP_SECONDS and ANALYTICS_SETTLE_SECONDS must not be negative"
            )
        if self.snapshot_retention_hours < 0:
            raise AnalyticsError("ANALYTICS_SNAPSHOT_RETENTION_HOURS must not be negative")
        try:
            make_url(self.catalog_url)
        except Exception:  # noqa: BLE001 - SQLAlchemy raises several kinds here
            raise AnalyticsError(
                f"ANALYTICS_CATALOG_URL {self.catalog_url!r} is not a SQLAlchemy URL"
            ) from None

    def catalog_properties(self) -> dict[str, str]:
        """The pyiceberg SQL catalog's properties (S3 ones only for an ``s3://`` warehouse)."""
        props = {"uri": self.catalog_url, "warehouse": self.warehouse}
        if self.warehouse.startswith("s3://"):
            props["s3.region"] = self.s3_region
            if self.s3_endpoint:
                props["s3.endpoint"] = self.s3_endpoint
            if self.s3_access_key_id:
                props["s3.access-key-id"] = self.s3_access_key_id
                props["s3.secret-access-key"] = self.s3_secret_access_key
        return props


def default_warehouse(database_url: str) -> str:
    """A directory beside the SQLite file, or ``./warehouse`` for a server database."""
    url = make_url(database_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        path = Path(database.removeprefix("file:")).expanduser()
        return str(path.with_name(f"{path.stem}-warehouse"))
    return "./warehouse"


def warehouse_uri(value: str) -> str:
    """A plain path becomes an absolute ``file://`` URI; ``file://`` and ``s3://`` stay."""
    if value.startswith(("file://", "s3://")):
        return value.rstrip("/")
    if "://" in value:
        raise AnalyticsError(
            f"ANALYTICS_WAREHOUSE {value!r}: use a path, file:///... or s3://bucket/prefix"
        )
    return Path(value).expanduser().resolve().as_uri()
