"""Benchmarks: each module runs one benchmark on a resolved model and returns a BenchmarkResult."""
