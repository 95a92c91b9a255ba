"""What every `python -m tools.*` command shares: argument checks, paths checked before any work,
files written whole or not at all, and a user's mistake reported as one line.

`@command` wraps a tool's `main(argv)`: a user error (`is_user_error`: a wrong argument, path,
checkpoint, data folder, a full disk, ...) becomes one `error: ...` line on stderr and exit status
2; a bug still shows its traceback. `parser()` gives an ArgumentParser whose own errors (a missing
option, `--epoch abc`) are also one `error: ...` line with exit status 2.
"""
import argparse
import errno
import functools
import logging
import os
import re
import sys

from core.atomic import make_writable_folder, temporary_name, why_not_folder, write_atomic  # noqa: F401
from core.errors import ToolError, UserError, exit_status  # noqa: F401  (ToolError: a tool's own failure, one error line)


class UsageError(ToolError, ValueError):
    """A mistake in a tool's arguments or inputs."""


def is_user_error(e):
    """Whether exception `e` is a user's mistake or the environment, not a bug here: the project's
    own errors (core.errors.UserError) and the OS errors of a path, a permission or a full disk
    (those `describe` has a fix for). Anything else is a bug and keeps its traceback."""
    return isinstance(e, UserError) or (isinstance(e, OSError) and e.errno in _FIXES)


_FIXES = {
    errno.ENOENT: 'it does not exist: check the path',
    errno.EACCES: 'permission denied: choose another location or fix its permissions',
    errno.EPERM: 'permission denied: choose another location or fix its permissions',
    errno.EROFS: 'the file system is read-only: choose another location',
    errno.ENOSPC: 'the disk is full: free some space and run again',
    errno.EDQUOT: 'the disk quota is exhausted: free some space and run again',
    errno.ENOTDIR: 'a part of the path is a file, not a folder: choose another path',
    errno.EISDIR: 'it is a folder, not a file: give a file name',
}


def describe(e):
    """One line for a user error: the message of the project's errors; for a bare OS error (as
    raised by open()), the file, the reason and the fix."""
    if isinstance(e, OSError) and e.strerror and type(e).__str__ is OSError.__str__:
        where = e.filename if e.filename is not None else ''
        fix = _FIXES.get(e.errno, e.strerror)
        return ('%s: %s' % (where, fix)) if where else fix
    return str(e).strip() or type(e).__name__


class _StderrWarnings(logging.Handler):
    """Warnings of the project's loggers as `warning: ...` lines on the current sys.stderr."""

    def emit(self, record):
        try:
            print('warning: %s' % record.getMessage(), file=sys.stderr)
        except Exception:                           # pragma: no cover (logging must never raise)
            self.handleError(record)


def _warnings_to_stderr():
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _StderrWarnings):
            root.removeHandler(h)
    handler = _StderrWarnings(logging.WARNING)
    handler._warnings_only = True          # a run's own log (core.runlog), which says warnings too, replaces it
    root.addHandler(handler)


def _end_warnings_to_stderr():
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _StderrWarnings):
            root.removeHandler(h)


_CREATED = []       # (folder, outermost folder created for it) by `output_path` in the running command


def _remove_created():
    """Remove the folders `output_path` created for this command, where they are still empty
    (latest first)."""
    if not _CREATED:                   # (a Ctrl-C while the command still imports: nothing made, nothing to import)
        return
    from core.runs import remove_if_empty
    created, _CREATED[:] = _CREATED[::-1], []
    remove_if_empty(created)


