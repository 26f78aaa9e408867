"""Performance measurements (not timed tests). Each module runs as ``python -m benchmarks.<name>
[--quick]`` and exposes ``run(quick: bool) -> dict`` so ``make bench`` can collect the results."""
