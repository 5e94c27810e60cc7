"""How many results an operation may ask for, charged as its statements are about to run.

The static cost (``query_api.limits.cost``) bounds what a document may ask for
before anything runs; nested pages depend on how many parents the data holds, so
they are charged here, with the real number of parents, before their statement
runs (``QUERY_API_MAX_NODES``).
"""

from __future__ import annotations

from query_api.errors import UserInputError


class NodeAllowance:
    """One operation's count of results asked for; past ``max_nodes`` it ends the operation."""

    __slots__ = ("max_nodes", "spent")

    def __init__(self, max_nodes: int) -> None:
        self.max_nodes = max_nodes
        self.spent = 0

    def spend(self, nodes: int) -> None:
        self.spent += nodes
        if self.spent > self.max_nodes:
            raise UserInputError(
                f"the query asks for more than {self.max_nodes} results;"
                " ask for smaller pages (`first`) or fewer aliases"
            )
