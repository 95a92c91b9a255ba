"""Datasets: RecordIO packs (ImageNet-style folders, Fashion-MNIST) and CIFAR
pickles, behind one interface.

`DataSource(cfg, num_parts, part_index)` gives `train(epoch)` (a fresh,
epoch-seeded training iterator), `val()`, `num_train`, `num_val` and the
input geometry. Packs are checked before use (missing, truncated or
mismatched .rec/.idx, index offsets that are not record starts, labels outside
num_classes, images that do not decode, images whose channel count does not fit
the dataset) with errors that say what to do.
"""
import os
import sys

import core.compat  # noqa: F401  (before mxnet: what it needs from older numpy/Python)
from core import interrupt as _interrupt
if _interrupt.is_project_command(getattr(sys, 'orig_argv', [])):
    # a variable MXNet reads at import (OMP_NUM_THREADS=abc, ...) would abort it: the data commands
    # (data.pack, data.fashion_mnist, ...) check them as train.py and the tools do, before mxnet is imported
    from core.env import check_environment
    check_environment()
from core.env import process_cores
from .packfile import check_pack, counts_of_channels, ensure_decodable, sample_channels, sample_shapes, PackError
# data.packiters and data.indices (which import mxnet) are imported where they are used: the decoding
# worker processes import this package without mxnet (data/decode_worker.py)


from core.errors import DataError  # noqa: E402  (the base of every data error, PackError's too)


CHANNEL_NAMES = {1: 'grayscale', 3: 'colour', 4: 'colour with alpha'}


def check_channels(prefix, channels, dataset, shapes=None):
    """DataError unless the up to 16 images sampled over the pack fit the channel count `channels`
    of `dataset`: for colour, at least one colour image (a 4-channel image counts as colour; a few
    grayscale images in a colour pack are normal, ImageNet has some); for grayscale, at least half
    of them (a colour pack with a few grayscale images was built for another dataset). MXNet would
    convert the images silently."""
    found = sample_channels(prefix) if shapes is None else counts_of_channels(shapes)
    if not found:
        return
    if channels == 1 and 2 * found.get(1, 0) >= sum(found.values()):
        return                      # (a grayscale dataset: most images grayscale; a colour pack with a few is not)
    if channels == 3 and (3 in found or 4 in found):
        return
    kinds = ['%d-channel (%s)' % (c, CHANNEL_NAMES.get(c, '?')) for c in sorted(found)]
    kinds = 'all ' + kinds[0] if len(kinds) == 1 else ', '.join('%d %s' % (found[c], k)
                                                               for c, k in zip(sorted(found), kinds))
    other = 'fashion_mnist' if set(found) == {1} else 'imagenet'
    raise DataError('dataset=%s expects %d-channel (%s) images, but the %d images sampled from %s.rec are %s: '
                    'set dataset=%s to match the pack, or re-pack it from %s images'
                    % (dataset, channels, CHANNEL_NAMES[channels], sum(found.values()), prefix, kinds, other,
                       CHANNEL_NAMES[channels]))


def check_small_size(prefix, image_size, dataset, shapes=None):
    """DataError when images sampled from a small-image pack (Fashion-MNIST style: never resized)
    are smaller than `image_size`: training would pad them into a zero border while validation
    stretches them, so the two would see the images differently."""
    shapes = sample_shapes(prefix) if shapes is None else shapes
    if not shapes:
        return
    side = min(min(h, w) for _, h, w in shapes)
    if side < image_size:
        h, w = min(((h, w) for _, h, w in shapes), key=min)
        raise DataError('image_size=%d but images of %s.rec are %dx%d, and dataset=%s packs are not resized '
                        '(training would pad them into a zero border while validation stretches them): set '
                        'image_size to %d or less, or re-pack the images at %d pixels or more'
                        % (image_size, prefix, h, w, dataset, side, image_size))


