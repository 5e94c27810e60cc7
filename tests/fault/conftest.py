"""The fault-injection suite's option and fixtures.

By default every scenario runs at a reduced size (the README's test command, CI);
``--fault-full`` (declared in tests/conftest.py, so it works from any path) runs
the sizes of issue #9: ``./scripts/test tests/fault --fault-full``.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def full_size(request: pytest.FixtureRequest) -> bool:
    """True with ``--fault-full``: the scenario runs at the issue's full size."""
    return bool(request.config.getoption("--fault-full"))
