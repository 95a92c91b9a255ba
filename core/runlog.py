"""A run's log: stderr, and on rank 0 log_dir/<model_prefix>.log (held back until the run has
started, so a run that cannot start leaves no log file)."""
import logging
import os
import sys


class LogFileHandler(logging.FileHandler):
    """A log file that, when it can no longer be written (a full disk), says so once and stops
    instead of printing a traceback for every message; training goes on. With `hold`, records are
    kept in memory and the file is not even created until `write_held()`: a run that stops while it
    is being set up (a wrong tap, a bad pack) leaves no log file behind (its messages were on
    stderr)."""

    def __init__(self, filename, mode='a', hold=False):
        super(LogFileHandler, self).__init__(filename, mode, delay=True)
        self._held = [] if hold else None

    def handleError(self, record):
        if not getattr(self, '_failed', False):
            self._failed = True              # called inside the failed emit: the exception is current
            sys.stderr.write('warning: cannot write the log file %s (%s); it gets no more lines, training goes '
                             'on\n' % (self.baseFilename, sys.exc_info()[1]))

    def emit(self, record):
        if self._held is not None:
            self._held.append(record)
        elif not getattr(self, '_failed', False):
            super(LogFileHandler, self).emit(record)

    def write_held(self):
        """Write the records held so far, and every later one as it comes. (Not `release`: that is
        logging.Handler's lock.)"""
        held, self._held = self._held or [], None
        for record in held:
            self.emit(record)


def teardown_logging():
    """Detach and close the handlers `setup_logging` added (a run's log file is closed when it ends)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, '_nst', False):
            root.removeHandler(h)
            h.close()


def setup_logging(cfg, rank=0, to_file=True, hold=False):
    """Log to stderr and, on rank 0 with `to_file`, to log_dir/<model_prefix>.log (with `hold`, only
    from `release_log_file()` on, the records before it included)."""
    teardown_logging()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, '_warnings_only', False):     # a tool's warning printer (tools.detection trains in-process)
            root.removeHandler(h)
    if rank == 0 and to_file:
        fh = LogFileHandler(os.path.join(cfg.log_dir, '%s.log' % cfg.model_prefix), mode='a', hold=hold)
        fh.setFormatter(logging.Formatter('%(asctime)s %(name)s %(levelname)s %(message)s', '%m-%d %H:%M:%S'))
        fh._nst = True
        root.addHandler(fh)
    ch = logging.StreamHandler(sys.stderr)
    kv_store = str(cfg.get('kv_store', ''))
    distributed = kv_store.startswith('dist') and 'DMLC_ROLE' in os.environ or \
        kv_store == 'horovod' and 'HOROVOD_RANK' in os.environ
    ch.setFormatter(logging.Formatter(('[worker %d] ' % rank if distributed else '') +
                                      '%(name)s %(levelname)s %(message)s'))
    ch._nst = True
    root.addHandler(ch)


def release_log_file():
    """Start writing the log file `setup_logging(..., hold=True)` held back."""
    for h in logging.getLogger().handlers:
        if isinstance(h, LogFileHandler):
            h.write_held()
