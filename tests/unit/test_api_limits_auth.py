"""query_api.limits.auth: bearer tokens."""

from __future__ import annotations

import pytest

from query_api.limits.auth import token_ok

pytestmark = pytest.mark.unit


def test_tokens_compare_whole_values() -> None:
    tokens = ("alpha", "beta")
    assert token_ok("Bearer alpha", tokens) and token_ok("bearer beta", tokens)
    for bad in (None, "", "alpha", "Bearer ", "Bearer alph", "Bearer alphaa", "Bearer gamma",
                "Basic alpha"):
        assert not token_ok(bad, tokens), bad