def command(main):
    """Decorate a tool's `main(argv=None)`: returns main's exit status (None counts as 0); a user
    error (`is_user_error`) prints `error: <describe(e)>` on stderr and returns 2 (`Diverged`: 3). Warnings logged
    meanwhile (e.g. damaged record lines) are printed as `warning: ...` lines. Ctrl-C prints
    `interrupted` and returns 130; SIGTERM the same with `terminated (SIGTERM)`, 143. On any failure (Ctrl-C too) the output folders the command
    created and left empty are removed again."""
    @functools.wraps(main)
    def run(argv=None):
        from core.env import check_environment
        check_environment()                         # before anything imports mxnet: a bad variable aborts it
        _warnings_to_stderr()
        del _CREATED[:]
        from core.interrupt import RECEIVED, sigterm_as_interrupt, stop_received, stop_status, stop_words
        try:
            with sigterm_as_interrupt():                # kill / a scheduler's stop: as Ctrl-C
                code = main(argv) or 0
                sys.stdout.flush()                  # (a full disk under a redirection: an error here, not at exit)
                return code
        except BrokenPipeError:           # (output piped into `head`, which has stopped reading)
            from core.env import quiet_stdout
            quiet_stdout()
            return 0
        except KeyboardInterrupt as e:
            _remove_created()
            print('\n%s: no file was left half-written; run the command again to finish'
                  % stop_words(e), file=sys.stderr)
            return stop_status(e)
        except BaseException as e:
            _remove_created()
            if isinstance(e, Exception) and is_user_error(e):
                end_progress_bars()
                print('error: %s' % describe(e), file=sys.stderr)
                return exit_status(e)
            stop = stop_received()
            if stop is not None and isinstance(e, (ImportError, AttributeError)):   # (an import the stop cut short)
                print('\n%s: no file was left half-written; run the command again to finish' % stop_words(stop),
                      file=sys.stderr)
                return stop_status(stop)
            raise
        finally:
            del _CREATED[:]
            del RECEIVED[:]                         # (a command run in-process again, e.g. by a test)
            _end_warnings_to_stderr()               # (a command run in-process, e.g. by a test, leaves none)
    return run


def signal_name(number):
    """'SIGTERM' for 15, ...; None for a number no signal has."""
    import signal
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


class OutputError(UserError):
    """Standard output could not be written (`error`: the OSError): a full disk under a redirection."""

    def __init__(self, error):
        super(OutputError, self).__init__(str(error))
        self.error = error


class _Output(object):
    """sys.stdout, its write errors raised as OutputError (a broken pipe as itself)."""

    def __init__(self, stream):
        self._stream = stream

    def _call(self, name, *args):
        try:
            return getattr(self._stream, name)(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e)

    def write(self, text):
        return self._call('write', text)

    def flush(self):
        return self._call('flush')

    def __getattr__(self, name):
        return getattr(self._stream, name)


def output_written(main, *args):
    """`main(*args)`'s exit status, with its output flushed: an output that cannot be written (stdout
    redirected to a full disk) is one `error:` line and status 2, not a traceback."""
    from core.env import printable_streams
    printable_streams()                   # (a stream the shell closed: /dev/null)
    stream = sys.stdout
    sys.stdout = _Output(stream)
    try:
        code = main(*args) or 0
        sys.stdout.flush()
        return code
    except BrokenPipeError:               # (output piped into `head`, which has stopped reading)
        from core.env import quiet_stdout
        sys.stdout = stream
        quiet_stdout()
        return 0
    except OutputError as e:
        try:
            stream = open(os.devnull, 'w')          # (Python's flush at exit would fail again)
        except OSError:
            pass
        print('error: cannot write the output (%s)' % describe(e.error), file=sys.stderr)
        return 2
    finally:
        sys.stdout = stream


def end_progress_bars():
    """Close the progress bars still drawn (an error raised inside their loop), so that the message
    after them starts a line of its own."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, '_instances', ())):
        try:
            bar.close()
        except Exception:                       # (a bar of a stream already closed)
            pass


class _Parser(argparse.ArgumentParser):
    def parse_args(self, args=None, namespace=None):
        """Options and key=value overrides in any order (`--prefix P lr=0.1 --epoch 2 wd=0`), as
        train.py takes them; argparse's plain parse stops taking positionals after the first option."""
        self._refuse_repeats(sys.argv[1:] if args is None else list(args))
        try:
            return self.parse_intermixed_args(args, namespace)
        except TypeError:                           # a parser argparse cannot intermix (REMAINDER, ...)
            return super(_Parser, self).parse_args(args, namespace)

    def _refuse_repeats(self, args):
        """An error for an option that takes one value given twice (`--epoch best --epoch 1`): argparse
        would keep the last one without a word."""
        seen = {}
        for arg in args:
            if arg == '--':
                break
            action = self._option_string_actions.get(arg.split('=', 1)[0] if arg.startswith('--') else arg)
            if isinstance(action, argparse._StoreAction) and action.nargs is None:
                seen.setdefault(action.dest, []).append(arg.split('=', 1)[0])
        for dest, given in seen.items():
            if len(given) > 1:
                self.error('option %s is given %d times: it takes one value, give it once' % (given[0], len(given)))

    def error(self, message):
        """One `error: ...` line (naming the option) and exit status 2, as argparse does, without
        the usage block."""
        self.exit(2, 'error: %s (%s --help lists the options)\n' % (message, self.prog))


