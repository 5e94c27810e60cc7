"""`query-api --workers 2`: two processes answer on one port and stop together on SIGTERM."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, wait_until

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'read.db'}",
           "EVENT_SOURCE": str(tmp_path / "events.jsonl")}
    (tmp_path / "events.jsonl").write_text("")
    subprocess.run([sys.executable, "-m", "projector.cli", "migrate"], env=env, cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "query_api.cli", "--port", str(port), "--workers", "2"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: _healthy(port), timeout=60)
        workers = wait_until(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid),
                             timeout=30)
        for _ in range(20):  # every connection is answered, whichever worker takes it
            assert _healthy(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode() if proc.stderr else ""
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
                f"/proc/{pid}/status").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_workers_below_one_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'read.db'}"}
    done = subprocess.run([sys.executable, "-m", "query_api.cli", "--workers", "0"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "query-api: error: --workers must be at least 1, not 0"
