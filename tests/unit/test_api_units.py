"""Pure pieces of the query API: schema file and contract, cursors, stats, guards, settings, CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from graphql import build_schema, print_type
from graphql.type import GraphQLInputObjectType, GraphQLObjectType, is_non_null_type

from query_api._middleware import token_ok
from query_api.cursors import (
    DeliveryKey,
    EventKey,
    delivery_cursor,
    event_cursor,
    parse_delivery_cursor,
    parse_event_cursor,
)
from query_api.errors import ConfigError, InvalidCursor, QueryApiError, UserInputError
from query_api.schema import schema
from query_api.settings import Settings
from query_api.stats import daily_stats
from query_api.view import nesting_depth
from tests.helpers import ROOT

pytestmark = pytest.mark.unit

CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"


# -- the schema ------------------------------------------------------------------------
def test_checked_in_schema_matches_the_code() -> None:
    """What ``strawberry export-schema query_api.schema:schema`` writes (its ``print_schema``)."""
    from strawberry.printer import print_schema

    checked_in = (ROOT / "query_api" / "schema.graphql").read_text(encoding="utf-8")
    assert print_schema(schema) + "\n" == checked_in, (
        "query_api/schema.graphql is stale: run "
        "strawberry export-schema query_api.schema:schema --output query_api/schema.graphql")


def _contract_schema() -> str:
    if not CONTRACT.is_file():
        message = f"the shared contract is not beside the repository ({CONTRACT})"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)  # CI always has it: its absence is an error
        pytest.skip(message)
    text = CONTRACT.read_text(encoding="utf-8")
    section = text[text.index("## 2. GraphQL API"):text.index("## 3.")]
    return re.search(r"```graphql\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _signature(type_: object, added: Iterable[str] = ()) -> list[str]:
    """Fields (with argument types and defaults) of a type, without descriptions; the
    ``added`` (optional) arguments left out."""
    printed = print_type(type_)  # type: ignore[arg-type]
    body = re.sub(r'""".*?"""|"[^"\n]*"', "", printed, flags=re.S)
    for argument in added:
        body = re.sub(rf",\s*{argument}: [^,)]+", "", body)
    return [re.sub(r"\s+", " ", line.strip()) for line in body.splitlines()[1:-1] if line.strip()]


def _added_arguments(contract: object, served: object) -> set[str]:
    """Arguments we serve beyond the contract's on its fields: each must be optional
    (an addition a client never has to send), e.g. ``delivery(asOf:)``."""
    if not isinstance(contract, GraphQLObjectType) or not isinstance(served, GraphQLObjectType):
        return set()
    added: set[str] = set()
    for field_name, field in contract.fields.items():
        mine = served.fields.get(field_name)
        for arg_name, arg in (mine.args if mine is not None else {}).items():
            if arg_name not in field.args:
                assert not is_non_null_type(arg.type), f"{field_name}({arg_name}:) is required"
                added.add(arg_name)
    return added


def test_every_contract_type_field_and_argument_is_served_exactly() -> None:
    contract = build_schema(_contract_schema())
    ours = build_schema((ROOT / "query_api" / "schema.graphql").read_text(encoding="utf-8"))
    checked = 0
    for name, type_ in contract.type_map.items():
        if name.startswith("__"):
            continue
        assert name in ours.type_map, f"missing type {name}"
        mine = ours.type_map[name]
        assert type(mine) is type(type_), name
        if isinstance(type_, (GraphQLObjectType, GraphQLInputObjectType)):
            expected = _signature(type_)
            served = _signature(mine, _added_arguments(type_, mine))
            # Same fields in the same order; we may add, never rename or drop.
            assert served[: len(expected)] == expected, name
            checked += len(expected)
    assert checked > 60


# -- cursors ---------------------------------------------------------------------------
def test_cursors_round_trip_and_are_opaque() -> None:
    when = datetime(2026, 11, 25, 12, 0, 0, 1, tzinfo=UTC)
    key = DeliveryKey(when, "D-가-1")
    cursor = delivery_cursor(key)
    assert "D-" not in cursor and "2026" not in cursor
    assert parse_delivery_cursor(cursor) == key
    ekey = EventKey(when, 0, "e-1")
    assert parse_event_cursor(event_cursor(ekey)) == ekey
    with pytest.raises(InvalidCursor):
        parse_delivery_cursor(event_cursor(ekey))
    with pytest.raises(InvalidCursor):
        parse_event_cursor(cursor)
    for bad in ("", "!!!", "eyJhIjoxfQ", "W10", "x" * 2000):
        with pytest.raises(InvalidCursor):
            parse_delivery_cursor(bad)
    assert issubclass(InvalidCursor, UserInputError) and issubclass(UserInputError, QueryApiError)


# -- stats -----------------------------------------------------------------------------------
def test_daily_stats_bucket_by_business_day_and_average_only_picked_up() -> None:
    utc = UTC
    rows = [
        {"assigned_at": datetime(2026, 11, 24, 15, 30, tzinfo=utc),  # 00:30 on the 25th in Seoul
         "picked_up_at": datetime(2026, 11, 24, 15, 40, tzinfo=utc),
         "delivered_at": datetime(2026, 11, 24, 16, 0, tzinfo=utc), "cancelled_at": None},
        {"assigned_at": datetime(2026, 11, 25, 1, 0, tzinfo=utc), "picked_up_at": None,
         "delivered_at": datetime(2026, 11, 25, 2, 0, tzinfo=utc), "cancelled_at": None},
        {"assigned_at": None, "picked_up_at": None, "delivered_at": None,
         "cancelled_at": datetime(2026, 11, 27, 0, 0, tzinfo=utc)},  # outside the range
    ]
    seoul = daily_stats(rows, date(2026, 11, 24), date(2026, 11, 26), ZoneInfo("Asia/Seoul"))
    assert [(d.day.day, d.assigned, d.completed, d.cancelled, d.avg_delivery_seconds)
            for d in seoul] == [(24, 0, 0, 0, None), (25, 2, 2, 0, 1200.0), (26, 0, 0, 0, None)]
    in_utc = daily_stats(rows, date(2026, 11, 24), date(2026, 11, 26), UTC)
    assert [(d.assigned, d.completed) for d in in_utc] == [(1, 1), (1, 1), (0, 0)]
    with pytest.raises(UserInputError, match="367 days"):
        daily_stats([], date(2026, 1, 1), date(2027, 1, 2), UTC)
    assert len(daily_stats([], date(2028, 1, 1), date(2028, 12, 31), UTC)) == 366


# -- guards -------------------------------------------------------------------------------
def test_nesting_depth_ignores_brackets_in_strings_and_comments() -> None:
    assert nesting_depth("{ a { b(x: [1]) } }") == 4
    assert nesting_depth('{ a(s: "{{{{{{") }') == 2
    assert nesting_depth('{ a(s: """ {{{{ \n {{{{ """) } # {{{{{{\n') == 2
    assert nesting_depth("{" * 100) == 100


def test_tokens_compare_whole_values() -> None:
    tokens = ("alpha", "beta")
    assert token_ok("Bearer alpha", tokens) and token_ok("bearer beta", tokens)
    for bad in (None, "", "alpha", "Bearer ", "Bearer alph", "Bearer alphaa", "Bearer gamma",
                "Basic alpha"):
        assert not token_ok(bad, tokens), bad


# -- settings and CLI ------------------------------------------------------------------------
def test_settings_come_from_the_environment() -> None:
    s = Settings.from_env({"DATABASE_URL": "sqlite:///x.db", "QUERY_API_TOKENS": " a, b ,,",
                           "QUERY_API_ENV": "Production", "BUSINESS_TIMEZONE": "Asia/Seoul"})
    assert s.tokens == ("a", "b") and s.production and s.database_url == "sqlite:///x.db"
    assert Settings.from_env({}).database_url == "sqlite:///./delivery_read_model.db"
    for env in ({"BUSINESS_TIMEZONE": "Mars/Base"}, {"QUERY_API_ENV": "staging"},
                {"QUERY_API_PORT": "eighty"}, {"QUERY_API_ALLOW_UNAUTHENTICATED": "maybe"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)


def test_an_open_api_listens_only_on_loopback() -> None:
    assert Settings(host="127.0.0.1").refuse_open_listener() is None
    assert Settings(host="::1").refuse_open_listener() is None
    assert Settings(host="localhost").refuse_open_listener() is None
    assert "--allow-unauthenticated" in (Settings(host="0.0.0.0").refuse_open_listener() or "")
    assert Settings(host="0.0.0.0", tokens=("t",)).refuse_open_listener() is None
    assert Settings(host="0.0.0.0", allow_unauthenticated=True).refuse_open_listener() is None


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("QUERY_API_") and k != "BUSINESS_TIMEZONE"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "query_api.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env=full_env, timeout=60)


def test_cli_help_explains_settings() -> None:
    proc = _run_cli("--help")
    assert proc.returncode == 0
    for word in ("--host", "--port", "--production", "--allow-unauthenticated",
                 "QUERY_API_TOKENS", "DATABASE_URL", "BUSINESS_TIMEZONE"):
        assert word in proc.stdout


@pytest.mark.parametrize(("args", "env", "code", "needle"), [
    (["--bogus"], {}, 2, "unrecognized arguments: --bogus"),
    (["--port", "x"], {}, 2, "invalid int value"),
    (["--host", "0.0.0.0"], {}, 1, "refusing to listen on 0.0.0.0 without QUERY_API_TOKENS"),
    (["--database-url", "postgresql+psycopg://u:pw@127.0.0.1:9/x"], {}, 1,
     "cannot reach the read model at postgresql+psycopg://u:***@127.0.0.1:9/x"),
    (["--database-url", "nonsense://"], {}, 1, "DATABASE_URL is not usable"),
    ([], {"BUSINESS_TIMEZONE": "Mars/Base"}, 1, "BUSINESS_TIMEZONE='Mars/Base'"),
])
def test_cli_errors_are_one_clear_line(args: list[str], env: dict[str, str], code: int,
                                       needle: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}", **env}
    proc = _run_cli(*args, env=env)
    assert proc.returncode == code
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and ":pw@" not in proc.stderr


def test_cli_refuses_a_missing_sqlite_read_model_without_creating_it(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "rm.db"
    proc = _run_cli("--database-url", f"sqlite:///{target}")
    assert proc.returncode == 1
    assert "no read model at" in proc.stderr and "projector migrate" in proc.stderr
    assert not target.parent.exists()


def test_query_api_never_imports_the_projector() -> None:
    sources = list((ROOT / "query_api").rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        assert not re.search(r"^\s*(from|import)\s+projector\b", path.read_text(), re.M), path


def test_cli_says_why_it_cannot_listen(tmp_path: Path) -> None:
    import socket

    from schema.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'rm.db'}"
    migrate(make_engine(url))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _run_cli("--port", str(port), env={"DATABASE_URL": url})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1
    assert lines[-1] == f"query-api: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in proc.stderr
