"""A running projector and API over a JSON Lines stream, and a headless Chromium.

The stream is the seeded simulator's plus one delivery with an unknown event type;
what the page must show is computed from the same bytes by the pure fold
(``tests.helpers.expected_rows``), not read back from the API under test.
Screenshots go to ``ARTIFACTS`` (git-ignored), printed by the tests that write them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from producer.simulate import SimulationConfig, encode, simulate
from tests.api_support import free_port
from tests.browser.cdp import Browser, Page, chromium_path
from tests.helpers import ROOT, expected_rows, make_event, projector_env, run_projector, wait_until

ARTIFACTS = ROOT / ".artifacts" / "browser"
TOKEN = "browser-test-token"
#: The delivery whose history holds an event type outside the catalogue.
ODD_DELIVERY = "D-900001"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


def _stream() -> list[bytes]:
    events = simulate(SimulationConfig(deliveries=60, seed=7))
    odd = [
        make_event("DeliveryCreated", ODD_DELIVERY, "2026-11-25T23:50:00Z", sequence=1,
                   data={"orderId": "O-900001", "shopId": "S-001"}),
        make_event("DeliveryRiderAssigned", ODD_DELIVERY, "2026-11-25T23:51:00Z", sequence=2,
                   data={"riderId": "R-001"}),
        make_event("DeliveryRouteOptimised", ODD_DELIVERY, "2026-11-25T23:52:00Z", sequence=3,
                   data={"km": 3.2}),
        # Published before the pick-up it follows in fold order: the timeline must sort.
        make_event("DeliveryCompleted", ODD_DELIVERY, "2026-11-25T23:58:00Z", sequence=5),
        make_event("DeliveryPickedUp", ODD_DELIVERY, "2026-11-25T23:54:00Z", sequence=4),
    ]
    return [encode(e) for e in events] + [json.dumps(e).encode() for e in odd]


@dataclass
class Stack:
    """The processes under test and what the page should show."""

    stream: Path
    db_url: str
    env: dict[str, str]
    url: str
    port: int
    token_url: str
    lines: list[bytes]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def expected(self) -> dict[str, dict[str, Any]]:
        return expected_rows(self.lines)

    def append(self, *events: dict[str, Any]) -> None:
        data = [json.dumps(e).encode() for e in events]
        with self.stream.open("ab") as fh:
            fh.write(b"".join(line + b"\n" for line in data))
        self.lines.extend(data)

    def start_api(self, name: str, port: int, **extra: str) -> None:
        env = {**self.env, **extra}
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "query_api.cli", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30,
                   message=f"query-api on port {port}")

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def caught_up(self) -> bool:
        status = graphql(self.url, "{ projectionStatus { partitions { nextOffset } } }")
        partitions = status["projectionStatus"]["partitions"]
        return bool(partitions) and partitions[0]["nextOffset"] == len(self.lines)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def graphql(base: str, query: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    assert not body.get("errors"), body
    return body["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser-stack")
    stream = tmp / "stream.jsonl"
    lines = _stream()
    stream.write_bytes(b"".join(line + b"\n" for line in lines))
    db_url = f"sqlite:///{tmp / 'read_model.db'}"
    env = projector_env(db_url, str(stream), PROJECTOR_BATCH_MAX_WAIT_MS="50",
                        QUERY_API_ENV="development")
    env.pop("QUERY_API_TOKENS", None)
    env.pop("QUERY_API_UI", None)
    run_projector(["migrate"], env)
    port, token_port = free_port(), free_port()
    built = Stack(stream=stream, db_url=db_url, env=env, url=f"http://127.0.0.1:{port}",
                  port=port, token_url=f"http://127.0.0.1:{token_port}", lines=lines)
    try:
        built.processes["projector"] = subprocess.Popen(
            [sys.executable, "-m", "projector.cli", "run"], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        built.start_api("api", port)
        built.start_api("api-with-tokens", token_port, QUERY_API_TOKENS=TOKEN)
        wait_until(built.caught_up, timeout=60, message="the projector to catch up")
        yield built
    finally:
        for name in list(built.processes):
            built.stop(name)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        executable = chromium_path()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)  # never a skip: CI must have the browser
    started = Browser(executable)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page()
    try:
        yield opened
        assert not opened.problems, f"the page reported: {opened.problems}"
    finally:
        opened.close()


def screenshot(page: Page, name: str) -> Path:
    path = page.screenshot(ARTIFACTS / name)
    print(f"screenshot: {path}")
    return path
