"""Start Horovod training (kv_store=horovod) with horovodrun's options, each failure in one line.

horovodrun itself ends a job whose rank failed or stopped (Ctrl-C too: it stops every rank) with
a RuntimeError traceback of its own ("Horovod detected that one or more processes
exited with non-zero status") and exit status 1. This tool runs horovodrun unchanged (its options,
e.g. -np, -H, --gloo, go through as they are) and says instead which rank ended the job and how,
with that rank's exit status (Ctrl-C: `interrupted`, 130); the ranks' own messages (errors, how to resume)
are above it, prefixed [RANK]. The resume commands the ranks print run under this tool again. On
one machine:

    python -m tools.horovodrun -np 2 -H localhost:2 --gloo python train.py kv_store=horovod
"""
import os
import re
import shlex
import sys

from tools import cli


def launch_words(argv):
    """This launch as a user types it, up to the command it runs (its interpreter running train.py),
    for the resume commands the ranks print."""
    end = interpreter_at(argv)
    rel = os.path.relpath(sys.executable)
    exe = rel if not rel.startswith('..') else sys.executable
    return ' '.join(shlex.quote(a) for a in [exe, '-m', 'tools.horovodrun'] + list(argv[:end]))


def interpreter_at(words):
    """Where the command a launcher runs begins among `words`: the interpreter (and its options) before
    train.py, else train.py, else the end."""
    end = next((i for i, a in enumerate(words) if os.path.basename(a) == 'train.py'), len(words))
    at = end - 1
    while at > 0 and words[at].startswith('-'):        # (python -u train.py)
        at -= 1
    return at if at >= 0 and end > 0 and 'python' in os.path.basename(words[at]) else end


def failed_rank(error):
    """(rank, exit status) of the first rank that ended the job, from horovodrun's RuntimeError text;
    None where the text says neither."""
    found = re.search(r'Process name:\s*(\S+)\s+Exit code:\s*(-?\d+)', str(error))
    return (found.group(1), int(found.group(2))) if found else None


def status_words(status):
    """'exited with status 2', 'was stopped by SIGTERM (143)', ... for a rank's exit status."""
    number = status - 128 if status > 128 else -status if status < 0 else None
    name = cli.signal_name(number) if number else None
    return 'was stopped by %s (%d)' % (name, status) if name else 'exited with status %d' % status


def _remembering(install):
    """`signal.signal` whose handlers for the stop signals first note the signal in
    `core.interrupt.RECEIVED`: horovodrun puts its own handlers for Ctrl-C and SIGTERM in place (it
    stops its ranks), and the end of the job is then said as the stop it was."""
    from core.interrupt import RECEIVED, STOPS
    import signal

    def remembering(signum, handler):
        if callable(handler) and (signum == signal.SIGINT or signum in STOPS):
            inner = handler

            def handler(number, frame):
                RECEIVED.append(number)
                return inner(number, frame)
        return install(signum, handler)
    return remembering


@cli.command
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from horovod.runner.launch import run_commandline
    except ImportError as e:
        raise cli.UsageError('horovod is not installed for %s (%s): build it with NST_HOROVOD=1 bash init.sh --deps'
                             % (sys.executable, e))
    import signal
    before = sys.argv, os.environ.get('NST_LAUNCH'), signal.signal
    os.environ['NST_LAUNCH'] = launch_words(argv)
    sys.argv = ['horovodrun'] + argv            # (horovodrun reads its options there)
    signal.signal = _remembering(signal.signal)
    try:
        run_commandline()
    except ValueError as e:                     # (its own checks of the options, e.g. -np above the slots)
        raise cli.UsageError('horovodrun: %s' % e)
    except RuntimeError as e:
        from core.interrupt import stop_received, stop_status, stop_words
        stop = stop_received()
        if stop is not None:                # (Ctrl-C, SIGTERM: horovodrun stopped its ranks, then raised)
            print('%s: horovodrun stopped every rank; their lines above say what was kept and how to resume'
                  % stop_words(stop), file=sys.stderr)
            return stop_status(stop)
        failed = failed_rank(e)
        if failed is None:
            raise
        rank, status = failed
        print('error: rank %s of the Horovod job %s and horovodrun stopped the others; its own message is above '
              '(lines prefixed [%s])' % (rank, status_words(status), rank), file=sys.stderr)
        return status if 0 < status < 256 else 1
    finally:
        signal.signal = before[2]
        sys.argv = before[0]
        if before[1] is None:
            os.environ.pop('NST_LAUNCH', None)
        else:
            os.environ['NST_LAUNCH'] = before[1]
    return 0


if __name__ == '__main__':
    sys.exit(main())
