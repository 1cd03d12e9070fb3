"""Benchmarks: each module is a script (`python bench/NAME.py`) and importable as bench.NAME (tests/bench)."""
