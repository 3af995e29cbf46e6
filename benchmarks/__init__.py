"""Benchmarks: speed figures printed, never asserted in the test suite."""
