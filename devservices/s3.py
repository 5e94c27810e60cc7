"""A local S3-compatible server for the ``s3://`` warehouse of the analytics export:
moto's standalone server (``moto[server]`` from PyPI), on a free port of 127.0.0.1.

Started on demand by the tests (``S3Server.start``), not by ``up``: only the
analytics tests need it, and it keeps its buckets in memory, so there is nothing
to keep between runs. A server that does not answer within ``timeout`` seconds is a
``ServicesError``: a test that needs it fails, it is never skipped.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devservices._proc import free_ports, log_tail, terminate
from devservices.errors import ServicesError

#: moto accepts any key pair; these make the requests signed like real ones.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, directory: Path, timeout: float = 30.0) -> S3Server:
        directory.mkdir(parents=True, exist_ok=True)
        port = free_ports(1)[0]
        log = directory / "s3.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        server = cls(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + timeout
        while not server.answers():
            if process.poll() is not None or time.monotonic() >= deadline:
                server.stop()
                log_tail(log, "S3 server (moto)", 20)
                raise ServicesError(
                    f"the S3 server (moto) did not answer on {server.endpoint} within "
                    f"{timeout:.0f} s (log: {log})"
                )
            time.sleep(0.2)
        return server

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2) as response:
                return int(response.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            if int(response.status) >= 300:
                raise ServicesError(f"the S3 server refused bucket {name}: {response.status}")

    def stop(self) -> None:
        if self.process.poll() is None:
            terminate(self.process.pid, "the S3 server", grace=10)
        self.process.wait(timeout=10)
