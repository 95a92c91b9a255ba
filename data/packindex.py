"""Reading an ImageNet-style pack's records by their position in its index (`PackIndex`).

Imports neither mxnet nor data.packiters: the decoding worker processes (data/decode_worker.py)
read packs with it, and the `data` package they import with it leads to neither.
"""
import mmap
import os
import struct

import numpy as np

from .packfile import LENGTH_MASK, PackError, RECORD_MAGIC, read_idx, read_record_at

#: bytes read at once for a record (more only when its header says it is longer)
READ_AHEAD = 1 << 20


def damaged(path, why):
    """The DataError for a record of pack `path` that cannot be read or decoded."""
    from . import DataError
    prefix = path[:-4] if path.endswith('.rec') else path
    return DataError('reading %s failed (%s). A record is probably damaged: find it with `python -m data.pack '
                     '--check %s`, then rebuild or copy the pack again' % (path, why, prefix))


#: characters that MXNet's record reader (dmlc's URI parser) reads as syntax in a pack's path: '#' starts
#: a cache file's name, '?' arguments, ';' separates files (measured: every other ASCII character reads)
URI_SYNTAX = {'#': 'a cache file', '?': 'arguments', ';': 'a list of files'}


def uri_problem(path, fix=None):
    """Why MXNet's record reader cannot open pack file `path`, and `fix` (default: rename its folder or
    link it), or None."""
    found = [c for c in URI_SYNTAX if c in path]
    if not found:
        return None
    return ('%s has %s in its path, which MXNet\'s record reader reads as URI syntax (%s), so it cannot open the '
            'file: %s' % (path, ' and '.join(repr(c) for c in found), ', '.join('%s %s' % (c, URI_SYNTAX[c])
                                                                                for c in found),
                          fix or 'rename the folder, or read it through a link without them (ln -s "%s" NEWNAME)'
                          % (os.path.dirname(path) or '.')))


def out_problem(out):
    """What is wrong with `out` as the folder of packs to build (an --out), or None: training could not
    read packs there (`uri_problem`)."""
    problem = uri_problem(os.path.join(out, 'train.rec'), 'choose an --out without %s' % ' '.join(URI_SYNTAX))
    return problem and '--out: training could not read the packs: %s' % problem


def shrank(path, before, now):
    """The DataError for pack `path`, which held `before` bytes when it was opened and `now` fewer."""
    return damaged(path, 'it shrank from %d to %d bytes while in use: a pack must be replaced by a new file, as '
                   'data.pack does, not rewritten in place' % (before, now))


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
        self.keys = np.asarray(keys, np.int64)      # (arrays, not lists: each decoding worker holds a copy)
        self.offsets = np.asarray(offsets, np.int64)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._map = None
        if use_map:
            try:
                self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):           # (a file system without mmap, an empty file)
                self._map = None
        self.size = len(self._map) if self._map is not None else os.fstat(self._fd).st_size
        if len(self.offsets) and int(self.offsets.max()) >= self.size:
            end = int(self.offsets.max())
            self.close()
            raise damaged(self.path, 'its index %s.idx has a record at offset %d, but the file holds %d bytes: the '
                          '.rec was cut short, or the .idx belongs to another pack' % (prefix, end, self.size))
        # bytes from each offset to the next record start (any order of the index) or the end
        starts = np.unique(np.append(self.offsets, self.size))
        self.spans = starts[np.searchsorted(starts, self.offsets, side='right')] - self.offsets

    def __len__(self):
        return len(self.keys)

    def file_id(self):
        """[device, inode] of the open .rec: tells whether another open of the path is the same file."""
        st = os.fstat(self._fd)
        return [st.st_dev, st.st_ino]

    def _bytes(self, offset, count):
        """A buffer of the `count` bytes at `offset` (fewer at the end of the file)."""
        if self._map is None:
            return memoryview(os.pread(self._fd, count, offset))
        now = os.fstat(self._fd).st_size       # (reading a mapped page past the end: SIGBUS)
        if now < offset + count:
            raise shrank(self.path, self.size, now)
        return memoryview(self._map)[offset:offset + count]

    def read(self, i):
        """(label, image bytes) of the i-th record of the index; DataError naming the pack if no
        whole image record starts at its offset."""
        offset, span = int(self.offsets[i]), int(self.spans[i])
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
