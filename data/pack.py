"""Build RecordIO packs (`.lst`, `.rec`, `.idx`) the way mxnet's im2rec does in
pass-through mode: every record is ``IRHeader(flag=0, label, id, 0)`` followed
by the image file's original bytes, written with `MXIndexedRecordIO`. Images
are decoded once while packing to make sure they can be read; one that fails
is skipped, counted and logged.

Sources:
- an ImageNet-style tree, one folder per class (``train/n01440764/*.JPEG``);
- the ImageNet validation layout: a flat folder plus a label file of lines
  ``<file name> <label>``, the label a class index or a class folder name;
- in-memory uint8 arrays (Fashion-MNIST), encoded losslessly as PNG.

Command line:
    python -m data.pack --train TRAIN_DIR [--val VAL_DIR [--val-labels FILE]] --out OUT_DIR
writes OUT_DIR/{train,val}.{lst,rec,idx} and OUT_DIR/classes.txt.
"""
import argparse
import logging
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

LOG = logging.getLogger('pack')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')
RECORD_MAGIC = 0xced7230a


class PackError(IOError):
    """A pack or source folder that cannot be used as it is."""


def _progress(total, desc, enabled=True):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='img', disable=not enabled, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)


def list_class_folders(root):
    """(classes, entries) of a one-folder-per-class tree: entries are (relpath, label)."""
    if not os.path.isdir(root):
        raise PackError('image folder %s does not exist' % root)
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise PackError('image folder %s has no class sub-folders; expected ROOT/<class>/<image>' % root)
    entries = []
    for label, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTS):
                    entries.append((os.path.relpath(os.path.join(dirpath, f), root), label))
    if not entries:
        raise PackError('image folder %s has class folders but no images (%s)' % (root, ', '.join(IMAGE_EXTS)))
    return classes, entries


def read_label_file(path, root, classes):
    """Entries of a flat folder labelled by `path` (lines '<file> <label>')."""
    if not os.path.isfile(path):
        raise PackError('label file %s does not exist' % path)
    index = {c: i for i, c in enumerate(classes)}
    entries = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise PackError('%s line %d: expected "<file name> <label>", got %r' % (path, n, line.strip()))
            name, label = parts[0], parts[1]
            if label in index:
                label = index[label]
            else:
                try:
                    label = int(label)
                except ValueError:
                    raise PackError('%s line %d: label %r is neither a class index nor a class folder name'
                                    % (path, n, label))
            if not 0 <= label < len(classes):
                raise PackError('%s line %d: label %d is out of range for %d classes' % (path, n, label,
                                                                                       len(classes)))
            if not os.path.isfile(os.path.join(root, name)):
                raise PackError('%s line %d: image %s does not exist in %s' % (path, n, name, root))
            entries.append((name, label))
    if not entries:
        raise PackError('label file %s lists no images' % path)
    return entries


def write_lst(path, entries):
    """im2rec's list format: '<index>\\t<label>\\t<relative path>' a line."""
    with open(path + '.tmp', 'w') as f:
        for i, (rel, label) in enumerate(entries):
            f.write('%d\t%f\t%s\n' % (i, float(label), rel))
    os.replace(path + '.tmp', path)


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


def _decodes(buf):
    import cv2
    img = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    return img is not None and img.size > 0


def write_records(prefix, items, desc='pack', threads=None, progress=True):
    """Write `prefix.rec/.idx` from items (index, label, bytes-or-loader).

    A loader is a callable returning the bytes. Returns (written, skipped)
    lists of indices. Files are written under temporary names and renamed at
    the end, so an interrupted run never leaves a half pack.
    """
    import mxnet as mx
    threads = threads or min(8, os.cpu_count() or 1)
    tmp_rec, tmp_idx = prefix + '.rec.tmp', prefix + '.idx.tmp'
    record = mx.recordio.MXIndexedRecordIO(tmp_idx, tmp_rec, 'w')
    written, skipped = [], []

    def load(item):
        idx, label, src = item
        try:
            buf = src() if callable(src) else src
        except (IOError, OSError) as e:
            return idx, label, None, str(e)
        return idx, label, buf, None if _decodes(buf) else 'cannot be decoded as an image'

    bar = _progress(len(items), desc, progress)
    try:
        with ThreadPoolExecutor(threads) as pool:
            for idx, label, buf, err in pool.map(load, items, chunksize=64):
                if err is None:
                    header = mx.recordio.IRHeader(0, label, idx, 0)
                    record.write_idx(idx, mx.recordio.pack(header, buf))
                    written.append(idx)
                else:
                    skipped.append(idx)
                    LOG.warning('skipping record %d: %s', idx, err)
                bar.update(1)
    finally:
        bar.close()
        record.close()
    os.replace(tmp_rec, prefix + '.rec')
    os.replace(tmp_idx, prefix + '.idx')
    return written, skipped


def pack_folder(root, entries, prefix, threads=None, progress=True):
    """Pack the listed images of `root` into prefix.lst/.rec/.idx (pass-through)."""
    write_lst(prefix + '.lst', entries)

    def reader(rel):
        def read():
            with open(os.path.join(root, rel), 'rb') as f:
                return f.read()
        return read
    items = [(i, float(label), reader(rel)) for i, (rel, label) in enumerate(entries)]
    written, skipped = write_records(prefix, items, os.path.basename(prefix), threads, progress)
    if skipped:
        kept = set(written)
        lines = [(i, label, rel) for i, (rel, label) in enumerate(entries) if i in kept]
        with open(prefix + '.lst.tmp', 'w') as f:
            for i, label, rel in lines:
                f.write('%d\t%f\t%s\n' % (i, float(label), rel))
        os.replace(prefix + '.lst.tmp', prefix + '.lst')
        LOG.warning('%s: skipped %d of %d images that could not be read or decoded',
                    prefix, len(skipped), len(entries))
    return len(written), len(skipped)


