"""The decoding worker process of `data.decode.DecodePool`, and the shared-memory layout both use.

A worker imports numpy, OpenCV and the project's `data` package (data/__init__.py, packfile,
packindex, augment), never mxnet: it is started as a new interpreter (`subprocess`, in its own
process group, so Ctrl-C at the terminal reaches only the main process, which shuts the workers
down)
and runs `main`. Why not `multiprocessing`: its 'spawn' and 'forkserver' children import the
parent's __main__ module again (train.py, benchmarks.*, pytest), and plain fork after MXNet
started its engine threads is unsafe.

Channels (all inherited file descriptors, listed in the worker's argument):
- slot memory: one memfd per ring slot (`slot_layout`): the batch's RGB planes (B, 3, S, S),
  uint8 (the colour step runs on the device) or float32 (the workers apply it), and its labels (B
  float32), written by the worker; records (B int64: positions in the pack's index), draws (B x
  DRAWS float64), colour maps (B x 3 x 4 float32, completed by the worker with each image's mean
  gray) and contrast factors (B x 3 float64) and a JSON header (the pack, the mode, resize),
  written by the main process before it queues the tasks;
- control memory: int64 per slot, `cancel[slot]`: tasks of the slot with a smaller id are skipped;
- the task pipe, shared by all workers: fixed TASK records (id, slot, first row, end row), each
  written whole (24 bytes < PIPE_BUF) and read whole, so the kernel hands each task to one idle
  worker (load balancing without a lock);
- the result pipe, one per worker (multiprocessing.connection framing): (task id, status, text)
  with status 'done', 'skipped', 'data' (a DataError's message) or 'failed' (anything else).

A worker exits when the task pipe reaches its end (the main process closed it, or died), or when
its parent process is gone (checked every second while idle); it ignores SIGINT.
"""
import json
import mmap
import os
import select
import signal
import struct
import sys

import numpy as np

from .augment import DRAWS

#: a task: its id, the slot, the first row and the end row (exclusive); padded to 24 bytes
TASK = struct.Struct('<qiii4x')
#: bytes of a slot's JSON header (the pack prefix is its longest field)
HEADER_BYTES = 16384
ALIGN = 64


def slot_layout(batch_size, image_size, dtype):
    """({name: (offset, shape, dtype)}, total bytes) of one ring slot's shared memory: 'data' (B, 3,
    S, S) of `dtype` (uint8 or float32) first (page-aligned, wrapped by MXNet), then 'labels',
    'records', 'draws', 'colour', 'contrast' and 'header' (uint8), each aligned to 64 bytes."""
    parts = [('data', (batch_size, 3, image_size, image_size), np.dtype(dtype)),
             ('labels', (batch_size,), np.float32), ('records', (batch_size,), np.int64),
             ('draws', (batch_size, DRAWS), np.float64), ('colour', (batch_size, 3, 4), np.float32),
             ('contrast', (batch_size, 3), np.float64), ('header', (HEADER_BYTES,), np.uint8)]
    layout, offset = {}, 0
    for name, shape, dtype in parts:
        layout[name] = (offset, shape, dtype)
        offset += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // ALIGN) * ALIGN
    return layout, offset


def slot_views(buf, batch_size, image_size, dtype):
    """{name: numpy array} over the shared memory `buf` of one slot (`slot_layout`)."""
    layout, _ = slot_layout(batch_size, image_size, dtype)
    return {name: np.ndarray(shape, dtype, buf, offset) for name, (offset, shape, dtype) in layout.items()}


def write_header(views, header):
    """Write the dict `header` as JSON into the slot's header bytes (ValueError if it is too long)."""
    raw = json.dumps(header).encode()
    if len(raw) + 4 > HEADER_BYTES:
        raise ValueError('the pack path is too long for the decoding workers (%d bytes of header, at most %d)'
                         % (len(raw), HEADER_BYTES - 4))
    h = views['header']
    h[:4] = np.frombuffer(struct.pack('<I', len(raw)), np.uint8)
    h[4:4 + len(raw)] = np.frombuffer(raw, np.uint8)


def read_header(views):
    """The dict `write_header` wrote into the slot."""
    h = views['header']
    length = struct.unpack('<I', h[:4].tobytes())[0]
    return json.loads(h[4:4 + length].tobytes().decode())


def map_fd(fd, size):
    """A shared read-write mapping of `size` bytes of the file (memfd) `fd`."""
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


