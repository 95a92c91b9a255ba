"""ImageNet-style packs decoded with OpenCV in worker processes (`DecodeIter` on a `DecodePool`).

Why processes: OpenCV releases the GIL while it decodes and resizes, but the Python between its
calls (the augmentation's few lines per image) does not, so two threads of one process reach about
1400 images/s on 2 cores where two processes reach about 1710 (decode + augmentation). MXNet
1.9.1's ImageRecordIter decodes on max(cores/2 - 1, 1) threads whatever `preprocess_threads`
says, and its decode + augmentation costs about twice OpenCV's (benchmarks/input_pipeline.py
measures both against the decode bound).

A `DecodePool` starts its workers once (data/decode_worker.py: new interpreters that import
numpy, OpenCV and the `data` package, never mxnet) and owns a ring of batch buffers in shared
memory (memfd: anonymous, so nothing is left in /dev/shm whatever happens to the process). Each
slot's planes (uint8 when the colour step runs on the device, else float32) are wrapped once as
an NDArray (`mx.nd.from_numpy(..., zero_copy=True)`), so the workers write decoded, augmented
images straight into the arrays MXNet reads.
`record_iters` keeps one pool per pair of iterator factories (train and val, a ring each), for
every epoch; it is shut down when the factories are dropped, at exit, or when an iterator that
made its own pool closes. Workers leave when the task pipe ends (the main process closed it or
died) or their parent is gone; they ignore SIGINT (they are in their own process group: Ctrl-C at
the terminal reaches only the main process, which stops them). They stay in the main process's
session: where Linux groups the CPU by session (autogroup, on by default in Ubuntu), a session of
their own would give each worker as much CPU as the whole trainer, and `nice python train.py`
would not reach them.
"""
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from multiprocessing.connection import Connection, wait as wait_connections

import mxnet as mx
import numpy as np

from . import DataError
from .augment import centre_crop_resize, colour_affine, draw_augmentation, generator, normalise_affine
from .decode_worker import TASK, map_fd, slot_layout, slot_views, write_header
from .packindex import PackIndex  # noqa: F401  (the pack reader, here since DecodeIter began)

#: the command a worker runs: the project's root on sys.path, then data.decode_worker.main
BOOT = 'import sys; sys.path.insert(0, sys.argv[1]); from data.decode_worker import main; main(sys.argv[2:])'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: a worker's own process group in the main process's session (Python 3.10: a session of its own)
OWN_GROUP = {'process_group': 0} if sys.version_info >= (3, 11) else {'start_new_session': True}
#: seconds a shut-down worker has to leave before it is killed
LEAVE_SECONDS = 2.0


def worker_env():
    """The workers' environment: this process's, with
    - one thread for numpy's BLAS and OpenMP (the workers do no linear algebra; the main process's
      OMP_NUM_THREADS would start that many idle BLAS threads in every worker);
    - glibc's malloc keeping the memory it frees (up to 256 MB) and serving blocks up to 16 MB from
      its heap: by default it maps every block over 128 KB afresh and gives freed memory back, so
      each decoded image (about 560 KB for ImageNet) cost page faults; 9% of a worker's time here.
      (Other C libraries ignore these variables.)"""
    return dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1',
                MALLOC_MMAP_THRESHOLD_=str(16 << 20), MALLOC_TRIM_THRESHOLD_=str(256 << 20))


class WorkerError(DataError):
    """A decoding worker process died (killed, out of memory) or failed; train.py says it in one line."""


def _wait_to_write(arr):
    """Wait until MXNet has finished every operation that reads or writes NDArray `arr`."""
    mx.base.check_call(mx.base._LIB.MXNDArrayWaitToWrite(arr.handle))


def _shared_fd(name, size):
    """A file descriptor of `size` bytes of anonymous shared memory (a memfd; where there is none, an
    already-unlinked temporary file): it has no name to leave behind."""
    if hasattr(os, 'memfd_create'):
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    else:
        with tempfile.TemporaryFile(dir='/dev/shm' if os.path.isdir('/dev/shm') else None) as f:
            fd = os.dup(f.fileno())
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        raise
    return fd


