"""How many WebSocket operations may run at once: per socket, on the whole server, per client.

A subscription holds a task, a generator and its feed registration for as long as
it lives, so its count is what bounds the memory a hostile client can make the
server hold. Every operation sent over a socket counts (queries too), as in
strawberry's own per-connection bound, which this makes explicit with our words.
"""

from __future__ import annotations

from query_api.limits.clients import Counts


def operation_counts(max_total: int, max_per_client: int) -> Counts:
    return Counts("WebSocket operations", max_total, max_per_client,
                  "QUERY_API_WS_MAX_SUBSCRIPTIONS", "QUERY_API_WS_MAX_SUBSCRIPTIONS_PER_CLIENT")


def per_socket_refusal(running: int, max_per_socket: int) -> str | None:
    """Why one more operation may not start on a socket already running ``running``."""
    if running < max_per_socket:
        return None
    return (f"this socket runs {running} operations, the most one socket may"
            " (QUERY_API_WS_MAX_OPERATIONS_PER_SOCKET); complete some or open another socket")
