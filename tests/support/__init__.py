"""Test support: tiny real pipelines and sample books for tests and benchmarks."""
