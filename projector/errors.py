"""Every error the projector raises on purpose derives from ``ProjectorError``."""

from __future__ import annotations


class ProjectorError(Exception):
    """Base of the projector's errors; its message is one line for the operator."""

    #: The command's exit status when this error ends it.
    exit_code: int = 1


class ConfigError(ProjectorError):
    """A setting or flag has a value we cannot use."""


class SourceUnavailable(ProjectorError):
    """The event source (Kafka broker or file) cannot be reached or read."""


class StoreUnavailable(ProjectorError):
    """The read-model database cannot be reached."""


class Stalled(ProjectorError):
    """The database ended our session: this process stood still inside a transaction
    longer than its bound (``PROJECTOR_IDLE_IN_TRANSACTION_TIMEOUT_MS``).

    Its batch was rolled back and its partitions may belong to another projector
    by now; not retried: the process exits and its supervisor starts it afresh.
    """


class Fenced(ProjectorError):
    """Another consumer took over a partition: this one must not commit for it."""


class GenerationChanged(ProjectorError):
    """The generation this projector writes into is no longer the one it was started for."""


class SpecError(ProjectorError):
    """A ``--from-offset`` SPEC that is malformed or names what does not exist."""


class RebuildError(ProjectorError):
    """A rebuild cannot start or continue (another one runs, nothing to resume)."""


class RetentionLoss(RebuildError):
    """A rebuild from the topic would lose served events the topic no longer holds."""

    exit_code = 2
