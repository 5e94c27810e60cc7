"""A dead letter's Kafka headers, kept whole: every byte of every key and value.

A header value is any bytes (invalid UTF-8, NUL, empty) or absent; a key is text
as the client gives it. Both are stored in the ``dead_letters.headers`` JSON
document as base64 (JSON holds no NUL on PostgreSQL and no invalid UTF-8
anywhere), one object per header in the message's order:
``{"key": "<base64 of the key's UTF-8>", "value": "<base64>" | null}``; replay
reads back exactly the bytes the message carried (revision 0004_dead_letter_bytes
converted the escaped text written before).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["headers_from_db", "headers_to_db"]

Headers = tuple[tuple[str, bytes | None], ...]


def headers_to_db(headers: Iterable[tuple[str, bytes | None]]) -> list[dict[str, str | None]]:
    return [
        {"key": _b64(key.encode("utf-8", errors="surrogatepass")),
         "value": None if value is None else _b64(value)}
        for key, value in headers
    ]


def headers_from_db(document: Sequence[Any] | None) -> Headers:
    """The headers as the message carried them (``SourceMessage.headers``)."""
    out: list[tuple[str, bytes | None]] = []
    for item in document or ():
        key = base64.b64decode(item["key"])
        value = item["value"]
        out.append((_key_text(key), None if value is None else base64.b64decode(value)))
    return tuple(out)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _key_text(raw: bytes) -> str:
    """A key's text; bytes that are not UTF-8 stay recoverable (surrogate escapes)."""
    try:
        return raw.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="surrogateescape")
