"""Benchmark scripts (the sjft-benchmark-* commands): each times one stage against its
reference in one run and prints the ratios (docs/benchmarks.md)."""
