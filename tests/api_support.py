"""Shared pieces of the query API tests: projected read models, a client, a live server.

Read models are projected once per (backend, stream) per session with the real
projector (``projector migrate`` + ``run --until-caught-up`` over a JSON Lines
file) and only read afterwards; tests that write get their own database.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from query_api.app import create_app
from query_api.settings import Settings
from tests.helpers import ROOT, create_pg_database, projector_env, run_projector, wait_until

STREAMS = ROOT / "tests" / "streams"
BACKENDS = ("sqlite", "postgresql")


def project(db_url: str, stream: Path) -> None:
    env = projector_env(db_url, source=str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)


@pytest.fixture(scope="session")
def read_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, str], str]]:
    """``read_model(backend, stream_name)`` -> URL of a database holding that stream, projected."""
    cache: dict[tuple[str, str], str] = {}
    drops: list[Callable[[], None]] = []

    def get(backend: str, stream: str) -> str:
        key = (backend, stream)
        if key not in cache:
            if backend == "sqlite":
                path = tmp_path_factory.mktemp("rm") / "read_model.db"
                url = f"sqlite:///{path}"
            else:
                url, drop = create_pg_database()
                drops.append(drop)
            project(url, STREAMS / stream)
            cache[key] = url
        return cache[key]

    yield get
    for drop in drops:
        drop()


def settings_for(db_url: str, stream: Path | str | None = None, **overrides: Any) -> Settings:
    return Settings(
        database_url=db_url,
        event_source=str(stream) if stream is not None else "kafka",
        kafka_bootstrap_servers=overrides.pop("kafka_bootstrap_servers", "127.0.0.1:1"),
        end_offsets_timeout_seconds=overrides.pop("end_offsets_timeout_seconds", 1.0),
        **overrides,
    )


@contextlib.contextmanager
def client_for(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def gql(client: TestClient, query: str, variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, status: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = client.post("/graphql", json=body, headers=headers or {})
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def data_of(result: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in result, result.get("errors")
    data: dict[str, Any] = result["data"]
    return data


def error_messages(result: dict[str, Any]) -> list[str]:
    assert result.get("errors"), f"expected GraphQL errors, got {result}"
    return [e["message"] for e in result["errors"]]


def normalise_topics(value: Any) -> Any:
    """Stream paths are absolute; snapshots hold them relative to tests/streams."""
    raw = json.dumps(value, ensure_ascii=False, sort_keys=False)
    raw = raw.replace(str(STREAMS.resolve()) + "/", "streams/")
    return json.loads(raw)


def copy_stream(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copy(STREAMS / name, target)
    return target


# -- a real server, for WebSockets and HTTP end to end ----------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def live_server(settings: Settings) -> Iterator[tuple[str, Any]]:
    """uvicorn serving ``create_app(settings)`` in a thread; yields (base URL, app)."""
    import uvicorn

    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            ws="websockets-sansio", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=20, message="uvicorn to start")
        yield f"127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop"
