"""query_api.limits.shape: what a request may hold before parsing."""

from __future__ import annotations

import pytest

from query_api.limits.shape import nesting_depth

pytestmark = pytest.mark.unit


def test_nesting_depth_ignores_brackets_in_strings_and_comments() -> None:
    assert nesting_depth("{ a { b(x: [1]) } }") == 4
    assert nesting_depth('{ a(s: "{{{{{{") }') == 2
    assert nesting_depth('{ a(s: """ {{{{ \n {{{{ """) } # {{{{{{\n') == 2
    assert nesting_depth("{" * 100) == 100
