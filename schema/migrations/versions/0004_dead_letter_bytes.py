"""dead letters keep their headers' bytes whole

Revision ID: 0004_dead_letter_bytes
Revises: 0003_event_version
Create Date: 2026-12-02 18:50:00

``dead_letters.headers`` held each header as ``[key text, value text]`` with the
bytes that are not UTF-8 (and NUL) written as ``\\xNN``, and replay encoded the
text back: a header's bytes did not survive (issue #20). It now holds one object per
header, ``{"key": base64, "value": base64 | null}`` (projector/store/headers.py).

Existing rows are converted by undoing exactly what the old writer did: each ``\\xNN``
becomes the byte NN, everything else its UTF-8. The old text could not tell a byte
0xNN from the four characters ``\\xNN`` in a header; those few read as the byte.
The downgrade writes the old form again.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_dead_letter_bytes"
down_revision = "0003_event_version"
branch_labels = None
depends_on = None

_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_table = sa.table(
    "dead_letters",
    sa.column("id", sa.Integer()),
    sa.column("headers", _JSON),
)


def _old_text_to_bytes(text: str) -> bytes:
    out = bytearray()
    at = 0
    for match in _ESCAPE.finditer(text):
        out += text[at:match.start()].encode("utf-8", errors="surrogatepass")
        out.append(int(match.group(1), 16))
        at = match.end()
    out += text[at:].encode("utf-8", errors="surrogatepass")
    return bytes(out)


def _bytes_to_old_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _convert(transform: Any) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(_table.c.id, _table.c.headers)).all()
    for row in rows:
        new = transform(row.headers or [])
        if new != row.headers:
            conn.execute(_table.update().where(_table.c.id == row.id).values(headers=new))


def _up(headers: list[Any]) -> list[Any]:
    out = []
    for item in headers:
        if isinstance(item, dict):  # already in the new form
            out.append(item)
            continue
        key, value = item
        out.append({"key": _b64(_old_text_to_bytes(key)),
                    "value": None if value is None else _b64(_old_text_to_bytes(value))})
    return out


def _down(headers: list[Any]) -> list[Any]:
    out = []
    for item in headers:
        if not isinstance(item, dict):
            out.append(item)
            continue
        value = item["value"]
        out.append([_bytes_to_old_text(base64.b64decode(item["key"])),
                    None if value is None else _bytes_to_old_text(base64.b64decode(value))])
    return out


def upgrade() -> None:
    _convert(_up)


def downgrade() -> None:
    _convert(_down)
