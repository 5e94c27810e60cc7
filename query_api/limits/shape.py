"""What a request may hold before strawberry parses it: pure checks of its JSON and text.

Both transports run them: the HTTP view on the body (a 400), the WebSocket
handler on a ``subscribe`` payload (the protocol's ``error`` message), so a
request refused on one is refused, with the same words, on the other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Python strings decoded from JSON hold a surrogate code point only when the JSON
#: had an unpaired ``\\ud800``-style escape (a valid pair decodes to one character).
_SURROGATE = re.compile("[\ud800-\udfff]")

#: Brackets deeper than this are refused before parsing, on both transports (the
#: depth limit is far lower; this protects graphql-core's recursive parser).
MAX_NESTING = 64

NOT_UNICODE = (
    "the request holds a string that is not valid Unicode"
    " (an unpaired surrogate escape such as \\ud800)"
)


def too_deep(max_nesting: int) -> str:
    return f"The query nests deeper than {max_nesting} levels."


def nesting_depth(query: str) -> int:
    """The deepest nesting of ``{``, ``(`` and ``[`` outside strings and comments.

    A cheap scan before parsing: graphql-core parses and checks depth recursively,
    so a query nested thousands deep must be refused before either runs.
    """
    depth = deepest = 0
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "})]":
            depth -= 1
        elif c == "#":
            while i < n and query[i] not in "\r\n":
                i += 1
        elif c == '"':
            if query.startswith('"""', i):
                end = query.find('"""', i + 3)
                i = n if end < 0 else end + 2
            else:
                i += 1
                while i < n and query[i] != '"' and query[i] not in "\r\n":
                    i += 2 if query[i] == "\\" else 1
        i += 1
    return deepest


def unpaired_surrogate(value: object) -> bool:
    """Whether a string anywhere in the JSON ``value`` (keys too) holds an unpaired surrogate.

    Such a string cannot be encoded as UTF-8: not to the database, not into a log
    line or a plain-text response. Iterative, so JSON nested as deep as the decoder
    allows costs no recursion.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def operation_refusal(payload: object, max_bytes: int, max_nesting: int) -> str | None:
    """Why a graphql-transport-ws ``subscribe`` payload must not run, or None.

    The HTTP path has the same bounds from the body limit, the JSON checks of the
    view and strawberry's request parsing; a WebSocket message has none of them.
    """
    if not isinstance(payload, Mapping):
        return "the subscribe payload must be an object with a query"
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        return "the query must be a string holding a GraphQL document"
    variables = payload.get("variables")
    if variables is not None and not isinstance(variables, Mapping):
        return "the variables must be an object"
    name = payload.get("operationName")
    if name is not None and not isinstance(name, str):
        return "the operationName must be a string"
    if unpaired_surrogate(payload):
        return NOT_UNICODE
    if len(query) > max_bytes or len(query.encode("utf-8")) > max_bytes:
        return f"the query is over {max_bytes} bytes"
    if nesting_depth(query) > max_nesting:
        return too_deep(max_nesting)
    return None
