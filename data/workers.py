"""The tasks' data loaders with worker processes (gluon's DataLoader, `num_workers` > 0), made safe
to stop at any moment.

gluon's pool of forked workers hangs a run that a Ctrl-C or a SIGTERM to the process group (a
terminal, `timeout`, a scheduler) stops: the workers die of the signal, the pool's helper thread
forks replacements beside MXNet's running engine (whose fork handlers then wait for the main
thread, which waits for the engine), and the pool's teardown joins workers and takes queue locks
that a killed worker may hold. Here instead:

- the workers ignore SIGINT and SIGTERM: the signal reaches the main process alone, whose engine
  stops the run (exit 130 / 143, `core.interrupt`); no worker dies on its own, so the pool never
  forks a replacement;
- the workers are stopped with SIGKILL and reaped, never joined blindly, when the loader is
  collected, when the pool is terminated (a worker's error), or at exit: the pool's own teardown
  is cancelled; the connection error multiprocessing's resource sharer thread reports when a
  worker dies while fetching a batch is not printed as a traceback.
"""
import multiprocessing.pool
import signal
import weakref

from mxnet import gluon


def _quiet_resource_sharer(hook):
    """sys.excepthook that passes over the connection error multiprocessing's resource sharer (the
    thread that hands shared-memory batches to the workers) reports when a worker is killed while
    connecting to it (a stop of the run, `stop_pool`): the run says why it stopped; a traceback of
    that thread would only hide it."""
    import traceback

    def quiet(etype, value, tb):
        if issubclass(etype, (ConnectionError, EOFError)) and any(
                frame.f_code.co_name == '_serve' and 'resource_sharer' in frame.f_code.co_filename
                for frame, _ in traceback.walk_tb(tb)):
            return
        hook(etype, value, tb)
    quiet.quiets_resource_sharer = True
    return quiet


def stop_pool(pool):
    """Stop multiprocessing pool `pool` at once: no more replacement workers or tasks, every worker
    killed (SIGKILL) and reaped, the pool's finalizer (which would join and lock) cancelled."""
    for handler in (pool._worker_handler, pool._task_handler, pool._result_handler):
        handler._state = multiprocessing.pool.TERMINATE
    workers = list(pool._pool)
    for p in workers:
        if p.exitcode is None:
            p.kill()
    for p in workers:
        p.join(5)
    pool._terminate.cancel()


class WorkerLoader(gluon.data.DataLoader):
    """gluon's DataLoader whose worker processes (if any) ignore SIGINT, SIGTERM and the other stop
    signals (SIGHUP, SIGQUIT, SIGUSR1) and are stopped
    by `stop_pool` (see the module doc); the same arguments."""

    def __init__(self, dataset, *args, **kwargs):
        import sys
        if not getattr(sys.excepthook, 'quiets_resource_sharer', False):
            sys.excepthook = _quiet_resource_sharer(sys.excepthook)
        from core.interrupt import STOPS           # (SIGHUP, SIGQUIT, SIGUSR1 too: a launcher passes them to the group)
        stops = sorted({signal.SIGINT, signal.SIGTERM} | set(STOPS))
        held = {s: signal.signal(s, signal.SIG_IGN) for s in stops}
        try:                                         # the workers are forked here, inheriting SIG_IGN
            super(WorkerLoader, self).__init__(dataset, *args, **kwargs)
        finally:
            for s, handler in held.items():
                signal.signal(s, handler)
        pool = self._worker_pool
        self._stopper = None
        if isinstance(pool, multiprocessing.pool.Pool) and not isinstance(pool, multiprocessing.pool.ThreadPool):
            self._stopper = weakref.finalize(self, stop_pool, pool)       # collected, or at exit
            pool.terminate = self._stopper         # what gluon's iterator calls on a worker's error

    def __del__(self):                             # (gluon's terminate() would join unkillable workers)
        if self._stopper is not None:
            self._stopper()


__all__ = ['WorkerLoader', 'stop_pool']
