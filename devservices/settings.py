"""The tool's settings, read from the environment once, and the paths derived from them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devservices.broker_config import DEFAULT_HEAP_OPTS
from devservices.errors import ServicesError

# The repository, as the wrapper named it (not symlink-resolved: a running broker is
# recognised by the server.properties path on its command line).
ROOT = Path(os.path.abspath(__file__)).parents[1]


@dataclass(frozen=True)
class Settings:
    root: Path
    services_dir: Path
    kafka_heap_opts: str
    kafka_start_timeout: float
    connect_heap_opts: str
    connect_start_timeout: float
    pg_start_timeout: float
    pg_bin: Path | None
    java: str
    mvn: str
    tmpdir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str], root: Path = ROOT) -> Settings:
        if env.get("JAVA"):
            java = env["JAVA"]
        elif env.get("JAVA_HOME") and os.access(Path(env["JAVA_HOME"], "bin", "java"), os.X_OK):
            java = str(Path(env["JAVA_HOME"], "bin", "java"))
        else:
            java = "java"
        return cls(
            root=root,
            services_dir=Path(env.get("SERVICES_DIR") or root / ".services").absolute(),
            kafka_heap_opts=env.get("KAFKA_HEAP_OPTS") or DEFAULT_HEAP_OPTS,
            kafka_start_timeout=_seconds(env, "KAFKA_START_TIMEOUT", 90),
            connect_heap_opts=env.get("CONNECT_HEAP_OPTS") or "-Xms128m -Xmx512m",
            connect_start_timeout=_seconds(env, "CONNECT_START_TIMEOUT", 180),
            pg_start_timeout=_seconds(env, "PG_START_TIMEOUT", 30),
            pg_bin=Path(env["PG_BIN"]) if env.get("PG_BIN") else None,
            java=java,
            mvn=env.get("MVN") or "mvn",
            tmpdir=Path(env.get("TMPDIR") or "/tmp"),
        )

    @property
    def state_file(self) -> Path:
        return self.services_dir / "state.env"

    @property
    def kafka_dir(self) -> Path:
        return self.services_dir / "kafka"

    @property
    def kafka_props(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def kafka_log(self) -> Path:
        return self.kafka_dir / "broker.log"

    @property
    def kafka_pom(self) -> Path:
        return self.root / "services" / "kafka" / "pom.xml"

    @property
    def kafka_log4j(self) -> Path:
        return self.root / "services" / "kafka" / "log4j2.yaml"

    @property
    def connect_dir(self) -> Path:
        return self.services_dir / "connect"

    @property
    def connect_props(self) -> Path:
        return self.connect_dir / "worker.properties"

    @property
    def connect_log(self) -> Path:
        return self.connect_dir / "connect.log"

    @property
    def connect_pom(self) -> Path:
        return self.root / "services" / "connect" / "pom.xml"

    @property
    def connect_log4j(self) -> Path:
        return self.root / "services" / "connect" / "log4j2.properties"

    @property
    def connector_config(self) -> Path:
        """The outbox connector's configuration: one file for the services, the tests
        and docker-compose.yml."""
        return self.root / "services" / "connect" / "outbox-connector.json"

    @property
    def outbox_ddl(self) -> Path:
        return self.root / "sql" / "outbox.sql"


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ServicesError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ServicesError(f"{name}={raw!r} must be positive")
    return value
