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
writes OUT_DIR/{train,val}.{lst,rec,idx} and OUT_DIR/classes.txt;
    python -m data.pack --check OUT_DIR/train [--num-classes N]
reads every record back, decodes every image and checks the labels.
"""
import argparse
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .packfile import PackError, check_pack, decodes, read_lst, mark_decodable, progress_bar
__all__ = ['PackError', 'check_pack', 'read_lst', 'decodes', 'build_packs', 'pack_folder', 'pack_arrays',
           'write_records', 'write_classes', 'list_class_folders', 'read_label_file', 'write_lst']

LOG = logging.getLogger('pack')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


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
        return idx, label, buf, None if decodes(buf) else 'cannot be decoded as an image'

    bar = progress_bar(len(items), desc, progress)
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
    mark_decodable(prefix)          # every record was decoded above
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


def main(argv=None):
    p = argparse.ArgumentParser(description='Pack ImageNet-style image folders into RecordIO '
                                            '(im2rec pass-through format), or check a pack with --check.')
    p.add_argument('--check', metavar='PREFIX', help='check PREFIX.rec/.idx in full: every record, label and '
                   'image (e.g. datasets/imagenet/train), then exit')
    p.add_argument('--num-classes', type=int, help='with --check: labels must lie in 0..N-1')
    p.add_argument('--train', help='training folder: one sub-folder per class')
    p.add_argument('--val', help='validation folder (per-class sub-folders, or flat with --val-labels)')
    p.add_argument('--val-labels', help='label file for a flat validation folder: "<file> <label>" lines')
    p.add_argument('--out', help='output folder for train/val .lst/.rec/.idx and classes.txt')
    p.add_argument('--threads', type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    if args.check:
        try:
            n = check_pack(args.check, args.num_classes, decode=True, progress=True)
            mark_decodable(args.check)
        except PackError as e:
            print('error: %s' % e, file=sys.stderr)
            return 2
        print('%s: %d records, every image decodes%s' % (args.check, n, '' if args.num_classes is None else
                                                         ', labels in 0..%d' % (args.num_classes - 1)))
        return 0
    if not args.train or not args.out:
        p.error('--train and --out are required to build packs (or give --check PREFIX)')
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
