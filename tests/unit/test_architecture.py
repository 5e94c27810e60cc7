"""The shape of the house, checked: no import cycles, and each side imports only what it may.

Every import counts, also one inside a function: a lazy import hides a cycle
from Python at start-up, not from a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit

PACKAGES = ("schema", "producer", "projector", "query_api", "benchmarks", "devservices")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> Iterator[str]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _resolve(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield from _resolve(submodule if submodule in known else base, known)


def _resolve(name: str, known: set[str]) -> Iterator[str]:
    while name and name not in known:
        name = name.rpartition(".")[0]
    if name:
        yield name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {target for target in _imports(path, name, known) if target != name}
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "projector.store.sql" in graph["projector.store"]
    assert "schema.events" in graph["schema.fold"]
    assert len(graph) > 40


def test_no_import_cycles_among_the_projects_modules() -> None:
    # A package's __init__ re-exporting its own modules is not a cycle of concepts.
    graph = {
        name: {t for t in targets if not (name.startswith(t + ".") and _is_package(t))}
        for name, targets in _graph().items()
    }
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").is_file()


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(("package", "forbidden"), [
    ("schema", ("projector", "query_api")),
    ("query_api", ("projector",)),
    ("projector", ("query_api",)),
    ("producer", ("projector", "query_api")),
    ("schema", ("producer",)),
    ("query_api", ("producer",)),
])
def test_each_side_imports_only_the_contract(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, targets in _graph().items() if name.split(".")[0] == package
        for target in targets if target.split(".")[0] in forbidden
    )
    assert offenders == []


def test_the_producer_side_is_read_and_only_the_projectors_command_line_uses_it() -> None:
    graph = _graph()
    assert "producer.errors" in graph["producer.outbox"]
    assert "producer.produce" in graph["producer.simulate"]
    users = sorted(
        name for name, targets in graph.items()
        if name.split(".")[0] == "projector" and any(t.split(".")[0] == "producer" for t in targets)
    )
    assert users and all(u.startswith(("projector.cli", "projector.commands")) for u in users), users


def _imports_kafka(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            if any(alias.name.split(".")[0] == "kafka" for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and not node.level:
            if (node.module or "").split(".")[0] == "kafka":
                return True
    return False


def test_one_module_builds_the_kafka_clients_of_every_side() -> None:
    sides = ("schema", "producer", "projector", "query_api")
    importers = sorted(
        name for name, path in _modules().items()
        if name.split(".")[0] in sides and _imports_kafka(path)
    )
    assert importers == ["schema.kafka_clients"]
    graph = _graph()
    for user in ("projector.sources.kafka", "query_api.offsets", "producer.produce"):
        assert "schema.kafka_clients" in graph[user], user


def test_the_fold_imports_neither_a_database_nor_a_broker() -> None:
    path = ROOT / "schema" / "fold.py"
    imported = {
        alias.name.split(".")[0] if isinstance(node, ast.Import) else (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= {"__future__", "collections", "dataclasses", "datetime", "typing", "schema"}


#: Modules of ``projector`` that may speak SQL: the store, the wiring that opens it, and
#: the analytics export, a package of its own with its own engines (DuckDB, the Iceberg
#: catalogue) beside its read of the read model.
_SQL_ALLOWED = ("projector.store", "projector.bootstrap", "projector.analytics")
#: Calls that run a statement or open a connection to run one.
_SQL_CALLS = {"execute", "executemany", "connect", "begin", "scalar", "scalars",
              "execution_options", "cursor"}


def _sql_use(path: Path) -> Iterator[str]:
    """What in a module builds or runs SQL: an import of SQLAlchemy other than the
    ``Engine`` type and its error classes, of the tables or of schema.db's queries, or a
    call that runs a statement."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy" or alias.name == "schema.tables":
                    yield f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module == "sqlalchemy" and names - {"Engine"}:
                yield f"from sqlalchemy import {sorted(names - {'Engine'})}"
            elif module.startswith("sqlalchemy.") and module != "sqlalchemy.exc":
                yield f"from {module}"
            elif module == "schema.tables" or (module == "schema" and "tables" in names):
                yield "schema.tables"
            elif module == "schema.db" and names - {"redacted"}:
                yield f"from schema.db import {sorted(names - {'redacted'})}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in _SQL_CALLS:
                yield f".{node.func.attr}() at line {node.lineno}"


def test_only_the_store_speaks_sql_within_the_projector() -> None:
    offenders = sorted(
        f"{name}: {use}"
        for name, path in _modules().items()
        if name.split(".")[0] == "projector" and not name.startswith(_SQL_ALLOWED)
        for use in _sql_use(path)
    )
    assert offenders == []


def test_the_sql_finder_finds_sql(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "from sqlalchemy import Engine, select\nfrom schema.tables import deliveries\n"
        "def f(engine):\n    with engine.connect() as conn:\n        conn.execute(select(1))\n",
        encoding="utf-8",
    )
    assert list(_sql_use(path)) == [
        "from sqlalchemy import ['select']", "schema.tables", ".connect() at line 4",
        ".execute() at line 5",
    ]



def test_the_rebuild_modes_run_on_their_context_and_speak_no_sql() -> None:
    """Each mode asks ``projector.rebuild.context`` for its engine, source and projector,
    and the store for every read and write: none imports SQLAlchemy, the bootstrap, a
    source adapter or the loop's ``Projector`` itself."""
    graph = _graph()
    modes = sorted(
        n for n in graph if n.startswith("projector.rebuild.") and n != "projector.rebuild.context"
    )
    assert {"projector.rebuild.new_generation", "projector.rebuild.in_place",
            "projector.rebuild.verify"} <= set(modes)
    offenders = []
    for name in modes:
        for node in ast.walk(ast.parse(_modules()[name].read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            names = {alias.name for alias in node.names}
            if module.split(".")[0] == "sqlalchemy" or any(
                n.split(".")[0] == "sqlalchemy" for n in names
            ):
                offenders.append(f"{name}: sqlalchemy")
            if module == "projector.loop" and "Projector" in names:
                offenders.append(f"{name}: builds its own Projector")
        offenders += [f"{name}: {t}" for t in sorted(graph[name])
                      if t == "projector.bootstrap" or t in ("projector.sources",
                                                             "projector.sources.kafka",
                                                             "projector.sources.file")]
    assert offenders == []


def test_the_loop_depends_on_its_port_and_parses_its_own_batch() -> None:
    """The loop sees the store through ``ProjectionStore`` (``projector.store.base``) only,
    and parses with ``projector.batch``, which knows no store."""
    graph = _graph()
    assert {t for t in graph["projector.loop"] if t.startswith("projector.store")} == {
        "projector.store.base"
    }
    assert "projector.batch" in graph["projector.loop"]
    assert not any(t.startswith("projector.store") for t in graph["projector.batch"])
