"""Baseline contenders of the benchmarks: each runs as its own process so it can be measured alone."""
