"""Fashion-MNIST: read the idx files, pack them into RecordIO.

Sources, in order: a folder given with --source; Debian's
``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist); files MXNet
downloaded before (``<out>/raw``); MXNet's own download where the network
allows. The packs (train = the official 60k training split, val = the
official 10k test split) are written with the same pack builder as ImageNet,
into a temporary folder first: they replace the pack files in --out only once
both are complete (on any error or Ctrl-C, --out is unchanged).

    python -m data.fashion_mnist --out datasets/fashion_mnist
"""
import gzip
import json
import logging
import os
import struct
import sys
import zlib

import numpy as np

from .pack import (pack_arrays, write_classes, check_pack, check_out_dir, positive_int, staging, PackError,
                   ArgumentParser)
from .packfile import one_line_errors

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
CLASSES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot']
FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'val': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
MEAN, STD = [72.94], [90.02]          # pixel statistics of the training split (0-255)


def _open(path):
    return gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')


def _find(folder, name):
    for cand in (name, name + '.gz'):
        p = os.path.join(folder, cand)
        if os.path.isfile(p):
            return p
    return None


def read_idx(path):
    """An idx file (optionally gzipped) as a numpy uint8 array."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b'\x00\x00' or head[2] != 8:
                raise PackError('%s is not an idx file of unsigned bytes' % path)
            dims = struct.unpack('>' + 'I' * head[3], f.read(4 * head[3]))
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:      # (a .gz cut short, or not gzip at all)
        raise PackError('%s is not a complete gzip file (%s); install or download it again, or give the file '
                        'unpacked' % (path, e))
    except struct.error:
        raise PackError('idx file %s is truncated (it ends inside its header); install or download it again' % path)
    n = int(np.prod(dims))
    if len(data) < n:
        raise PackError('idx file %s is truncated (%d of %d bytes); install or download it again'
                        % (path, len(data), n))
    return np.frombuffer(data[:n], dtype=np.uint8).reshape(dims)


def find_source(source=None, out=None):
    """The first folder holding all four idx files, or None."""
    candidates = [source] if source else [DEBIAN_DIR, os.path.join(out or '.', 'raw')]
    for folder in candidates:
        if folder and all(_find(folder, n) for pair in FILES.values() for n in pair):
            return folder
    return None


def download(out):
    """MXNet's own Fashion-MNIST download into <out>/raw (needs the network)."""
    import mxnet as mx
    raw = os.path.join(out, 'raw')
    for train in (True, False):
        mx.gluon.data.vision.FashionMNIST(root=raw, train=train)
    return raw


def load(folder):
    """{'train': (images, labels), 'val': (images, labels)} from a source folder."""
    out = {}
    for split, (img_name, lbl_name) in FILES.items():
        images = read_idx(_find(folder, img_name))
        labels = read_idx(_find(folder, lbl_name))
        if len(images) != len(labels):
            raise PackError('%s: %d images but %d labels' % (folder, len(images), len(labels)))
        out[split] = (images, labels)
    return out


def subset(images, labels, per_class):
    """The first `per_class` images of every class (a balanced labelled subset)."""
    keep = np.concatenate([np.where(labels == c)[0][:per_class] for c in np.unique(labels)])
    keep.sort()
    return images[keep], labels[keep]


