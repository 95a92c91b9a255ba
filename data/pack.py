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
writes OUT_DIR/{train,val}.{lst,rec,idx} and OUT_DIR/classes.txt (a tree whose class
folders hold only folders of images is refused as a level too high unless
--nested-classes; images of a flat --val missing from --val-labels are an error
unless --skip-unlisted);
    python -m data.pack --check OUT_DIR/train [--num-classes N]
reads every record back, decodes every image and checks the labels.

Every input (folders, label file, classes) is read and checked before anything
is written. The packs are then built in a temporary folder inside OUT_DIR
(``.building-<pid>-*``) and replace OUT_DIR's pack files (``classes.txt``,
``train.*``, ``val.*``) only once all of them are complete; a split the new
build lacks is removed (a new train never sits beside an old val), other files
in OUT_DIR are left alone. On any error or Ctrl-C, OUT_DIR stays as it was.
"""
import argparse
import logging
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.errors import DataError
from .staging import check_out_dir, staging  # noqa: F401  (staging: data.fashion_mnist's)
from .packfile import (PackError, check_pack, decode_problem, decodes, read_lst, mark_decodable, one_line_errors, pack_prefixes,
                       progress_bar)
__all__ = ['PackError', 'check_pack', 'read_lst', 'decodes', 'build_packs', 'pack_folder', 'pack_arrays',
           'write_records', 'write_classes', 'list_class_folders', 'read_label_file', 'write_lst', 'staging']

LOG = logging.getLogger('pack')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def _not_a_folder(path):
    """Why `path`, which is not a folder, cannot be read as one: 'does not exist' or 'is a file, not
    a folder'."""
    return 'is a file, not a folder' if os.path.exists(path) else 'does not exist'


def list_class_folders(root, nested=False):
    """(classes, entries) of a one-folder-per-class tree: entries are (relpath, label), every
    class has at least one image (PackError naming the empty class folders otherwise). Images in
    sub-folders of a class folder belong to the class; but when no class folder holds an image of
    its own and each holds folders of images, `root` is a level too high (e.g. a dataset root whose
    train/ and val/ would become two classes): PackError naming them, unless `nested`."""
    if not os.path.isdir(root):
        raise PackError('image folder %s %s' % (root, _not_a_folder(root)))
    listed = sorted(os.listdir(root))
    left_out = [d for d in listed if _not_the_users(d) and os.path.isdir(os.path.join(root, d))]
    dangling = [d for d in listed if os.path.islink(os.path.join(root, d)) and not os.path.exists(os.path.join(root, d))]
    if dangling:
        LOG.warning('%s: left out %s, a symbolic link to something that does not exist (%s): make the link point at '
                    'a class folder to pack it', root, ', '.join(dangling[:5]), ', '.join(
                        '%s -> %s' % (d, os.readlink(os.path.join(root, d))) for d in dangling[:3]))
    classes = [d for d in listed if os.path.isdir(os.path.join(root, d)) and d not in left_out]
    _check_names(root, classes)
    if not classes and pack_prefixes(root):
        raise PackError('%s holds packs already (%s), not image folders: train on them with data_dir=%s, or give '
                        'the image folder they were built from' % (root, ', '.join(p + '.rec' for p in
                                                                                pack_prefixes(root)), root))
    if not classes:
        raise PackError('image folder %s has no class sub-folders; expected ROOT/<class>/<image> (a flat '
                        'validation folder needs --val-labels)' % root)
    entries, empty, inner, other = [], [], {}, []
    for label, name in enumerate(classes):
        n = len(entries)
        walked = []
        for dirpath, dirs, files in os.walk(os.path.join(root, name)):       # (pruned as it goes, sorted after)
            left_out += [os.path.relpath(os.path.join(dirpath, d), root) for d in dirs if _not_the_users(d)]
            dirs[:] = [d for d in dirs if not _not_the_users(d)]
            walked.append((dirpath, files))
        for dirpath, files in sorted(walked):
            for f in sorted(files):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                if _not_the_users(f):
                    if f.lower().endswith(IMAGE_EXTS):
                        left_out.append(rel)
                elif f.lower().endswith(IMAGE_EXTS) and _regular(os.path.join(dirpath, f)):
                    _check_names(root, [rel])
                    entries.append((rel, label))
                else:
                    other.append(rel)
        if len(entries) == n:
            empty.append(name)
        inner[name] = sorted({rel.split(os.sep)[1] for rel, _ in entries[n:] if rel.count(os.sep) > 1})
        if len(inner[name]) < 2 or any(rel.count(os.sep) == 1 for rel, _ in entries[n:]):
            inner[name] = None                       # images of its own, or one sub-folder: a class
    if empty:
        raise PackError('class folder(s) with no images in %s: %s%s (images are %s files). In an image folder '
                        'every sub-folder is a class, so these would be classes without images: remove them, or '
                        'add their images' % (root, ', '.join(empty[:10]), ', ...' if len(empty) > 10 else '',
                                              ', '.join(IMAGE_EXTS)))
    if not nested and all(inner[c] for c in classes):
        raise PackError(_nested_message(root, classes, inner))
    if other:
        LOG.warning('%s: left out %d file(s) that are not %s images: %s%s (convert images of other formats, e.g. '
                    '.webp or .tif, to JPEG or PNG to pack them)', root, len(other), '/'.join(IMAGE_EXTS),
                    ', '.join(other[:5]), ', ...' if len(other) > 5 else '')
    if left_out:
        LOG.warning('%s: left out %d hidden or system folder(s) and image(s) (names that start with a dot, '
                    '__MACOSX): %s%s; rename one to pack it', root, len(left_out), ', '.join(left_out[:5]),
                    ', ...' if len(left_out) > 5 else '')
    return classes, entries


