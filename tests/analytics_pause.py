"""`projector export` that stops before or after its Iceberg commit, for kill -9 tests.

Run as ``python -m tests.analytics_pause before|after [projector args]``: it prints
``PAUSED`` and sleeps at that point, where the test kills it with SIGKILL.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from pyiceberg.table import Transaction

from projector.cli import main

_original = Transaction.commit_transaction
_where = sys.argv[1]


def _paused(self: Any) -> Any:
    if _where == "before":
        print("PAUSED", flush=True)
        time.sleep(120)
    result = _original(self)
    if _where == "after":
        print("PAUSED", flush=True)
        time.sleep(120)
    return result


Transaction.commit_transaction = _paused  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[2:]))
