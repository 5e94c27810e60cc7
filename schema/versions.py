"""Event versions: the shape of each (type, version) and the upcasters between them.

Producers evolve their events (the contract, section Event versions). This module says,
as data, what each version of each known type holds in ``data`` (``SHAPES``: the
catalogue that ``schema/catalogue/*.json`` publishes), and how an event of one
version becomes the next (``UPCASTERS``). The fold reads only the newest shape of
each type: an event received at an older version is validated against its own
shape, then upcast step by step.

An upcaster is a pure function of ``data`` (and the occurrence time, read only):
the event id, the subject and the occurrence time cannot change on the way, since
an upcaster never sees them to return. Upcasters are found by (type, version), never
by the order they were written in; ``Registry`` checks the chain when it is built
(at import for ``REGISTRY``): one upcaster per (type, version), each to the next
version, none missing between version 1 and the newest, none without a shape.

Standard library only, like ``schema.events``, which imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

#: The version of a message that carries none.
FIRST_VERSION: Final = 1
#: The greatest whole number of minutes ``etaMinutes`` may hold (one day).
MAX_ETA_MINUTES: Final = 1440


@dataclass(frozen=True)
class DataField:
    """One field of ``data`` that a version of a known type reads.

    ``name`` is a path: ``shop.id`` is ``id`` inside the object ``shop``. ``kind``
    is ``string``, ``datetime``, ``object`` or ``minutes`` (an integer, 0 to 1440).
    """

    name: str
    kind: str
    required: bool


#: How a version states the estimated delivery time: an instant in
#: ``estimatedDeliveryAt``, or whole minutes after the occurrence in ``etaMinutes``.
EtaField = Literal["estimatedDeliveryAt", "etaMinutes"]


@dataclass(frozen=True)
class Shape:
    """What one version of one type holds in ``data``; other fields are kept, never an error."""

    fields: Sequence[DataField]
    eta: EtaField = "estimatedDeliveryAt"

    @property
    def read(self) -> frozenset[str]:
        """Every path this version reads: its fields and its estimated delivery time."""
        return frozenset({f.name for f in self.fields} | {self.eta})


_V1: Final[Mapping[str, Sequence[DataField]]] = {
    "DeliveryCreated": (
        DataField("orderId", "string", True),
        DataField("shopId", "string", True),
        DataField("estimatedDeliveryAt", "datetime", False),
    ),
    "DeliveryRiderAssigned": (DataField("riderId", "string", True),),
    "DeliveryRiderUnassigned": (DataField("reason", "string", False),),
    "DeliveryPickedUp": (DataField("riderId", "string", False),),
    "DeliveryCompleted": (),
    "DeliveryCancelled": (DataField("reason", "string", False),),
    "DeliveryEtaChanged": (DataField("estimatedDeliveryAt", "datetime", True),),
}

#: Every (type, version) this build reads, by canonical type name. Published as
#: ``schema/catalogue/<type>.v<version>.json``; a published version never changes.
SHAPES: Final[Mapping[tuple[str, int], Shape]] = {
    **{(name, 1): Shape(fields) for name, fields in _V1.items()},
    ("DeliveryCreated", 2): Shape(
        (
            DataField("orderId", "string", True),
            DataField("shop", "object", True),
            DataField("shop.id", "string", True),
            DataField("shop.name", "string", False),
            DataField("etaMinutes", "minutes", False),
        ),
        eta="etaMinutes",
    ),
    ("DeliveryRiderAssigned", 2): Shape(
        (
            DataField("rider", "object", True),
            DataField("rider.id", "string", True),
            DataField("rider.name", "string", False),
            DataField("rider.vehicle", "string", False),
        )
    ),
}

#: ``data`` of one version -> ``data`` of the next; the occurrence time is given, read only.
UpcastFunction = Callable[[Mapping[str, Any], datetime], dict[str, Any]]


@dataclass(frozen=True)
class Upcaster:
    """``function`` turns ``data`` of ``event_type`` at ``source`` into ``target``'s shape."""

    event_type: str
    source: int
    target: int
    function: UpcastFunction


def _created_1_to_2(data: Mapping[str, Any], occurred_at: datetime) -> dict[str, Any]:
    """``shopId`` becomes ``shop.id``. The estimated delivery time was read at version 1
    (an instant, which whole minutes could not always hold): ``estimatedDeliveryAt``
    stays, a field version 2 keeps and does not read."""
    out = dict(data)
    out["shop"] = {"id": out.pop("shopId")}
    return out


