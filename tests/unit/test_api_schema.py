"""query_api.schema: the checked-in SDL, and the contract's types served exactly (additions only)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import pytest
from graphql import build_schema, print_type
from graphql.type import GraphQLInputObjectType, GraphQLObjectType, is_non_null_type

from query_api.schema import schema
from tests.helpers import ROOT

pytestmark = pytest.mark.unit

CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"


def test_checked_in_schema_matches_the_code() -> None:
    """What ``strawberry export-schema query_api.schema:schema`` writes (its ``print_schema``)."""
    from strawberry.printer import print_schema

    checked_in = (ROOT / "query_api" / "schema.graphql").read_text(encoding="utf-8")
    assert print_schema(schema) + "\n" == checked_in, (
        "query_api/schema.graphql is stale: run "
        "strawberry export-schema query_api.schema:schema --output query_api/schema.graphql")


def _contract_schema() -> str:
    if not CONTRACT.is_file():
        message = f"the shared contract is not beside the repository ({CONTRACT})"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)  # CI always has it: its absence is an error
        pytest.skip(message)
    text = CONTRACT.read_text(encoding="utf-8")
    section = text[text.index("## 2. GraphQL API"):text.index("## 3.")]
    return re.search(r"```graphql\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _signature(type_: object, added: Iterable[str] = ()) -> list[str]:
    """Fields (with argument types and defaults) of a type, without descriptions; the
    ``added`` (optional) arguments left out."""
    printed = print_type(type_)  # type: ignore[arg-type]
    body = re.sub(r'""".*?"""|"[^"\n]*"', "", printed, flags=re.S)
    for argument in added:
        body = re.sub(rf",\s*{argument}: [^,)]+", "", body)
    return [re.sub(r"\s+", " ", line.strip()) for line in body.splitlines()[1:-1] if line.strip()]


def _added_arguments(contract: object, served: object) -> set[str]:
    """Arguments we serve beyond the contract's on its fields: each must be optional
    (an addition a client never has to send), e.g. ``delivery(asOf:)``."""
    if not isinstance(contract, GraphQLObjectType) or not isinstance(served, GraphQLObjectType):
        return set()
    added: set[str] = set()
    for field_name, field in contract.fields.items():
        mine = served.fields.get(field_name)
        for arg_name, arg in (mine.args if mine is not None else {}).items():
            if arg_name not in field.args:
                assert not is_non_null_type(arg.type), f"{field_name}({arg_name}:) is required"
                added.add(arg_name)
    return added


def test_every_contract_type_field_and_argument_is_served_exactly() -> None:
    contract = build_schema(_contract_schema())
    ours = build_schema((ROOT / "query_api" / "schema.graphql").read_text(encoding="utf-8"))
    checked = 0
    for name, type_ in contract.type_map.items():
        if name.startswith("__"):
            continue
        assert name in ours.type_map, f"missing type {name}"
        mine = ours.type_map[name]
        assert type(mine) is type(type_), name
        if isinstance(type_, (GraphQLObjectType, GraphQLInputObjectType)):
            expected = _signature(type_)
            served = _signature(mine, _added_arguments(type_, mine))
            # Same fields in the same order; we may add, never rename or drop.
            assert served[: len(expected)] == expected, name
            checked += len(expected)
    assert checked > 60
