"""Benchmarks of the read model: `scripts/bench` runs `python -m benchmarks.run`."""
