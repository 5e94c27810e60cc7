"""The API under load: `query-api --production` against the bare baseline, with wrk.

Both serve the same read model with the same token; wrk (16 connections, keep-alive)
POSTs `delivery(id)` for ids drawn at random from the read model. Before the load,
a few answers of the two are compared: the baseline must return the same JSON.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._cpu import ClusterCpu, Meter, Postgres
from benchmarks._proc import BenchError, Processes, command, say, tail, wait_until

FIELDS = "id state riderId eventCount lastEventAt"
QUERY = f"query Bench($id: ID!) {{ delivery(id: $id) {{ {FIELDS} }} }}"
CONNECTIONS = 16

LUA = r"""
local ids = {%(ids)s}
local body_head = %(head)s
local body_tail = %(tail)s
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %(auth)s
local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("seed", thread_no)
end
function init(args)
  math.randomseed(tonumber(seed) * 7919 + os.time())
end
function request()
  local id = ids[math.random(#ids)]
  return wrk.format(nil, nil, nil, body_head .. id .. body_tail)
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"status_errors":%%d,"connect_errors":%%d,"read_errors":%%d,' ..
    '"write_errors":%%d,"timeouts":%%d}\n',
    summary.requests, summary.duration,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    latency.max, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def body(delivery_id: str) -> bytes:
    return json.dumps({"query": QUERY, "variables": {"id": delivery_id}}).encode()


def write_script(path: Path, ids: Sequence[str], token: str) -> Path:
    marker = "\x00ID\x00"
    text = json.dumps({"query": QUERY, "variables": {"id": marker}})
    head, tail_ = text.split(json.dumps(marker)[1:-1])
    for delivery_id in ids:
        if json.dumps(delivery_id)[1:-1] != delivery_id or not delivery_id.isascii():
            raise BenchError(f"delivery id {delivery_id!r} needs escaping; not supported here")
    path.write_text(LUA % {
        "ids": ",".join(lua_string(i) for i in ids), "head": lua_string(head),
        "tail": lua_string(tail_), "auth": lua_string(f"Bearer {token}"),
    })
    return path


@dataclass
class Server:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def post(self, payload: bytes, token: str, timeout: float = 10) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", "/graphql", payload, {
                "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()


def start_server(procs: Processes, name: str, args: Sequence[str], env: Mapping[str, str],
                 port: int, timeout: float = 60) -> Server:
    proc, log = procs.start(name, args, env)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited {proc.returncode} (log {log}):\n{tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    wait_until(healthy, timeout, f"{name} to answer on port {port}", interval=0.2)
    return Server(name, port, log, proc)


def start_query_api(procs: Processes, base_env: Mapping[str, str], database_url: str,
                    extra: Mapping[str, str], token: str, workers: int = 1) -> Server:
    port = free_port()
    env = dict(base_env)
    env.update(extra)
    env.update({"DATABASE_URL": database_url, "QUERY_API_TOKENS": token})
    args = [*command("query-api"), "--host", "127.0.0.1", "--port", str(port), "--production"]
    if workers > 1:
        args += ["--workers", str(workers)]
    return start_server(procs, "query-api" if workers == 1 else f"query-api-x{workers}", args,
                        env, port)


def start_bare(procs: Processes, base_env: Mapping[str, str], database_url: str,
               token: str) -> Server:
    port = free_port()
    env = dict(base_env)
    env.update({"DATABASE_URL": database_url, "BARE_API_TOKEN": token})
    args = [sys.executable, "-m", "benchmarks.bare_api", "--port", str(port)]
    return start_server(procs, "bare-api", args, env, port)


def same_answers(graphql: Server, bare: Server, ids: Sequence[str], token: str) -> None:
    """The baseline returns what the API returns, and both refuse a wrong token."""
    for delivery_id in [*ids[:5], "D-no-such-delivery"]:
        answers = [server.post(body(delivery_id), token) for server in (graphql, bare)]
        if answers[0] != answers[1]:
            raise BenchError(f"the baseline answers {answers[1]} where the API answers "
                             f"{answers[0]} (id {delivery_id})")
        if answers[0][0] != 200 or "errors" in answers[0][1]:
            raise BenchError(f"the API answered {answers[0]} for delivery {delivery_id}")
    if ids and answers[0][1]["data"]["delivery"] is not None:
        raise BenchError("an unknown delivery id was found")
    for server in (graphql, bare):
        status, _ = server.post(body(ids[0]), "wrong-" + token)
        if status != 401:
            raise BenchError(f"{server.name} answered {status} to a wrong token, not 401")


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_seconds: float  # the server's process tree over the measured run
    postgres: ClusterCpu  # the PostgreSQL cluster over the measured run


def wrk(binary: str, script: Path, server: Server, seconds: float, warmup: float,
        postgres: Postgres | None = None) -> Load:
    """A warm-up run, then the measured one; 2 threads (the machine has 2 cores).

    The server's process tree and the PostgreSQL cluster are metered over the
    measured run only.
    """
    url = f"http://127.0.0.1:{server.port}/graphql"
    result: dict[str, int] = {}
    meter = Meter(postgres, server.proc.pid)
    for phase, duration in (("warm-up", warmup), ("measure", seconds)):
        if phase == "measure":
            meter.start()
        args = [binary, "-t", "2", "-c", str(CONNECTIONS), "-d", f"{max(duration, 1):.0f}s",
                "--timeout", "10s", "--latency", "-s", str(script), url]
        try:
            out = subprocess.run(args, capture_output=True, text=True,
                                 timeout=duration + 60).stdout
        except subprocess.TimeoutExpired:
            raise BenchError(f"wrk against {server.name} did not finish") from None
        lines = [ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")]
        if not lines:
            raise BenchError(f"wrk printed no summary against {server.name}: {out[-300:]!r}")
        result = json.loads(lines[-1].removeprefix("WRK_JSON "))
        if phase == "measure":
            spent = meter.stop()
        if phase == "warm-up":
            say(f"  {server.name}: warmed up ({result['requests']} requests)")
    errors = sum(result[k] for k in ("status_errors", "connect_errors", "read_errors",
                                     "write_errors", "timeouts"))
    if result["requests"] == 0 or errors > result["requests"] // 100:
        raise BenchError(f"{server.name} failed {errors} of {result['requests']} requests "
                         f"under load (log {server.log})")
    load = Load(result["requests"] / (result["duration_us"] / 1e6), result["p50_us"] / 1000,
                result["p99_us"] / 1000, result["requests"], errors, spent.process,
                spent.postgres)
    say(f"  {server.name}: {load.rps:,.0f} rps, p50 {load.p50_ms:.1f} ms, "
        f"p99 {load.p99_ms:.1f} ms ({load.requests} requests, {errors} errors)")
    return load


def new_token() -> str:
    return secrets.token_urlsafe(24)


def sample_ids(database_url: str, count: int) -> list[str]:
    """Random delivery ids of the served generation."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows: Sequence[Any] = conn.execute(text(
                "SELECT delivery_id FROM deliveries WHERE generation ="
                " (SELECT generation FROM generations WHERE status = 'active')"
                " ORDER BY random() LIMIT :n"), {"n": count}).scalars().all()
    finally:
        engine.dispose()
    if not rows:
        raise BenchError("the read model holds no deliveries to query")
    return [str(r) for r in rows]