def _not_the_users(name):
    """A hidden file or folder (.ipynb_checkpoints, .DS_Store, macOS's ._x.jpg) or __MACOSX (a macOS
    zip's metadata folder): not the user's images, left out of a pack."""
    return name.startswith('.') or name == '__MACOSX'


def _check_names(root, names):
    """PackError for a class folder or image name (relative to `root`) with a line break: the list
    files hold one image a line, and the name would break them."""
    bad = [n for n in names if '\n' in n or '\r' in n]
    if bad:
        raise PackError('%s: %r has a line break in its name, which the pack\'s list files (one image a line) cannot '
                        'hold: rename it' % (root, bad[0]))


def _nested_message(root, classes, inner):
    """What to say when every class folder of `root` holds folders of images instead of images."""
    shown = '; '.join('%s/ holds %s%s' % (c, ', '.join(inner[c][:3]), ', ...' if len(inner[c]) > 3 else '')
                      for c in classes[:3])
    splits = [c for c in classes if c.lower() in ('train', 'training', 'val', 'valid', 'validation', 'test')]
    if splits:
        fix = 'point at the split folders, e.g. %s' % ' '.join(
            '--%s %s' % ('train' if c.lower().startswith('train') else 'val', os.path.join(root, c))
            for c in splits[:2])
    else:
        fix = 'give the folder whose sub-folders are the classes, e.g. %s' % os.path.join(root, classes[0])
    return ('the class folders of %s hold class folders themselves (%s): %s looks like a folder above the image '
            'folder, and its %d sub-folders would become the classes. %s; if these really are %d classes with '
            'images in sub-folders, add --nested-classes' % (root, shown, root, len(classes), fix[0].upper() + fix[1:],
                                                             len(classes)))


