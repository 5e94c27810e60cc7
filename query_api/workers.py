"""`query-api --workers N`: N server processes sharing one listening socket.

One Python process serves at most one core: GraphQL parsing, validation and
resolving are CPU work under one GIL. The parent binds the address once, then
forks N children; each builds its own app (its own engine, pool and event loops:
nothing that holds a connection or a thread crosses the fork) and accepts on the
inherited socket, so the kernel hands each new connection to a worker that is
waiting for one. The parent only supervises: SIGTERM or SIGINT is passed on to
every worker, and it exits once they all have (1 if one of them failed).

Limits such as QUERY_API_DB_CONCURRENCY hold per worker, so N workers open up to
N times as many connections.
"""

from __future__ import annotations

import os
import signal
import socket
from types import FrameType
from typing import Any

from query_api.settings import Settings


def serve(settings: Settings, workers: int, uvicorn_options: dict[str, Any]) -> int:
    """Serve with ``workers`` forked processes; the exit code for ``main``."""
    sock = socket.create_server((settings.host, settings.port), reuse_port=False,
                                backlog=2048)
    sock.set_inheritable(True)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                code = _worker(settings, sock, uvicorn_options)
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    failed = False
    remaining = set(children)
    while remaining:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid in remaining:
            remaining.discard(pid)
            if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM, -signal.SIGINT):
                failed = True
            if remaining and failed:  # one worker gave up: stop the others too
                forward(signal.SIGTERM, None)
    return 1 if failed else 0


def _worker(settings: Settings, sock: socket.socket, options: dict[str, Any]) -> int:
    import uvicorn

    from query_api.app import create_app

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own handlers in run()
    config = uvicorn.Config(create_app(settings), **options)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1
