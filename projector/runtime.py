"""What every command shares at run time: who we are, the clock, signals.

The store's SQL adapter and the commands all need the same owner name and clock;
one module holds one of each, with no import of the store or the commands.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("projector")


def owner_name() -> str:
    """This process, as the owner of a partition claim or of a rebuild: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def now() -> datetime:
    return datetime.now(UTC)


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT end the loop after the batch in flight."""

    def _handler(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping after the current batch", signum)
        stop()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
