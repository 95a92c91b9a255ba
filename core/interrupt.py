"""Ctrl-C while one of the project's commands is still starting (importing mxnet, numpy, ...)
ends with one line and exit status 130, as it does later, instead of a KeyboardInterrupt
traceback. Once a command runs, its own handlers say what was kept (train.py, data.pack,
tools.*); this covers the second or two before them.

`install()` puts a sys.excepthook in place that handles only an uncaught KeyboardInterrupt of a
process started as one of the project's commands (`python train.py`, `python -m data.*`,
`python -m tools.*`, `python -m benchmarks.*`); anything else goes to the previous hook. It
also keeps a Ctrl-C from being lost in a finalizer (`keep_lost_interrupts`), in any process that
imports the project's `core`.
"""
import _thread
import os
import signal
import sys
import threading
import time

COMMANDS = ('data', 'tools', 'benchmarks')


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a scheduler's stop) raised in the main thread as Ctrl-C's KeyboardInterrupt is,
    so that a command stops the same way (what it wrote kept or rolled back, its message), with exit
    status 143 instead of 130."""
    signal = signal.SIGTERM             # (raised again if lost in a finalizer: keep_lost_interrupts)
    words = 'terminated (SIGTERM)'


class HungUp(Terminated):
    """SIGHUP (the terminal closed, an ssh session dropped) as SIGTERM, with exit status 129."""
    signal = signal.SIGHUP
    words = 'hung up (SIGHUP: the terminal or session closed)'


class Quit(Terminated):
    """SIGQUIT (Ctrl-\\ in a terminal) as SIGTERM, with exit status 131."""
    signal = signal.SIGQUIT
    words = 'quit (SIGQUIT, Ctrl-\\)'


class Stopped(Terminated):
    """SIGUSR1 (a job scheduler's notice before its time limit, SLURM's --signal=USR1@60) as SIGTERM,
    with exit status 138: the finished epochs are kept and the resume command said."""
    signal = signal.SIGUSR1
    words = 'stopped by SIGUSR1 (a job scheduler\'s notice before its time limit)'


STOPS = {signal.SIGTERM: Terminated, signal.SIGHUP: HungUp, signal.SIGQUIT: Quit, signal.SIGUSR1: Stopped}


# the stop signals (SIGINT included) this process received while one of the handlers here was in place,
# in order: an error raised after one (an import the KeyboardInterrupt cut short, left half-initialised)
# is the stop's, not a bug (`stop_received`)
RECEIVED = []


def _terminate(signum, frame):
    RECEIVED.append(signum)
    raise STOPS.get(signum, Terminated)()


def _interrupt(signum, frame):
    """Ctrl-C: KeyboardInterrupt, as Python's own handler, remembered in `RECEIVED`."""
    RECEIVED.append(signum)
    raise KeyboardInterrupt()


def stop_of(signum):
    """The KeyboardInterrupt that stands for stop signal `signum`: `Terminated`, ... (`STOPS`), or
    KeyboardInterrupt itself for SIGINT."""
    return STOPS[signum]() if signum in STOPS else KeyboardInterrupt()


def stop_received():
    """The KeyboardInterrupt (`Terminated`, ...) of the first stop signal `RECEIVED`, else None."""
    return stop_of(RECEIVED[0]) if RECEIVED else None


def stop_words(e):
    """What stopped a command, from its KeyboardInterrupt `e`: 'interrupted' (Ctrl-C), else the
    `words` of its signal's class in `STOPS` ('terminated (SIGTERM)', 'hung up (SIGHUP ...)', ...)."""
    return e.words if isinstance(e, Terminated) else 'interrupted'


def stop_status(e):
    """The exit status of a command stopped by KeyboardInterrupt `e`: 130 for Ctrl-C, 128 + the
    signal's number for the others (`STOPS`: SIGTERM 143, SIGHUP 129, SIGQUIT 131, SIGUSR1 138), as
    a shell reports a process the signal killed."""
    return 128 + e.signal if isinstance(e, Terminated) else 130