def read_classes_file(path):
    """The class names of a pack's classes.txt ('LABEL<TAB>NAME' a line, labels 0, 1, ... in order),
    None when there is no such file; DataError naming the line that is not of that form."""
    try:
        with open(path, encoding='utf-8-sig') as f:       # (utf-8-sig: a byte-order mark an editor wrote is skipped)
            lines = f.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):   # (data_dir a file: check_data_files names that)
        return None
    except (OSError, UnicodeDecodeError) as e:
        from core.atomic import broken_link
        link = broken_link(path)
        if link:
            raise DataError('%s cannot be read: %s is %s; point it at the data, or give the data\'s folder itself'
                            % ((path,) + link))
        raise DataError('%s cannot be read (%s): pack the data again (python -m data.pack writes it)' % (path, e))
    names = []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split('\t', 1)
        if len(parts) != 2 or parts[0].strip() != str(len(names)) or not parts[1].strip():
            raise DataError('%s line %d is %r: each line is LABEL<TAB>NAME with labels 0, 1, 2, ... in order (as '
                            'python -m data.pack writes it); fix the line or pack the data again'
                            % (path, k, line[:80]))
        names.append(parts[1].strip())
    return names


def class_names(cfg):
    """The class names of the data, in label order, or None where the data names none: a pack's
    classes.txt (`read_classes_file`), CIFAR's batches.meta / meta (label_names / fine_label_names)."""
    if cfg.dataset in ('cifar10', 'cifar100'):
        from .cifar import cifar_names
        return cifar_names(cfg.data_dir, cfg.dataset)
    try:
        return read_classes_file(os.path.join(cfg.data_dir, 'classes.txt'))
    except DataError:
        return None


def other_class_names(trained, cfg, num_classes=None):
    """A sentence when `trained` (the class names a checkpoint was trained on, in label order) and the
    class names of cfg's data differ while their counts agree (label k of one is then not label k of
    the other unless they are the same classes under other names); None when they agree or either
    names none, or when `num_classes` (the checkpoint's class count) says the names are whole and only
    the counts differ (the class-count checks say that)."""
    ours = class_names(cfg)
    if not trained or not ours:
        return None
    if isinstance(trained, (list, tuple)) and all(isinstance(n, str) for n in trained) and \
            len(trained) == num_classes and num_classes != len(ours):
        return None
    if not isinstance(trained, (list, tuple)) or not all(isinstance(n, str) for n in trained) or \
            len(trained) != len(ours):      # (metadata edited, or written by another program)
        return ('its metadata\'s class names are not a list of %d names (%s): they were edited, or written by '
                'another program, so whether it was trained on these classes cannot be told; copy the .json written '
                'with it' % (len(ours), ('%d names' % len(trained)) if isinstance(trained, (list, tuple))
                             else 'a %s' % type(trained).__name__))
    if list(trained) == list(ours):
        return None
    differ = [k for k, (a, b) in enumerate(zip(trained, ours)) if a != b]
    k = differ[0]
    return ('it was trained on other class names than this data has (label %d: %r there, %r here; %d of %d labels '
            'differ): unless these are the same classes under other names, its scores are of other classes'
            % (k, trained[k], ours[k], len(differ), len(ours)))


DEFAULTS = {
    # dataset: (channels, image_size, mean, std, style, pad)
    'imagenet': (3, 224, [123.68, 116.28, 103.53], [58.395, 57.12, 57.375], 'imagenet', 0),
    'fashion_mnist': (1, 28, [72.94], [90.02], 'small', 2),
    'cifar10': (3, 32, [125.31, 122.95, 113.87], [62.99, 62.09, 66.70], 'small', 4),
    'cifar100': (3, 32, [129.30, 124.07, 112.43], [68.17, 65.39, 70.42], 'small', 4),
}


