"""Scenario 8, API fuzz: generated queries and variables plus the known attacks against a
real server over HTTP (and graphql-transport-ws for the attacks), PostgreSQL read model.

The strategies are built from the running API's own introspection: random selections
of every object type's fields, with aliases, inline and named fragments, arguments of
the right type and of wrong ones (literals or variables, declared with the right or a
wrong type), cursors real and forged, dates at and past the edges, unknown fields,
missing sub-selections; beside them nesting thousands deep, alias and token floods,
bodies that are not JSON. About one generated query in seven goes over one long-lived
graphql-transport-ws socket instead of HTTP. Each request is checked:

- no 5xx, and a status the API documents (200, 400, 401, 413);
- bounded: it answers within ``REQUEST_TIMEOUT`` seconds;
- no traceback, no SQL, no driver name, no masked internal error in the response
  (an internal error is a hole the client should have been told about in words);
- without a valid token: 401 and no data (HTTP), 4403 and nothing run (WebSocket).

The API runs as a SELECT-only role (as docs/api.md deploys it), and its engine opens
every transaction read-only (``query_api.database``): at the end a write through the
API's own engine fails, a write as its role fails even in a read-write transaction,
and the read model is byte for byte what the projector wrote.

Reduced by default (``REDUCED`` examples); ``--fault-full`` runs ``FULL``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from websockets.sync.client import connect

from query_api.database import build_engine
from query_api.extensions import MASKED_MESSAGE
from tests.api_support import STREAMS, live_server, project, settings_for

pytestmark = [pytest.mark.integration, pytest.mark.fault]

REDUCED, FULL = 200, 2000
TOKEN = "fuzz-token"
REQUEST_TIMEOUT = 20.0
STREAM = STREAMS / "api_happy.jsonl"
LEAKS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3", "SELECT ", " FROM ",
         MASKED_MESSAGE, "the read-model query failed")
DOCUMENTED = {200, 400, 401, 413}

TYPE_REF = "kind name ofType { kind name ofType { kind name ofType { kind name } } }"
INTROSPECTION = (
    "{ __schema { queryType { name } subscriptionType { name } types { kind name "
    f"fields {{ name type {{ {TYPE_REF} }} args {{ name type {{ {TYPE_REF} }} }} }} "
    f"inputFields {{ name type {{ {TYPE_REF} }} }} enumValues {{ name }} }} }} }}"
)


# -- the schema, as the API describes itself ------------------------------------------
@dataclass(frozen=True)
class Arg:
    name: str
    type: dict[str, Any]


@dataclass(frozen=True)
class Field:
    name: str
    type: dict[str, Any]
    args: tuple[Arg, ...]


@dataclass
class Schema:
    objects: dict[str, tuple[Field, ...]] = field(default_factory=dict)
    inputs: dict[str, tuple[Arg, ...]] = field(default_factory=dict)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    query: str = "Query"
    subscription: str | None = None


def load_schema(introspection: dict[str, Any]) -> Schema:
    raw = introspection["__schema"]
    schema = Schema(query=raw["queryType"]["name"],
                    subscription=(raw.get("subscriptionType") or {}).get("name"))
    for t in raw["types"]:
        if t["name"].startswith("__"):
            continue
        if t["kind"] == "OBJECT":
            schema.objects[t["name"]] = tuple(
                Field(f["name"], f["type"], tuple(Arg(a["name"], a["type"]) for a in f["args"]))
                for f in t["fields"])
        elif t["kind"] == "INPUT_OBJECT":
            schema.inputs[t["name"]] = tuple(Arg(a["name"], a["type"]) for a in t["inputFields"])
        elif t["kind"] == "ENUM":
            schema.enums[t["name"]] = tuple(v["name"] for v in t["enumValues"])
    return schema


def named(ref: dict[str, Any]) -> dict[str, Any]:
    while ref.get("ofType"):
        ref = ref["ofType"]
    return ref


def type_string(ref: dict[str, Any]) -> str:
    if ref["kind"] == "NON_NULL":
        return type_string(ref["ofType"]) + "!"
    if ref["kind"] == "LIST":
        return "[" + type_string(ref["ofType"]) + "]"
    return str(ref["name"])


# -- values -------------------------------------------------------------------------
class EnumValue(str):
    """An enum value: bare in a literal, a string in variables."""


def b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@st.composite
def cursors(draw: st.DrawFn) -> str:
    when = draw(st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.sampled_from(["2026-11-25T00:00:00+00:00", "0001-01-01T00:00:00+14:00",
                         "9999-12-31T23:59:59-14:00", "yesterday", ""]),
        st.integers()))
    ident = draw(st.one_of(st.text(max_size=12), st.sampled_from(["D-1001", "e\x00", "\ud800"]),
                           st.integers()))
    sequence = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(),
                              st.sampled_from([2**70, -(2**63) - 1, 1.5, None, True])))
    kind = draw(st.sampled_from(["history", "deliveries", "other"]))
    parts: list[object] = ([kind, when, sequence, ident] if kind != "deliveries"
                           else [kind, when, ident])
    if draw(st.booleans()):
        parts = parts[: draw(st.integers(0, len(parts)))]
    return draw(st.one_of(st.just(b64(parts)), st.text(max_size=30),
                          st.just("WyJoaXN0b3J5Il0"), st.just("%%%")))


TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["D-1001", "D-1005", "R-7", "S-1", "O-1", "", "\x00", "D-1001\x00",
                     "\ud800", "' OR 1=1 --", "배달", "😀" * 5, "x" * 3000]),
)
DATES = st.one_of(
    st.dates().map(date.isoformat),
    st.sampled_from(["9999-12-31", "9999-12-30", "0001-01-01", "2026-11-25", "2026-02-30",
                     "0000-01-01", "2026-11-25T00:00:00Z", "25/11/2026", ""]),
)
DATETIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # no offset: refused
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-14:00",
                     "2026-11-25T10:00:00Z", "yesterday", "2026-11-25T10:00:00z"]),
)
INTS = st.one_of(st.integers(-3, 600), st.sampled_from([0, -1, 500, 501, 2**31 - 1, 2**31,
                                                        -(2**31), 2**53, 2**64]))


GOOD: dict[str, st.SearchStrategy[Any]] = {
    # Values a careful client sends: most such requests should return data.
    "Int": st.integers(1, 60), "ID": st.sampled_from(["D-1001", "D-1005", "R-7", "S-1", "nope"]),
    "String": st.sampled_from(["O-1", "D-1001", "x"]),
    "Date": st.dates(date(2026, 11, 20), date(2026, 11, 30)).map(date.isoformat),
    "DateTime": st.datetimes(datetime(2026, 11, 24), datetime(2026, 11, 27),
                             timezones=st.just(UTC)).map(lambda d: d.isoformat()),
}
ANY: dict[str, st.SearchStrategy[Any]] = {
    "Int": INTS, "Float": st.floats(allow_nan=False, allow_infinity=False),
    "Boolean": st.booleans(), "String": TEXT, "ID": TEXT, "Date": DATES,
    "DateTime": DATETIMES, "Long": st.integers(), "JSON": st.none(),
}
WRONG = st.one_of(st.none(), st.booleans(), INTS, TEXT, st.floats(allow_nan=False),
                  st.lists(st.integers(), max_size=2), st.just({"x": 1}))


def value_for(schema: Schema, ref: dict[str, Any], arg_name: str, clean: bool,
              depth: int = 0) -> st.SearchStrategy[Any]:
    """A value for ``ref``: of its type when ``clean``; else mostly of its type (any value
    of it, edges and nonsense included), one in six of another type."""
    right = right_value(schema, ref, arg_name, clean, depth)
    if clean:
        return right
    if depth >= 3:
        return WRONG
    return st.one_of(right, right, right, right, right, WRONG)


def right_value(schema: Schema, ref: dict[str, Any], arg_name: str, clean: bool,
                depth: int) -> st.SearchStrategy[Any]:
    if ref["kind"] == "NON_NULL":
        return right_value(schema, ref["ofType"], arg_name, clean, depth)
    if ref["kind"] == "LIST":
        return st.lists(value_for(schema, ref["ofType"], arg_name, clean, depth + 1),
                        max_size=3)
    name = ref["name"]
    if name in schema.enums:
        values = st.sampled_from(schema.enums[name]).map(EnumValue)
        return values if clean else st.one_of(values, st.just(EnumValue("FLYING")))
    if name in schema.inputs:
        fields = schema.inputs[name] + (() if clean else (Arg("colour", {"kind": "SCALAR",
                                                                        "name": "String"}),))
        return st.lists(st.sampled_from(fields), unique_by=lambda f: f.name,
                        max_size=2 if clean else 4).flatmap(
            lambda chosen: st.fixed_dictionaries(
                {f.name: value_for(schema, f.type, f.name, clean, depth + 1) for f in chosen}))
    if arg_name == "after":
        return st.none() if clean else cursors()
    return (GOOD if clean else ANY).get(name, TEXT)


def literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, EnumValue):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are GraphQL's (an unpaired one: refused)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"


def plain(value: Any) -> Any:
    if isinstance(value, EnumValue):
        return str(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# -- operations ------------------------------------------------------------------------
NAMES = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,6}", fullmatch=True)


@dataclass
class Draft:
    variables: dict[str, Any] = field(default_factory=dict)
    declarations: list[str] = field(default_factory=list)
    fragments: list[str] = field(default_factory=list)


def selection(draw: st.DrawFn, rnd: random.Random, clean: bool, schema: Schema,
              type_name: str, depth: int, draft: Draft) -> str:
    """Fields of ``type_name``: when ``clean``, a valid selection; else one with mistakes
    (unknown fields, duplicates with other arguments, missing or extra sub-selections,
    wrong values and variable types)."""
    fields = schema.objects[type_name]
    chosen = rnd.sample(fields, rnd.randint(1, min(4, len(fields))))
    if not clean:
        chosen += rnd.choices(fields, k=rnd.randint(0, 1))
    parts: list[str] = []
    if not clean and rnd.random() < 0.1:
        parts.append(rnd.choice(["colour", "__typename", "id(x: 1)"]))
    for f in chosen:
        text_ = f.name
        if rnd.random() < 0.2:
            text_ = f"{draw(NAMES)}: {text_}"
        args = []
        for a in f.args:
            required = a.type["kind"] == "NON_NULL"
            if rnd.random() > (1.0 if required and clean else 0.95 if required else 0.6):
                continue  # left out (a required one: the API must say it is missing)
            value = draw(value_for(schema, a.type, a.name, clean))
            if rnd.random() < 0.3:  # through a variable, declared right or (rarely) wrong
                var = f"v{len(draft.variables)}"
                declared = type_string(a.type)
                if not clean and rnd.random() < 0.15:
                    declared = rnd.choice(["Int", "String!", "[ID]", "Boolean", "DeliveryFilter"])
                draft.declarations.append(f"${var}: {declared}")
                draft.variables[var] = plain(value)
                args.append(f"{a.name}: ${var}")
            else:
                args.append(f"{a.name}: {literal(value)}")
        if args:
            text_ += "(" + ", ".join(args) + ")"
        child = named(f.type)["name"]
        if child in schema.objects:
            if not clean and rnd.random() < 0.03:
                pass  # no sub-selection: a validation error
            elif depth >= rnd.randint(3, 10):
                text_ += " { __typename }"
            else:
                inner = selection(draw, rnd, clean, schema, child, depth + 1, draft)
                how = rnd.random()
                if how < 0.1:
                    inner = f"... on {child} {{ {inner} }}"
                elif how < 0.2:
                    name = f"F{len(draft.fragments)}"
                    draft.fragments.append(f"fragment {name} on {child} {{ {inner} }}")
                    inner = f"...{name}"
                text_ += " { " + inner + " }"
        elif not clean and rnd.random() < 0.03:
            text_ += " { id }"  # a sub-selection on a leaf: a validation error
        parts.append(text_)
    return " ".join(parts)


@dataclass(frozen=True)
class Request:
    kind: str
    body: bytes
    headers: dict[str, str]
    method: str = "POST"


def as_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@st.composite
def operations(draw: st.DrawFn, schema: Schema) -> Request:
    draft = Draft()
    rnd = draw(st.randoms(use_true_random=False))
    clean = rnd.random() < 0.5
    root = schema.query if clean or rnd.random() < 0.9 else schema.subscription or schema.query
    body = selection(draw, rnd, clean, schema, root, 1, draft)
    keyword = "subscription" if root == schema.subscription else "query"
    name = draw(NAMES).capitalize() if rnd.random() < 0.5 else None
    head = keyword + (f" {name}" if name else "")
    if draft.declarations:
        head += "(" + ", ".join(draft.declarations) + ")"
    query = " ".join([f"{head} {{ {body} }}", *draft.fragments])
    payload: dict[str, Any] = {"query": query}
    if draft.variables or rnd.random() < 0.5:
        payload["variables"] = draft.variables
    if name:
        payload["operationName"] = name if clean or rnd.random() < 0.9 else rnd.choice(
            ["Other", "\ud800", ""])
    return Request("generated" if clean else "generated-careless", as_json(payload),
                   {"content-type": "application/json"})


@st.composite
def attacks(draw: st.DrawFn) -> Request:
    """Generated variants of the known attacks: floods, depth, sizes, bodies."""
    n = draw(st.integers(1, 5000))
    kind = draw(st.sampled_from(["brackets", "aliases", "tokens", "fragments", "body",
                                 "deep-variables", "batch", "get"]))
    if kind == "brackets":
        opener = draw(st.sampled_from(["{a", "[", "(", "{ deliveries { edges { node "]))
        payload: Any = {"query": opener * n + "}" * n}
    elif kind == "aliases":
        payload = {"query": "{ " + " ".join(f'a{i}: delivery(id: "D-1001") {{ id }}'
                                           for i in range(n % 60)) + " }"}
    elif kind == "tokens":
        payload = {"query": "{ " + "delivery(id: \"D-1001\") { id } " * (n % 600) + "}"}
    elif kind == "fragments":
        k = n % 40 + 2
        frags = " ".join(f"fragment F{i} on Delivery {{ id ...F{(i + 1) % k} }}"
                         for i in range(k))
        payload = {"query": '{ delivery(id: "D-1001") { ...F0 } } ' + frags}
    elif kind == "deep-variables":
        return Request(kind, ('{"query": "{ __typename }", "variables": {"a": '
                              + "[" * n + "]" * n + "}}").encode(),
                       {"content-type": "application/json"})
    elif kind == "batch":
        payload = [{"query": '{ delivery(id: "D-1001") { id } }'}] * (n % 5 + 1)
    elif kind == "get":
        return Request(kind, b"", {}, method="GET " + draw(st.text(max_size=200)))
    else:
        raw = draw(st.one_of(st.binary(max_size=200),
                             st.sampled_from([b"", b"null", b"42", b'"q"', b"{", b"\xff\xfe{",
                                              b"x" * 70_000])))
        return Request(kind, raw, {"content-type": draw(st.sampled_from(
            ["application/json", "text/plain", "application/graphql"]))})
    return Request(kind, json.dumps(payload).encode(), {"content-type": "application/json"})


def known_attacks() -> list[Request]:
    """The attacks of test_api_safety.py and test_api_hostile.py, as requests."""
    def q(query: str, variables: dict[str, Any] | None = None,
          **extra: Any) -> Request:
        payload: dict[str, Any] = {"query": query, **extra}
        if variables is not None:
            payload["variables"] = variables
        return Request("known", as_json(payload), {"content-type": "application/json"})

    history = ('query H($a: String) { delivery(id: "D-1001") { history(after: $a) '
               "{ totalCount } } }")
    heavy = "{ " + " ".join(
        f"a{i}: deliveries(first: 500, filter: {{lastEventFrom: \"2026-11-24T00:{i:02d}:00Z\"}}) "
        "{ edges { node { history(first: 500) { edges { node { eventId } } } } } }"
        for i in range(30)) + " }"
    raw = [
        b"{not json", b"", b"[1, 2", b'"just a string"', b"null", b"42", b"\xff\xfe{",
        b'{"query": "{ __typename }", "operationName": "\\ud800"}',
        b'{"query": "query($id: ID!) { delivery(id: $id) { id } }", '
        b'"variables": {"id": "\\ud800"}}',
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 20_000 + b"]" * 20_000
        + b"}}",
    ]
    return [
        *(Request("known", body, {"content-type": "application/json"}) for body in raw),
        q('{ delivery(id: "D-1001") { id colour } }'),
        q("query Q($n: Int) { deliveries(first: $n) { totalCount } }", {"n": 2**40}),
        q("query Q($f: DeliveryFilter) { deliveries(filter: $f) { totalCount } }",
          {"f": {"lastEventFrom": "2026-11-25T10:00:00"}}),
        q("{ deliveries { edges { node { history { edges { node { source { "
          + "a { " * 43 + "topic" + " }" * 43 + " } } } } } } } }"),
        q("{a" * 5000 + "}" * 5000),
        q("{ " + " ".join(f'a{i}: delivery(id: "D-1001") {{ id }}' for i in range(1000)) + " }"),
        q("{ " + "delivery(id: \"D-1001\") { id } " * 400 + "}"),
        q("{ " + "x " * 500_000 + "}"),
        Request("known", as_json({"query": "{ __typename }"}), {}),  # no content type
        q("mutation { x }"),
        q(heavy),
        q('subscription { deliveryUpdated(id: "D-1001") { id } }'),
        q(history, {"a": b64(["history", "2026-11-25T00:00:00+00:00", 2**70, "e"])}),
        q(history, {"a": b64(["history", "2026-11-25T00:00:00+00:00", -(2**63) - 1, "e"])}),
        q(history, {"a": b64(["history", "2026-11-25T00:00:00+00:00", 1, "e\x00"])}),
        q("query P($a: String) { deliveries(after: $a) { edges { cursor } } }",
          {"a": b64(["deliveries", "2026-11-25T00:00:00+00:00", "D\x00"])}),
        q('{ riderDailyStats(riderId: "R-7", from: "9999-12-31", to: "9999-12-31") '
          "{ completed } }"),
        q('{ riderDailyStats(riderId: "R-7", from: "2026-01-01", to: "2027-12-31") { date } }'),
        q("{ __schema { types { name } } }"),
    ]


WS_ATTACKS: list[dict[str, Any]] = [
    {"query": 'subscription { deliveryUpdated(id: "D-1001") { id '},
    {"query": "subscription { deliveryUpdated(id: \"D-1\") { " + "id " * 2500 + "} }"},
    {"query": "{a" * 3000 + "}" * 3000},
    {"query": 42},
    {"query": '{ delivery(id: "D-1001") { id } }', "variables": [1]},
    {"query": '{ delivery(id: "D-1001") { id } }', "operationName": "Nope"},
    {"query": "{ " + "x " * 500_000 + "}"},
    {"query": '{ riderDailyStats(riderId: "R-7", from: "9999-12-31", to: "9999-12-31") '
              "{ completed } }"},
]


# -- the run ---------------------------------------------------------------------------
@dataclass
class Tally:
    examples: int = 0
    unauthorised: int = 0
    websocket: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def record_errors(self, body: Any) -> None:
        for error in body.get("errors") or () if isinstance(body, dict) else ():
            message = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", str(error.get("message", "")))
            self.errors[" ".join(message.split()[:6])] += 1

    def report(self) -> str:
        lat = sorted(self.latencies)
        p99 = lat[int(len(lat) * 0.99) - 1] if lat else 0.0
        lines = [
            f"API fuzz: {self.examples} requests ({dict(self.by_kind)}), "
            f"{self.unauthorised} of them without a valid token, {self.websocket} over one "
            "graphql-transport-ws socket",
            f"outcomes: {dict(self.outcomes.most_common())}",
            f"latency: max {max(lat, default=0):.3f} s, p99 {p99:.3f} s, "
            f"median {lat[len(lat) // 2] if lat else 0:.3f} s",
            "errors by kind: " + "; ".join(f"{k} x{n}" for k, n in self.errors.most_common(15)),
        ]
        return "\n".join(lines)


def check_response(response: httpx.Response, seconds: float, what: str) -> Any:
    assert response.status_code < 500, (what, response.status_code, response.text[:500])
    assert response.status_code in DOCUMENTED, (what, response.status_code, response.text[:500])
    for leak in LEAKS:
        assert leak not in response.text, (what, leak, response.text[:800])
    assert seconds < REQUEST_TIMEOUT, (what, seconds)
    try:
        return response.json()
    except ValueError:
        return None


def outcome(status: int, body: Any) -> str:
    if status != 200:
        return str(status)
    if not isinstance(body, dict):
        return "200-other"
    if body.get("errors"):
        return "partial" if body.get("data") else "errors"
    return "data"


@pytest.fixture
def reader_url(pg_url: str) -> Iterator[str]:
    """The read model projected from a fixed stream, and a SELECT-only role to serve it."""
    project(pg_url, STREAM)
    admin = create_engine(os.environ.get("TEST_DATABASE_ADMIN_URL")
                          or os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    role = f"fuzz_reader_{uuid.uuid4().hex[:8]}"
    database = make_url(pg_url).database
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'"))
    try:
        with owner.connect() as conn:
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
            conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        yield make_url(pg_url).set(username=role, password="reader-pw").render_as_string(
            hide_password=False)
    finally:
        owner.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def fingerprint(url: str) -> dict[str, Any]:
    """Every table's row count and an md5 of its rows: what 'unchanged' means."""
    engine = create_engine(url)
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        tables = conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).scalars()
        for table in list(tables):
            out[table] = conn.execute(text(
                f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) '
                f'FROM "{table}" t')).one()
    engine.dispose()
    return out


