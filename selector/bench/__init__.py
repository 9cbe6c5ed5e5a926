"""Benchmarks (`python -m selector.bench`, `python -m selector.bench_vlm`) and the random-weight VLMs they and
the tests use (`models`). Nothing of the runtime imports this package."""
