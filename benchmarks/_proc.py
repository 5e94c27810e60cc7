"""Child processes of a benchmark run: started in their own session, measured, always stopped.

Every process goes through one ``Processes`` registry, so an error or Ctrl-C anywhere
still stops everything the run started (SIGTERM to its process group, then SIGKILL),
and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class BenchError(Exception):
    """A benchmark step failed; the message is one line for the user."""


def say(message: str) -> None:
    """Progress for the user, on stderr (stdout holds the table and the JSON line)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; BenchError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def command(name: str) -> list[str]:
    """A console script of the project, run from this checkout.

    ``python -m`` with the checkout as working directory runs the code beside these
    benchmarks, whatever an installed console script would import.
    """
    module = {"projector": "projector.cli", "query-api": "query_api.cli"}[name]
    return [sys.executable, "-m", module]


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class Finished:
    returncode: int
    seconds: float
    peak_rss_mb: float
    log: Path
    cpu_seconds: float = 0.0  # utime + stime of the child and its reaped descendants


class Processes:
    """The run's child processes: started in new sessions, each with a log file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._live: list[subprocess.Popen[bytes]] = []
        self._count = 0

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> tuple[
            subprocess.Popen[bytes], Path]:
        self._count += 1
        log = self.log_dir / f"{self._count:02d}-{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                list(args), env=dict(env), cwd=ROOT, stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._live.append(proc)
        return proc, log

    def run(self, name: str, args: Sequence[str], env: Mapping[str, str],
            timeout: float) -> Finished:
        """Run to completion: wall time from spawn to exit and the child's own peak RSS.

        ``os.wait4`` gives the rusage of exactly this child (ru_maxrss, KiB on Linux;
        ru_utime + ru_stime, the child and the descendants it waited for), so nothing
        else the run started is counted.
        """
        start = time.perf_counter()
        proc, log = self.start(name, args, env)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                seconds = time.perf_counter() - start
                proc.returncode = os.waitstatus_to_exitcode(status)
                self._live.remove(proc)
                return Finished(proc.returncode, seconds, usage.ru_maxrss / 1024, log,
                                usage.ru_utime + usage.ru_stime)
            if time.monotonic() > deadline:
                self.stop(proc)
                raise BenchError(f"{name} did not finish within {timeout:.0f}s (log {log})")
            time.sleep(0.02)

    def check(self, name: str, args: Sequence[str], env: Mapping[str, str],
              timeout: float) -> Finished:
        """Like ``run``, but a non-zero exit is a BenchError with the log's last lines."""
        done = self.run(name, args, env, timeout)
        if done.returncode != 0:
            raise BenchError(
                f"{name} exited {done.returncode} (log {done.log}):\n{tail(done.log)}"
            )
        return done

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 15.0) -> int | None:
        """SIGTERM to the child's process group, SIGKILL after ``grace`` seconds."""
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc in self._live:
            self._live.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(reversed(self._live)):
            try:
                self.stop(proc)
            except (OSError, subprocess.TimeoutExpired) as exc:
                say(f"could not stop pid {proc.pid}: {exc}")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # its own session: the group id is its pid
    except ProcessLookupError:
        pass
