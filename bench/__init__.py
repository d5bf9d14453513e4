"""Benchmarks of examnode (not tests); see bench/README.md."""
