"""Speed benchmarks (run them on a quiet machine; they print JSON as their last line)."""
import core.compat  # noqa: F401  (before mxnet: what it needs from older numpy/Python)
