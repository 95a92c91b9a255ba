"""The iterators over RecordIO packs, built as `data.DataSource` asks.

- ImageNet packs: `data.decode.DecodeIter` (OpenCV in worker processes): training with
  fb.resnet's augmentation (`data.augment`), validation with the shorter side to `resize` and
  the centre crop. Order and every random number come from (seed, epoch, batch) alone.
- Small images (Fashion-MNIST packs): one ImageRecordIter, pad + random crop + mirror (as fast
  as before; benchmarks/input_pipeline.py measures it against OpenCV on all cores).

MXNet 1.9.1's ImageRecordIter accepts unknown keyword arguments silently
(and `facebook_aug` exists only in the original's fork), so every keyword is
checked against the iterator's documented parameters before it is built.
"""
import re
import weakref

import mxnet as mx

from core.atomic import discard
from .augment import centre_crop_resize  # noqa: F401  (tools.features uses it from here)
from .decode import DecodeIter, DecodePool, Ring
from .indices import RowBatches, row_list_file
from .packindex import PackIndex, damaged, uri_problem

_KNOWN = None
#: DecodeIter's batches decoded ahead and batches kept valid (its ring: DEPTH + KEEP slots)
DEPTH, KEEP = 3, 2


def known_params():
    """The parameter names ImageRecordIter documents in this MXNet build."""
    global _KNOWN
    if _KNOWN is None:
        doc = mx.io.ImageRecordIter.__doc__ or ''
        # data_name / label_name are taken by the Python wrapper (MXDataIter).
        _KNOWN = set(re.findall(r'^\s*(\w+)\s*:', doc, re.M)) | {'data_name', 'label_name'}
    return _KNOWN


def image_record_iter(**kwargs):
    """mx.io.ImageRecordIter(**kwargs) with its keywords checked and its read errors explained."""
    unknown = sorted(k for k in kwargs if k not in known_params())
    if unknown:
        raise TypeError('ImageRecordIter has no parameter(s) %s in MXNet %s (it would ignore them silently)'
                        % (', '.join(unknown), mx.__version__))
    path = kwargs.get('path_imgrec', '?')
    for key in ('path_imgrec', 'path_imgidx', 'path_imglist'):
        problem = kwargs.get(key) and uri_problem(kwargs[key])
        if problem:
            from . import DataError
            raise DataError(problem)
    try:
        return GuardedIter(mx.io.ImageRecordIter(**kwargs), path)
    except mx.base.MXNetError as e:
        raise _read_error(path, e)


def _read_error(path, error):
    """The DataError for an MXNet failure while reading pack `path`."""
    first = [l for l in str(error).splitlines() if l.strip() and 'Traceback' not in l and 'File "' not in l]
    return damaged(path, (first or ['?'])[-1].strip())


class GuardedIter(object):
    """Iterates an MXNet data iterator, turning its read errors into a DataError that names
    the pack; every other attribute is the wrapped iterator's."""

    def __init__(self, it, path):
        self._it, self._path = it, path

    def __getattr__(self, name):
        return getattr(self._it, name)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self._it.next()
        except mx.base.MXNetError as e:
            raise _read_error(self._path, e)

    next = __next__


def _expand(values, channels, fill):
    """`values` (one per channel, or one for all; None: `fill`) as a list of `channels` floats."""
    values = [float(v) for v in values] if values is not None else [fill] * channels
    return values * channels if len(values) == 1 else values


def _norm(mean, std, channels):
    mean = list(mean) if mean is not None else [0.0] * channels
    std = list(std) if std is not None else [1.0] * channels
    if len(mean) == 1:
        mean = mean * channels
    if len(std) == 1:
        std = std * channels
    out = {}
    for i, key in enumerate('rgb'[:channels] if channels == 3 else 'r'):
        out['mean_%s' % key] = float(mean[i])
        out['std_%s' % key] = float(std[i])
    return out