def _exit_text(code):
    """'exited with signal 9 (SIGKILL)' / 'exited with status 1' for a Popen returncode."""
    if code is None:
        return 'stopped answering'
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = '?'
        hint = ': killed, perhaps for lack of memory (lower data_threads or batch_size)' if -code == signal.SIGKILL \
            else ''
        return 'exited with signal %d (%s)%s' % (-code, name, hint)
    return 'exited with status %d' % code


class _Workers(object):
    """The worker processes, their result connections, the task pipe's write end and the cancel
    marks of a pool: what its finalizer needs (it must not hold the pool)."""

    def __init__(self):
        self.procs, self.conns, self.task_w, self.cancel, self.closed = [], [], None, None, False
        self.owner = os.getpid()

    def shutdown(self):
        """Skip every queued task, end the task pipe, give the workers LEAVE_SECONDS to leave, kill
        the rest. Idempotent; safe at interpreter exit; nothing in a forked child (whose exit must
        not stop its parent's workers)."""
        if self.closed or os.getpid() != self.owner:
            return
        self.closed = True
        if self.cancel is not None:
            self.cancel[:] = np.iinfo(np.int64).max
        if self.task_w is not None:
            os.close(self.task_w)
            self.task_w = None
        deadline = time.monotonic() + LEAVE_SECONDS
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for c in self.conns:
            c.close()


