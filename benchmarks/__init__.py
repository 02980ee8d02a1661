"""Benchmarks and the acceptance gate: data generator, gate, and side-by-side runner.

- ``python -m benchmarks.generate``: the deterministic ``workers_500k.csv`` fixture.
- ``python -m benchmarks.gate``: the end-to-end acceptance gate (writes docs/BASELINE.md).
- ``python -m benchmarks.run [--quick]``: flight_lake against its baselines and ROAPI
  (writes docs/BENCHMARKS.md).
"""