def record_iters(prefix_train, prefix_val, batch_size, image_size, channels, mean, std, style,
                 augment=True, resize=None, pad=0, threads=1, num_parts=1, part_index=0, seed=0, indices=False,
                 colour_on_device=False):
    """(train(epoch), val()) iterator factories over part `part_index` of `num_parts` of the packs;
    `style` is 'imagenet' (DecodeIter: OpenCV in `threads` worker processes) or 'small' (ImageRecordIter).
    DecodeIter's batches carry each record's row in the pack in `DataBatch.index`; ImageRecordIter's
    do with `indices`, through a temporary `data.indices.row_list_file` of the training pack, removed
    with the training factory. With `colour_on_device` (the network runs on a GPU), DecodeIter's batches
    are uint8 images + colour maps for `data.device.device_inputs` (see DecodeIter); ImageRecordIter's
    are float32 either way.

    The trainer rebuilds the training iterator each epoch, seeded from (seed, epoch), so a resumed
    run sees exactly the batches an uninterrupted one would.
    """
    if style == 'imagenet':
        indexes = {}

        def index(prefix):                          # read once, at first use
            if prefix not in indexes:
                indexes[prefix] = PackIndex(prefix)
            return indexes[prefix]
        common = dict(batch_size=batch_size, image_size=image_size, mean=_expand(mean, 3, 0.0),
                      std=_expand(std, 3, 1.0), resize=resize, num_parts=num_parts, part_index=part_index,
                      threads=threads, depth=DEPTH, keep=KEEP, colour_on_device=colour_on_device)
        rings = {}

        def ring(split):
            """The ring of `split` on the factories' pool: started at first use, kept from epoch to epoch
            (a new one if a worker died), shut down when both factories are dropped."""
            if 'pool' not in rings or rings['pool'].broken is not None:
                slots = DEPTH + KEEP
                pool = DecodePool(threads, batch_size, image_size, 2 * slots,
                                  'uint8' if colour_on_device else 'float32')
                rings.update(pool=pool, train=Ring(pool, range(slots)), val=Ring(pool, range(slots, 2 * slots)))
            return rings[split]
        return (lambda epoch: DecodeIter(index(prefix_train), augment=augment, shuffle=True, seed=seed, epoch=epoch,
                                         ring=ring('train'), **common)), \
            (lambda: DecodeIter(index(prefix_val), ring=ring('val'), **common))
    shape = (channels, image_size, image_size)
    common = dict(label_width=1, data_name='data', label_name='softmax_label', data_shape=shape,
                  batch_size=batch_size, preprocess_threads=threads, num_parts=num_parts,
                  part_index=part_index, round_batch=True, **_norm(mean, std, channels))
    train = dict(common, path_imgrec=prefix_train + '.rec', path_imgidx=prefix_train + '.idx',
                 shuffle=True, seed=seed % 2 ** 31, seed_aug=seed % 2 ** 31, prefetch_buffer=4)
    if augment:
        train.update(pad=pad, fill_value=0, rand_crop=pad > 0, rand_mirror=True)
    val = dict(common, path_imgrec=prefix_val + '.rec', path_imgidx=prefix_val + '.idx',
               rand_crop=False, rand_mirror=False)
    rows = lambda it: it
    if indices:                                     # labels (B, 2): class, row in the pack
        row_list = row_list_file(prefix_train)
        train.update(path_imglist=row_list, label_width=2)
        rows = RowBatches
    # (the iterator's seeds are C ints: a seed of 2**31 or more is taken modulo 2**31)
    make_train = lambda epoch: rows(image_record_iter(**dict(train, seed=(seed + epoch) % 2 ** 31,
                                                             seed_aug=(seed + epoch) % 2 ** 31)))
    if indices:
        weakref.finalize(make_train, discard, row_list)      # with the factory (quietly, if already gone)
    return make_train, \
        (lambda: image_record_iter(**val))
