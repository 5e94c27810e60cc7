"""The schema's safety net and instruments: limits, caches, error masking, metrics.

Every extension is given as a factory so each request gets its own instance, but
the validation rules are built once: ``ValidationCache`` keys on the rule
classes, and a fresh class per request would never hit.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

from graphql import GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from query_api.cost import estimate
from query_api.errors import QueryApiError, UserInputError
from query_api.settings import Settings

MASKED_MESSAGE = "Internal error; it has been logged."


def should_mask(error: GraphQLError) -> bool:
    """Mask what we did not word ourselves: driver errors, SQL, bugs.

    Syntax and validation errors (no original error) and our own ``QueryApiError``s
    are written for clients and stay readable.
    """
    original = error.original_error
    if original is None:
        return False
    return not isinstance(original, (QueryApiError, GraphQLError))


class SessionScope(SchemaExtension):
    """Gives each operation its own read session (one snapshot), closed when it ends."""

    async def on_operation(self) -> AsyncIterator[None]:
        from query_api.context import current_session

        context = self.execution_context.context
        services = getattr(context, "services", None)
        if services is None:
            yield
            return
        session = services.new_session()
        token = current_session.set(session)
        try:
            yield
        finally:
            current_session.reset(token)
            await session.aclose()


class CostBudget(SchemaExtension):
    """Refuses an operation whose estimated cost passes the budget, before any SQL.

    Runs after validation (the document is well formed), with the request's
    variables; a refusal becomes the operation's only error, with no data.
    """

    def __init__(self, max_cost: int, max_nodes: int) -> None:
        self._max_cost = max_cost
        self._max_nodes = max_nodes

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None:
            cost = estimate(
                ctx.schema._schema, ctx.graphql_document, ctx.operation_name, ctx.variables
            )
            if cost.rows > self._max_cost:
                raise UserInputError(self._refusal(cost.rows, cost.results))
        yield

    def _refusal(self, rows: int, results: int) -> str:
        asked = (
            f"the query asks for more than {self._max_nodes} results (up to {results})"
            if results > self._max_nodes
            else f"the query may read {rows} rows"
        )
        return (
            f"{asked}: its pages add up to {rows} rows (the `first` of every list, "
            f"summed over aliases and fragments), over the budget of {self._max_cost};"
            " ask for smaller pages (`first`) or fewer aliases"
        )


class Instrument(SchemaExtension):
    """Counts operations and their latency per operation name (see ``query_api.metrics``)."""

    def __init__(self, observe: Callable[[str, str, str, float], None]) -> None:
        self._observe = observe

    def on_operation(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        ctx = self.execution_context
        try:
            kind = ctx.operation_type.value
        except Exception:  # noqa: BLE001 - unparsable documents have no type
            kind = "unknown"
        result: Any = ctx.result
        errors = getattr(result, "errors", None) or ctx.pre_execution_errors
        outcome = "error" if errors else "ok"
        self._observe(ctx.operation_name or "", kind, outcome, time.perf_counter() - start)


def extensions_for(
    settings: Settings, observe: Callable[[str, str, str, float], None] | None = None
) -> list[Callable[[], SchemaExtension]]:
    rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_depth, None),
        alias_rule(settings.max_aliases),
    ]
    if settings.production:
        rules.append(NoSchemaIntrospectionCustomRule)
    size = settings.document_cache_size
    extensions: list[Callable[[], SchemaExtension]] = [
        partial(MaxTokensLimiter, settings.max_tokens),
        partial(ParserCache, maxsize=size),
        partial(AddValidationRules, rules),
        partial(ValidationCache, maxsize=size),
        partial(MaskErrors, should_mask_error=should_mask, error_message=MASKED_MESSAGE),
        partial(CostBudget, settings.max_cost, settings.max_nodes),
        SessionScope,
    ]
    if observe is not None:
        extensions.insert(0, partial(Instrument, observe))
    return extensions
