"""ImageNet-style packs decoded with OpenCV on a pool of threads (`DecodeIter`).

MXNet 1.9.1's ImageRecordIter decodes on max(cores/2 - 1, 1) threads whatever
`preprocess_threads` says (one on 2 cores), and its decode + augmentation costs about twice
OpenCV's; OpenCV releases the GIL while it decodes and resizes, so Python threads running it
use every core (benchmarks/input_pipeline.py measures both against the decode bound).
"""
import collections
import ctypes
import mmap
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import mxnet as mx
import numpy as np

from .augment import augment_image, centre_crop_resize, centre_image, colour_maps, draw_augmentation, generator
from .packfile import LENGTH_MASK, PackError, RECORD_MAGIC, read_idx, read_record_at

#: bytes read at once for a record (more only when its header says it is longer)
READ_AHEAD = 1 << 20


def damaged(path, why):
    """The DataError for a record of pack `path` that cannot be read or decoded."""
    from . import DataError
    prefix = path[:-4] if path.endswith('.rec') else path
    return DataError('reading %s failed (%s). A record is probably damaged: find it with `python -m data.pack '
                     '--check %s`, then rebuild or copy the pack again' % (path, why, prefix))


class PackIndex(object):
    """A pack's records: keys and offsets from its .idx, read once; `read` takes one record.

    The .rec is memory-mapped (read-only) when the file system allows it, so a record's image is
    decoded straight from the page cache (a pread copy costs 1-2% of an ImageNet image's decode
    here), else read with pread. Thread-safe. Reading a mapped page past the end of a file that
    shrank would kill the process (SIGBUS), so each read first checks that the file still holds
    the record (a DataError otherwise; only a truncation during the millisecond of that image's
    decoding escapes it): a pack is to be replaced by a new file while in use (data.pack does
    that), not rewritten in place.
    """

    def __init__(self, prefix, use_map=True):
        keys, offsets = read_idx(prefix + '.idx')
        self.prefix, self.path = prefix, prefix + '.rec'
        self.keys = keys
        self.offsets = np.asarray(offsets, np.int64)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._map = None
        if use_map:
            try:
                self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):           # (a file system without mmap, an empty file)
                self._map = None
        self.size = len(self._map) if self._map is not None else os.fstat(self._fd).st_size
        # bytes from each offset to the next record start (any order of the index) or the end
        starts = np.unique(np.append(self.offsets, self.size))
        self.spans = starts[np.searchsorted(starts, self.offsets, side='right')] - self.offsets
        self._where = list(zip(self.offsets.tolist(), self.spans.tolist()))   # (Python ints: read per image)

    def __len__(self):
        return len(self.keys)

    def _bytes(self, offset, count):
        """A buffer of the `count` bytes at `offset` (fewer at the end of the file)."""
        if self._map is None:
            return memoryview(os.pread(self._fd, count, offset))
        now = os.fstat(self._fd).st_size       # (reading a mapped page past the end: SIGBUS)
        if now < offset + count:
            raise damaged(self.path, 'it shrank from %d to %d bytes while in use: a pack must be replaced by a '
                          'new file, as data.pack does, not rewritten in place' % (self.size, now))
        return memoryview(self._map)[offset:offset + count]

    def read(self, i):
        """(label, image bytes) of the i-th record of the index; DataError naming the pack if no
        whole image record starts at its offset."""
        offset, span = self._where[i]
        buf = self._bytes(offset, span if self._map is not None else min(span, READ_AHEAD))
        magic, lrec = struct.unpack_from('<II', buf) if len(buf) >= 8 else (0, 0)
        cflag, length = lrec >> 29, lrec & LENGTH_MASK
        if magic != RECORD_MAGIC or cflag > 1 or 8 + length > span:
            raise damaged(self.path, 'no whole record at offset %d (record %d)' % (offset, self.keys[i]))
        if cflag == 1:                              # split around copies of the magic number (rare)
            try:
                with open(self.path, 'rb') as f:
                    payload = memoryview(read_record_at(f, offset, self.size, self.path))
            except PackError as e:
                raise damaged(self.path, str(e))
        else:
            if 8 + length > len(buf):
                buf = self._bytes(offset, 8 + length)
            payload = buf[8:8 + length]
        if len(payload) < 24:
            raise damaged(self.path, 'record %d is too short for its header' % self.keys[i])
        flag, label = struct.unpack_from('<If', payload)      # IRHeader: flag, label, id, id2
        start = 24 + 4 * flag
        if flag > 0:                                # a label vector after the header: its first
            if len(payload) < start:
                raise damaged(self.path, 'record %d is too short for its %d labels' % (self.keys[i], flag))
            label = struct.unpack_from('<f', payload, 24)[0]
        return label, payload[start:]

    def close(self):
        """Unmap and close the .rec (when no image buffer of it is still in use). Idempotent."""
        fd, self._fd = getattr(self, '_fd', None), None
        if fd is None:
            return
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:                     # a buffer is still in use: the map goes with it
                pass
        os.close(fd)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _wait_to_write(arr):
    """Wait until MXNet has finished every operation that reads or writes NDArray `arr`."""
    mx.base.check_call(mx.base._LIB.MXNDArrayWaitToWrite(arr.handle))


