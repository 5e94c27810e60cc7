"""The benchmark command works: `scripts/bench --quick` once, against the real services.

No speed is asserted (the machine is shared); the test proves that every figure the
issue asks for comes out, as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration

REQUIRED = (
    "events", "raw_consume_events_per_s", "projector_events_per_s", "projector_vs_raw",
    "rebuild_events_per_s", "rebuild_seconds", "sqlite_events_per_s_first_tenth",
    "sqlite_events_per_s_last_tenth", "api_raw_rps", "api_graphql_rps", "api_vs_raw",
    "api_p99_ms", "freshness_p50_ms", "freshness_p99_ms", "projector_peak_rss_mb",
    # CPU per event from /proc, beside each rate; the memory run at a quarter of N
    "raw_consume_cpu_us_per_event", "projector_cpu_us_per_event",
    "projector_pg_cpu_us_per_event", "rebuild_cpu_us_per_event", "rebuild_pg_cpu_us_per_event",
    "sqlite_cpu_us_per_event", "api_cpu_us_per_request", "api_raw_cpu_us_per_request",
    "freshness_projector_cpu_us_per_event", "freshness_pg_cpu_us_per_event",
    "rebuild_peak_rss_mb", "memory_quarter_events", "projector_peak_rss_mb_quarter",
    "rebuild_peak_rss_mb_quarter", "projector_rss_vs_quarter", "rebuild_rss_vs_quarter",
    "freshness_rate",
)


def test_quick_benchmark_prints_every_figure_as_json_on_its_last_line() -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "TEST_DATABASE_URL"):
        if not os.environ.get(name):
            pytest.fail(f"{name} is not set: run the tests with scripts/test", pytrace=False)
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--quick", "--events", "12000"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"scripts/bench exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    last = proc.stdout.rstrip("\n").splitlines()[-1]
    result = json.loads(last)
    assert isinstance(result, dict)
    for key in REQUIRED:
        value = result.get(key)
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)
    assert result["events"] == 12000
    assert result["memory_quarter_events"] == 3000
    assert result["freshness_rate"] == 5000
    cpus = result["cpus"]
    # No step can use more CPU than the machine's cores over its own wall time.
    for step, seconds in (("projector", result["projector_seconds"]),
                          ("rebuild", result["rebuild_seconds"])):
        for who in ("cpu", "pg_cpu"):
            used = result[f"{step}_{who}_us_per_event"] * 12000 / 1e6
            assert used <= seconds * cpus * 1.05 + 0.1, (step, who, used, seconds)
        assert 0 <= result[f"{step}_pg_backend_cpu_us_per_event"] <= (
            result[f"{step}_pg_cpu_us_per_event"] + 1e-6), step
    # A projector is a Python process: at least some tens of MB, never gigabytes here.
    for key in ("projector_peak_rss_mb", "rebuild_peak_rss_mb",
                "projector_peak_rss_mb_quarter", "rebuild_peak_rss_mb_quarter"):
        assert 10 < result[key] < 2000, (key, result[key])
    assert result["projector_rss_vs_quarter"] == pytest.approx(
        result["projector_peak_rss_mb"] / result["projector_peak_rss_mb_quarter"], rel=0.01)
    assert "projector run --until-caught-up" in proc.stdout  # the readable table came first