def check_per_class(per_class, labels):
    """PackError when `per_class` is more than the training images of some class (the subset
    would quietly hold fewer, and not 10 x per_class)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASSES))
    smallest = int(counts.min())
    if per_class > smallest:
        raise PackError('--per-class %d is more than the %d training images of class %r (the classes have %d to %d): '
                        'give at most %d, or leave --per-class out to pack all %d training images'
                        % (per_class, smallest, CLASSES[int(counts.argmin())], smallest, int(counts.max()), smallest,
                           int(counts.sum())))


def is_packed(out):
    try:
        for split in FILES:
            check_pack(os.path.join(out, split), num_classes=10)
    except PackError:
        return False
    return True


def _refuse_other_packs(out):
    """PackError when `out` holds a pack of other data (its classes.txt, which data.pack writes, names
    other classes): packing Fashion-MNIST there would replace it. (Pack files without a classes.txt
    are an earlier Fashion-MNIST build that stopped before it, which this one completes.)"""
    from data import read_classes_file, DataError
    try:
        names = read_classes_file(os.path.join(out, 'classes.txt'))
    except DataError:
        names = ['(a classes.txt that does not read)']
    if names is not None and names != CLASSES:
        raise PackError('%s already holds a pack of other classes (%s%s), not Fashion-MNIST: choose another --out'
                        % (out, ', '.join(names[:5]), ', ...' if len(names) > 5 else ''))


def prepare(out, source=None, allow_download=True, per_class=None, progress=True):
    """Make sure <out>/{train,val}.rec/.idx and classes.txt exist; returns 'present' or 'packed'.

    The source is read in full before anything is written; the packs are built in a temporary
    folder and replace the pack files in `out` only when both are complete (`pack.staging`), so
    on any error or Ctrl-C `out` is as before. Other files in `out` (raw/) stay."""
    check_out_dir(out)
    _refuse_other_packs(out)
    if is_packed(out):
        have = check_pack(os.path.join(out, 'train'))
        if per_class and have != 10 * per_class:
            raise PackError('%s already holds a Fashion-MNIST pack of %d training images, not the %d of --per-class '
                            '%d: choose another --out (or remove that pack first)' % (out, have, 10 * per_class,
                                                                                    per_class))
        built = _built_with(out)
        if not per_class and built.get('per_class'):
            raise PackError('%s already holds a Fashion-MNIST subset of %d training images (--per-class %d), not the '
                            'whole training set: give --per-class %d to use it, or another --out for the whole set'
                            % (out, have, built['per_class'], built['per_class']))
        return 'present'
    folder = find_source(source, out)
    if folder is None and source:
        missing = [n for pair in FILES.values() for n in pair if not _find(source, n)]
        raise PackError('--source %s does not hold the Fashion-MNIST idx files (missing: %s, or the same with .gz)'
                        % (source, ', '.join(missing)) if os.path.isdir(source) else
                        '--source %s is a file, not a folder: give the folder that holds the four idx files'
                        % source if os.path.exists(source) else '--source folder %s does not exist' % source)
    if folder is None and allow_download:
        try:
            folder = download(out)
        except Exception as e:
            logging.warning('MXNet download of Fashion-MNIST failed: %s', e)
    if folder is None:
        raise PackError('Fashion-MNIST not found. Install it with `apt-get install dataset-fashion-mnist` '
                        '(files in %s), or put the four idx files (train-images-idx3-ubyte[.gz], ...) in a '
                        'folder and pass --source FOLDER' % DEBIAN_DIR)
    data = load(folder)
    if per_class:
        check_per_class(per_class, data['train'][1])
    with staging(out) as stage:
        for split, (images, labels) in data.items():
            if split == 'train' and per_class:
                images, labels = subset(images, labels, per_class)
            pack_arrays(images, labels, os.path.join(stage, split), progress=progress)
        write_classes(os.path.join(stage, 'classes.txt'), CLASSES)
        with open(os.path.join(stage, BUILT), 'w') as f:
            json.dump({'per_class': per_class}, f)
    return 'packed'


BUILT = 'fashion_mnist.json'        # OUT/fashion_mnist.json: how the pack there was built ({"per_class": k or null})


def _built_with(out):
    """What OUT/fashion_mnist.json says of the pack there ({} for a pack built before it was written)."""
    try:
        with open(os.path.join(out, BUILT)) as f:
            said = json.load(f)
    except (OSError, ValueError):
        return {}
    return said if isinstance(said, dict) else {}


def main(argv=None):
    p = ArgumentParser(prog='data.fashion_mnist', description='Pack Fashion-MNIST into RecordIO')
    p.add_argument('--out', default='datasets/fashion_mnist')
    p.add_argument('--source', help='folder with the four idx files (default: Debian package, then download)')
    p.add_argument('--per-class', type=positive_int, default=None,
                   help='keep only this many training images a class')
    p.add_argument('--no-download', action='store_true')
    args = p.parse_args(argv)
    from .packindex import out_problem
    if out_problem(args.out):
        p.error(out_problem(args.out))
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    code, state = one_line_errors(lambda: prepare(args.out, args.source, not args.no_download, args.per_class),
                                  args.out)
    if code:
        return code
    print('Fashion-MNIST packs in %s: %s' % (args.out, state))
    return 0


if __name__ == '__main__':
    sys.exit(main())