def read_label_file(path, root, classes, skip_unlisted=False):
    """Entries (name, label) of the flat folder `root` labelled by the file `path`: lines
    '<file name> <label>' (the label is the last field, so names may hold spaces; a class index
    or a class folder name, which may hold spaces too; or '<file name><TAB><label>'). Every image
    exists and is listed once, every label is a class, else PackError naming the line; every image of `root` is listed, else PackError naming them (a
    warning with `skip_unlisted`)."""
    if not os.path.isfile(path):
        raise PackError('label file %s does not exist' % path)
    if not os.path.isdir(root):
        raise PackError('validation folder %s %s' % (root, _not_a_folder(root)))
    index = {c: i for i, c in enumerate(classes)}
    spaced = sorted((c for c in classes if len(c.split()) > 1), key=len, reverse=True)
    entries, seen = [], {}
    try:
        with open(path, encoding='utf-8-sig') as f:     # (utf-8-sig: a byte-order mark an editor wrote is skipped)
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise PackError('label file %s is not UTF-8 text (%s): save it as UTF-8' % (path, e))
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if '\t' in text:                              # name<TAB>label: either may hold spaces
            parts = [p.strip() for p in text.rsplit('\t', 1)]
        else:                                         # a class name with spaces ends the line whole
            end = next((c for c in spaced if text.endswith(c) and text[:-len(c)][-1:].isspace()), None)
            parts = [text[:-len(end)].strip(), end] if end else text.rsplit(None, 1)
        if not parts:
            continue
        if len(parts) < 2:
            raise PackError('%s line %d: expected "<file name> <label>", got %r' % (path, n, line.strip()))
        name, label = parts
        if name in seen:
            raise PackError('%s line %d: image %s is listed twice (also on line %d); list every image once'
                            % (path, n, name, seen[name]))
        seen[name] = n
        if label in index:
            label = index[label]
        else:
            try:
                label = int(label)
            except ValueError:
                raise PackError('%s line %d: label %r is neither a class index nor a class folder name (the '
                                'classes: %s); give the class index, or separate the file name from the label '
                                'with a tab' % (path, n, label, ', '.join('%d %s' % (i, c) for i, c in
                                                                          enumerate(classes[:10]))
                                                + (', ...' if len(classes) > 10 else '')))
        if not 0 <= label < len(classes):
            raise PackError('%s line %d: label %d is out of range for %d classes' % (path, n, label,
                                                                                   len(classes)))
        if not os.path.isfile(os.path.join(root, name)):
            raise PackError('%s line %d: image %s does not exist in %s' % (path, n, name, root))
        entries.append((name, label))
    if not entries:
        raise PackError('label file %s lists no images' % path)
    check_all_listed(path, root, entries, skip_unlisted)
    return entries


def _regular(path):
    """A regular file (or a link to one): not a named pipe or a device, whose read would block."""
    import stat
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True                    # (a dangling link: skipped later with a warning, as before)


def image_files(root):
    """Relative paths of the image files below `root`, sorted."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _not_the_users(d)]
        found.extend(os.path.relpath(os.path.join(dirpath, f), root) for f in files if f.lower().endswith(IMAGE_EXTS)
                     and not _not_the_users(f) and _regular(os.path.join(dirpath, f)))
    return sorted(found)


def check_all_listed(path, root, entries, skip_unlisted=False):
    """PackError when images of the flat folder `root` are not in the label file `path` (they would
    be left out of validation without a word), naming how many and a few; with `skip_unlisted`, a
    warning instead."""
    listed = {os.path.normpath(name) for name, _ in entries}
    unlisted = [f for f in image_files(root) if os.path.normpath(f) not in listed]
    if not unlisted:
        return
    names = ', '.join(unlisted[:5]) + (', ...' if len(unlisted) > 5 else '')
    if skip_unlisted:
        LOG.warning('%d of the %d images in %s are not in %s and are left out of the validation pack (%s)',
                    len(unlisted), len(unlisted) + len(entries), root, path, names)
        return
    raise PackError('%d of the %d images in %s are not in the label file %s (%s): they would be left out of '
                    'validation. Add a line for each, or pass --skip-unlisted to pack only the %d listed'
                    % (len(unlisted), len(unlisted) + len(entries), root, path, names, len(entries)))


def write_lst(path, entries):
    """im2rec's list format: '<index>\\t<label>\\t<relative path>' a line."""
    with open(path + '.tmp', 'w') as f:
        for i, (rel, label) in enumerate(entries):
            f.write('%d\t%f\t%s\n' % (i, float(label), rel))
    os.replace(path + '.tmp', path)


