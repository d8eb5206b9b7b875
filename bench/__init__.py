"""Side-by-side benchmarks against reference libraries (not part of the test suite)."""
