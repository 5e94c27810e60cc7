"""How long a list may be: the bounds of `first` and of a fold.

Numbers only, so the cost estimate (``query_api.limits.cost``) and the resolvers
that enforce them share one definition without importing each other.
"""

from __future__ import annotations

from query_api.errors import UserInputError

#: The largest `first` of any list (the contract, section GraphQL API): above it the
#: resolvers refuse.
MAX_FIRST = 500
#: The most events of one delivery a time-travel fold reads (as ``history(first:)`` at most).
FOLD_LIMIT = 500


def check_first(first: int | None, what: str = "first") -> int:
    """``first`` when it is 1 to ``MAX_FIRST``; else the field's ``UserInputError``."""
    if first is None or not 1 <= first <= MAX_FIRST:
        shown = "null" if first is None else first
        raise UserInputError(f"`{what}` must be between 1 and {MAX_FIRST}, got {shown}")
    return first
