"""The schema's safety net and instruments: limits, caches, error masking, metrics.

Strawberry runs every hook of every extension for every request, and the hook
machinery, not the work in it, is what a small extension costs (a measurable
share of a ``delivery(id)`` request). So what one operation needs around it (the
token limit, the validation rules, its read session, the cost budget, the
metrics) is one extension, ``OperationScope``, beside strawberry's two document
caches and its error masking.

Every extension is given as a factory so each request gets its own instance, but
the validation rules are built once (``query_api.limits.rules``). The limits
themselves live in ``query_api.limits``; this is where they are applied.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

from graphql import GraphQLError
from graphql.validation import ASTValidationRule
from strawberry.extensions import MaskErrors, ParserCache, SchemaExtension, ValidationCache
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from query_api.context import current_session
from query_api.errors import QueryApiError
from query_api.limits.budget import CostBudget, budget_for
from query_api.limits.rules import validation_rules
from query_api.settings import Settings

MASKED_MESSAGE = "Internal error; it has been logged."
_WORDED_FOR_CLIENTS = (
    QueryApiError, GraphQLError, CannotGetOperationTypeError, InvalidOperationTypeError
)
Observe = Callable[[str, str, str, float], None]


def should_mask(error: GraphQLError) -> bool:
    """Mask what we did not word ourselves: driver errors, SQL, bugs.

    Syntax and validation errors (no original error), our own ``QueryApiError``s and
    strawberry's refusals of the operation itself (an unknown operation name, a type
    the transport does not run; over HTTP they are a 400) are written for clients
    and stay readable.
    """
    original = error.original_error
    if original is None:
        return False
    return not isinstance(original, _WORDED_FOR_CLIENTS)


class OperationScope(SchemaExtension):
    """One operation's frame: limits before parsing, its read session, budget, metrics.

    - the token limit (a parse option) and the depth/alias/introspection rules;
    - its own read session (one snapshot), closed when the operation ends;
    - the cost budget, checked after validation and before execution, so a
      refused query runs no SQL; an operation that can run only one statement
      tells its session so;
    - its count and latency per operation name (``query_api.metrics``).
    """

    def __init__(
        self,
        *,
        max_tokens: int,
        rules: tuple[type[ASTValidationRule], ...],
        budget: CostBudget,
        observe: Observe | None,
    ) -> None:
        self._max_tokens = max_tokens
        self._rules = rules
        self._budget = budget
        self._observe = observe

    async def on_operation(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        start = time.perf_counter()
        ctx.parse_options["max_tokens"] = self._max_tokens
        ctx.validation_rules = ctx.validation_rules + self._rules
        services = getattr(ctx.context, "services", None)
        if services is None:
            yield
        else:
            session = services.new_session()
            token = current_session.set(session)
            try:
                yield
            finally:
                current_session.reset(token)
                await session.aclose()
        if self._observe is not None:
            self._instrument(time.perf_counter() - start)

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None:
            cost = self._budget.check(ctx)
            session = current_session.get()
            if session is not None and cost.reads == 1:
                session.expect_one_statement()
        yield

    def _instrument(self, seconds: float) -> None:
        assert self._observe is not None
        ctx = self.execution_context
        try:
            kind = ctx.operation_type.value
        except Exception:  # noqa: BLE001 - unparsable documents have no type
            kind = "unknown"
        result: Any = ctx.result
        errors = getattr(result, "errors", None) or ctx.pre_execution_errors
        outcome = "error" if errors else "ok"
        self._observe(ctx.operation_name or "", kind, outcome, seconds)


class DocumentCache(ParserCache):
    """Strawberry's parser cache, whose failures strawberry reports as the operation's.

    ``ParserCache`` parses in its ``on_parse`` hook, which strawberry enters outside
    the ``try`` that turns a parse error (a syntax error, the token limit) into the
    operation's error. ``Schema.execute`` (HTTP) has an outer handler as well;
    ``Schema.stream`` (WebSockets) has none, so the error escaped as a traceback and
    the client got a bare ``complete``. On a failure this leaves the document unset:
    strawberry parses again inside its ``try`` (only failing documents, bounded by
    the token limit) and the error reaches the client and the log like any other.
    """

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        try:
            ctx.graphql_document = self.cached_parse_document(ctx.query, **ctx.parse_options)
        except Exception:  # noqa: BLE001 - strawberry's own parse words and reports it
            ctx.graphql_document = None
        yield


def extensions_for(
    settings: Settings, observe: Observe | None = None, budget: CostBudget | None = None
) -> list[Callable[[], SchemaExtension]]:
    rules = validation_rules(settings)
    size = settings.document_cache_size
    budget = budget or budget_for(settings)
    return [
        partial(
            OperationScope,
            max_tokens=settings.max_tokens,
            rules=rules,
            budget=budget,
            observe=observe,
        ),
        partial(DocumentCache, maxsize=size),
        partial(ValidationCache, maxsize=size),
        partial(MaskErrors, should_mask_error=should_mask, error_message=MASKED_MESSAGE),
    ]