def write_records(prefix, items, desc='pack', threads=None, progress=True, source=None, names=None, reasons=None):
    """Write `prefix.rec/.idx` from items (index, label, bytes-or-loader), in item order.

    A loader is a callable returning the bytes. Every image is decoded on `threads` threads (a
    bounded number ahead of the writer); one that cannot be read or decoded is skipped and logged
    (as names[index] when `names` is given). Returns (written, skipped) lists of indices, and marks
    the pack decodable. PackError if no image at all could be written (`source`: where the images
    came from, for the message); `reasons`, a dict, gets each skipped index's reason. The files
    are written under temporary names and renamed at the
    end: a failed or interrupted run (Ctrl-C returns within a few images) leaves neither a half
    pack nor temporary files.
    """
    import mxnet as mx
    threads = threads or min(8, os.cpu_count() or 1)
    if threads < 1:
        raise PackError('threads must be 1 or more, got %d' % threads)
    tmp_rec, tmp_idx = prefix + '.rec.tmp', prefix + '.idx.tmp'
    written, skipped, first_error = [], [], None

    def load(item):
        idx, label, src = item
        try:
            buf = src() if callable(src) else src
        except (IOError, OSError) as e:
            return idx, label, None, str(e)
        return idx, label, buf, decode_problem(buf)

    bar = progress_bar(len(items), desc, progress)
    pool = ThreadPoolExecutor(threads)
    pending, record, done = deque(), None, False
    try:
        try:
            record = mx.recordio.MXIndexedRecordIO(tmp_idx, tmp_rec, 'w')
        except (mx.base.MXNetError, OSError) as e:
            raise PackError('cannot write %s (%s): choose a writable output folder'
                            % (tmp_rec, str(e).strip().splitlines()[-1] if str(e).strip() else e))
        todo = iter(items)
        while True:
            for item in todo:
                pending.append(pool.submit(load, item))
                if len(pending) >= 16 * threads:
                    break
            if not pending:
                break
            idx, label, buf, err = pending.popleft().result()
            if err is None:
                header = mx.recordio.IRHeader(0, label, idx, 0)
                record.write_idx(idx, mx.recordio.pack(header, buf))
                written.append(idx)
            else:
                skipped.append(idx)
                if reasons is not None:
                    reasons[idx] = err
                name = names[idx] if names is not None else 'record %d' % idx
                first_error = first_error or '%s: %s' % (name, err)
                LOG.warning('skipping %s: %s', name, err)
            bar.update(1)
        record.close()
        record = None
        if not written:
            raise PackError('none of the %d images%s could be read and decoded (%s): nothing was packed; check '
                            'that these are 8-bit image files, and copy them again if they are damaged'
                            % (len(items), ' in %s' % source if source else '', first_error or 'no images'))
        os.replace(tmp_rec, prefix + '.rec')
        os.replace(tmp_idx, prefix + '.idx')
        done = True
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)             # at most `threads` loads were still running
        bar.close()
        if record is not None:
            record.close()
        if not done:
            for tmp in (tmp_rec, tmp_idx):
                try:
                    os.remove(tmp)
                except OSError:
                    pass
    mark_decodable(prefix)          # every record was decoded above
    return written, skipped


def pack_folder(root, entries, prefix, threads=None, progress=True, classes=None):
    """Pack the listed images (relpath, label) of `root` into prefix.rec/.idx (pass-through) and
    prefix.lst (the images packed). An image that cannot be read or decoded is skipped and
    logged; PackError if none can, or (given the `classes`' names) if a class of `entries` is left
    without an image. Returns (packed, skipped) counts."""
    def reader(rel):
        def read():
            with open(os.path.join(root, rel), 'rb') as f:
                return f.read()
        return read
    items = [(i, float(label), reader(rel)) for i, (rel, label) in enumerate(entries)]
    reasons = {}
    written, skipped = write_records(prefix, items, os.path.basename(prefix), threads, progress, source=root,
                                     names=[os.path.join(root, rel) for rel, _ in entries], reasons=reasons)
    kept = set(written)
    if classes is not None:
        lost = sorted({label for _, label in entries} - {entries[i][1] for i in kept})
        if lost:
            raise PackError('class%s %s of %s: none of %s images could be read and decoded (%s): a class without '
                            'images cannot be learnt; remove the folder%s or add images that decode; nothing was packed'
                            % ('es' if len(lost) > 1 else '', ', '.join(classes[c] for c in lost[:5]), root,
                               'their' if len(lost) > 1 else 'its',
                               next('%s: %s' % (entries[i][0], why) for i, why in reasons.items()
                                    if entries[i][1] in lost), 's' if len(lost) > 1 else ''))
    with open(prefix + '.lst.tmp', 'w') as f:
        for i, (rel, label) in enumerate(entries):
            if i in kept:
                f.write('%d\t%f\t%s\n' % (i, float(label), rel))
    os.replace(prefix + '.lst.tmp', prefix + '.lst')
    if skipped:
        shown = [entries[i][0] for i in skipped[:5]]
        LOG.warning('%s: skipped %d of %d images that could not be read or decoded: %s%s', root, len(skipped),
                    len(entries), ', '.join(shown), ', ...' if len(skipped) > len(shown) else '')
    return len(written), len(skipped)