class Packs(object):
    """The packs a worker has opened (`PackIndex` by prefix), each checked to be the file the main
    process opened (same device and inode of the .rec, same number of records, not shorter)."""

    def __init__(self):
        self._open = {}

    def get(self, header):
        from .packindex import PackIndex, damaged, shrank
        prefix = header['prefix']
        index = self._open.get(prefix)
        if index is None:
            now = os.stat(prefix + '.rec').st_size
            if now < header['size']:                # (cut short before this worker first read it)
                raise shrank(prefix + '.rec', header['size'], now)
            index = PackIndex(prefix)
            self._open[prefix] = index
        if index.file_id() != header['rec_id'] or len(index) != header['count']:
            self._open.pop(prefix).close()
            raise damaged(index.path, 'it was replaced while in use: a pack must not change during a run')
        return index


def decode_rows(cv2, index, views, header, lo, hi, scratch):
    """Decode rows lo..hi-1 of a slot (the records at `views['records']`), crop (training: augment)
    them and write their planes, uint8 or with the colour map applied (float32), into its data, their
    labels into its labels, and complete their colour maps; a DataError (data.packindex.damaged)
    naming the pack and the record if one cannot be read or decoded. `scratch`: the worker's
    reusable images (`scratch_images`)."""
    from .augment import centre_image, crop_image, finish_colour, write_affine, write_planes
    from .packindex import damaged
    data, labels, records, colour = views['data'], views['labels'], views['records'], views['colour']
    augment, resize, size = header['augment'], header['resize'], data.shape[-1]
    floats = data.dtype == np.float32
    for r in range(lo, hi):
        i = int(records[r])
        label, image = index.read(i)
        try:
            img = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
            if img is None or img.size == 0:
                raise damaged(index.path, 'record %d does not decode as an image' % index.keys[i])
            if augment:
                img = crop_image(img, views['draws'][r].tolist(), scratch[0])
                finish_colour(colour[r], views['contrast'][r], img)
            else:
                img = centre_image(img, size, resize)
            if floats:
                write_affine(img, colour[r], data[r], scratch[1])
            else:
                write_planes(img, data[r])
        except cv2.error as e:
            raise damaged(index.path, 'record %d: OpenCV: %s' % (index.keys[i], str(e).strip()[-200:]))
        labels[r] = label


def scratch_images(size, dtype):
    """A worker's images, reused from one record to the next (fresh ones would cost page faults): the
    cropped uint8 image (S, S, 3) and, when the slots are float32, the two float32 ones `write_affine`
    works in."""
    floats = (np.empty((size, size, 3), np.float32), np.empty((size, size, 3), np.float32)) \
        if np.dtype(dtype) == np.float32 else None
    return np.empty((size, size, 3), np.uint8), floats


def serve(config):
    """The worker's loop (see the module): take tasks from the task pipe until it ends or the
    parent process is gone, decode each into its slot, answer on the result pipe."""
    from multiprocessing.connection import Connection
    from . import DataError
    import cv2
    cv2.setNumThreads(1)                            # the workers are the parallelism
    batch, size, dtype = config['batch_size'], config['image_size'], config['dtype']
    slot_bytes = slot_layout(batch, size, dtype)[1]
    maps = [map_fd(fd, slot_bytes) for fd in config['slots']]
    slots = [slot_views(m, batch, size, dtype) for m in maps]
    control = map_fd(config['control'], 8 * len(slots))
    cancel = np.ndarray((len(slots),), np.int64, control)
    results = Connection(config['results'], readable=False)
    tasks, parent, packs, scratch = config['tasks'], config['parent'], Packs(), scratch_images(size, dtype)
    os.set_blocking(tasks, False)                   # (every worker: the idle ones all wake for a task)
    while True:
        ready, _, _ = select.select([tasks], [], [], 1.0)
        if not ready:
            if os.getppid() != parent:
                return
            continue
        try:
            record = os.read(tasks, TASK.size)
        except BlockingIOError:                     # another worker took it
            continue
        if len(record) != TASK.size:                # the end of the pipe: shut down
            return
        tid, slot, lo, hi = TASK.unpack(record)
        if tid < cancel[slot]:
            results.send((tid, 'skipped', None))
            continue
        views = slots[slot]
        try:
            header = read_header(views)
            decode_rows(cv2, packs.get(header), views, header, lo, hi, scratch)
        except DataError as e:
            results.send((tid, 'data', str(e)))
        except Exception as e:                      # (a bug: said in one line by the main process)
            results.send((tid, 'failed', '%s: %s' % (type(e).__name__, e)))
        else:
            results.send((tid, 'done', None))


def main(argv):
    """Entry point: `argv[0]` is the JSON config (file descriptors, batch geometry, parent pid).
    Exits quietly when the main process goes away (a closed result pipe)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the main process shuts the workers down
    try:
        serve(json.loads(argv[0]))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass                                        # the main process is gone
    except Exception as e:                          # (the main process names the worker and its status)
        sys.stderr.write('decoding worker %d: %s: %s\n' % (os.getpid(), type(e).__name__, e))
        sys.exit(1)


if __name__ == '__main__':
    main(sys.argv[1:])
