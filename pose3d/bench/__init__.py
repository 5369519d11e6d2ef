"""Benchmarks: `pose3d bench ops|data|train`. Figures, never assertions."""
