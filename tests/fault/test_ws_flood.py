"""A WebSocket flood against a real ``query-api`` process (issue #20), on SQLite.

Tried as a hostile client would before the limits: 300 sockets of 100
``deliveryUpdated`` subscriptions were all accepted, the API grew by 782 MB and a
plain HTTP query got no answer within 30 s. Here, against ``python -m query_api.cli``:

1. one socket sends thousands of subscriptions: the first 100 run, every other one
   gets its own ``error`` message (``QUERY_API_WS_MAX_OPERATIONS_PER_SOCKET``);
2. a greedy client (one token) opens more sockets than a client may (429) and
   subscribes past its share (``..._PER_CLIENT``);
3. hundreds of sockets of a hundred subscriptions, from many tokens, go past the
   server's bound on subscriptions, then past its bound on sockets (503).

Throughout, a thread asks a plain HTTP query every 0.2 s: each must be answered
within a second. The server's resident memory (``/proc/<pid>/status``) is read
before and at the height of the flood, and after the sockets are closed. Every
refusal is counted twice: by the client (the ``error`` messages, the HTTP statuses)
and by the server (``query_api_websocket_refusals_total``), and both must equal
what the limits say. The figures are printed (docs/api-limits.md keeps them).

Reduced size by default (smaller limits, the same shape); ``--fault-full`` runs the
issue's size: 5,000 subscriptions on one socket, 300 sockets of 100 with the
default subscription bounds (10,000 on the server, 1,000 per client).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.api_support import STREAMS, free_port, project
from tests.helpers import ROOT, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.fault]

PER_SOCKET = 100  # QUERY_API_WS_MAX_OPERATIONS_PER_SOCKET's default
SUBSCRIPTIONS = (
    'subscription { deliveryUpdated(id: "D-1001") { id state } }',
    'subscription { deliveriesUpdated(filter: {states: [DELIVERED]}) { id state } }',
)
#: Load average per core above which the machine counts as busy with other work.
LOADED = 1.5
PROBE = json.dumps({"query": '{ delivery(id: "D-1001") { id state } }'}).encode()


@dataclass(frozen=True)
class Size:
    one_socket: int          # subscriptions sent on the single socket
    max_sockets: int         # QUERY_API_WS_MAX_SOCKETS
    sockets_per_client: int  # QUERY_API_WS_MAX_SOCKETS_PER_CLIENT
    max_subscriptions: int   # QUERY_API_WS_MAX_SUBSCRIPTIONS
    per_client: int          # QUERY_API_WS_MAX_SUBSCRIPTIONS_PER_CLIENT
    crowd: int               # sockets of PER_SOCKET subscriptions in phase 3
    crowd_tokens: int        # tokens they come from

    def env(self) -> dict[str, str]:
        return {"QUERY_API_WS_MAX_SOCKETS": str(self.max_sockets),
                "QUERY_API_WS_MAX_SOCKETS_PER_CLIENT": str(self.sockets_per_client),
                "QUERY_API_WS_MAX_SUBSCRIPTIONS": str(self.max_subscriptions),
                "QUERY_API_WS_MAX_SUBSCRIPTIONS_PER_CLIENT": str(self.per_client)}


REDUCED = Size(one_socket=1000, max_sockets=60, sockets_per_client=20,
               max_subscriptions=2000, per_client=500, crowd=30, crowd_tokens=10)
FULL = Size(one_socket=5000, max_sockets=450, sockets_per_client=100,
            max_subscriptions=10_000, per_client=1000, crowd=300, crowd_tokens=30)


# -- the server process -------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _http(port: int, method: str, path: str, body: bytes | None = None,
          token: str = "probe", timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = _http(port, "GET", "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name.startswith("query_api_websocket"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _gauge(metrics: dict[Any, float], name: str) -> float:
    return metrics[(name, ())]


def _refused(metrics: dict[Any, float], what: str, limit: str) -> int:
    key = ("query_api_websocket_refusals_total", (("limit", limit), ("what", what)))
    return int(metrics[key])


#: The HTTP prober, in a process of its own: in the flooding client's process it would
#: wait for that process's GIL, and measure the client instead of the server.
_PROBER = """
import http.client, signal, sys, time
port, body = int(sys.argv[1]), sys.argv[2].encode()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.2)
    start = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/graphql", body=body, headers={
            "Authorization": "Bearer probe", "Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        ok = response.status == 200 and b'"D-1001"' in answer
        note = "" if ok else f" {response.status} {answer[:200]!r}"
        conn.close()
    except OSError as exc:
        note = f" {exc!r}"
    print(f"{time.monotonic() - start:.4f}{note}", flush=True)