def _rider_assigned_1_to_2(data: Mapping[str, Any], occurred_at: datetime) -> dict[str, Any]:
    """``riderId`` becomes ``rider.id``."""
    out = dict(data)
    out["rider"] = {"id": out.pop("riderId")}
    return out


#: The one registry of upcasters. Its order means nothing: ``Registry`` finds each
#: by (type, source version).
UPCASTERS: Final[Sequence[Upcaster]] = (
    Upcaster("DeliveryCreated", 1, 2, _created_1_to_2),
    Upcaster("DeliveryRiderAssigned", 1, 2, _rider_assigned_1_to_2),
)


class ChainError(ValueError):
    """The upcasters and shapes do not make one chain per type (gap, duplicate, cycle)."""


@dataclass(frozen=True)
class Registry:
    """Shapes and upcasters, checked into one chain per type: version 1 -> ... -> newest.

    ``reads`` are the (type, version) pairs accepted as received; by default every
    shape. A received version outside it is an unknown event. ``lacking`` makes a
    registry that does not read one version as received (a build from before that
    version was published), for tests of a rebuild after the build learns it.
    """

    shapes: Mapping[tuple[str, int], Shape]
    upcasters: Iterable[Upcaster]
    steps: Mapping[tuple[str, int], Upcaster] = field(init=False)
    newest: Mapping[str, int] = field(init=False)
    #: Per (type, version) read as received: its shape and the upcasters to the newest,
    #: in order (none for the newest). One lookup per event: the parser's hot path.
    paths: Mapping[tuple[str, int], tuple[Shape, tuple[UpcastFunction, ...]]] = field(
        init=False
    )

    def __post_init__(self) -> None:
        steps, newest = _check_chain(self.shapes, tuple(self.upcasters))
        object.__setattr__(self, "upcasters", tuple(self.upcasters))
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "newest", newest)
        paths = {}
        for (name, version), shape in self.shapes.items():
            chain = []
            at = version
            while at < newest[name]:
                step = steps[(name, at)]
                chain.append(step.function)
                at = step.target
            paths[(name, version)] = (shape, tuple(chain))
        object.__setattr__(self, "paths", paths)

    @property
    def reads(self) -> frozenset[tuple[str, int]]:
        """The (type, version) pairs read as received."""
        return frozenset(self.paths)

    def lacking(self, event_type: str, version: int) -> Registry:
        """This registry, except that ``version`` of ``event_type`` is not read as received."""
        copy = Registry(self.shapes, self.upcasters)
        paths = {k: v for k, v in self.paths.items() if k != (event_type, version)}
        object.__setattr__(copy, "paths", paths)
        return copy

    def upcast(
        self, event_type: str, version: int, data: Mapping[str, Any], occurred_at: datetime
    ) -> Mapping[str, Any]:
        """``data`` of ``event_type`` at ``version`` in the newest shape (itself if newest)."""
        for function in self.paths[(event_type, version)][1]:
            data = function(data, occurred_at)
        return data


def _check_chain(
    shapes: Mapping[tuple[str, int], Shape], upcasters: Sequence[Upcaster]
) -> tuple[dict[tuple[str, int], Upcaster], dict[str, int]]:
    steps: dict[tuple[str, int], Upcaster] = {}
    for up in upcasters:
        key = (up.event_type, up.source)
        if key in steps:
            raise ChainError(f"two upcasters from {up.event_type} version {up.source}")
        if up.target <= up.source:
            raise ChainError(
                f"the upcaster from {up.event_type} version {up.source} goes back to version"
                f" {up.target}: a chain must only move forward (a cycle)"
            )
        if up.target != up.source + 1:
            raise ChainError(
                f"the upcaster from {up.event_type} version {up.source} skips to version"
                f" {up.target}: each step goes to the next version"
            )
        for version in (up.source, up.target):
            if (up.event_type, version) not in shapes:
                raise ChainError(f"an upcaster names {up.event_type} version {version},"
                                 " which has no shape")
        steps[key] = up
    newest: dict[str, int] = {}
    for name, version in shapes:
        if version < FIRST_VERSION:
            raise ChainError(f"{name} version {version}: versions start at {FIRST_VERSION}")
        newest[name] = max(newest.get(name, version), version)
    for name, top in newest.items():
        for version in range(FIRST_VERSION, top + 1):
            if (name, version) not in shapes:
                raise ChainError(f"{name} has no shape for version {version} (a gap)")
            if version < top and (name, version) not in steps:
                raise ChainError(
                    f"{name} has no upcaster from version {version} to {version + 1} (a gap)"
                )
    return steps, newest


#: The registry every parsing path uses (live, rebuild, dead-letter replay, time travel).
REGISTRY: Final = Registry(SHAPES, UPCASTERS)
