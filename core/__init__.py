"""What every task shares: the engine (engine.py, the task interface task.py, devices, seeding,
schedule, the run log, TensorBoard monitor), run storage (runs.py: names, locks, resume rules;
checkpoint.py; records.py: the JSONL records of a run; atomic.py), the one error hierarchy
(errors.py) and platform shims (compat.py for numpy/Python, env.py threads, cpu.py, gpu_libs.py,
gpu_support.py, interrupt.py). The tasks themselves are in tasks/."""
from . import compat  # noqa: F401  (before mxnet: what it needs from older numpy/Python)
from . import interrupt

interrupt.install()           # Ctrl-C while a command is still importing: one line, exit 130