"""


class _Prober:
    """Asks a plain HTTP query every 0.2 s until stopped; keeps each answer's latency."""

    def __init__(self, port: int, out: Path) -> None:
        self._port = port
        self._out = out
        self._proc: subprocess.Popen[bytes] | None = None
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def start(self) -> None:
        with self._out.open("wb") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _PROBER, str(self._port), PROBE.decode()], stdout=out)

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        self._proc.wait(timeout=30)
        self._proc = None
        for line in self._out.read_text().splitlines():
            seconds, _, note = line.partition(" ")
            self.latencies.append(float(seconds))
            if note:
                self.failures.append(note)


# -- the client side ----------------------------------------------------------------------
class _Socket:
    """One graphql-transport-ws client: counts the ``error`` messages it is sent."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.errors: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("type") == "error":
                    self.errors.append(message["payload"][0]["message"])
                elif message.get("type") == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
        except Exception:  # noqa: BLE001 - the socket closed: the counts say what came
            pass

    async def subscribe(self, prefix: str, n: int) -> None:
        for i in range(n):
            await self.ws.send(json.dumps({
                "id": f"{prefix}-{i}", "type": "subscribe",
                "payload": {"query": SUBSCRIPTIONS[i % 2]}}))

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def _open(port: int, token: str) -> _Socket | int:
    """An acknowledged socket, or the HTTP status that refused it."""
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/graphql",
                           subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           additional_headers={"Authorization": f"Bearer {token}"},
                           open_timeout=30, max_queue=None, ping_interval=None,
                           close_timeout=5)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
    assert ack == {"type": "connection_ack"}, ack
    return _Socket(ws)


async def _settle(sockets: list[_Socket], errors: int, timeout: float = 120) -> None:
    """Until the sockets have been sent ``errors`` error messages in all (bounded)."""
    deadline = time.monotonic() + timeout
    while sum(len(s.errors) for s in sockets) < errors:
        assert time.monotonic() < deadline, (sum(len(s.errors) for s in sockets), errors)
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # and no more than that
    assert sum(len(s.errors) for s in sockets) == errors


async def _until_running(port: int, operations: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        running = _gauge(await asyncio.to_thread(_metrics, port),
                         "query_api_websocket_operations")
        if running == operations:
            return
        assert time.monotonic() < deadline, (running, operations)
        await asyncio.sleep(0.5)


@dataclass
class Figures:
    rss_before: float = 0.0
    rss_peak: float = 0.0
    rss_after: float = 0.0
    asked: int = 0
    held: int = 0
    sockets_asked: int = 0
    sockets_held: int = 0
    seconds: float = 0.0


async def _flood(port: int, size: Size, pid: int, figures: Figures) -> dict[Any, float]:
    started = time.monotonic()
    # 1. one socket, thousands of subscriptions: PER_SOCKET run, every other one refused
    lone = await _open(port, "lone")
    assert isinstance(lone, _Socket)
    await lone.subscribe("lone", size.one_socket)
    await _settle([lone], size.one_socket - PER_SOCKET)
    assert {e.split(",")[0] for e in lone.errors} == {
        f"this socket runs {PER_SOCKET} operations"}, lone.errors[:3]
    await _until_running(port, PER_SOCKET)
    await lone.close()
    await _until_running(port, 0)

    # 2. a greedy client: more sockets than one client may, more subscriptions than its share
    greedy = [await _open(port, "greedy") for _ in range(size.sockets_per_client + 5)]
    greedy_open = [s for s in greedy if isinstance(s, _Socket)]
    assert [s for s in greedy if not isinstance(s, _Socket)] == [429] * 5
    busy = greedy_open[: size.per_client // PER_SOCKET + 2]
    for n, sock in enumerate(busy):
        await sock.subscribe(f"greedy{n}", PER_SOCKET)
    await _settle(busy, 2 * PER_SOCKET)
    await _until_running(port, size.per_client)

    # 3. the crowd: sockets of PER_SOCKET subscriptions from many tokens, past the server's
    # bound on subscriptions, then past its bound on sockets
    crowd: list[_Socket] = []
    for n in range(size.crowd):
        sock = await _open(port, f"crowd-{n % size.crowd_tokens}")
        assert isinstance(sock, _Socket), sock
        crowd.append(sock)
        await sock.subscribe(f"crowd{n}", PER_SOCKET)
    server_refused = size.per_client + size.crowd * PER_SOCKET - size.max_subscriptions
    assert server_refused > 0
    await _settle(crowd, server_refused)
    await _until_running(port, size.max_subscriptions)
    open_now = len(greedy_open) + len(crowd)
    extra = [await _open(port, f"extra-{n}") for n in range(size.max_sockets - open_now + 5)]
    extra_open = [s for s in extra if isinstance(s, _Socket)]
    assert [s for s in extra if not isinstance(s, _Socket)] == [503] * 5
    figures.rss_peak = await asyncio.to_thread(_rss_mb, pid)
    at_peak = await asyncio.to_thread(_metrics, port)
    figures.seconds = time.monotonic() - started
    figures.asked = size.one_socket + len(busy) * PER_SOCKET + size.crowd * PER_SOCKET
    figures.held = int(_gauge(at_peak, "query_api_websocket_operations"))
    figures.sockets_asked = 1 + len(greedy) + len(crowd) + len(extra)
    figures.sockets_held = int(_gauge(at_peak, "query_api_websockets"))

    for sock in greedy_open + crowd + extra_open:
        await sock.close()
    await _until_running(port, 0)
    return at_peak


def test_a_websocket_flood_is_refused_past_the_limits_and_http_still_answers(
    tmp_path: Path, full_size: bool
) -> None:
    size = FULL if full_size else REDUCED
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    stream = STREAMS / "api_happy.jsonl"
    project(url, stream)
    port = free_port()
    tokens = ["probe", "lone", "greedy"] + [f"crowd-{n}" for n in range(size.crowd_tokens)] + [
        f"extra-{n}" for n in range(size.max_sockets)]
    env = {**os.environ, "DATABASE_URL": url, "EVENT_SOURCE": str(stream),
           "QUERY_API_TOKENS": ",".join(tokens), **size.env()}
    log = tmp_path / "query-api.log"  # a file, not a pipe: a full pipe would stall the server
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "query_api.cli", "--port", str(port)],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    prober = _Prober(port, tmp_path / "probe.txt")
    figures = Figures()
    try:
        wait_until(lambda: _up(port), timeout=60, message="query-api to start")
        # warm: a query, a socket with a subscription, closed (first-use costs are not the flood's)
        async def warm() -> None:
            sock = await _open(port, "lone")
            assert isinstance(sock, _Socket)
            await sock.subscribe("warm", 2)
            await _until_running(port, 2, timeout=20)
            assert not sock.errors, sock.errors
            await sock.close()
            await _until_running(port, 0)

        asyncio.run(warm())
        figures.rss_before = _rss_mb(proc.pid)
        load = os.getloadavg()[0] / (os.cpu_count() or 1)  # other work on the machine
        prober.start()
        at_peak = asyncio.run(_flood(port, size, proc.pid, figures))
        prober.stop()
        figures.rss_after = _rss_mb(proc.pid)
        assert proc.poll() is None, "query-api died during the flood"
    finally:
        prober.stop()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    stderr = log.read_bytes()

    growth = figures.rss_peak - figures.rss_before
    slowest = max(prober.latencies)
    print(f"\nflood ({'full' if full_size else 'reduced'} size, SQLite, one query-api process):"
          f" {figures.asked} subscriptions asked, {figures.held} held at the peak;"
          f" {figures.sockets_asked} sockets asked, {figures.sockets_held} held;"
          f" RSS {figures.rss_before:.0f} MB before, {figures.rss_peak:.0f} MB at the peak"
          f" (+{growth:.0f} MB, {growth * 1024 / max(figures.held, 1):.1f} KB per held"
          f" subscription), {figures.rss_after:.0f} MB after closing;"
          f" {len(prober.latencies)} HTTP queries during {figures.seconds:.0f} s, slowest"
          f" {slowest * 1000:.0f} ms, median"
          f" {sorted(prober.latencies)[len(prober.latencies) // 2] * 1000:.0f} ms;"
          f" load average per core {load:.1f} when it began")

    # every refusal as the limits say, counted alike by the server
    assert _refused(at_peak, "operation", "socket") == size.one_socket - PER_SOCKET
    assert _refused(at_peak, "operation", "client") == 2 * PER_SOCKET
    assert _refused(at_peak, "operation", "server") == (
        size.per_client + size.crowd * PER_SOCKET - size.max_subscriptions)
    assert _refused(at_peak, "socket", "client") == 5
    assert _refused(at_peak, "socket", "server") == 5
    assert figures.held == size.max_subscriptions
    assert figures.sockets_held == size.max_sockets
    # the memory held is bounded by the limits, not by what was asked
    assert growth < 40 * figures.held / 1024 + 50, figures
    # plain HTTP kept answering, each within a second
    assert not prober.failures, prober.failures[:5]
    assert len(prober.latencies) >= figures.seconds / 0.5, len(prober.latencies)
    assert b"Traceback" not in stderr, stderr.decode()[-3000:]
    assert stderr.count(b"client error") <= figures.sockets_asked  # once per socket at most
    if full_size and slowest >= 1.0:  # known, docs/api-limits.md: the figures say how far
        pytest.xfail(f"at full size the slowest HTTP query took {slowest:.1f} s (bound 1 s)")
    # The bound is the server's; on a machine already busy with other work (the 2 cores
    # of a shared CI box) the prober and the client wait for CPU too: 3 s then (before
    # subscriptions ran on the heavy lane, this flood held HTTP for 6 s on a quiet machine).
    bound = 1.0 if load < LOADED else 3.0
    assert slowest < bound, (load, sorted(prober.latencies)[-10:])


def _up(port: int) -> bool:
    try:
        return _http(port, "GET", "/healthz", timeout=2)[0] == 200
    except OSError:
        return False