class DataSource(object):
    """The training and validation iterators of `cfg.dataset`, part `part_index` of `num_parts`.

    With `indices` (a method of the plan keeps a row per training sample, e.g. crd), every training
    batch also carries each sample's index in the whole training set in `DataBatch.index`, and
    `num_samples` is that set's size (CIFAR pickles: the arrays' positions; packs: the record's row in
    train.idx, see data/indices.py).

    With `colour_on_device` (the network runs on a GPU), ImageNet packs give batches of uint8 images
    and per-image colour maps, which `data.device.device_inputs` turns into the network's input on
    the device (data/augment.py); every other batch is the float32 input itself.
    """

    def __init__(self, cfg, num_parts=1, part_index=0, batch_size=None, indices=False, colour_on_device=False,
                 validation_only=False):
        self.cfg = cfg
        channels, size, mean, std, style, pad = DEFAULTS[cfg.dataset]
        self.channels = channels
        self.image_size = cfg.image_size or size
        self.mean = cfg.mean if cfg.mean is not None else mean
        self.std = cfg.std if cfg.std is not None else std
        self.pad = cfg.pad if cfg.pad is not None else pad
        self.style = style
        self.batch_size = batch_size or cfg.global_batch_size
        self.num_parts, self.part_index = num_parts, part_index
        threads = cfg.data_threads or process_cores()
        if cfg.dataset in ('cifar10', 'cifar100'):
            from .cifar import load_cifar
            (self._train_x, self._train_y), (self._val_x, self._val_y) = load_cifar(cfg.data_dir, cfg.dataset,
                                                                                    train=not validation_only)
            top = int(max(self._train_y.max(initial=0), self._val_y.max()))
            if top >= cfg.num_classes:
                raise DataError('%s in %s has label %d, outside num_classes=%d: set num_classes to %d or more'
                                % (cfg.dataset, cfg.data_dir, top, cfg.num_classes, top + 1))
            counted = len(self._train_x)
            self.num_train = counted // num_parts
            self.num_val = len(self._val_x) // num_parts
            self._records = None
        else:
            prefix = lambda s: os.path.join(cfg.data_dir, s)
            train_records = counted = 0 if validation_only else check_pack(prefix('train'), cfg.num_classes)
            self.num_train = train_records // num_parts
            self.num_val = check_pack(prefix('val'), cfg.num_classes) // num_parts
            for split in ('val',) if validation_only else ('train', 'val'):
                # on every path: the iterators that resize would abort the process on an image that
                # does not decode, the others would train on garbage pixels (free for builder-made packs)
                ensure_decodable(prefix(split), cfg.progress)
                shapes = sample_shapes(prefix(split))           # (the sampled images, decoded once for both)
                check_channels(prefix(split), channels, cfg.dataset, shapes)
                if style == 'small':
                    check_small_size(prefix(split), self.image_size, cfg.dataset, shapes)
            from . import packiters
            if indices:
                self.num_samples = train_records
            self._records = packiters.record_iters(
                prefix('train'), prefix('val'), self.batch_size, self.image_size, channels, self.mean,
                self.std, style, cfg.augment, cfg.resize, self.pad, threads, num_parts, part_index, cfg.seed,
                indices=indices, colour_on_device=colour_on_device)
        if cfg.num_examples and not validation_only:
            if cfg.num_examples > counted:
                # the epoch would end with the data, before the steps the schedule counts on (a cosine
                # run ended far from lr 0) while the log named the larger set
                raise DataError('num_examples=%d but the training set of %s has %d images: leave num_examples '
                                'unset (it is counted) or give at most %d' % (cfg.num_examples, cfg.data_dir,
                                                                           counted, counted))
            self.num_train = cfg.num_examples // num_parts

    @property
    def data_shape(self):
        return (self.channels, self.image_size, self.image_size)

    def train(self, epoch):
        if self._records is not None:
            return self._records[0](epoch)
        from .arrays import ArrayIter
        return ArrayIter(self._train_x, self._train_y, self.batch_size, self.mean, self.std, shuffle=True,
                         augment=self.cfg.augment, pad=self.pad, seed=self.cfg.seed, epoch=epoch,
                         num_parts=self.num_parts, part_index=self.part_index)

    def val(self):
        if self._records is not None:
            return self._records[1]()
        from .arrays import ArrayIter
        return ArrayIter(self._val_x, self._val_y, self.batch_size, self.mean, self.std,
                         num_parts=self.num_parts, part_index=self.part_index)


__all__ = ['DataSource', 'check_pack', 'check_channels', 'PackError', 'DataError', 'DEFAULTS']
