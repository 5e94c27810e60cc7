"""query_api.limits.clients, operations: who a client is, and the bounded counts."""

from __future__ import annotations

import pytest

from query_api.limits.clients import Counts, client_key
from query_api.limits.operations import per_socket_refusal

pytestmark = pytest.mark.unit


def test_a_client_is_its_token_else_its_address() -> None:
    scope = {"client": ("10.0.0.7", 5555), "headers": [(b"authorization", b"Bearer t1")]}
    assert client_key(scope).startswith("token:") and "t1" not in client_key(scope)
    assert client_key({"client": ("10.0.0.7", 1), "headers": []}) == "address:10.0.0.7"
    bare = {"client": ("10.0.0.7", 1), "headers": []}
    assert client_key(bare, {"Authorization": "Bearer t1"}) == client_key(scope)


def test_counts_refuse_past_each_bound_and_give_back() -> None:
    counts = Counts("things", 3, 2, "TOTAL", "PER_CLIENT")
    assert counts.enter("a") is None and counts.enter("a") is None
    assert "PER_CLIENT" in (counts.enter("a") or "")
    assert counts.enter("b") is None
    assert "TOTAL" in (counts.enter("c") or "")
    assert counts.refused == {"server": 1, "client": 1, "socket": 0}
    counts.leave("a")
    counts.leave("a")
    counts.leave("a")  # more than held: nothing
    assert counts.total == 1 and counts.held_by("a") == 0
    assert counts.enter("c") is None


def test_the_per_socket_bound_has_its_own_words() -> None:
    assert per_socket_refusal(99, 100) is None
    assert "QUERY_API_WS_MAX_OPERATIONS_PER_SOCKET" in (per_socket_refusal(100, 100) or "")
