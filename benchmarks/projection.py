"""Projection throughput and memory, measured against a baseline in the same run.

    .venv/bin/python benchmarks/projection.py [--deliveries 2000] [--database-url URL]

Throughput: the same simulated stream projected with batches of 1 message (the
baseline: one transaction per message) and with the default batch size; the
figure that matters is the ratio. Memory: peak RSS of a child process projecting
N and 4N deliveries; a bounded projector's peak grows far less than 4x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project(stream: Path, db_url: str, batch_size: int) -> dict[str, float]:
    code = f"""
import json, resource, sys, time
from projector.cli import main
assert main(["migrate"]) == 0
start = time.perf_counter()
assert main(["run", "--until-caught-up", "--batch-size", "{batch_size}"]) == 0
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "peak_rss_kb": peak}}))
"""
    env = dict(os.environ, DATABASE_URL=db_url, EVENT_SOURCE=str(stream))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def simulate(path: Path, deliveries: int) -> int:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "projector.cli",
            "simulate",
            "--deliveries",
            str(deliveries),
            "--seed",
            "1",
            "--out",
            str(path),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return sum(1 for _ in path.open("rb"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        small, large = tmp / "small.jsonl", tmp / "large.jsonl"
        n_small = simulate(small, args.deliveries)
        n_large = simulate(large, args.deliveries * 4)

        baseline = project(small, f"sqlite:///{tmp / 'b1.db'}", 1)
        batched = project(small, f"sqlite:///{tmp / 'b500.db'}", 500)
        big = project(large, f"sqlite:///{tmp / 'big.db'}", 500)

    def rate(n: int, r: dict[str, float]) -> float:
        return n / r["seconds"]

    print(f"stream: {n_small} messages ({args.deliveries} deliveries), SQLite file, one process")
    print(f"batch size 1   (baseline): {rate(n_small, baseline):9.0f} msg/s")
    print(
        f"batch size 500           : {rate(n_small, batched):9.0f} msg/s  "
        f"ratio {rate(n_small, batched) / rate(n_small, baseline):.1f}x"
    )
    print(f"peak RSS {args.deliveries} deliveries : {batched['peak_rss_kb'] / 1024:7.1f} MiB")
    print(
        f"peak RSS {args.deliveries * 4} deliveries: {big['peak_rss_kb'] / 1024:7.1f} MiB  "
        f"ratio {big['peak_rss_kb'] / batched['peak_rss_kb']:.2f}x for 4x the stream "
        f"({n_large} messages)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