class sigterm_as_interrupt(object):
    """Within the `with`: SIGTERM raises `Terminated`, SIGHUP `HungUp`, SIGQUIT `Quit`, SIGUSR1
    `Stopped`; the handlers before are put back after."""

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, _terminate) for sig in STOPS}
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class deferred(object):
    """Within the `with`, Ctrl-C (SIGINT) and SIGTERM are held, not acted on: a few steps that must
    run whole (an epoch's record and its checkpoint) finish first. On leaving, the handlers before
    are put back and the first signal held is raised again, to act as it would have (a
    KeyboardInterrupt, `Terminated`, or the default action). Outside the main thread: no effect."""
    SIGNALS = (signal.SIGINT,) + tuple(STOPS)

    def __enter__(self):
        self.held, self.previous = None, {}
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.SIGNALS:
            self.previous[signum] = signal.signal(signum, self._hold)
        DEFERRING.append(self)
        return self

    def _hold(self, signum, frame):
        if self.held is None:
            self.held = signum

    def __exit__(self, *exc):
        if self in DEFERRING:
            DEFERRING.remove(self)
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.held is not None:
            signal.raise_signal(self.held)


# the `deferred` sections under way (in the main thread): a `StuckStopGuard` lets them finish
DEFERRING = []


class StuckStopGuard(object):
    """A worker of a distributed job waits in MXNet for the other workers (a kvstore pull, an
    allreduce, `waitall`) and, when one of them has stopped or the parameter server has gone, waits
    forever: a stop signal's Python handler never runs, so it would not release its run's lock nor
    say how to resume, and its launcher kills it. Within the `with`, a helper thread sees every
    signal that has a Python handler (through `signal.set_wakeup_fd`); if the process still runs
    `grace` seconds after a stop (SIGINT or one of `STOPS`), and no `deferred` section (an epoch's
    checkpoint being written) is under way (it gets up to `DEFERRED_WAIT` seconds more), it ends the
    process as the handler would have: `say(e)` for the stop's KeyboardInterrupt `e` (unless `said()`
    is true: the main thread spoke already), every callable of `AT_FORCED_EXIT` (the run's lock), then
    `os._exit` with the stop's status (`stop_status`). Outside the main thread, or for `grace` None:
    no effect."""
    DEFERRED_WAIT = 60.0

    def __init__(self, say, said=lambda: False, grace=3.0):
        self.say, self.said, self.grace = say, said, grace
        self.previous_fd, self.fds, self.active = None, None, False

    def __enter__(self):
        if self.grace is None or threading.current_thread() is not threading.main_thread():
            return self
        self.fds = os.pipe()
        os.set_blocking(self.fds[1], False)
        self.previous_fd = signal.set_wakeup_fd(self.fds[1], warn_on_full_buffer=False)
        self.active = True
        threading.Thread(target=self._watch, args=(self.fds[0],), name='stuck-stop-guard', daemon=True).start()
        return self

    def _watch(self, fd):
        """Read the signal numbers the wakeup pipe `fd` delivers until it is closed (`__exit__`); past
        the grace period of the first stop, end the process (`_end`)."""
        import select
        signum = deadline = None
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready = select.select([fd], [], [], timeout)[0]
                if ready:
                    data = os.read(fd, 64)
                    if not data:
                        return              # (the guard ended)
                    stops = [b for b in data if b == signal.SIGINT or b in STOPS]
                    if signum is None and stops:
                        signum, deadline = stops[0], time.monotonic() + self.grace
                        last = deadline + self.DEFERRED_WAIT
                    continue
                if not self.active:
                    return                  # (the main thread stopped in time and left the guard)
                if DEFERRING and time.monotonic() < last:
                    deadline = time.monotonic() + 0.2       # (a checkpoint being written: let it finish)
                    continue
                self._end(signum)
        except OSError:
            return
        finally:
            os.close(fd)

    def _end(self, signum):
        e = stop_of(signum)
        try:
            try:
                if not self.said():
                    self.say(e)
            except Exception:           # (stderr gone with the launcher: the lock still goes)
                pass
            for cleanup in list(AT_FORCED_EXIT):
                try:
                    cleanup()
                except Exception:
                    pass
        finally:
            end_now(stop_status(e))

    def __exit__(self, *exc):
        if self.fds is None:
            return
        self.active = False
        signal.set_wakeup_fd(self.previous_fd)
        fds, self.fds = self.fds, None
        os.close(fds[1])            # (the helper reads the end of the pipe, closes its end and ends)