def pack_arrays(images, labels, prefix, progress=True):
    """Pack uint8 images (N, H, W) or (N, H, W, C) with labels as lossless PNG records."""
    import cv2
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise PackError('pack_arrays takes uint8 images, got %s' % images.dtype)

    def encoder(img):
        def encode():
            ok, buf = cv2.imencode('.png', img)
            if not ok:
                raise IOError('PNG encoding failed')
            return buf.tobytes()
        return encode
    items = [(i, float(l), encoder(img)) for i, (img, l) in enumerate(zip(images, labels))]
    with open(prefix + '.lst.tmp', 'w') as f:
        for i, l in enumerate(labels):
            f.write('%d\t%f\t%d.png\n' % (i, float(l), i))
    os.replace(prefix + '.lst.tmp', prefix + '.lst')
    written, skipped = write_records(prefix, items, os.path.basename(prefix), progress=progress)
    return len(written), len(skipped)


def write_classes(path, classes):
    with open(path + '.tmp', 'w') as f:
        for i, c in enumerate(classes):
            f.write('%d\t%s\n' % (i, c))
    os.replace(path + '.tmp', path)


def read_classes(path):
    with open(path) as f:
        return [line.rstrip('\n').split('\t', 1)[1] for line in f if line.strip()]


def build_packs(train_root, out_dir, val_root=None, val_labels=None, threads=None, progress=True):
    """Pack a training tree (and a validation tree or flat folder + label file)."""
    os.makedirs(out_dir, exist_ok=True)
    classes, train_entries = list_class_folders(train_root)
    write_classes(os.path.join(out_dir, 'classes.txt'), classes)
    stats = {'train': pack_folder(train_root, train_entries, os.path.join(out_dir, 'train'), threads, progress)}
    if val_root is not None:
        if val_labels:
            val_entries = read_label_file(val_labels, val_root, classes)
        else:
            val_classes, val_entries = list_class_folders(val_root)
            unknown = sorted(set(val_classes) - set(classes))
            if unknown:
                raise PackError('validation folder %s has classes not in training: %s' % (val_root, unknown[:5]))
            index = {c: i for i, c in enumerate(classes)}
            val_entries = [(rel, index[val_classes[label]]) for rel, label in val_entries]
        stats['val'] = pack_folder(val_root, val_entries, os.path.join(out_dir, 'val'), threads, progress)
    return classes, stats


# ---------------------------------------------------------------------------
# Checking a pack before training on it.

def _read_idx(path):
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


def _read_record_at(f, offset, size, path):
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


def check_pack(prefix, num_classes=None, full=False):
    """Check prefix.rec/.idx (and .lst labels if present); return the record count.

    Always: both files exist, the index is well formed and increasing, the
    first and last records are intact. `full=True` reads every record header
    (labels in range, no truncation inside). Raises PackError naming the
    problem and the fix.
    """
    import mxnet as mx
    rec, idx = prefix + '.rec', prefix + '.idx'
    for f in (rec, idx):
        if not os.path.isfile(f):
            raise PackError('pack file %s does not exist; build it with `python -m data.pack`' % f)
    keys, offsets = _read_idx(idx)
    if not keys:
        raise PackError('index %s is empty: the pack holds no images' % idx)
    if any(b <= a for a, b in zip(offsets, offsets[1:])):
        raise PackError('index %s has offsets out of order: it is corrupt; rebuild the pack' % idx)
    size = os.path.getsize(rec)
    if offsets[-1] >= size:
        raise PackError('record file %s (%d bytes) is shorter than its index says (last record at %d): it is '
                        'truncated; rebuild or copy the pack again' % (rec, size, offsets[-1]))
    positions = range(len(offsets)) if full else sorted({0, len(offsets) - 1})
    with open(rec, 'rb') as f:
        for i in positions:
            payload = _read_record_at(f, offsets[i], size, rec)
            if num_classes is not None:
                header, _ = mx.recordio.unpack(payload)
                label = header.label if np.isscalar(header.label) else header.label[0]
                if not 0 <= label < num_classes:
                    raise PackError('record %d of %s has label %g, out of range for num_classes=%d; check '
                                    'num_classes or the pack' % (keys[i], rec, label, num_classes))
    lst = prefix + '.lst'
    if num_classes is not None and os.path.isfile(lst) and not full:
        for i, label, rel in read_lst(lst):
            if not 0 <= label < num_classes:
                raise PackError('%s: image %s has label %g, out of range for num_classes=%d; check num_classes '
                                'or the pack' % (lst, rel, label, num_classes))
    return len(keys)


def main(argv=None):
    p = argparse.ArgumentParser(description='Pack ImageNet-style image folders into RecordIO '
                                            '(im2rec pass-through format).')
    p.add_argument('--train', required=True, help='training folder: one sub-folder per class')
    p.add_argument('--val', help='validation folder (per-class sub-folders, or flat with --val-labels)')
    p.add_argument('--val-labels', help='label file for a flat validation folder: "<file> <label>" lines')
    p.add_argument('--out', required=True, help='output folder for train/val .lst/.rec/.idx and classes.txt')
    p.add_argument('--threads', type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    try:
        classes, stats = build_packs(args.train, args.out, args.val, args.val_labels, args.threads)
    except PackError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    for split, (n, skipped) in stats.items():
        print('%s: %d images packed, %d skipped, %d classes' % (split, n, skipped, len(classes)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
