"""A JSON Lines file as an event source (the contract's ``EVENT_SOURCE``): its one rule.

The file is one partition (0) of a topic named by the file's absolute path; a
message's offset is its line number from 0. A line of only white space holds no
message but keeps its number, so the end offset is the number of lines, trailing
blank ones included (the projector steps over offsets without messages, as over
Kafka's transaction markers). The projector reads the file; the query API asks
its end for the lag; both use this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

PARTITION: Final = 0


def topic_of(path: str | Path) -> str:
    """The topic a file's messages are recorded under: its absolute, resolved path."""
    return str(Path(path).expanduser().resolve())


def end_offset(path: str | Path) -> int:
    """The offset after the file's last line: its number of lines. Raises ``OSError``."""
    with open(Path(path).expanduser(), "rb") as fh:
        return sum(1 for _ in fh)


def holds_message(line: bytes) -> bool:
    """Whether a line (without its line break) holds a message, not only white space."""
    return bool(line.strip())
