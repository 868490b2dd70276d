"""Benchmarks of Sluice against the bare stack; `python -m bench --help`."""
