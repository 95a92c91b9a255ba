"""The distillation trainer: threading defaults, LR schedule, checkpoints,
teacher loading, the student+losses block, metrics and the training loop."""
from . import compat  # noqa: F401  (before mxnet: what it needs from older numpy/Python)
from . import interrupt

interrupt.install()           # Ctrl-C while a command is still importing: one line, exit 130