def end_now(status):
    """End this process at once with `status` (`os._exit`: no atexit hooks, no finalizers), its output
    flushed and multiprocessing's temporary folder of this process (/tmp/pymp-*, which its finalizer
    would remove) removed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        import multiprocessing.process
        import shutil
        folder = multiprocessing.process.current_process()._config.get('tempdir')
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    except Exception:
        pass
    os._exit(status)


# what a forced exit (`StuckStopGuard`) undoes first: callables a run adds while it holds something the
# next run needs back (its lock) and removes once it has given it back
AT_FORCED_EXIT = []


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


def keep_lost_interrupts():
    """Python drops an exception raised inside a finalizer (`__del__`, a weakref callback) and
    reports it to sys.unraisablehook instead. A Ctrl-C whose KeyboardInterrupt is raised there
    (MXNet's NDArray.__del__ runs for every array freed, many a second in a training loop) would
    be lost, and the program would go on as if nothing had been pressed. The hook put in place
    here sends the signal again, 5 ms later from a helper thread (raised in the hook itself, it
    would be dropped again; if it lands in a finalizer again, it is sent again), so the
    KeyboardInterrupt is raised at the next point Python can raise it. Only while that signal has
    a Python handler; KeyboardInterrupt subclasses that stand for another signal name it in their
    `signal` attribute (train.py's SIGTERM). Every other unraisable exception goes to the
    previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, 'nst_keeps_interrupts', False):
        return

    def hook(unraisable):
        kind = unraisable.exc_type
        signum = getattr(kind, 'signal', signal.SIGINT) if kind is not None and issubclass(kind, KeyboardInterrupt) \
            else None
        if signum is None or not callable(signal.getsignal(signum)):
            previous(unraisable)
            return
        try:
            _send_later(signum)
        except KeyboardInterrupt:                   # (the one sent before, landing here: send it again)
            _send_later(signum)
    hook.nst_keeps_interrupts = True
    sys.unraisablehook = hook


def _send_later(signum):
    """Simulate signal `signum` arriving in the main thread in 5 ms, from a helper thread."""
    timer = threading.Timer(0.005, _thread.interrupt_main, (signum,))
    timer.daemon = True
    timer.start()


def install():
    """Handle an uncaught KeyboardInterrupt of a project command with one line, and keep Ctrl-C
    from being lost in a finalizer (see the module)."""
    keep_lost_interrupts()
    previous = sys.excepthook
    if getattr(previous, 'nst_interrupt', False):
        return

    def hook(kind, value, tb):
        if issubclass(kind, SystemExit) and sys.flags.inspect and is_project_command(
                getattr(sys, 'orig_argv', sys.argv)):
            # (python -i / PYTHONINSPECT: Python prints the command's end as a traceback, then opens its prompt;
            # a project command ends with its status instead)
            code = value.code
            if code is not None and not isinstance(code, int):
                sys.stderr.write('%s\n' % code)
            end_now(code if isinstance(code, int) else 0 if code is None else 1)
        if not issubclass(kind, KeyboardInterrupt) and stop_received() is not None:
            value = stop_received()         # (an error left by the stop, e.g. an import it cut short)
            kind = type(value)
        if issubclass(kind, KeyboardInterrupt) and is_project_command(getattr(sys, 'orig_argv', sys.argv)):
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            sys.stderr.write('\n%s\n' % stop_words(value))
            end_now(stop_status(value))
        previous(kind, value, tb)
    hook.nst_interrupt = True
    sys.excepthook = hook
    # a project command stopped by SIGTERM while it still imports: as Ctrl-C then, one line (its own
    # handling, `sigterm_as_interrupt`, takes over once it runs)
    if is_project_command(getattr(sys, 'orig_argv', sys.argv)) and threading.current_thread() is threading.main_thread():
        for sig in STOPS:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _terminate)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupt)
        from .env import job_role
        if job_role() is None:
            import atexit
            atexit.register(_ignore_stops_at_exit)


def _ignore_stops_at_exit():
    """A command that has finished (its exit status decided, its files written) ignores SIGTERM and the
    other `STOPS` while the interpreter shuts down: Python puts their default action back then, and a
    SIGTERM arriving in that moment killed the process (status -15, no message) after its work was
    done. Ctrl-C keeps its default action (a shutdown that hangs can still be interrupted). (Not in
    the processes of a distributed job: one that waits there for the others still ends on SIGTERM.)"""
    for sig in STOPS:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
