"""The event catalogue as published JSON Schema: one file per type and version.

``schema/catalogue/<type>.v<version>.json`` is what a producer team checks its
messages against. Each file is written from ``schema.versions.SHAPES``, the table
the parser validates with, so the two cannot disagree: a test compares every file
with ``json_schema`` and pins each file's hash, because a published version is
frozen (a change is a new version, with its upcaster and samples).

Run ``python -m schema.published`` to write the files of a new version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from schema.events import ALIASES, MAX_ID_LENGTH, MAX_VERSION
from schema.versions import MAX_ETA_MINUTES, REGISTRY, DataField, Registry

CATALOGUE: Final = Path(__file__).with_name("catalogue")

_ID: Final = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
_KINDS: Final[dict[str, dict[str, Any]]] = {
    "string": {"type": "string"},
    "datetime": {"type": "string", "format": "date-time"},
    "object": {"type": "object"},
    "minutes": {"type": "integer", "minimum": 0, "maximum": MAX_ETA_MINUTES},
}


def file_name(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.json"


def _data_schema(fields: tuple[DataField, ...]) -> dict[str, Any]:
    """Nested paths (``shop.id``) become nested objects; unknown fields stay allowed."""
    root: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    nodes: dict[str, dict[str, Any]] = {"": root}
    for spec in fields:
        parent_path, _, name = spec.name.rpartition(".")
        parent = nodes[parent_path]
        node = dict(_KINDS[spec.kind])
        if spec.kind == "string" and spec.required:
            node["minLength"] = 1
            node["pattern"] = r"\S"
        if spec.kind == "object":
            node["properties"] = {}
            node["required"] = []
        parent["properties"][name] = node
        if spec.required:
            parent["required"].append(name)
        nodes[spec.name] = node
    for node in nodes.values():
        if "required" in node and not node["required"]:
            del node["required"]
    return root


def json_schema(event_type: str, version: int, registry: Registry = REGISTRY) -> dict[str, Any]:
    """The JSON Schema of a message body of ``event_type`` at ``version``."""
    shape = registry.shapes[(event_type, version)]
    aliases = sorted(a for a, kind in ALIASES.items() if kind.value == event_type)
    version_rule: dict[str, Any] = {"type": "integer", "const": version}
    if version == 1:
        version_rule = {"type": "integer", "const": 1, "description": "absent means 1"}
    body: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:delivery-events:{event_type}:v{version}",
        "title": f"{event_type} version {version}",
        "description": (
            "A message body of the delivery-events topic (CONTRACT.md, section 1). "
            "eventId, eventType and eventVersion may instead travel in the Kafka headers "
            "id, eventType and eventVersion (Debezium's outbox router), deliveryId in the "
            "message key. Fields not named here are kept and never an error."
        ),
        "type": "object",
        "properties": {
            "eventId": _ID,
            "eventType": {"enum": [event_type, *aliases]},
            "eventVersion": version_rule,
            "deliveryId": _ID,
            "occurrenceDateTime": {
                "type": "string",
                "description": "ISO-8601; without an offset it is read in SOURCE_TIMEZONE",
            },
            "sequence": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
            "data": _data_schema(tuple(shape.fields)),
        },
        "required": ["eventId", "eventType", "deliveryId", "occurrenceDateTime"]
        + (["eventVersion"] if version > 1 else []),
    }
    if shape.eta == "etaMinutes":
        body["properties"]["data"]["description"] = (
            "estimatedDeliveryAt = occurrenceDateTime + etaMinutes minutes; "
            "an estimatedDeliveryAt beside it is not read"
        )
    assert version <= MAX_VERSION
    return body


def text(event_type: str, version: int) -> str:
    """The file's exact text: sorted keys, two-space indent, a final newline."""
    return json.dumps(json_schema(event_type, version), indent=2, ensure_ascii=False,
                      sort_keys=True) + "\n"


def write(directory: Path = CATALOGUE) -> list[Path]:
    """Write the files of versions not yet published; a published file is never rewritten."""
    directory.mkdir(exist_ok=True)
    written = []
    for event_type, version in sorted(REGISTRY.shapes):
        path = directory / file_name(event_type, version)
        if not path.exists():
            path.write_text(text(event_type, version), encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
