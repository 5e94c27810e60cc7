"""How many bytes of event data one operation may read: ``QUERY_API_MAX_PAYLOAD_BYTES``.

The cost estimate (``query_api.limits.cost``) and the node allowance
(``query_api.limits.nodes``) count rows; an event's ``data`` has no size bound of
its own in the API (the projector's ``PROJECTOR_MAX_MESSAGE_BYTES`` bounds one
message), so 500 events of a megabyte each pass them and make one answer of half
a gigabyte. Each history statement (``query_api.reads.histories``) therefore
computes, in the database, the size of every payload of its page and a running
total, and returns a payload only while that total stays within what this
allowance has left: past it, no payload leaves the database, and the page is
refused here, with its size, before any of it is served.
"""

from __future__ import annotations

from query_api.errors import UserInputError


class PayloadAllowance:
    """One operation's bytes of event data read so far, bounded by ``max_bytes``."""

    __slots__ = ("max_bytes", "spent")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.spent = 0

    @property
    def remaining(self) -> int:
        return max(0, self.max_bytes - self.spent)

    def spend(self, page_bytes: int) -> None:
        """Count a page's payload bytes; over the allowance, the page is refused."""
        if page_bytes > self.remaining:
            raise UserInputError(
                f"the history asked for holds {page_bytes} bytes of event data, more than"
                f" the {self.remaining} this query may still read (QUERY_API_MAX_PAYLOAD_BYTES"
                f" = {self.max_bytes}); none of it was read: ask for smaller pages (`first`)"
                " or fewer deliveries"
            )
        self.spent += page_bytes