def _numpy_view(arr):
    """A writable numpy array over the memory of the CPU float32 NDArray `arr` (no copy)."""
    ptr = ctypes.c_void_p()
    mx.base.check_call(mx.base._LIB.MXNDArrayGetData(arr.handle, ctypes.byref(ptr)))
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=arr.shape)


class DecodeIter(object):
    """Batches of an ImageNet-style pack, decoded and augmented with OpenCV on `threads` threads.

    Order: a permutation of the n records seeded by (seed, epoch) (index order without
    `shuffle`), repeated as far as needed to fill whole global batches of G = batch_size x
    num_parts: ceil(n / G) batches, the last one whole (round_batch). Worker `part_index` takes
    rows part_index x batch_size ... + batch_size - 1 of each global batch, so workers read
    disjoint records and together see exactly what one process with the global batch sees;
    `pad` counts a batch's rows past the n-th (at its end), which evaluation leaves out;
    `index` (batch_size,) holds each row's record position in the pack's index (0..n-1).

    Randomness: every random number of global batch j comes from a generator seeded by
    (seed, epoch, j) (`data.augment.draw_augmentation`), and each row is written by one task
    into its own place, so a batch depends on neither the number of threads nor their timing:
    a resumed run sees exactly the batches of an uninterrupted one.

    Prefetch: each batch is split into tasks of ceil(batch_size / (4 threads)) images; `depth`
    batches are decoded ahead, straight into the memory of the batch's NDArray, in a ring of
    depth + keep arrays. As with ImageRecordIter's buffers, a batch's array is rewritten `keep`
    batches later (after MXNet has finished its operations on it), and once the iterator is
    closed (at its end, by `close`, or when dropped) by the next iterator given the same `spare`
    list. A record that cannot be read or decoded raises a DataError naming the pack.
    """

    def __init__(self, index, batch_size, image_size, mean, std, augment=False, resize=None, shuffle=False,
                 seed=0, epoch=0, num_parts=1, part_index=0, threads=1, depth=3, keep=2, spare=None):
        n = len(index)
        if not 0 <= part_index < num_parts:
            raise ValueError('part_index=%d is not in 0..num_parts-1 (num_parts=%d)' % (part_index, num_parts))
        self.index, self.batch_size, self.augment = index, batch_size, augment
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        self.resize = resize or centre_crop_resize(image_size)
        if not augment and self.resize < image_size:
            raise ValueError('resize=%d is smaller than image_size=%d' % (self.resize, image_size))
        self.seed, self.epoch, self.part_index, self.num_parts = seed, epoch, part_index, num_parts
        glob = batch_size * num_parts
        total = max(1, -(-n // glob)) * glob
        order = generator(seed, epoch, 0).permutation(n) if shuffle else np.arange(n)
        self._order = np.resize(order, total)       # the order again as far as needed: whole batches
        self._n, self._batches = n, total // glob
        shape = (batch_size, 3, image_size, image_size)
        self.provide_data = [mx.io.DataDesc('data', shape)]
        self.provide_label = [mx.io.DataDesc('softmax_label', (batch_size,))]
        threads = max(1, int(threads))
        if threads > 1:
            import cv2
            cv2.setNumThreads(1)                    # the pool is the parallelism (OpenCV's own costs here)
        self._chunk = max(1, -(-batch_size // (4 * threads)))
        # the ring: arrays a closed iterator of the same factory left (`spare`), else new ones
        # (a new 64 x 3 x 224 x 224 array costs its page faults: 0.3 ms an image here)
        self._spare = spare if spare is not None else []
        self._ring = [self._spare.pop() if self._spare and self._spare[-1].shape == shape else mx.nd.empty(shape)
                      for _ in range(depth + keep)]
        self._inflight = collections.deque()
        self._scheduled = 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix='decode')
        for _ in range(depth):
            self._schedule()

    def __len__(self):
        return self._batches

    def _schedule(self):
        """Queue the decoding of the next batch, if any, into its array of the ring."""
        j = self._scheduled
        if j >= self._batches:
            return
        self._scheduled += 1
        b = self.batch_size
        start = j * b * self.num_parts + self.part_index * b
        records = self._order[start:start + b]
        pad = int(np.clip(start + b - self._n, 0, b))
        draws = None
        if self.augment:                            # the global batch's draws: the same in every worker
            draws = draw_augmentation(self.seed, self.epoch, j, b * self.num_parts)[self.part_index * b:][:b]
            draws = list(zip(draws.tolist(), colour_maps(draws, self.mean, self.std)))
        out = self._ring[j % len(self._ring)]
        _wait_to_write(out)                         # MXNet is done with the batch held here before
        view, labels, rows_records = _numpy_view(out), np.empty(b, np.float32), records.tolist()
        tasks = [self._pool.submit(self._decode, out, view, labels, rows, rows_records, draws)
                 for rows in (range(i, min(i + self._chunk, b)) for i in range(0, b, self._chunk))]
        self._inflight.append((out, labels, pad, records, tasks))

    def _decode(self, out, view, labels, rows, records, draws):
        """Decode rows `rows` of a batch into `view` (the memory of NDArray `out`, which this
        reference keeps alive) and their labels into `labels`."""
        import cv2
        for r in rows:
            i = records[r]
            label, image = self.index.read(i)
            try:
                img = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
                if img is None or img.size == 0:
                    raise damaged(self.index.path, 'record %d does not decode as an image' % self.index.keys[i])
                if draws is not None:
                    augment_image(img, view[r], draws[r][0], draws[r][1])
                else:
                    centre_image(img, view[r], self.resize, self.mean, self.std)
            except cv2.error as e:
                raise damaged(self.index.path, 'record %d: OpenCV: %s' % (self.index.keys[i], str(e).strip()[-200:]))
            labels[r] = label

    def __iter__(self):
        return self

    def __next__(self):
        if not self._inflight:
            self.close()
            raise StopIteration
        out, labels, pad, records, tasks = self._inflight.popleft()
        try:
            self._schedule()
            for t in tasks:
                t.result()
        except BaseException:                       # a damaged record, Ctrl-C: stop decoding
            self.close()
            raise
        return mx.io.DataBatch(data=[out], label=[mx.nd.array(labels)], pad=pad, index=records,
                               provide_data=self.provide_data, provide_label=self.provide_label)

    next = __next__

    def close(self):
        """Stop decoding (queued tasks are cancelled, the running ones finish); the ring's arrays go
        to `spare` for the next iterator. Idempotent. (The pack stays open in `index`, which the
        iterators of a factory share.)"""
        pool, self._pool = getattr(self, '_pool', None), None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            self._inflight.clear()
            if len(self._spare) < len(self._ring):  # for the next iterator (it waits for MXNet's reads)
                self._spare.extend(self._ring)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
