"""query_api.limits.cost: the static cost estimate, pure."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse

from query_api.limits.cost import Cost, estimate
from query_api.schema import schema
from query_api.settings import Settings

pytestmark = pytest.mark.unit

#: The issue's heavy query: within depth, alias and token limits, 8-14 s before.
HEAVY = "{ " + " ".join(
    f"a{i}: deliveries(first: 500) {{ edges {{ node {{ id "
    "history(first: 5) { edges { node { eventId } } } } } }"
    for i in range(30)
) + " }"


def cost(query: str, variables: dict[str, Any] | None = None, name: str | None = None) -> Cost:
    return estimate(schema._schema, parse(query), name, variables)


def sizes(query: str, variables: dict[str, Any] | None = None,
          name: str | None = None) -> tuple[int, int]:
    found = cost(query, variables, name)
    return found.rows, found.results


def test_the_heavy_query_of_issue_7_is_over_the_default_budget() -> None:
    assert sizes(HEAVY) == (30 * 505, 30 * (500 + 500 * 5))
    assert cost(HEAVY).rows > Settings().max_cost


def test_each_list_counts_its_first_once_per_place_it_appears() -> None:
    page = "deliveries(first: 500) { totalCount edges { node { history(first: 500) { totalCount } } } }"
    assert sizes("{ " + page + " }") == (1000, 500 + 500 * 500)
    assert cost("{ a: " + page + " b: " + page + " }").rows == 2000
    assert sizes('{ delivery(id: "D-1") { id state } }') == (0, 0)


def test_defaults_come_from_the_schema_then_the_variable_definition() -> None:
    assert cost("{ deliveries { edges { node { history { totalCount } } } } }").rows == 50 + 100
    q = "query Q($n: Int = 7) { deliveries(first: $n) { totalCount } }"
    assert cost(q).rows == 7
    assert cost(q, {"n": 40}).rows == 40
    assert cost("query Q($n: Int) { deliveries(first: $n) { totalCount } }").rows == 50


def test_fragments_and_inline_fragments_are_expanded() -> None:
    q = """query P($n: Int) { x: deliveries(first: $n) { edges { node { ...H ...H } } }
                            y: deliveries(first: 3) { edges { node { ... on Delivery { ...H } } } } }
           fragment H on Delivery { history(first: 20) { totalCount } }"""
    assert sizes(q, {"n": 10}, "P") == (10 + 40 + 3 + 20, 10 + 10 * 40 + 3 + 3 * 20)


def test_a_first_the_resolvers_refuse_costs_nothing_and_never_more_than_500() -> None:
    q = "query Q($n: Int) { deliveries(first: $n) { totalCount } }"
    assert cost(q, {"n": None}).rows == 0
    assert cost(q, {"n": -1}).rows == 0
    assert cost(q, {"n": 10_000}).rows == 500
    assert cost(q, {"n": "many"}).rows == 0


def test_the_chosen_operation_is_the_one_estimated() -> None:
    q = "query A { deliveries(first: 9) { totalCount } } query B { deliveries(first: 4) { totalCount } }"
    assert cost(q, name="A").rows == 9 and cost(q, name="B").rows == 4
    assert cost(q).rows == 0  # ambiguous: graphql-core refuses it before anything runs


def test_reads_count_the_fields_that_run_statements() -> None:
    """Exactly one read lets the session give its connection back with its statement."""
    assert cost('{ delivery(id: "D-1") { id state __typename } }').reads == 1
    assert cost('{ a: delivery(id: "D-1") { id } b: delivery(id: "D-2") { id } }').reads == 2
    assert cost('{ delivery(id: "D-1") { id history(first: 2) { totalCount } } }').reads == 3
    assert cost("{ deliveries(first: 2) { totalCount } }").reads == 2
    assert cost("{ projectionStatus { generation } }").reads == 2
    assert cost("query Q { ...F } fragment F on Query { delivery(id: \"x\") { id } }").reads == 1
    assert cost("{ __typename }") == Cost(0, 0, 0)
