"""`projector rebuild` / `verify` with the JSON Lines file source (no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.simulate import SimulationConfig, encode, simulate
from tests.helpers import expected_rows, projector_env, run_projector, table_rows
from tests.integration._rebuild_support import gens, row_counts_by_generation

pytestmark = pytest.mark.integration


@pytest.fixture
def file_stream(migrated_url: str, tmp_path: Path) -> tuple[dict[str, str], list[bytes]]:
    values = [encode(e) for e in simulate(SimulationConfig(deliveries=80, seed=3))]
    values.append(b"not json at all")
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(values) + b"\n")
    env = projector_env(migrated_url, str(path))
    run_projector(["run", "--until-caught-up"], env)
    return env, values


def test_rebuild_and_verify_from_a_file(file_stream: tuple[dict[str, str], list[bytes]],
                                        migrated_url: str) -> None:
    env, values = file_stream
    proc = run_projector(["rebuild", "--json"], env)
    summary = json.loads(proc.stdout)
    assert summary["generation"] == 2 and summary["dead_letters"] == 1
    assert table_rows(migrated_url, 2) == expected_rows(values, generation=2)
    assert json.loads(run_projector(["verify", "--json"], env).stdout)["differences"] == 0
    assert gens(migrated_url) == {1: ("retired", "live"), 2: ("active", "rebuild")}
    assert set(row_counts_by_generation(migrated_url)) == {2}


def test_time_spec_on_a_file_uses_occurrence_time(
    file_stream: tuple[dict[str, str], list[bytes]], migrated_url: str
) -> None:
    env, values = file_stream
    cut = "2026-11-25T06:00:00Z"
    run_projector(["rebuild", "--from-offset", "@" + cut], env)
    first = next(i for i, v in enumerate(values[:-1])
                 if json.loads(v)["occurrenceDateTime"] >= "2026-11-25T06:00:00")
    assert table_rows(migrated_url, 2) == expected_rows(values[first:], generation=2)


def test_a_spec_past_every_end_is_refused_unless_allowed(
    file_stream: tuple[dict[str, str], list[bytes]], migrated_url: str
) -> None:
    """A mistyped year in @TIME must not swap the read model for an empty one."""
    env, values = file_stream
    before = table_rows(migrated_url, 1)
    proc = run_projector(["rebuild", "--from-offset", "@2099-01-01T00:00:00Z"], env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("projector: error: --from-offset")
    assert "nothing to replay" in proc.stderr and "--allow-empty" in proc.stderr
    assert gens(migrated_url) == {1: ("active", "live")}
    assert table_rows(migrated_url, 1) == before
    run_projector(["rebuild", "--from-offset", "@2099-01-01T00:00:00Z", "--allow-empty"], env)
    assert gens(migrated_url)[2] == ("active", "rebuild")
    assert table_rows(migrated_url, 2) == {}
