"""The RecordIO pack format as im2rec writes it, read back and checked.

A pack is `prefix.rec` (records: magic, length, ``IRHeader(flag, label, id,
id2)`` and the image file's bytes), `prefix.idx` (``<key>\t<offset>`` a line)
and, when built here, `prefix.lst` (``<index>\t<label>\t<path>``).
`check_pack` finds missing, truncated, mismatched or damaged packs and labels
outside num_classes before any training starts.
"""
import json
import logging
import math
from core.errors import DataError
import mmap
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

RECORD_MAGIC = 0xced7230a
MAGIC_BYTES = struct.pack('<I', RECORD_MAGIC)
LENGTH_MASK = (1 << 29) - 1     # the upper 3 bits of a part's length word are its part flag
LOG = logging.getLogger('pack')


class PackError(DataError):
    """A pack or source folder that cannot be used as it is."""


def one_line_errors(action, out):
    """Run `action()` for a data command writing `out`: a DataError becomes one `error: ...` line and
    exit status 2, Ctrl-C `interrupted: OUT is unchanged` and 130, SIGTERM the same (the staging
    folder removed as on Ctrl-C; it was left behind) with 143; else (0, what action returned)."""
    import sys
    from core.interrupt import sigterm_as_interrupt, stop_status, stop_words
    try:
        with sigterm_as_interrupt():
            return 0, action()
    except DataError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2, None
    except KeyboardInterrupt as e:
        print('\n%s: %s is unchanged' % (stop_words(e), out), file=sys.stderr)
        return stop_status(e), None


def progress_bar(total, desc, enabled=True):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='img', disable=not enabled, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)


def read_lst(path):
    """[(index, label, relpath)] from an im2rec list file: an integer index and a finite label on
    every line, else PackError naming the file and the line."""
    items = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip('\n').split('\t')
            try:
                if len(parts) < 3:
                    raise ValueError
                index, label = int(parts[0]), float(parts[1])
                if not math.isfinite(label):
                    raise ValueError
            except ValueError:
                raise PackError('list %s line %d is not "<index>\\t<label>\\t<path>" with an integer index '
                                'and a numeric label (%r): the list is corrupt; rebuild the pack'
                                % (path, n, line.strip()[:80]))
            items.append((index, label, parts[-1]))
    return items


def _decoded(buf):
    """The image OpenCV decodes from the encoded bytes `buf`, as stored (IMREAD_UNCHANGED), or None; None
    for no bytes at all (a file left empty by an interrupted copy, on which OpenCV raises)."""
    import cv2
    if not len(buf):
        return None
    try:
        img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    return img if img is not None and img.size > 0 else None


def decodes(buf):
    """True if OpenCV decodes the encoded image `buf` (bytes)."""
    return _decoded(buf) is not None


def decode_problem(buf):
    """Why the encoded image `buf` (bytes) cannot be packed as it is, or None: it does not decode (an
    empty file is said so), or it is a 16-bit image (PNG, TIFF) whose values stay below 4096: MXNet's
    decoder keeps the top 8 bits, so 12-bit data 0..4095 would train as 0..15 (a full-range 16-bit
    image keeps its range)."""
    if not len(buf):
        return 'cannot be decoded as an image: an empty file (a copy cut short?)'
    img = _decoded(buf)
    if img is None:
        return 'cannot be decoded as an image'
    if img.dtype == np.uint16 and int(img.max()) >> 8 < 16:
        return ('is a 16-bit image whose values reach only %d, and MXNet decodes images to 8 bits by keeping the top '
                '8 (it would train as values 0..%d, nearly black): convert it to 8 bits first, scaling its range to '
                '0..255' % (img.max(), int(img.max()) >> 8))
    return None


