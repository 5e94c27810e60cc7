"""The export's errors: each a ``ProjectorError``, so the CLI prints one line."""

from __future__ import annotations

from projector.errors import ProjectorError


class AnalyticsError(ProjectorError):
    """The analytics export or a query over it cannot proceed."""


class ConcurrentExport(AnalyticsError):
    """Another writer committed to the table first; this run wrote nothing to it."""


class QueryError(AnalyticsError):
    """A DuckDB statement of `projector analytics` failed."""