def pack_arrays(images, labels, prefix, progress=True):
    """Pack uint8 images (N, H, W) or (N, H, W, C) with labels as lossless PNG records, and
    prefix.lst; PackError if none can be encoded. Returns (packed, skipped) counts."""
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
    written, skipped = write_records(prefix, items, os.path.basename(prefix), progress=progress)
    kept = set(written)
    with open(prefix + '.lst.tmp', 'w') as f:
        for i, l in enumerate(labels):
            if i in kept:
                f.write('%d\t%f\t%d.png\n' % (i, float(l), i))
    os.replace(prefix + '.lst.tmp', prefix + '.lst')
    return len(written), len(skipped)


def write_classes(path, classes):
    with open(path + '.tmp', 'w') as f:
        for i, c in enumerate(classes):
            f.write('%d\t%s\n' % (i, c))
    os.replace(path + '.tmp', path)


def read_classes(path):
    with open(path) as f:
        return [line.rstrip('\n').split('\t', 1)[1] for line in f if line.strip()]


def keep_other_pack(out_dir, classes, overwrite):
    """Whether out_dir holds a pack of other classes (another dataset, most likely) that a new pack
    would replace: PackError without `overwrite`; with it True, and `staging(keep=True)` then keeps
    the replaced files in out_dir/replaced/<time>/. A pack of the same classes is re-packed in place."""
    old = os.path.join(out_dir, 'classes.txt')
    if not os.path.isfile(old):
        return False
    try:
        existing = read_classes(old)
    except (OSError, IndexError, UnicodeDecodeError):
        existing = None
    if existing == list(classes):
        return False
    if not overwrite:
        shown = lambda names: '%d: %s%s' % (len(names), ', '.join(names[:4]), ', ...' if len(names) > 4 else '')  # noqa
        raise PackError('--out %s holds a pack of other classes (%s); the new one has %s: choose another --out, or add '
                        '--overwrite to replace it (its files are kept in %s/replaced/)'
                        % (out_dir, shown(existing) if existing else 'an unreadable classes.txt', shown(list(classes)),
                           out_dir))
    return True


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def build_packs(train_root, out_dir, val_root=None, val_labels=None, threads=None, progress=True, nested=False,
                skip_unlisted=False, overwrite=False):
    """Pack a training tree (and a validation tree, or a flat folder + label file) into out_dir:
    classes.txt, train.lst/.rec/.idx (and val.*); returns (classes, {split: (packed, skipped)}).

    Every input (folders, classes, label file) is read and checked before anything is written;
    the packs are then built in a temporary folder and replace out_dir's pack files only when all
    of them are complete (see `staging`): on any error or Ctrl-C out_dir is unchanged. `nested`:
    class folders whose images are all in sub-folders are classes all the same
    (`list_class_folders`); `skip_unlisted`: images of a flat validation folder missing from
    `val_labels` are left out with a warning instead of an error. A pack of other classes already in
    out_dir is refused unless `overwrite` (`keep_other_pack`).
    """
    if val_labels and val_root is None:
        raise PackError('--val-labels needs --val, the flat folder of the images it labels')
    if skip_unlisted and not val_labels:
        raise PackError('--skip-unlisted applies to a flat --val folder labelled by --val-labels; give both, or '
                        'leave --skip-unlisted out')
    if threads is not None and threads < 1:
        raise PackError('threads must be 1 or more, got %d' % threads)
    check_out_dir(out_dir)
    for root in (train_root, val_root):
        if root is not None and os.path.isdir(root) and _inside(out_dir, root):
            raise PackError('--out %s is inside the image folder %s: the packs would become part of their '
                            'source; choose an --out outside it' % (out_dir, root))
    if val_root is not None and os.path.realpath(val_root) == os.path.realpath(train_root):
        LOG.warning('--val %s is the training folder itself: the validation images are training images, and the '
                    'accuracy measured on them says little; give a held-out folder', val_root)
    classes, train_entries = list_class_folders(train_root, nested)
    val_entries = None
    if val_root is not None:
        if val_labels:
            val_entries = read_label_file(val_labels, val_root, classes, skip_unlisted)
        else:
            val_classes, val_entries = list_class_folders(val_root, nested)
            unknown = sorted(set(val_classes) - set(classes))
            if unknown:
                raise PackError('validation folder %s has classes not in training: %s; its class folders must '
                                'carry the names of training folders' % (val_root, unknown[:5]))
            index = {c: i for i, c in enumerate(classes)}
            val_entries = [(rel, index[val_classes[label]]) for rel, label in val_entries]
    keep = keep_other_pack(out_dir, classes, overwrite)
    with staging(out_dir, keep) as stage:
        write_classes(os.path.join(stage, 'classes.txt'), classes)
        stats = {'train': pack_folder(train_root, train_entries, os.path.join(stage, 'train'), threads, progress,
                                      classes)}
        if val_entries is not None:
            stats['val'] = pack_folder(val_root, val_entries, os.path.join(stage, 'val'), threads, progress)
    return classes, stats


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one `error: ...` line (exit status 2), without the usage block."""

    def error(self, message):
        self.exit(2, 'error: %s (python -m %s --help lists the options)\n' % (message, self.prog))


def positive_int(text):
    """argparse type: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a whole number' % text)
    if n < 1:
        raise argparse.ArgumentTypeError('must be 1 or more, got %d' % n)
    return n


