"""Command-line tools: evaluate, export, launch (distributed), plots and tables."""
import core.compat  # noqa: F401  (before mxnet: what it needs from older numpy/Python)
