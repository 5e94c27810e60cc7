"""Every error the query API raises on purpose derives from ``QueryApiError``."""

from __future__ import annotations


class QueryApiError(Exception):
    """Base of the query API's errors; its message is one readable line."""


class ConfigError(QueryApiError):
    """A setting or flag has a value we cannot use."""


class DatabaseUnavailable(QueryApiError):
    """The read model cannot be reached, or is not migrated."""


class UserInputError(QueryApiError):
    """A request argument breaks a rule of the contract (``first`` bounds, a bad cursor, ...).

    These are the only resolver errors whose message reaches the client unmasked.
    """


class InvalidCursor(UserInputError):
    """An ``after`` cursor we did not issue, or one for another list."""


class Busy(QueryApiError):
    """Every database slot stayed taken for the whole queue timeout."""


class QueryTimeout(QueryApiError):
    """A statement ran past the statement timeout and was stopped."""