def test_api_fuzz(reader_url: str, pg_url: str, full_size: bool) -> None:
    examples = FULL if full_size else REDUCED
    before = fingerprint(reader_url)
    assert before["deliveries"][0] == 7 and before["delivery_events"][0] == 23
    tally = Tally()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad_auth: list[dict[str, str]] = [{}, {"Authorization": "Bearer wrong"},
                                      {"Authorization": TOKEN}, {"Authorization": "Basic x"}]
    started = time.monotonic()
    settings_ = settings_for(reader_url, STREAM, tokens=(TOKEN,))
    with live_server(settings_) as (base, app), httpx.Client(
            base_url=f"http://{base}", timeout=REQUEST_TIMEOUT) as client:
        intro = client.post("/graphql", json={"query": INTROSPECTION}, headers=auth)
        schema = load_schema(intro.json()["data"])
        assert {"Query", "Delivery", "DeliveryEvent"} <= set(schema.objects)
        chooser = random.Random(8)

        def send(request: Request, headers: dict[str, str]) -> tuple[int, Any]:
            t0 = time.perf_counter()
            if request.method.startswith("GET"):
                response = client.get("/graphql", params={"query": request.method[4:]},
                                      headers=headers)
            else:
                response = client.post("/graphql", content=request.body,
                                       headers={**request.headers, **headers})
            seconds = time.perf_counter() - t0
            tally.latencies.append(seconds)
            body = check_response(response, seconds, request.body[:300].decode(
                "utf-8", "replace") or request.method)
            return response.status_code, body

        socket = connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                         open_timeout=10, max_size=None)
        socket.send(json.dumps({"type": "connection_init", "payload": {
            "Authorization": f"Bearer {TOKEN}"}}))
        assert json.loads(socket.recv(timeout=10)) == {"type": "connection_ack"}

        def over_websocket(request: Request) -> None:
            """The same operation on one long-lived socket: a ``next`` or an ``error``."""
            payload = json.loads(request.body)
            op = str(tally.websocket)
            t0 = time.perf_counter()
            socket.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))
            messages = [json.loads(socket.recv(timeout=REQUEST_TIMEOUT))]
            while messages[-1]["type"] not in ("error", "complete"):
                messages.append(json.loads(socket.recv(timeout=REQUEST_TIMEOUT)))
            tally.latencies.append(time.perf_counter() - t0)
            text_ = json.dumps(messages)
            for leak in LEAKS:
                assert leak not in text_, (payload, text_[:800])
            assert all(m["id"] == op for m in messages), messages
            assert messages[0]["type"] in ("next", "error"), messages
            tally.websocket += 1
            tally.outcomes["ws-" + messages[0]["type"]] += 1

        def run(request: Request) -> None:
            tally.examples += 1
            tally.by_kind[request.kind] += 1
            if (request.kind.startswith("generated") and chooser.random() < 0.15
                    and not json.loads(request.body)["query"].startswith("subscription")):
                over_websocket(request)
                return
            if chooser.random() < 0.1:  # without a valid token: nothing but a 401
                tally.unauthorised += 1
                status, body = send(request, chooser.choice(bad_auth))
                assert status == 401, (status, body)
                assert not (isinstance(body, dict) and "data" in body), body
                tally.outcomes["401"] += 1
                return
            status, body = send(request, auth)
            tally.outcomes[outcome(status, body)] += 1
            tally.record_errors(body)

        for request in known_attacks():
            run(request)

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))
        @given(request=st.one_of(operations(schema), operations(schema), operations(schema),
                                 attacks()))
        def fuzz(request: Request) -> None:
            run(request)

        fuzz()
        socket.close()
        ws_checked = websocket_attacks(base, tally)

        # Still serving, and serving the same data.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json()["status"] == "ready"
        page = client.post("/graphql", json={"query": "{ deliveries { totalCount } }"},
                           headers=auth).json()
        assert page == {"data": {"deliveries": {"totalCount": 7}}}
        served_refused = engine_cannot_write(app.state.services.engine,
                                             "permission denied|read-only transaction")
    # The engine's guard alone, as the tables' owner (a role that may write).
    owner_engine = build_engine(settings_for(pg_url))
    try:
        write_refused = engine_cannot_write(owner_engine, "read-only transaction")
    finally:
        owner_engine.dispose()
    role_refused = role_cannot_write(reader_url)
    after = fingerprint(reader_url)
    assert after == before, "the read model changed during the fuzz run"
    elapsed = time.monotonic() - started
    print("\n" + tally.report())
    print(f"websocket: {ws_checked} attacks each answered with an error message, "
          "4403 without a token")
    print(f"read-only: the serving API's engine refused {served_refused}; the API's engine "
          f"as the tables' owner refused {write_refused}; the API's role refused "
          f"{role_refused}; {len(before)} tables unchanged (row counts and md5)")
    print(f"scenario 8 ({'full' if full_size else 'reduced'}): {tally.examples} requests "
          f"in {elapsed:.1f} s")


