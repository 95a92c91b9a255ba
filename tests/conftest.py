import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
import core.compat  # noqa: E402,F401  (before any test imports mxnet)
os.environ.setdefault('OMP_NUM_THREADS', str(os.cpu_count() or 1))
os.environ.setdefault('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice')

# A suite started in the background by a shell (`cmd &`) inherits SIGINT ignored, and so would every
# process it starts: the tests of Ctrl-C need Python's own handler, as in a terminal.
import signal  # noqa: E402
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
