"""Text for an operator's terminal: control characters from messages are shown, never obeyed.

A message's bytes, a delivery id or a file path can hold ESC, BEL, CR or a
bidirectional override; printed raw they would retitle, recolour or rewrite the
operator's terminal (or make a line read backwards). Every text output of the
``projector`` command that can carry such content goes through ``printable``
(or ``printable_lines`` for a multi-line summary), every JSON output through
``json_line``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

#: C0 controls, DEL, C1 controls (U+0080-U+009F: a terminal may read U+009B as CSI),
#: the line and paragraph separators, and the bidirectional marks, embeddings,
#: overrides and isolates (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069).
_BEYOND_C0: Final = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ANY: Final = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_BUT_NEWLINE: Final = re.compile(f"[\x00-\x09\x0b-\x1f{_BEYOND_C0}]")
#: JSON (``json.dumps``) already escapes U+0000-U+001F; the rest as ``\\uXXXX``.
_JSON_LEFT: Final = re.compile(f"[{_BEYOND_C0}]")


_SHORT: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\r``, ``\\u202e``).

    Newlines and tabs are escaped too: a value is shown on its own line, whole.
    Backslashes are left as they are (the text is for people; ``--json`` is exact).
    """
    if _ANY.search(text) is None:
        return text
    return _ANY.sub(_escape, text)


def printable_lines(text: str) -> str:
    """Like ``printable``, but the line breaks of a multi-line summary are kept."""
    if _BUT_NEWLINE.search(text) is None:
        return text
    return _BUT_NEWLINE.sub(_escape, text)


def json_line(value: Any) -> str:
    """One line of JSON, readable UTF-8, with no character a terminal would obey.

    ``ensure_ascii=False`` keeps Korean text readable; the characters JSON leaves
    raw (DEL, C1 controls, bidirectional overrides) are written as ``\\uXXXX``
    escapes, which decode to the same value.
    """
    return escape_json_text(json.dumps(value, ensure_ascii=False))


def escape_json_text(text: str) -> str:
    """A JSON text (already serialised) with DEL, C1 and bidirectional controls escaped."""
    if _JSON_LEFT.search(text) is None:
        return text
    return _JSON_LEFT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
