"""Benchmarks: training-step time against an sgemm peak and PyTorch, measured in one run."""
