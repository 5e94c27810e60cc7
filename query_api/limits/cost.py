"""A query's cost, estimated from its parsed document before any SQL runs.

Depth, alias and token limits all let through 30 aliases of
``deliveries(first: 500) { ... history(first: 5) }``, which holds an API without this
estimate for 8-14 s. What such a query commits to is visible in its text: every field with a
``first`` argument is a statement (or a share of one batched statement) returning
up to ``first`` rows per parent. The estimate charges each such field its
``first`` (a literal, a variable's value or default, else the schema's default),
once per place it appears once aliases and fragments are expanded, and refuses
the operation when the sum passes ``QUERY_API_MAX_COST``.

Nested pages are not multiplied by their parents' ``first`` here: their parents
are read in one batched statement, and the back office's own pages
(``deliveries(first: 500) { history(first: 500) }`` over a small model) must keep
working. What the nesting really costs depends on the data, so the session charges
it, with the real number of parents, before each nested statement runs
(``QUERY_API_MAX_NODES``). The estimate also reports that product (``first``
times the parents' ``first``), so a refusal can say how many results were asked for.

The same walk counts the fields that read the database (``READS``): an operation
with exactly one can give its connection back in the same worker-thread trip as
its statement (``query_api.session``), saving a trip per ``delivery(id)``.

Pure: graphql-core's AST and schema in, numbers out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)
from graphql.pyutils import Undefined

from query_api.limits.pages import FOLD_LIMIT, MAX_FIRST  # above it nothing is read

#: Fields whose resolvers run statements, and how many (at most) each runs.
READS: dict[tuple[str, str], int] = {
    ("Query", "delivery"): 1,
    ("Query", "deliveries"): 1,
    ("Query", "riderDailyStats"): 1,
    ("Query", "projectionStatus"): 2,
    ("DeliveryConnection", "totalCount"): 1,
    ("Delivery", "history"): 2,  # a second one counts what lies before a cursor
    ("Delivery", "lineage"): 1,
    ("Delivery", "transitions"): 1,
}

#: Fields that fold a delivery's history (``query_api.timeline``): each is charged as
#: a page of ``FOLD_LIMIT`` events, like ``history(first: FOLD_LIMIT)``.
FOLDS: frozenset[tuple[str, str]] = frozenset(
    {("Delivery", "lineage"), ("Delivery", "transitions")}
)
#: Arguments that make a field a time-travel fold when given (and not a literal null).
FOLD_ARGUMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("Query", "delivery"): ("asOf", "asOfApplied"),
}


@dataclass(frozen=True)
class Cost:
    #: Sum of the `first` of every list field, aliases and fragments expanded.
    rows: int
    #: Results asked for when each page is as full as its `first` allows.
    results: int
    #: Statements the operation may run, each reading field counted where it appears.
    reads: int = 0


_Parts = tuple[int, int, int]  # rows, results per parent, reads


def estimate(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> Cost:
    """The cost of the operation ``operation_name`` of a validated ``document``."""
    operation = _operation(document, operation_name)
    if operation is None:
        return Cost(0, 0)
    root = schema.get_root_type(operation.operation)
    if root is None:
        return Cost(0, 0)
    walker = _Walker(document, operation, variables or {})
    return Cost(*walker.selection(operation.selection_set, root))


def _operation(
    document: DocumentNode, name: str | None
) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


class _Walker:
    def __init__(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self._fragments = {
            d.name.value: d
            for d in document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        self._variables = dict(variables)
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in self._variables and isinstance(definition.default_value, IntValueNode):
                self._variables[name] = int(definition.default_value.value)
        # A fragment costs the same wherever it is spread: count each once.
        self._memo: dict[tuple[str, str], _Parts] = {}

    def selection(self, selection_set: SelectionSetNode | None, parent: Any) -> _Parts:
        """(rows, results per parent, reads) of ``selection_set`` on the type ``parent``."""
        rows = results = reads = 0
        if selection_set is None or not isinstance(parent, GraphQLObjectType):
            return 0, 0, 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                r, n, s = self._field(node, parent)
            elif isinstance(node, InlineFragmentNode):
                r, n, s = self.selection(node.selection_set, parent)
            elif isinstance(node, FragmentSpreadNode):
                r, n, s = self._spread(node.name.value, parent)
            else:  # pragma: no cover - graphql-core has no other selection
                continue
            rows += r
            results += n
            reads += s
        return rows, results, reads

    def _spread(self, name: str, parent: GraphQLObjectType) -> _Parts:
        key = (name, parent.name)
        if key not in self._memo:
            fragment = self._fragments.get(name)
            self._memo[key] = (0, 0, 0)  # validation refuses cycles; never loop regardless
            if fragment is not None:
                self._memo[key] = self.selection(fragment.selection_set, parent)
        return self._memo[key]

    def _field(self, node: FieldNode, parent: GraphQLObjectType) -> _Parts:
        definition = parent.fields.get(node.name.value)
        if definition is None:  # __typename, introspection
            return 0, 0, 0
        child = get_named_type(definition.type)
        rows, results, reads = self.selection(node.selection_set, child)
        reads += READS.get((parent.name, node.name.value), 0)
        key = (parent.name, node.name.value)
        if key in FOLDS or self._travels(node, FOLD_ARGUMENTS.get(key, ())):
            rows += FOLD_LIMIT
            results += FOLD_LIMIT
        argument = definition.args.get("first")
        if argument is None:
            return rows, results, reads
        first = self._first(node, argument.default_value)
        return rows + first, first + first * results, reads

    @staticmethod
    def _travels(node: FieldNode, names: tuple[str, ...]) -> bool:
        """Whether one of the arguments ``names`` is given other than as a literal null.
        A variable counts whatever its value: the estimate is cached per document and
        integer variables only (``query_api.limits.budget``)."""
        return any(
            arg.name.value in names and not isinstance(arg.value, NullValueNode)
            for arg in node.arguments or ()
        )

    def _first(self, node: FieldNode, default: Any) -> int:
        value: Any = default
        for arg in node.arguments or ():
            if arg.name.value != "first":
                continue
            if isinstance(arg.value, IntValueNode):
                value = int(arg.value.value)
            elif isinstance(arg.value, VariableNode):
                value = self._variables.get(arg.value.name.value, default)
        if value is Undefined or not isinstance(value, int) or isinstance(value, bool):
            return 0  # null or absent: the resolver refuses it, nothing is read
        return max(0, min(value, MAX_FIRST))
