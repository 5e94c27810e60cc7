"""The stored status values: of a read-model generation, and of a dead letter.

These strings are written to and read from the tables by the projector and read
by the query API; each is defined here once. ``StrEnum`` members are plain
strings to the drivers and compare equal to what a query returns.
"""

from __future__ import annotations

import enum


class GenerationStatus(enum.StrEnum):
    """Exactly one generation is ACTIVE (served); a rebuild writes a BUILDING one."""

    ACTIVE = "active"
    BUILDING = "building"
    RETIRED = "retired"
    FAILED = "failed"


class GenerationPurpose(enum.StrEnum):
    LIVE = "live"
    REBUILD = "rebuild"
    VERIFY = "verify"


class DeadLetterStatus(enum.StrEnum):
    PENDING = "pending"
    REPLAYED = "replayed"
