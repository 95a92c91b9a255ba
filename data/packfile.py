"""The RecordIO pack format as im2rec writes it, read back and checked.

A pack is `prefix.rec` (records: magic, length, ``IRHeader(flag, label, id,
id2)`` and the image file's bytes), `prefix.idx` (``<key>\t<offset>`` a line)
and, when built here, `prefix.lst` (``<index>\t<label>\t<path>``).
`check_pack` finds missing, truncated, mismatched or damaged packs and labels
outside num_classes before any training starts.
"""
import json
import logging
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

RECORD_MAGIC = 0xced7230a
LOG = logging.getLogger('pack')


class PackError(IOError):
    """A pack or source folder that cannot be used as it is."""


def progress_bar(total, desc, enabled=True):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='img', disable=not enabled, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)


def read_lst(path):
    """[(index, label, relpath)] from an im2rec list file."""
    items = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip('\n').split('\t')
            if len(parts) < 3:
                raise PackError('%s line %d is not "<index>\\t<label>\\t<path>"' % (path, n))
            items.append((int(parts[0]), float(parts[1]), parts[-1]))
    return items


def decodes(buf):
    """True if OpenCV decodes the encoded image `buf` (bytes)."""
    import cv2
    img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    return img is not None and img.size > 0


def read_idx(path):
    """(keys, offsets) of an index file; PackError if a line is malformed."""
    keys, offsets = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise PackError('index %s line %d is not "<key>\\t<offset>": the index is corrupt; rebuild the '
                                'pack' % (path, n))
            keys.append(int(parts[0]))
            offsets.append(int(parts[1]))
    return keys, offsets


def read_record_at(f, offset, size, path):
    """The payload of the record at `offset` in the open .rec `f` (`size` bytes long)."""
    f.seek(offset)
    head = f.read(8)
    if len(head) < 8:
        raise PackError('record file %s is truncated at offset %d: rebuild or copy the pack again'
                        % (path, offset))
    magic, lrec = struct.unpack('<II', head)
    if magic != RECORD_MAGIC:
        raise PackError('record file %s has no record at offset %d (bad magic number): the .rec and .idx '
                        'do not match or the file is corrupt; rebuild the pack' % (path, offset))
    length = lrec & ((1 << 29) - 1)
    if offset + 8 + length > size:
        raise PackError('record file %s is truncated: the record at offset %d ends past the end of the file; '
                        'rebuild or copy the pack again' % (path, offset))
    return f.read(length)


def check_pack(prefix, num_classes=None, full=False, decode=False, progress=False):
    """Check prefix.rec/.idx (and .lst labels if present); return the record count.

    Always: both files exist, the index is well formed and increasing, the
    first and last records are intact. `full=True` reads every record header
    (labels in range, no truncation inside); `decode=True` (implies full) also
    decodes every image (on all cores; a progress bar with `progress`). Raises
    PackError naming the problem and the fix.
    """
    full = full or decode
    undecodable = []
    pending = []                 # (key, image bytes) waiting to be decoded, in chunks on threads
    import mxnet as mx
    rec, idx = prefix + '.rec', prefix + '.idx'
    for f in (rec, idx):
        if not os.path.isfile(f):
            raise PackError('pack file %s does not exist; build it with `python -m data.pack`' % f)
    keys, offsets = read_idx(idx)
    if not keys:
        raise PackError('index %s is empty: the pack holds no images' % idx)
    if any(b <= a for a, b in zip(offsets, offsets[1:])):
        raise PackError('index %s has offsets out of order: it is corrupt; rebuild the pack' % idx)
    size = os.path.getsize(rec)
    if offsets[-1] >= size:
        raise PackError('record file %s (%d bytes) is shorter than its index says (last record at %d): it is '
                        'truncated; rebuild or copy the pack again' % (rec, size, offsets[-1]))
    positions = range(len(offsets)) if full else sorted({0, len(offsets) - 1})
    bar = progress_bar(len(positions), 'check ' + os.path.basename(rec), progress and decode)
    with open(rec, 'rb') as f, ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        def flush():
            results = list(pool.map(decodes, [img for _, img in pending]))
            undecodable.extend(k for (k, _), ok in zip(pending, results) if not ok)
            bar.update(len(pending))
            del pending[:]
        for i in positions:
            payload = read_record_at(f, offsets[i], size, rec)
            if not decode and num_classes is None:
                continue
            header, image = mx.recordio.unpack(payload)
            if decode:
                pending.append((keys[i], image))
                if len(pending) >= 256:
                    flush()
            if num_classes is not None:
                label = header.label if np.isscalar(header.label) else header.label[0]
                if not 0 <= label < num_classes:
                    raise PackError('record %d of %s has label %g, out of range for num_classes=%d; check '
                                    'num_classes or the pack' % (keys[i], rec, label, num_classes))
        if pending:
            flush()
    bar.close()
    if undecodable:
        raise PackError('%d image(s) in %s do not decode (record keys %s%s): the file is damaged; rebuild or '
                        'copy the pack again' % (len(undecodable), rec, ', '.join(map(str, undecodable[:10])),
                                                 ', ...' if len(undecodable) > 10 else ''))
    lst = prefix + '.lst'
    if num_classes is not None and os.path.isfile(lst) and not full:
        for i, label, rel in read_lst(lst):
            if not 0 <= label < num_classes:
                raise PackError('%s: image %s has label %g, out of range for num_classes=%d; check num_classes '
                                'or the pack' % (lst, rel, label, num_classes))
    return len(keys)


# ---------------------------------------------------------------------------
# "Every image decodes", remembered next to a pack. MXNet 1.9.1's
# ImageRecordIter with `resize` aborts the process (SIGFPE) on an image that
# does not decode, so the iterators that resize only read packs known to decode:
# the pack builder marks its packs (it decodes every image while packing), any
# other pack is decoded once before its first use.

def _signature(prefix):
    sig = {}
    for ext in ('rec', 'idx'):
        st = os.stat(prefix + '.' + ext)
        sig[ext] = [st.st_size, st.st_mtime_ns]
    return sig


def mark_decodable(prefix):
    """Remember (in prefix.decoded.json) that every image of the pack decodes; best effort."""
    try:
        with open(prefix + '.decoded.json.tmp', 'w') as f:
            json.dump(_signature(prefix), f)
        os.replace(prefix + '.decoded.json.tmp', prefix + '.decoded.json')
    except OSError:
        pass                        # a read-only data folder: the check runs again next time


def is_decodable(prefix):
    try:
        with open(prefix + '.decoded.json') as f:
            return json.load(f) == _signature(prefix)
    except (OSError, ValueError):
        return False


def ensure_decodable(prefix, progress=True):
    """Decode every image of the pack unless that was done for these very files (same sizes and
    times); PackError naming the bad records otherwise."""
    if is_decodable(prefix):
        return
    LOG.info('checking once that every image of %s.rec decodes (this pack was not built here, or changed)',
             prefix)
    check_pack(prefix, decode=True, progress=progress)
    mark_decodable(prefix)