def websocket_attacks(base: str, tally: Tally) -> int:
    """The attacks over graphql-transport-ws: an ``error`` each; no token, no data."""
    ws = connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                 open_timeout=10, max_size=None)
    with ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {
            "Authorization": f"Bearer {TOKEN}"}}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "connection_ack"}
        for i, payload in enumerate(WS_ATTACKS):
            t0 = time.perf_counter()
            ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
            messages = []
            while not messages or messages[-1]["type"] not in ("error", "complete"):
                messages.append(json.loads(ws.recv(timeout=REQUEST_TIMEOUT)))
            tally.latencies.append(time.perf_counter() - t0)
            text_ = json.dumps(messages)
            for leak in LEAKS:
                assert leak not in text_, (payload, text_[:500])
            assert messages[0]["type"] == "error" or (
                messages[0]["type"] == "next" and messages[0]["payload"].get("errors")
            ), messages
            tally.record_errors({"errors": messages[0]["payload"]}
                                if messages[0]["type"] == "error" else messages[0]["payload"])
    for init in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer \ud800"}):
        with connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                     open_timeout=10) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": init}))
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=10)
            assert "4403" in str(closed.value)
    return len(WS_ATTACKS)


def engine_cannot_write(engine: Any, reason: str) -> str:
    """Writes through an engine of the API fail, in a transaction and in autocommit
    (the one-statement path), with ``reason``."""
    refusals = 0
    for statement in ("DELETE FROM deliveries", "UPDATE generations SET status = 'x'",
                      "CREATE TABLE fuzz_probe (x int)"):
        for options in ({}, {"isolation_level": "AUTOCOMMIT"}):
            with engine.connect() as conn, pytest.raises(Exception) as refused:
                conn.execution_options(**options).execute(text(statement))
                conn.commit()
            assert re.search(reason, str(refused.value)), refused.value
            refusals += 1
    return f"{refusals} writes ({reason})"


def role_cannot_write(url: str) -> str:
    """Even in a read-write transaction the API's role may only read."""
    engine = create_engine(url)
    try:
        for statement in ("DELETE FROM deliveries", "INSERT INTO generations (generation, "
                          "status, created_at) VALUES (99, 'active', now())"):
            with engine.connect() as conn, pytest.raises(Exception, match="permission denied"):
                conn.execute(text("SET TRANSACTION READ WRITE"))
                conn.execute(text(statement))
    finally:
        engine.dispose()
    return "DELETE and INSERT (permission denied)"

