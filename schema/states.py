"""The delivery states (the contract's ``DeliveryState``): one definition, fold and API alike."""

from __future__ import annotations

import enum
from typing import Final


class DeliveryState(str, enum.Enum):
    UNKNOWN = "UNKNOWN"
    CREATED = "CREATED"
    ASSIGNED = "ASSIGNED"
    PICKED_UP = "PICKED_UP"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


#: Once the fold reaches one of these, later events change no state (folding rule 2).
TERMINAL: Final = frozenset({DeliveryState.DELIVERED, DeliveryState.CANCELLED})
