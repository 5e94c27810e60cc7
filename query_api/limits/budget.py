"""What a document may cost: the estimate of ``query_api.limits.cost``, cached and enforced.

An estimate depends on the text, the operation and the integer variables (a
`first` can only be one of those), so ``delivery(id: $id)`` with a new id each
time is estimated once, not per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema
from strawberry.types import ExecutionContext

from query_api.errors import UserInputError
from query_api.limits.cost import Cost, estimate
from query_api.settings import Settings


class CostBudget:
    """Refuses, before any SQL, an operation whose pages add up past ``max_cost``."""

    def __init__(self, max_cost: int, max_nodes: int, cache_size: int) -> None:
        self.max_cost = max_cost
        self.max_nodes = max_nodes
        self._cache_size = cache_size
        self._costs: dict[tuple[Any, ...], Cost] = {}

    def check(self, ctx: ExecutionContext) -> Cost:
        """The operation's cost; ``UserInputError`` when it is over the budget."""
        cost = self._estimate(ctx)
        if cost.rows > self.max_cost:
            raise UserInputError(self._refusal(cost))
        return cost

    def peek(
        self,
        schema: GraphQLSchema,
        query: str,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        parse: Callable[[str], DocumentNode],
    ) -> Cost | None:
        """The cost before strawberry parses and validates (to choose a lane), or None
        when the document does not parse: the operation's own errors say why."""
        key = _key(query, operation_name, variables)
        cost = self._costs.get(key)
        if cost is None:
            try:
                cost = estimate(schema, parse(query), operation_name, variables)
            except (GraphQLError, TypeError, ValueError, AttributeError):
                return None  # not validated yet: let validation word the problem
            self._remember(key, cost)
        return cost

    def _estimate(self, ctx: ExecutionContext) -> Cost:
        key = _key(ctx.query, ctx.operation_name, ctx.variables)
        cost = self._costs.get(key)
        if cost is None:
            assert ctx.graphql_document is not None
            cost = estimate(
                ctx.schema._schema, ctx.graphql_document, ctx.operation_name, ctx.variables
            )
            self._remember(key, cost)
        return cost

    def _remember(self, key: tuple[Any, ...], cost: Cost) -> None:
        if len(self._costs) >= self._cache_size:
            self._costs.clear()  # rare: a working set larger than the cache
        self._costs[key] = cost

    def _refusal(self, cost: Cost) -> str:
        asked = (
            f"the query asks for more than {self.max_nodes} results (up to {cost.results})"
            if cost.results > self.max_nodes
            else f"the query may read {cost.rows} rows"
        )
        return (
            f"{asked}: its pages add up to {cost.rows} rows (the `first` of every list, "
            f"summed over aliases and fragments), over the budget of {self.max_cost};"
            " ask for smaller pages (`first`) or fewer aliases"
        )


def _key(
    query: str | None, operation_name: str | None, variables: Mapping[str, Any] | None
) -> tuple[Any, ...]:
    ints = (
        tuple(sorted((k, v) for k, v in variables.items() if type(v) is int))
        if isinstance(variables, Mapping)
        else ()
    )
    return (query, operation_name, ints)


def budget_for(settings: Settings) -> CostBudget:
    return CostBudget(settings.max_cost, settings.max_nodes, settings.document_cache_size)
