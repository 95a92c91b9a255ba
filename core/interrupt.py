"""Ctrl-C while one of the project's commands is still starting (importing mxnet, numpy, ...)
ends with one line and exit status 130, as it does later, instead of a KeyboardInterrupt
traceback. Once a command runs, its own handlers say what was kept (train.py, data.pack,
tools.*); this covers the second or two before them.

`install()` puts a sys.excepthook in place that handles only an uncaught KeyboardInterrupt of a
process started as one of the project's commands (`python train.py`, `python -m data.*`,
`python -m tools.*`, `python -m benchmarks.*`); anything else goes to the previous hook.
"""
import os
import sys

COMMANDS = ('data', 'tools', 'benchmarks')


def is_project_command(argv):
    """Whether the interpreter's command line `argv` (sys.orig_argv) runs one of the project's
    commands: a train.py script, or -m of a module in data, tools or benchmarks."""
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == '-m' and i + 1 < len(args):
            return args[i + 1].split('.')[0] in COMMANDS
        if arg.startswith('-m') and len(arg) > 2:
            return arg[2:].split('.')[0] in COMMANDS
        if not arg.startswith('-'):
            return os.path.basename(arg) == 'train.py'
    return False


def install():
    """Handle an uncaught KeyboardInterrupt of a project command with one line (see the module)."""
    previous = sys.excepthook
    if getattr(previous, 'nst_interrupt', False):
        return

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt) and is_project_command(getattr(sys, 'orig_argv', sys.argv)):
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            sys.stderr.write('\ninterrupted\n')
            sys.stderr.flush()
            os._exit(130)
        previous(kind, value, tb)
    hook.nst_interrupt = True
    sys.excepthook = hook