def parser(tool, doc):
    """An ArgumentParser for `python -m tools.<tool>` with `doc` as its help text."""
    return _Parser(prog='python -m tools.%s' % tool, description=doc,
                   formatter_class=argparse.RawDescriptionHelpFormatter)


def epoch_arg(text):
    """argparse type: an epoch number (>= 0) or 'best'."""
    if text == 'best':
        return text
    if re.match(r'^\d+$', text.strip()):
        return int(text)
    if text.strip() == '-1':
        raise argparse.ArgumentTypeError("-1 (train.py's 'latest') is not taken here: give the epoch number, as in the "
                                          "checkpoint's file name RUN-NNNN.params, or 'best'")
    raise argparse.ArgumentTypeError("%r is not an epoch number or 'best'" % text)


def positive_int(text):
    """argparse type: an integer >= 1."""
    if re.match(r'^\s*\+?\d+\s*$', text) and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError('%r is not a positive integer' % text)


def nonnegative_int(text):
    """argparse type: an integer >= 0."""
    if re.match(r'^\s*\+?\d+\s*$', text):
        return int(text)
    raise argparse.ArgumentTypeError('%r is not an integer >= 0' % text)


def existing_dir(path, option, hint=''):
    """`path` if it is a folder, else UsageError naming `option` and, after a colon, `hint`."""
    if os.path.isdir(path):
        return path
    what = 'is not a folder' if os.path.exists(path) else 'does not exist'
    raise UsageError('%s %s %s%s' % (option, path, what, (': ' + hint) if hint else ''))


#: the files other tools own: the reproduction's (tools.make_results writes them from results/records) and a
#: comparison's (tools.compare writes OUT/table.md and OUT/curves.png beside its OUT/compare.json)
REPRODUCTION_FILES = ('table.md', 'curves.png', 'curves_all.png')
COMPARISON_FILES = ('table.md', 'curves.png')


def owned_elsewhere(path, prefix=None):
    """What writes `path` if another tool owns it (the reproduction's results/table.md and curves, a
    comparison's table and curves: drawn again from that comparison's own runs, `prefix` NAME_, they are
    its), for a refusal; else None."""
    import json
    folder, name = os.path.split(os.path.realpath(path))
    project = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if folder == os.path.join(project, 'results') and name in REPRODUCTION_FILES:
        return 'the reproduction\'s %s (python -m tools.make_results writes it from results/records)' % name
    manifest = os.path.join(folder, 'compare.json')
    if name in COMPARISON_FILES and os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                wrote = json.load(f)
        except (OSError, ValueError):
            wrote = {}
        if isinstance(wrote, dict) and prefix is not None and prefix == '%s_' % wrote.get('name'):
            return None
        return 'the %s of the comparison in %s (tools.compare writes it; running that comparison again rebuilds ' \
               'it)' % (name, folder)
    return None


def output_path(path, option='--out', example='figure.png'):
    """Check, before any work, that a file (or, for export, a file prefix) can be written at
    `path`: it is not a folder, no part of its folder is a file, the folder exists (it is created
    if missing; a command that then fails removes it again, `command`) and is writable (a probe
    file is created and removed). Returns `path`; raises UsageError naming `option` and the fix."""
    if not path.strip():
        raise UsageError('%s is empty: give a file name such as %s' % (option, example))
    if os.path.isdir(path) or path.endswith(('/', os.sep)):
        raise UsageError('%s %s is a folder: give a file name such as %s' % (option, path,
                                                                             os.path.join(path, example)))
    folder = os.path.dirname(os.path.abspath(path))
    part = folder
    while not os.path.exists(part):
        part = os.path.dirname(part)
    if not os.path.isdir(part):
        raise UsageError('%s %s: %s is a file, not a folder: choose another %s' % (option, path, part, option))
    if not os.path.exists(folder):
        top = folder                     # the outermost folder this creates: removed on failure if empty
        while not os.path.exists(os.path.dirname(top)):
            top = os.path.dirname(top)
        _CREATED.append((folder, top))
    try:
        make_writable_folder(folder)
    except OSError as e:
        raise UsageError('%s %s: cannot write in folder %s (%s): choose another %s or fix its permissions'
                         % (option, path, folder, why_not_folder(folder, e), option))
    return path


