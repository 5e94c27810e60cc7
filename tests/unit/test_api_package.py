"""The query_api package as a whole: what it may import."""

from __future__ import annotations

import re

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit


def test_query_api_never_imports_the_projector() -> None:
    sources = list((ROOT / "query_api").rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        assert not re.search(r"^\s*(from|import)\s+projector\b", path.read_text(), re.M), path
