"""TensorBoard event files of a training run (config key `tensorboard`).

`create(cfg, rank)` gives the run's monitor: with `tensorboard=true` on rank 0 a `TensorBoard` that
writes to `log_dir/tensorboard/<model_prefix>/`, otherwise a `Monitor` that does nothing. The
trainer calls it where it already reports, with values it has already read from the devices (no
extra synchronisation):

- `start(step)` once before the first epoch; `step` = batches trained before (0, or
  begin_epoch x steps per epoch when resumed);
- `step(step, values)` where the progress bar is updated (every `frequent` batches): one scalar
  `train/<name>` per value (each loss term, top1/top5 training accuracy, lr, img_per_s), at the
  global step (batches trained so far);
- `epoch(step, record)` with each epoch's record: one scalar `epoch/<key>` per number in the
  record (val_top1, val_top5, time, each train_<term>, ...), at the global step of the epoch's end;
- `close()`.

Events go out synchronously through tensorboardX's record writer (TFRecord framing with CRCs) and
its event protobufs, flushed at every call. (tensorboardX's SummaryWriter hands events to a
background thread through a bounded queue: once that thread dies on a write error, e.g. a full
disk, the queue fills and training would block.) A write error is a warning, logged once; the
monitor then stops writing and training goes on.

A resumed run writes a new events file in the same folder that begins with a SessionLog START at
the first step it trains: TensorBoard drops what earlier files hold at or after that step (an
epoch that is being repeated, or epochs moved aside by overwrite=true), so every curve continues
with correct global steps. File names carry increasing timestamps, so the files sort in the order
they were written, which is the order TensorBoard reads them.
"""
import logging
import numbers
import os
import re
import socket
import time

LOG = logging.getLogger('train')


def folder(cfg):
    """Where run `cfg.model_prefix` writes its events."""
    return os.path.join(cfg.log_dir, 'tensorboard', cfg.model_prefix)


class Monitor(object):
    """The monitor of a run without TensorBoard (tensorboard=false, or a worker other than rank 0):
    every call does nothing."""

    def start(self, step):
        pass

    def step(self, step, values):
        pass

    def epoch(self, step, record):
        pass

    def close(self):
        pass


def create(cfg, rank=0):
    """The monitor of a run: `TensorBoard` with tensorboard=true on rank 0, else `Monitor`. Nothing is
    written before `start`. ConfigError (before any work) when tensorboard=true and tensorboardX is
    not installed."""
    if not cfg.tensorboard or rank != 0:
        return Monitor()
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        from config.checks import ConfigError
        raise ConfigError("config key 'tensorboard' is true but the tensorboardX package (which writes the event "
                          "files) is not installed: pip install -c constraints.txt -e '.[tensorboard]', or set "
                          "tensorboard=false")
    return TensorBoard(folder(cfg))


_EVENTS = re.compile(r'^events\.out\.tfevents\.(\d+)\.')


def _file_name(path):
    """A new events file name in folder `path` whose timestamp sorts after every file already there
    (two runs started within one second, e.g. a quick resume, still sort in order)."""
    stamp = int(time.time())
    for name in os.listdir(path):
        m = _EVENTS.match(name)
        if m:
            stamp = max(stamp, int(m.group(1)) + 1)
    return 'events.out.tfevents.%010d.%s.%d' % (stamp, socket.gethostname(), os.getpid())


class TensorBoard(Monitor):
    """Scalars of one run in TensorBoard's event files under `path` (see the module docstring)."""

    def __init__(self, path):
        self.path = path
        self.file = None
        self.writer = None
        self.failed = False

    def _guard(self, what, write):
        """Run `write()`; on an OS error (full disk, permissions) warn once and stop writing."""
        if self.failed:
            return
        try:
            write()
        except OSError as e:
            self.failed = True
            LOG.warning('cannot write TensorBoard events %s (%s: %s); no more events are written for this run, '
                        'training goes on', self.file or self.path, what, getattr(e, 'strerror', None) or e)
            self._close_quietly()

    def _close_quietly(self):
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass

    def _write(self, step, **fields):
        from tensorboardX.proto.event_pb2 import Event
        self.writer.write(Event(wall_time=time.time(), step=step, **fields).SerializeToString())

    def start(self, step):
        from tensorboardX.proto.event_pb2 import SessionLog
        from tensorboardX.record_writer import RecordWriter

        def begin():
            os.makedirs(self.path, exist_ok=True)
            self.file = os.path.join(self.path, _file_name(self.path))
            self.writer = RecordWriter(self.file)
            self._write(0, file_version='brain.Event:2')
            self._write(step + 1, session_log=SessionLog(status=SessionLog.START))
            self.writer.flush()
        self._guard('opening', begin)

    def _scalars(self, step, group, values):
        from tensorboardX.proto.summary_pb2 import Summary
        items = [Summary.Value(tag='%s/%s' % (group, k), simple_value=float(v)) for k, v in values.items()
                 if isinstance(v, numbers.Real) and not isinstance(v, bool)]
        if self.writer is None or not items:
            return

        def write():
            self._write(step, summary=Summary(value=items))
            self.writer.flush()
        self._guard('step %d' % step, write)

    def step(self, step, values):
        self._scalars(step, 'train', values)

    def epoch(self, step, record):
        # (what the record says of the run, e.g. its num_epoch, is no curve)
        self._scalars(step, 'epoch', dict((k, v) for k, v in record.items() if k not in ('epoch', 'num_epoch')))

    def close(self):
        if self.writer is not None:
            self._guard('closing', self.writer.flush)
            self._close_quietly()
