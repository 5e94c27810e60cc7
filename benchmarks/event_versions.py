"""What event versions cost per event: version resolution and upcasting, in microseconds.

    .venv/bin/python benchmarks/event_versions.py [--deliveries 2000] [--repeat 7]
        [--against REV]

Two figures, on the simulated stream all at version 1 and with 30 % at version 2
and 1 % at a future version (``simulate --versions 2:0.3,3:0.01``):

* the versions step alone: what ``make_event`` does per event because versions
  exist (read ``eventVersion``, find the shape, upcast to the newest shape),
  timed on every event of the stream; the budget is 5 µs an event;
* ``parse_message`` whole, per event, for scale; with ``--against REV`` also the
  parser of that git revision (e.g. the commit before versions) on the
  version-1 stream, so the difference is measured, not inferred.

The best of ``--repeat`` runs is reported (the least disturbed by other work).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from producer.simulate import SimulationConfig, encode, parse_versions, simulate  # noqa: E402
from schema.events import _version, canonical_type, parse_message, parse_time  # noqa: E402
from schema.versions import REGISTRY  # noqa: E402

BUDGET_US = 5.0


def _best(run: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _versions_step(bodies: list[dict[str, Any]]) -> Callable[[], None]:
    """The per-event work versions add to ``make_event``, on already-decoded bodies."""
    prepared = []
    for body in bodies:
        kind = canonical_type(body["eventType"])
        occurred = parse_time(body["occurrenceDateTime"], UTC, "occurrenceDateTime")
        prepared.append((body, None if kind is None else kind.value, body.get("data") or {},
                         occurred))
    paths = REGISTRY.paths

    def run() -> None:  # as make_event does it
        for body, name, data, occurred in prepared:
            version = _version(body, None)
            if name is None:
                continue
            path = paths.get((name, version))
            if path is not None:
                newest = data
                for upcast in path[1]:
                    newest = upcast(newest, occurred)

    return run


def _parse_all(parse: Callable[..., Any], raw: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        for value in raw:
            parse(value, None)

    return run


def _parser_of(rev: str) -> Callable[..., Any]:
    """``parse_message`` of ``rev``: its ``schema`` package, checked out apart."""
    tmp = Path(tempfile.mkdtemp(prefix="versions-bench-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "schema"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    spec = importlib.util.spec_from_file_location("before_events", tmp / "schema" / "events.py")
    assert spec is not None and spec.loader is not None
    saved = {k: v for k, v in sys.modules.items() if k == "schema" or k.startswith("schema.")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(tmp))
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules["before_events"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(tmp))
        for k in [k for k in sys.modules if k == "schema" or k.startswith("schema.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    parse: Callable[..., Any] = module.parse_message
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--against", metavar="REV", help="also time this revision's parser")
    args = parser.parse_args(argv)

    streams = {
        "v1": simulate(SimulationConfig(deliveries=args.deliveries, seed=7)),
        "mixed": simulate(SimulationConfig(deliveries=args.deliveries, seed=7,
                                           versions=parse_versions("2:0.3,3:0.01"))),
    }
    report: dict[str, Any] = {"budget_us_per_event": BUDGET_US}
    for name, bodies in streams.items():
        raw = [encode(b) for b in bodies]
        n = len(raw)
        runs = {
            "versions_step": _versions_step(bodies),
            "parse_message": _parse_all(parse_message, raw),
        }
        if args.against and name == "v1":
            runs[f"parse_message_at_{args.against}"] = _parse_all(_parser_of(args.against), raw)
        best = {label: float("inf") for label in runs}
        for _ in range(args.repeat):  # interleaved: a burst of other work hits all alike
            for label, run in runs.items():
                best[label] = min(best[label], _best(run, 1))
        report[name] = {"events": n, **{f"{k}_us": round(v / n * 1e6, 3) for k, v in best.items()}}
        if len(best) == 3:
            report[name]["parse_message_difference_us"] = round(
                (best["parse_message"] - best[f"parse_message_at_{args.against}"]) / n * 1e6, 3)
    worst = max(report[s]["versions_step_us"] for s in streams)
    report["within_budget"] = worst <= BUDGET_US
    print(json.dumps(report, indent=2))
    return 0 if report["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
