"""Benchmarks for cin-style: run them as modules, e.g. ``python -m benchmarks.tiling``. They use the public API only."""
