"""Command-line tools: evaluate, export, launch (distributed), plots and tables.

`python -m tools.NAME` runs a tool; the modules in `LIBRARY` are the tools' shared parts, not
commands: run as one, they say so (exit 2) instead of doing nothing.
"""
import sys

import core.compat  # noqa: F401  (before mxnet: what it needs from older numpy/Python)

LIBRARY = ('cli', 'detection_report', 'features', 'onnx_export', 'plotting', 'records')


def _refuse_library_module(argv):
    """Exit 2 with one line when `argv` (sys.orig_argv) runs `python -m tools.<a LIBRARY module>`."""
    args = list(argv[1:])
    for i, arg in enumerate(args):
        name = args[i + 1] if arg == '-m' and i + 1 < len(args) else arg[2:] if arg.startswith('-m') else None
        if name is not None:
            part = name.split('.')
            if len(part) == 2 and part[0] == 'tools' and part[1] in LIBRARY:
                sys.stderr.write('error: tools.%s is a part the tools share, not a command; the commands: python -m '
                                 'tools.evaluate, tools.export, tools.compare, tools.results_table, tools.plot_curves, '
                                 'tools.doctor, ... (each with --help)\n' % part[1])
                sys.exit(2)
            return


_refuse_library_module(getattr(sys, 'orig_argv', []))
