"""The fault-injection suite's option and fixtures.

By default every scenario runs at a reduced size (the README's test command, CI);
``--fault-full`` runs the sizes of issue #9:
``./scripts/test tests/fault --fault-full``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-full",
        action="store_true",
        default=False,
        help="run the fault-injection scenarios at full size",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault: a fault-injection scenario (tests/fault; --fault-full for full size)"
    )


@pytest.fixture
def full_size(request: pytest.FixtureRequest) -> bool:
    """True with ``--fault-full``: the scenario runs at the issue's full size."""
    return bool(request.config.getoption("--fault-full"))