def read_idx(path):
    """(keys, offsets) of an index file: two integers on every non-blank line, the offset not
    negative, else PackError naming the file and the line."""
    keys, offsets = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) != 2:
                    raise ValueError
                key, offset = int(parts[0]), int(parts[1])
                if offset < 0:
                    raise ValueError
            except ValueError:
                raise PackError('index %s line %d is not "<key>\\t<offset>" (two integers, the offset not negative:'
                                ' %r): the index is corrupt; rebuild the pack' % (path, n, line.strip()[:80]))
            keys.append(key)
            offsets.append(offset)
    return keys, offsets


def _idx_line(path, position):
    """The line number of the `position`-th (0-based) entry of an index file (blank lines skipped)."""
    with open(path) as f:
        k = -1
        for n, line in enumerate(f, 1):
            if line.strip():
                k += 1
                if k == position:
                    return n
    return position + 1


def _parts(f, offset, size, path):
    """(position, length) of the data of each part of the record starting at `offset` in the open
    .rec `f` (`size` bytes long): one part, unless MXNet's writer split the record around 4-byte
    aligned copies of the magic number in its bytes. PackError if no whole record starts there."""
    pos = offset
    while True:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            raise PackError('record file %s is truncated at offset %d: rebuild or copy the pack again'
                            % (path, pos))
        magic, lrec = struct.unpack('<II', head)
        cflag, length = lrec >> 29, lrec & LENGTH_MASK
        if magic != RECORD_MAGIC or (cflag <= 1) != (pos == offset):
            raise PackError('record file %s has no record at offset %d (%s): the .rec and .idx do not match or '
                            'the file is corrupt; rebuild the pack'
                            % (path, offset, 'bad magic number' if magic != RECORD_MAGIC else
                               'a part of a split record is missing or out of place'))
        if pos + 8 + length > size:
            raise PackError('record file %s is truncated: the record at offset %d ends past the end of the file; '
                            'rebuild or copy the pack again' % (path, offset))
        yield pos + 8, length
        if cflag in (0, 3):
            return
        pos += 8 + ((length + 3) & ~3)


def read_record_at(f, offset, size, path):
    """The payload of the record starting at `offset` in the open .rec `f` (`size` bytes long),
    whole: the parts of a split record joined with the magic number between them, as MXNet's
    reader does. PackError if no whole record starts there."""
    payload = []
    for pos, length in _parts(f, offset, size, path):
        f.seek(pos)
        payload.append(f.read(length))
    return MAGIC_BYTES.join(payload)


def unpack_record(payload, key, path):
    """(IRHeader, image bytes) of a record's payload; PackError if it is too short for its header."""
    import mxnet as mx
    try:
        return mx.recordio.unpack(payload)
    except (struct.error, ValueError):
        raise PackError('record %d of %s is too short (%d bytes) to hold an image record header: the file is '
                        'damaged or was not written by im2rec/data.pack; rebuild the pack' % (key, path,
                                                                                           len(payload)))


