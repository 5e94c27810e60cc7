"""The published catalogue: one frozen JSON Schema per type and version, golden samples."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from datetime import UTC
from typing import Any

import pytest

from schema.events import EventParseError, make_event, parse_message, parse_time
from schema.fold import fold
from schema.published import CATALOGUE, file_name, json_schema, text
from schema.versions import REGISTRY, SHAPES

pytestmark = pytest.mark.unit

#: A published file never changes: a new shape is a new version, with its upcaster
#: and samples. Add the new files' hashes here; never edit a line.
PINNED = {
    "DeliveryCancelled.v1.json": "754f203488766af4221ef98926af30bc3e51802d48c2fc87f8db544b729363bb",
    "DeliveryCompleted.v1.json": "1413a58221e9e62b6117015f990a579682d68a8fb55b9bf868581de4c5c5e7db",
    "DeliveryCreated.v1.json": "7bcd18fbfc337345f5af6e2db9a4251d1ae1bd277b888bcfb713442e8bb0585b",
    "DeliveryCreated.v2.json": "d1e3e61bec9d405892995ae5362f586c17460c20b687b23652406689c34db0d3",
    "DeliveryEtaChanged.v1.json": "37a1009095905675f14592204c885642aa1fa63cf3a07f81f029a475626e5abb",
    "DeliveryPickedUp.v1.json": "6d3ae7bddc29b873a5ebf729efbd9acbe6bcc08f32666e1639e20d3546b7c47a",
    "DeliveryRiderAssigned.v1.json": "af9a301b8ed4ca4f3084df520724f7b2c41feb34e609da413a1cf81385af11d5",
    "DeliveryRiderAssigned.v2.json": "67157cc432ec76e6508cd93f1756e7643d10e504362d328918fec725bcdb6a16",
    "DeliveryRiderUnassigned.v1.json": "a9efcef527dadd2aa498224d7f34500f36f837bdfe67bdc669e80d72e707e696",
    "samples/DeliveryCancelled.v1.json": "b5c5f6c3ee0389b49cb70980853c4e73c98f6271572286ff0e2ce129f29ee3f9",
    "samples/DeliveryCompleted.v1.json": "6e2810d0ef47a381954bb97060312ea722e6220e8bb01decfa72ef58978c76ac",
    "samples/DeliveryCreated.v1.json": "cfb1ead97c28d9b21eaf1ec52fa4b1c211cf08a127b55b40bc6bf4dd87418552",
    "samples/DeliveryCreated.v2.json": "618694e7852793cc5823003583d88eec9ddd4851e19aa7888838fcca2c70cbc2",
    "samples/DeliveryEtaChanged.v1.json": "3509f45ff067c4e1227dcda7757b10209a50420aac621169a8a5f6918146f7ab",
    "samples/DeliveryPickedUp.v1.json": "ade4c6fd0544f98d87112213d01f9818fb59c65aa2afcd199d920e4dff29c248",
    "samples/DeliveryRiderAssigned.v1.json": "1559b59afec4d2e5109a91bee03b5cee0a6e8502d2a711584fb6883bf7bf6322",
    "samples/DeliveryRiderAssigned.v2.json": "7a7e8edf4efdece497fd5337a92af1808c3dd3c5a960d2293767b7042f638c6d",
    "samples/DeliveryRiderUnassigned.v1.json": "1130a6f59f52ec65164f287f8de1aebe322081828cda9575a81539e9a79f84ad",
}
QUIRKS = ("plain", "korean-alias", "double-encoded", "debezium-headers", "naive-time")


def _published() -> list[str]:
    return sorted(str(p.relative_to(CATALOGUE)) for p in CATALOGUE.rglob("*.json"))


def test_every_published_file_is_pinned_and_unchanged() -> None:
    assert _published() == sorted(PINNED)
    for name, digest in PINNED.items():
        assert hashlib.sha256((CATALOGUE / name).read_bytes()).hexdigest() == digest, (
            f"{name} was published and is frozen: add a new version instead")


def test_each_shape_the_parser_reads_is_published_exactly() -> None:
    """The files are the parser's own table (schema.versions.SHAPES) written out."""
    for event_type, version in SHAPES:
        path = CATALOGUE / file_name(event_type, version)
        assert path.read_text(encoding="utf-8") == text(event_type, version), path.name
    assert {p.name for p in CATALOGUE.glob("*.json")} == {file_name(*k) for k in SHAPES}


