"""What the tool knows about the services it started: ports, pids, paths.

Kept in ``state.env`` as shell assignments (``KEY=value``, shell-quoted), written by
this tool only. The file stays sourceable by a shell and readable from the former
bash script's output.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, fields
from pathlib import Path

from devservices.errors import ServicesError

HEADER = "# written by scripts/services; do not edit"


@dataclass
class State:
    kafka_port: int | None = None
    kafka_controller_port: int | None = None
    kafka_pid: int | None = None
    kafka_lib: Path | None = None
    pg_port: int | None = None
    pg_dir: Path | None = None
    pg_socket_dir: Path | None = None
    pg_bin_dir: Path | None = None
    connect_port: int | None = None
    connect_pid: int | None = None


_INT_FIELDS = {"kafka_port", "kafka_controller_port", "kafka_pid", "pg_port", "connect_port",
               "connect_pid"}


def parse_state(text: str) -> State:
    """The state in ``text``; unknown keys are ignored, a number that is not one is unset."""
    state = State()
    names = {f.name.upper(): f.name for f in fields(State)}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or key not in names:
            continue
        try:
            value = "".join(shlex.split(raw))
        except ValueError as exc:
            raise ServicesError(f"state file line {number} is not shell syntax ({exc})") from None
        name = names[key]
        if not value:
            continue
        if name in _INT_FIELDS:
            if value.isdigit():
                setattr(state, name, int(value))
        else:
            setattr(state, name, Path(value))
    return state


def render_state(state: State) -> str:
    lines = [HEADER]
    for f in fields(State):
        value = getattr(state, f.name)
        lines.append(f"{f.name.upper()}={shlex.quote('' if value is None else str(value))}")
    return "\n".join(lines) + "\n"


def load_state(path: Path) -> State:
    try:
        return parse_state(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return State()


def save_state(path: Path, state: State) -> None:
    """Replace the file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(render_state(state), encoding="utf-8")
    os.replace(tmp, path)