class DecodePool(object):
    """`workers` decoding processes and `slots` shared batch buffers of (batch_size, 3, image_size,
    image_size) `dtype` (float32: the workers apply the colour maps; uint8: the device will), for
    one iterator per `Ring` at a time.

    Holds, per slot: `arrays[slot]` (the NDArray over its planes), `views[slot]` (numpy views of
    its planes, labels, records, draws, colour maps, contrast factors and header,
    data/decode_worker.py). Tasks are ranges of rows of a slot (`submit`), answered in any order;
    `wait` takes a batch's answers in order and raises the first failure (a DataError naming the
    pack and record, or a WorkerError). A worker that dies breaks the pool: `broken` holds the
    error, raised again by every call.
    """

    def __init__(self, workers, batch_size, image_size, slots, dtype='float32'):
        self.workers = max(1, int(workers))
        self.shape, self.dtype = (batch_size, 3, image_size, image_size), np.dtype(dtype).name
        self.broken = None
        size = slot_layout(batch_size, image_size, self.dtype)[1]
        self._state = state = _Workers()
        self._finalizer = weakref.finalize(self, state.shutdown)
        fds = []
        try:
            fds = [_shared_fd('decode-slot', size) for _ in range(slots)]
            fds.append(_shared_fd('decode-control', 8 * slots))
            maps = [map_fd(fd, size) for fd in fds[:-1]]
            self.views = [slot_views(m, batch_size, image_size, self.dtype) for m in maps]
            self.arrays = [mx.nd.from_numpy(v['data'], zero_copy=True) for v in self.views]
            state.cancel = np.ndarray((slots,), np.int64, map_fd(fds[-1], 8 * slots))
            task_r, state.task_w = os.pipe()
            try:
                for k in range(self.workers):
                    res_r, res_w = os.pipe()
                    config = dict(batch_size=batch_size, image_size=image_size, dtype=self.dtype, slots=fds[:-1],
                                  control=fds[-1], tasks=task_r, results=res_w, parent=os.getpid())
                    try:
                        state.procs.append(subprocess.Popen(
                            [sys.executable, '-c', BOOT, ROOT, json.dumps(config)], pass_fds=fds + [task_r, res_w],
                            stdin=subprocess.DEVNULL, env=worker_env(), **OWN_GROUP))
                    except BaseException:
                        os.close(res_r)
                        raise
                    finally:
                        os.close(res_w)
                    state.conns.append(Connection(res_r, writable=False))
            finally:
                os.close(task_r)
        except BaseException:
            state.shutdown()
            raise
        finally:
            for fd in fds:                          # (the mappings and the workers keep the memory)
                os.close(fd)
        self._next = 0                              # the next task id
        self._pending = {}                          # task id -> slot, until a worker answers
        self._by_slot = [set() for _ in range(slots)]
        self._wanted, self._done = set(), {}        # ids an iterator will wait for; their answers

    def _check(self):
        if self.broken is not None:
            raise WorkerError(str(self.broken))
        if self._state.closed:
            raise WorkerError('the decoding pool was shut down')

    def _fail(self, message):
        """Break the pool with WorkerError(`message`) (the other workers are stopped) and raise it."""
        self.broken = WorkerError(message)
        self._state.shutdown()
        raise WorkerError(message)

    def _worker_gone(self, k):
        """Break the pool for worker k, which closed its result pipe or exited."""
        p = self._state.procs[k]
        try:
            code = p.wait(LEAVE_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        self._fail('the decoding worker %d of %d (pid %d) %s; the batches it was decoding are lost'
                   % (k + 1, self.workers, p.pid, _exit_text(code)))

    def _collect(self, timeout=1.0):
        """Take the answers that arrive within `timeout` seconds; WorkerError if a worker is gone."""
        conns = self._state.conns
        ready = wait_connections(conns, timeout)
        if not ready:
            for k, p in enumerate(self._state.procs):
                if p.poll() is not None:
                    self._worker_gone(k)
            return
        for c in ready:
            k = conns.index(c)
            try:
                tid, status, text = c.recv()
            except (EOFError, OSError):
                self._worker_gone(k)
            except BaseException:                   # Ctrl-C inside a message: the pipe is out of step
                self.broken = WorkerError('the decoding pool was interrupted while reading an answer')
                self._state.shutdown()
                raise
            slot = self._pending.pop(tid, None)
            if slot is not None:
                self._by_slot[slot].discard(tid)
            if tid in self._wanted:
                self._done[tid] = (status, text)

    def claim(self, slot):
        """Make `slot` free to rewrite: wait for the tasks still writing it (an abandoned iterator's)
        and for MXNet's operations on its array."""
        while self._by_slot[slot]:
            self._check()
            self._collect()
        _wait_to_write(self.arrays[slot])

    def submit(self, slot, ranges):
        """Queue one task per (first row, end row) of `ranges` on `slot` (its records, draws and
        header written); the task ids, in order."""
        self._check()
        tids = []
        for lo, hi in ranges:
            tid, self._next = self._next, self._next + 1     # (before the write: a queued id is never reused)
            try:
                os.write(self._state.task_w, TASK.pack(tid, slot, lo, hi))
            except BrokenPipeError:                 # every worker is gone
                self._collect(0.0)
                self._fail('the decoding workers are gone')
            # recorded once queued: a Ctrl-C before the write leaves no id that no worker will answer (a
            # later claim of the slot would wait for it forever)
            self._pending[tid] = slot
            self._by_slot[slot].add(tid)
            self._wanted.add(tid)
            tids.append(tid)
        return tids

    def wait(self, tids):
        """Wait for the tasks `tids` in order; the first failure raised (DataError, WorkerError)."""
        for tid in tids:
            if tid not in self._done and tid not in self._pending:
                raise WorkerError('task %d of the decoding pool was answered already or never queued' % tid)
            while tid not in self._done:
                self._check()
                self._collect()
            status, text = self._done.pop(tid)
            self._wanted.discard(tid)
            if status == 'data':
                raise DataError(text)
            if status != 'done':
                raise WorkerError('a decoding worker failed: %s' % (text or 'the task was cancelled'))

    def cancel(self, slots, tids):
        """Skip the queued tasks of `slots` (those running finish) and forget the answers of `tids`."""
        for slot in slots:
            self._state.cancel[slot] = self._next
        self._wanted.difference_update(tids)
        for tid in tids:
            self._done.pop(tid, None)

    def close(self):
        """Shut the workers down (the arrays stay valid while referenced). Idempotent."""
        self._finalizer()

    @property
    def pids(self):
        """The workers' process ids."""
        return [p.pid for p in self._state.procs]


class Ring(object):
    """Slots `slots` of `pool`, used by one DecodeIter at a time (`take`)."""

    def __init__(self, pool, slots):
        self.pool, self.slots, self._owner = pool, list(slots), None

    def take(self, it):
        """Give the ring to iterator `it` unless another open iterator holds it; whether it did."""
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not it and owner._pool is not None:
            return False
        self._owner = weakref.ref(it)
        return True

    def release(self, it):
        """`it` no longer uses the ring."""
        if self._owner is not None and self._owner() is it:
            self._owner = None


_Batch = collections.namedtuple('_Batch', 'slot pad records tasks')


class DecodeIter(object):
    """Batches of an ImageNet-style pack, decoded and augmented with OpenCV in `threads` worker
    processes.

    Order: a permutation of the n records seeded by (seed, epoch) (index order without
    `shuffle`), repeated as far as needed to fill whole global batches of G = batch_size x
    num_parts: ceil(n / G) batches, the last one whole (round_batch). Worker `part_index` takes
    rows part_index x batch_size ... + batch_size - 1 of each global batch, so workers read
    disjoint records and together see exactly what one process with the global batch sees;
    `pad` counts a batch's rows past the n-th (at its end), which evaluation leaves out;
    `index` (batch_size,) holds each row's record position in the pack's index (0..n-1).

    Output: with `colour_on_device` (the network runs on a GPU), a batch's data is [images (B, 3,
    S, S) uint8 RGB, colour (B, 3, 4) float32], each image's colour jitter, lighting and
    normalisation as an affine map that `data.device.colour_apply` runs on the device (see
    data/augment.py); otherwise the workers apply the maps and the data is [(B, 3, S, S) float32].
    `data.device.device_inputs` turns either into the network's input.

    Randomness: every random number of global batch j comes from a generator seeded by
    (seed, epoch, j) (`data.augment.draw_augmentation`), drawn here and handed to the workers
    with the rows; each row is written by one task into its own place, so a batch depends on
    neither the number of workers nor their timing: a resumed run sees exactly the batches of an
    uninterrupted one.

    Prefetch: each batch is split into tasks of ceil(batch_size / (4 workers)) images, which idle
    workers take; `depth` batches are decoded ahead, straight into the shared memory of the
    batch's NDArray, in a ring of depth + keep slots. As with ImageRecordIter's buffers, a batch's
    array is rewritten `keep` batches later (after MXNet has finished its operations on it), and
    once the iterator is closed (at its end, by `close`, or when dropped) by the next iterator
    given the same `ring` (record_iters gives each factory one, on one pool for every epoch).
    Without a ring, or while another open iterator holds it, the iterator starts a pool of its own
    (`threads` workers), shut down when it closes. `threads` = 1 is one worker process, not the
    main thread: the decoding overlaps the training, as the one decoding thread did before. A
    record that cannot be read or decoded raises a DataError naming the pack; a worker that dies,
    a WorkerError.
    """

    def __init__(self, index, batch_size, image_size, mean, std, augment=False, resize=None, shuffle=False,
                 seed=0, epoch=0, num_parts=1, part_index=0, threads=1, depth=3, keep=2, ring=None,
                 colour_on_device=False):
        n = len(index)
        if not 0 <= part_index < num_parts:
            raise ValueError('part_index=%d is not in 0..num_parts-1 (num_parts=%d)' % (part_index, num_parts))
        self.index, self.batch_size, self.augment = index, batch_size, augment
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.resize = int(resize or centre_crop_resize(image_size))
        if not augment and self.resize < image_size:
            raise ValueError('resize=%d is smaller than image_size=%d' % (self.resize, image_size))
        self.seed, self.epoch, self.part_index, self.num_parts = seed, epoch, part_index, num_parts
        glob = batch_size * num_parts
        total = max(1, -(-n // glob)) * glob
        order = generator(seed, epoch, 0).permutation(n) if shuffle else np.arange(n)
        self._order = np.resize(order, total)       # the order again as far as needed: whole batches
        self._n, self._batches = n, total // glob
        shape = (batch_size, 3, image_size, image_size)
        self.colour_on_device = bool(colour_on_device)
        dtype = 'uint8' if self.colour_on_device else 'float32'
        self.provide_data = [mx.io.DataDesc('data', shape, np.dtype(dtype))]
        if self.colour_on_device:
            self.provide_data.append(mx.io.DataDesc('colour', (batch_size, 3, 4)))
        self.provide_label = [mx.io.DataDesc('softmax_label', (batch_size,))]
        self._header = dict(prefix=index.prefix, rec_id=index.file_id(), count=n, size=index.size,
                            augment=bool(augment), resize=self.resize)
        self._normalise = None if augment else normalise_affine(batch_size, self.mean, self.std)
        self._pool = self._own = None
        self._inflight = collections.deque()
        slots = depth + keep
        if ring is None or ring.pool.shape != shape or ring.pool.dtype != dtype or len(ring.slots) < slots \
                or ring.pool.broken is not None or not ring.take(self):
            self._own = DecodePool(threads, batch_size, image_size, slots, dtype)
            ring = Ring(self._own, range(slots))
            ring.take(self)
        self._ring_of, self._pool, self._slots = ring, ring.pool, ring.slots[:slots]
        self._ring = [self._pool.arrays[s] for s in self._slots]
        self._chunk = max(1, -(-batch_size // (4 * self._pool.workers)))
        self._scheduled = 0
        try:
            for _ in range(depth):
                self._schedule()
        except BaseException:
            self.close()
            raise

    def __len__(self):
        return self._batches

    def _schedule(self):
        """Queue the decoding of the next batch, if any, into its slot of the ring."""
        j = self._scheduled
        if j >= self._batches:
            return
        self._scheduled += 1
        b = self.batch_size
        start = j * b * self.num_parts + self.part_index * b
        records = self._order[start:start + b]
        pad = int(np.clip(start + b - self._n, 0, b))
        slot = self._slots[j % len(self._slots)]
        self._pool.claim(slot)                      # MXNet and any earlier task are done with it
        views = self._pool.views[slot]
        views['records'][:] = records
        if self.augment:                            # the global batch's draws: the same in every worker
            draws = draw_augmentation(self.seed, self.epoch, j, b * self.num_parts)[self.part_index * b:][:b]
            views['draws'][:] = draws
            views['colour'][:], views['contrast'][:] = colour_affine(draws, self.mean, self.std)
        else:
            views['colour'][:] = self._normalise
        write_header(views, self._header)
        tasks = self._pool.submit(slot, [(i, min(i + self._chunk, b)) for i in range(0, b, self._chunk)])
        self._inflight.append(_Batch(slot, pad, records, tasks))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._inflight:
            self.close()
            raise StopIteration
        batch = self._inflight.popleft()
        try:
            self._schedule()
            self._pool.wait(batch.tasks)
        except BaseException:                       # a damaged record, a dead worker, Ctrl-C: stop decoding
            self._inflight.appendleft(batch)        # (so that close cancels its tasks and forgets their answers)
            self.close()
            raise
        views = self._pool.views[batch.slot]
        labels = mx.nd.array(views['labels'])                           # (a copy)
        data = [self._pool.arrays[batch.slot]]
        if self.colour_on_device:
            data.append(mx.nd.array(views['colour']))                  # (a copy)
        return mx.io.DataBatch(data=data, label=[labels], pad=batch.pad,
                               index=batch.records, provide_data=self.provide_data,
                               provide_label=self.provide_label)

    next = __next__

    def close(self):
        """Stop decoding (queued tasks are skipped, running ones finish into the ring, which the next
        user of the ring waits for) and hand the ring back; a pool of the iterator's own is shut
        down. Idempotent. (The pack stays open in `index`, which the iterators of a factory share.)"""
        pool, self._pool = getattr(self, '_pool', None), None
        if pool is None:
            return
        pool.cancel(self._slots, [t for batch in self._inflight for t in batch.tasks])
        self._inflight.clear()
        self._ring_of.release(self)
        if self._own is not None:
            self._own.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