# -- a small validator for the subset of JSON Schema the catalogue uses ----------------
def _errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    kind = schema.get("type")
    checks = {"string": str, "object": dict, "integer": int}
    if kind is not None and (not isinstance(value, checks[kind])
                             or (kind == "integer" and isinstance(value, bool))):
        return [f"{where}: not {kind}"]
    found: list[str] = []
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: not {schema['const']}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            found.append(f"{where}: length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{where}: pattern")
        if schema.get("format") == "date-time":
            try:
                parse_time(value, UTC, where)
            except EventParseError:
                found.append(f"{where}: not a date-time")
    if isinstance(value, int) and not (schema.get("minimum", -1e30) <= value
                                       <= schema.get("maximum", 1e30)):
        found.append(f"{where}: out of range")
    if isinstance(value, dict):
        found += [f"{where}.{n}: required" for n in schema.get("required", ()) if n not in value]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found += _errors(value[name], sub, f"{where}.{name}")
    return found


def test_the_validator_finds_what_it_must() -> None:
    data_schema = json_schema("DeliveryCreated", 2)["properties"]["data"]
    assert _errors({"orderId": "O", "shop": {"id": "S"}, "etaMinutes": 5}, data_schema) == []
    assert _errors({"orderId": "O", "shop": {}}, data_schema) == ["$.shop.id: required"]
    assert sorted(_errors({"orderId": " ", "shop": {"id": "S"}, "etaMinutes": 1441},
                          data_schema)) == ["$.etaMinutes: out of range", "$.orderId: pattern"]


def _samples() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for path in sorted((CATALOGUE / "samples").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        found += [(doc["eventType"], doc["eventVersion"], s) for s in doc["samples"]]
    return found


def test_every_type_and_version_has_a_sample_of_every_producer_quirk() -> None:
    have = {(t, v, s["quirk"]) for t, v, s in _samples()}
    assert have == {(t, v, q) for t, v in SHAPES for q in QUIRKS}


@pytest.mark.parametrize(("event_type", "version", "sample"), _samples(),
                         ids=lambda x: x["quirk"] if isinstance(x, dict) else str(x))
def test_each_golden_sample_upcasts_to_a_valid_newest_shape(
        event_type: str, version: int, sample: dict[str, Any]) -> None:
    headers = [(n, v.encode()) for n, v in sample["headers"]]
    key = None if sample["key"] is None else sample["key"].encode()
    raw = sample["value"].encode()
    body = json.loads(raw)
    if isinstance(body, str):  # double-encoded: the text of the object
        body = json.loads(body)
    published = json_schema(event_type, version)
    if sample["quirk"] == "debezium-headers":  # ids in the headers and the key
        published = published["properties"]["data"]
        body = body["data"]
    assert _errors(body, published) == []
    event = parse_message(raw, key, headers)
    assert (event.event_type, event.version, event.known) == (event_type, version, True)
    newest = REGISTRY.newest[event_type]
    schema = json_schema(event_type, newest)["properties"]["data"]
    assert _errors(dict(event.data), schema) == []
    again = make_event(event.event_id, event_type, event.delivery_id, event.occurred_at,
                       event.sequence, event.data, version=newest)
    assert again.data == event.data  # the newest shape passes the parser's own check


def test_every_quirk_of_a_sample_reads_as_the_same_event() -> None:
    rows: dict[tuple[str, int], set[Any]] = {}
    for event_type, version, sample in _samples():
        headers = [(n, v.encode()) for n, v in sample["headers"]]
        event = parse_message(sample["value"].encode(), sample["key"].encode(), headers)
        rows.setdefault((event_type, version), set()).add(fold([event]))
    assert all(len(found) == 1 for found in rows.values()), rows
    for event_type in ("DeliveryCreated", "DeliveryRiderAssigned"):  # versions fold alike
        (v1,), (v2,) = rows[(event_type, 1)], rows[(event_type, 2)]
        assert replace(v1, fold_key=v2.fold_key) == v2  # their event ids differ