def checkpoint_prefix(prefix, option='--prefix', legacy=False):
    """Check a checkpoint prefix path (model_dir/RUN, or with `legacy` a legacy PREFIX with
    PREFIX-symbol.json) before anything is loaded: not a folder, its folder exists, and some
    checkpoint of that name is there. Returns `prefix`; raises UsageError listing the runs that are
    there, or saying what a legacy checkpoint can be used as where it cannot be read."""
    from core.runs import run_names
    if not legacy and os.path.isfile(prefix + '-symbol.json'):
        raise UsageError('%s %s is a legacy MXNet Module checkpoint, not a run of this project: evaluate it as a '
                         'teacher (python -m tools.evaluate --teacher teacher_prefix=%s), or start a network from it '
                         '(train.py pretrained=%s) and use that run here' % (option, prefix, prefix, prefix))
    m = re.match(r'^(.*)-(\d{4}|best)(\.params|\.json|\.states|\.extra\.params|-symbol\.json)?$', prefix)
    if m and m.group(3) and os.path.isfile(prefix):
        raise UsageError('%s %s is a checkpoint file; give the run it belongs to and the epoch: %s %s --epoch %s'
                         % (option, prefix, option, m.group(1), 'best' if m.group(2) == 'best' else int(m.group(2))))
    if os.path.isdir(prefix):
        runs = run_names(prefix)
        raise UsageError('%s %s is a folder, not a checkpoint prefix: give model_dir/RUN; %s'
                         % (option, prefix, ('runs in it: %s' % ', '.join(runs)) if runs else 'it holds no runs'))
    folder, name = os.path.split(prefix)
    folder = folder or '.'
    if not os.path.isdir(folder):
        from core.atomic import broken_link
        link = broken_link(folder)
        raise UsageError('%s %s: %s' % (option, prefix, '%s is %s: point it at the folder of the run, or give that '
                                          'folder' % link if link else 'folder %s does not exist' % folder))
    runs = run_names(folder)
    if name not in runs and not any(f.startswith(name + '-') for f in os.listdir(folder)):
        # a bare run name: the run in the default model folder, if there is one of that name
        there = os.path.join('model', name) if not os.path.dirname(prefix) and name in run_names('model') else None
        raise UsageError('%s %s: no checkpoint of a run named %r in %s%s; %s' % (
            option, prefix, name, folder, ' (did you mean %s %s? runs are named model_dir/RUN)' % (option, there)
            if there else '', ('runs in %s: %s' % (folder, ', '.join(runs))) if runs
            else 'there are no checkpoints in %s' % folder))
    return prefix


def non_finite_parameters(block):
    """Names of `block`'s initialised parameters holding NaN or Inf (every element is checked)."""
    import numpy as np
    bad = []
    for name, p in block.collect_params().items():
        if p._data is None:
            continue
        if not np.isfinite(p.data().asnumpy()).all():
            bad.append(name)
    return bad


def require_finite(block, prefix, tag, option='--epoch'):
    """UsageError unless every parameter of `block` (loaded from checkpoint `prefix` at `tag`) is
    finite; the message names the checkpoint and the earlier epochs to choose from."""
    bad = non_finite_parameters(block)
    if bad:
        raise UsageError('checkpoint %s (epoch %s) has parameters that are not finite (NaN/Inf in %d of them, '
                         'e.g. %s): the run diverged; pick an earlier epoch with %s N%s'
                         % (prefix, tag, len(bad), bad[0], option, _epochs_hint(prefix)))


def _epochs_hint(prefix):
    folder, name = os.path.split(prefix)
    try:
        from core import checkpoint
        have = checkpoint.epochs(folder or '.', name)
    except Exception:                               # the hint is a courtesy; never mask the error
        have = []
    return ' (complete epochs: %s)' % checkpoint.epochs_text(have) if have else ''
