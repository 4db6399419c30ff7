"""Benchmarks: speed and quality numbers quoted in docs/benchmarks.md (never timed tests)."""