def _record_heads(rec, offsets, size):
    """(magic, lrec): uint32 arrays of the 8-byte headers at `offsets` (4-byte aligned, each at
    least 8 bytes before the end of the file), gathered from one memory map of the file."""
    off = np.asarray(offsets, dtype=np.int64)
    with open(rec, 'rb') as f:
        try:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):           # a file system without mmap: one read per record
            heads = np.empty((len(offsets), 2), dtype='<u4')
            for i, o in enumerate(offsets):
                f.seek(o)
                heads[i] = np.frombuffer(f.read(8), dtype='<u4')
            return heads[:, 0], heads[:, 1]
        if size > 16384 * len(offsets) and hasattr(mmap, 'MADV_RANDOM'):
            # large records (ImageNet): read only the page of each header, not the pages around it
            m.madvise(mmap.MADV_RANDOM)
        try:
            words = np.frombuffer(m, dtype='<u4', count=size // 4)
            try:
                w = off // 4
                return words[w], words[w + 1]   # copies
            finally:
                del words                       # (the map cannot close while an array uses it)
        finally:
            m.close()


def check_record_starts(rec, idx, keys, offsets, size):
    """PackError unless every offset of the index (`keys`, `offsets`: increasing, from `idx`) is
    the start of a whole record of `rec` (`size` bytes): 4-byte aligned, the magic number, the
    first (or only) part of a record, and the record ends at or before the next offset (the end
    of the file for the last). Reads 8 bytes a record (and the part headers of split records).
    MXNet's ImageRecordIter aborts the process on an offset that fails this."""
    def not_a_start(i, why):
        return PackError('index %s line %d: record %d points to offset %d of %s, which is not the start of a '
                         'record (%s): the .idx does not belong to this .rec or one of them is damaged; rebuild '
                         'the pack, or copy both files again' % (idx, _idx_line(idx, i), keys[i], offsets[i],
                                                                 rec, why))
    off = np.asarray(offsets, dtype=np.int64)
    bad = np.flatnonzero(off % 4)
    if bad.size:
        raise not_a_start(bad[0], 'records start at multiples of 4 bytes')
    if offsets[-1] + 8 > size:
        raise PackError('record file %s (%d bytes) is shorter than its index says (last record at %d): it is '
                        'truncated; rebuild or copy the pack again' % (rec, size, offsets[-1]))
    magic, lrec = _record_heads(rec, offsets, size)
    cflag = lrec >> 29
    bad = np.flatnonzero((magic != RECORD_MAGIC) | (cflag > 1))
    if bad.size:
        i = bad[0]
        raise not_a_start(i, 'bad magic number' if magic[i] != RECORD_MAGIC else 'it is inside a record split '
                          'in parts')
    end = off + 8 + (lrec & LENGTH_MASK).astype(np.int64)
    split = np.flatnonzero(cflag == 1)
    if split.size:
        with open(rec, 'rb') as f:
            for i in split:
                pos, length = list(_parts(f, offsets[i], size, rec))[-1]
                end[i] = pos + length
    over = np.flatnonzero(end > np.append(off[1:], size))
    if over.size:
        i = over[0]
        if i == len(offsets) - 1:
            raise PackError('record file %s is truncated: its last record (%d, index %s line %d) ends at byte %d, '
                            'past the end of the file (%d bytes); rebuild or copy the pack again'
                            % (rec, keys[i], idx, _idx_line(idx, i), end[i], size))
        raise PackError('index %s line %d: record %d at offset %d of %s is %d bytes long, so it runs past the '
                        'start of the next record (offset %d): the .rec is damaged or the .idx does not belong '
                        'to it; rebuild the pack, or copy both files again'
                        % (idx, _idx_line(idx, i), keys[i], offsets[i], rec, end[i] - offsets[i] - 8,
                           offsets[i + 1]))
    check_no_gaps(rec, idx, keys, offsets, (end + 3) & ~3, size)


def check_no_gaps(rec, idx, keys, offsets, ends, size):
    """PackError unless the records of the index fill `rec` from its first byte to its last: the
    first at offset 0, each next one where the previous ends (`ends`: 4-byte aligned), the last
    ending at the end of the file. A gap holds records the index does not list (a deleted .idx
    line): they would be left out of training without a word."""
    starts = np.append(np.asarray(offsets, dtype=np.int64), size)
    follows = np.insert(np.asarray(ends, dtype=np.int64), 0, 0)
    gaps = np.flatnonzero(starts != follows)
    if not gaps.size:
        return
    g = gaps[0]
    at = int(follows[g])
    where = ('before its first line (records start at offset 0)' if g == 0 else
             'after line %d (record %d)' % (_idx_line(idx, g - 1), keys[g - 1]))
    raise PackError('index %s does not list every record of %s: %d bytes %s, at offset %d, hold %s that no '
                    'line points to (%d gap(s) in all). A line of the .idx was deleted or the .idx belongs to '
                    'another .rec; those images would be left out of training without a word: rebuild the pack '
                    '(or copy its .rec and .idx again)' % (idx, rec, int(starts[g]) - at, where, at,
                                                           _record_named_at(rec, at, size), gaps.size))


def _record_named_at(rec, offset, size):
    """'record K' for the record starting at `offset` of `rec`, else 'bytes'."""
    try:
        with open(rec, 'rb') as f:
            header, _ = unpack_record(read_record_at(f, offset, size, rec), -1, rec)
        return 'record %d' % header.id
    except PackError:
        return 'bytes'


def pack_prefixes(folder):
    """The names (without .rec) of the packs in `folder`, sorted; [] if it cannot be listed."""
    try:
        return sorted(n[:-4] for n in os.listdir(folder) if n.endswith('.rec')
                      and os.path.isfile(os.path.join(folder, n[:-4] + '.idx')))
    except OSError:
        return []


def _missing(prefix, path):
    """Why pack file `path` of `prefix` is missing, and what to do."""
    folder = os.path.dirname(prefix) or '.'
    if not os.path.isdir(folder):
        return 'folder %s does not exist (looking for the pack %s.rec/.idx)' % (folder, prefix)
    if os.path.isdir(prefix):
        found = pack_prefixes(prefix)
        return ('%s is a folder, not a pack: a pack is named by its prefix, e.g. %s (for %s.rec and .idx)'
                % (prefix, os.path.join(prefix, found[0] if found else 'train'), found[0] if found else 'train'))
    found = pack_prefixes(folder)
    return 'pack file %s does not exist (%s)' % (path, 'packs in %s: %s' % (folder, ', '.join(found)) if found
                                                 else 'build it with `python -m data.pack`')


def check_pack(prefix, num_classes=None, full=False, decode=False, progress=False):
    """Check prefix.rec/.idx (and .lst labels if present); return the record count.

    Always: both files exist, the index is well formed and increasing, every
    index offset is the start of a whole record (8 bytes read per record,
    `check_record_starts`: MXNet's iterator would abort the process otherwise),
    the records fill the .rec without a gap (no index line deleted), the labels
    of the first and last records lie in 0..num_classes-1, and a .lst beside
    the pack is well formed, lists every record and its labels lie there too.
    `full=True` reads every record (every label in range and equal to the
    .lst's, no damage inside); `decode=True` (implies full) also decodes every image (on
    all cores; a progress bar with `progress`). Raises PackError naming the
    problem and the fix.
    """
    full = full or decode
    undecodable, labels = [], {}
    pending = []                 # (key, image bytes) waiting to be decoded, in chunks on threads
    rec, idx = prefix + '.rec', prefix + '.idx'
    for f in (rec, idx):
        if not os.path.isfile(f):
            raise PackError(_missing(prefix, f))
    keys, offsets = read_idx(idx)
    if not keys:
        raise PackError('index %s is empty: the pack holds no images' % idx)
    if any(b <= a for a, b in zip(offsets, offsets[1:])):
        raise PackError('index %s has offsets out of order: it is corrupt; rebuild the pack' % idx)
    size = os.path.getsize(rec)
    check_record_starts(rec, idx, keys, offsets, size)
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
            if not full and num_classes is None:
                continue
            header, image = unpack_record(payload, keys[i], rec)
            if decode:
                pending.append((keys[i], image))
                if len(pending) >= 256:
                    flush()
            label = header.label if np.isscalar(header.label) else header.label[0]
            labels[keys[i]] = float(label)
            if num_classes is not None:
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
    if os.path.isfile(lst):
        check_lst(lst, keys, labels if full else None, num_classes)
    return len(keys)


def check_lst(lst, keys, labels=None, num_classes=None):
    """The pack's list file against its index (`keys`): every line well formed (read_lst), every
    record of the index listed, labels within num_classes and, given the records' `labels`
    ({key: label}, read by a full check), the same as the records'. PackError naming the file and
    the first problem; list entries the index lacks (im2rec leaves out images it cannot read) are a
    warning."""
    items = read_lst(lst)
    listed = {i: (label, rel) for i, label, rel in items}
    unlisted = [k for k in keys if k not in listed]
    if unlisted:
        raise PackError('list %s does not list %d record(s) of the index (keys %s%s): the .lst belongs to another '
                        'pack or was cut short; rebuild the pack' % (lst, len(unlisted), ', '.join(map(str, unlisted[:5])),
                                                                   ', ...' if len(unlisted) > 5 else ''))
    for key in keys:
        label, rel = listed[key]
        if num_classes is not None and not 0 <= label < num_classes:
            raise PackError('%s: image %s has label %g, out of range for num_classes=%d; check num_classes '
                            'or the pack' % (lst, rel, label, num_classes))
        if labels is not None and labels[key] != label:
            raise PackError('%s: image %s (record %d) has label %g in the list but %g in the .rec: the list does not '
                            'belong to this pack; rebuild the pack' % (lst, rel, key, label, labels[key]))
    extra = len(listed) - len(keys)
    if extra > 0:
        LOG.warning('%s lists %d image(s) that are not in the pack (im2rec leaves out images it cannot read); '
                    'training uses the %d records of the index', lst, extra, len(keys))


# ---------------------------------------------------------------------------
# "Every image decodes", remembered next to a pack. MXNet 1.9.1's
# ImageRecordIter with `resize` aborts the process (SIGFPE) on an image that
# does not decode, and the augmenting and small-image iterators train on
# garbage pixels instead, so packs are only read once known to decode: the
# pack builder marks its packs (it decodes every image while packing), any
# other pack is decoded once before its first use, on every path.

def _signature(prefix):
    sig = {}
    for ext in ('rec', 'idx'):
        st = os.stat(prefix + '.' + ext)
        sig[ext] = [st.st_size, st.st_mtime_ns]
    return sig


def mark_decodable(prefix):
    """Remember (in prefix.decoded.json) that every image of the pack decodes; best effort."""
    tmp = '%s.decoded.json.tmp-%d' % (prefix, os.getpid())     # (distributed workers may mark at once)
    try:
        with open(tmp, 'w') as f:
            json.dump(_signature(prefix), f)
        os.replace(tmp, prefix + '.decoded.json')
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass
        # a read-only data folder: the check runs again next time


def is_decodable(prefix):
    """True if prefix.decoded.json was written for these very .rec/.idx files (same sizes and times)."""
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


def sample_shapes(prefix, count=16):
    """(channels, height, width) of up to `count` records spread evenly over the pack, decoded as
    stored (channels 1 = grayscale, 3 = colour, 4 = colour with alpha); records that do not decode
    are left out."""
    import cv2
    keys, offsets = read_idx(prefix + '.idx')
    rec = prefix + '.rec'
    size = os.path.getsize(rec)
    shapes = []
    with open(rec, 'rb') as f:
        for i in sorted(set(np.linspace(0, len(offsets) - 1, min(count, len(offsets))).astype(int))):
            _, image = unpack_record(read_record_at(f, offsets[i], size, rec), keys[i], rec)
            img = cv2.imdecode(np.frombuffer(image, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if decodes(image) else None
            if img is not None and img.size:
                shapes.append((1 if img.ndim == 2 else img.shape[2],) + img.shape[:2])
    return shapes


def sample_channels(prefix, count=16):
    """{channel count: number of images} of up to `count` records spread evenly over the pack
    (`sample_shapes`)."""
    return counts_of_channels(sample_shapes(prefix, count))


def counts_of_channels(shapes):
    """{channel count: number of images} of (channels, height, width) `shapes`."""
    found = {}
    for c, _, _ in shapes:
        found[c] = found.get(c, 0) + 1
    return found
