"""Control characters from messages are shown escaped on the operator's terminal, never obeyed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projector.terminal import json_line, printable, printable_lines

#: What a terminal would obey: C0, DEL, C1, line/paragraph separators, bidi controls.
OBEYED = (
    {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}
    | {"\u061c", "\u200e", "\u200f", "\u2028", "\u2029"}
    | {chr(c) for c in range(0x202A, 0x202F)} | {chr(c) for c in range(0x2066, 0x206A)}
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("ok\rfake line", "ok\\rfake line"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("\x7f\x9b31m", "\\x7f\\x9b31m"),
        ("gpj.\u202eexe", "gpj.\\u202eexe"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("배달완료 😀 plain", "배달완료 😀 plain"),
    ],
)
def test_control_characters_are_escaped_and_text_is_kept(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_a_summary_keeps_its_line_breaks_only() -> None:
    assert printable_lines("line 1\nD-\x1b[2J\r\n") == "line 1\nD-\\x1b[2J\\r\n"


def test_json_lines_decode_to_the_same_value_with_nothing_raw() -> None:
    value = {"v": "\x1b[31m\x07\r\x7f\x9b\u202e배달", "n": 1}
    line = json_line(value)
    assert json.loads(line) == value
    assert not set(line) & OBEYED
    assert "배달" in line


@given(st.text())
def test_nothing_a_terminal_obeys_is_left(text: str) -> None:
    assert not set(printable(text)) & OBEYED
    assert not set(printable_lines(text)) - {"\n"} & OBEYED
    assert not set(json_line(text)) & OBEYED
    assert json.loads(json_line(text)) == text


@pytest.mark.parametrize("as_json", [False, True])
def test_a_verify_summary_shows_a_crafted_delivery_id_escaped(as_json: bool) -> None:
    from projector.commands import _summary_text
    from projector.progress import Summary

    summary = Summary("verify", "verify", "earliest", 3, 1, differences=1,
                      first_differences=["delivery D-\x1b]0;pwned\x07\u202e: only in the live generation"])
    shown = _summary_text(summary, as_json)
    assert not set(shown) - {"\n"} & OBEYED
    if as_json:
        assert json.loads(shown)["first_differences"] == summary.first_differences
    else:
        assert "D-\\x1b]0;pwned\\x07\\u202e" in shown and "\n" in shown