def main(argv=None):
    """The command line; exit status 0, 2 with `error: ...` on stderr for a problem with the
    inputs or the output folder, 130 on Ctrl-C (the output folder then unchanged)."""
    p = ArgumentParser(prog='data.pack', description='Pack ImageNet-style image folders into RecordIO '
                                            '(im2rec pass-through format), or check a pack with --check.')
    p.add_argument('--check', metavar='PREFIX', help='check PREFIX.rec/.idx in full: every record, label and '
                   'image (e.g. datasets/imagenet/train), then exit')
    p.add_argument('--num-classes', type=positive_int, help='with --check: labels must lie in 0..N-1')
    p.add_argument('--train', help='training folder: one sub-folder per class')
    p.add_argument('--val', help='validation folder (per-class sub-folders, or flat with --val-labels)')
    p.add_argument('--val-labels', help='label file for a flat validation folder: "<file> <label>" lines')
    p.add_argument('--out', help='output folder for train/val .lst/.rec/.idx and classes.txt')
    p.add_argument('--threads', type=positive_int, default=None, help='decoding threads (default: up to 8)')
    p.add_argument('--nested-classes', action='store_true', help='class folders whose images all lie in '
                   'sub-folders are classes (by default such a tree is refused: it is usually a folder above the '
                   'image folder, e.g. the dataset root holding train/ and val/)')
    p.add_argument('--skip-unlisted', action='store_true', help='with --val-labels: pack only the images the file '
                   'lists (by default images of --val missing from it are an error)')
    p.add_argument('--overwrite', action='store_true', help='replace a pack of other classes already in --out (its '
                   'files are kept in OUT/replaced/<time>/)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    if args.check:
        prefix = args.check
        if prefix.endswith(('.rec', '.idx', '.lst')) and not os.path.isdir(prefix):
            prefix = prefix[:-4]
        try:
            if os.path.isdir(prefix):
                found = pack_prefixes(prefix)
                raise PackError('%s is a folder; --check takes a pack prefix, e.g. `--check %s`%s'
                                % (prefix, os.path.join(prefix, found[0] if found else 'train'),
                                   ' (packs there: %s)' % ', '.join(found) if found else ''))
            n = check_pack(prefix, args.num_classes, decode=True, progress=True)
            mark_decodable(prefix)
        except DataError as e:
            from tools.cli import end_progress_bars
            end_progress_bars()
            print('error: %s' % e, file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print('\ninterrupted', file=sys.stderr)
            return 130
        print('%s: %d records, every image decodes%s' % (prefix, n, '' if args.num_classes is None else
                                                         ', labels in 0..%d' % (args.num_classes - 1)))
        return 0
    if not args.train or not args.out:
        p.error('--train and --out are required to build packs (or give --check PREFIX)')
    from .packindex import out_problem
    if out_problem(args.out):
        p.error(out_problem(args.out))
    code, built = one_line_errors(lambda: build_packs(args.train, args.out, args.val, args.val_labels, args.threads,
                                                      nested=args.nested_classes, skip_unlisted=args.skip_unlisted,
                                                      overwrite=args.overwrite),
                                  args.out)
    if code:
        return code
    classes, stats = built
    from core.interrupt import sigterm_as_interrupt, stop_status, stop_words
    try:
        with sigterm_as_interrupt():
            for split, (n, skipped) in stats.items():
                print('%s: %d images packed, %d skipped, %d classes' % (split, n, skipped, len(classes)))
            sys.stdout.flush()
    except KeyboardInterrupt as e:
        print('\n%s after the packs were complete: %s holds them' % (stop_words(e), args.out), file=sys.stderr)
        return stop_status(e)
    return 0


if __name__ == '__main__':
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status or 0)          # (no slow interpreter teardown after the packs are written: a stop then is silent)
