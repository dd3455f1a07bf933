"""Parley benchmarks: `python -m bench.run --smoke|--full` (see docs/benchmarks.md)."""
