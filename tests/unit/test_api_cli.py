"""query_api.cli: help, one-line errors, refusals to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit


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
