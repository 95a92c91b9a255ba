"""PASCAL VOC detection data in the VOCdevkit layout, checked before use.

    VOCdevkit/VOC<year>/JPEGImages/<id>.jpg
                       /Annotations/<id>.xml
                       /ImageSets/Main/<split>.txt      (one image id per line)

`voc_dataset(root, [(2007, 'trainval'), (2012, 'trainval')], classes)` is gluoncv's
`VOCDetection` over those splits with its own classes. Every problem is one
`VOCError` naming the file and the fix:
- before anything is read (`check_voc`): a missing or non-folder root, a year
  folder without Annotations/JPEGImages/ImageSets/Main, a missing or empty split
  file, a malformed line, an id whose annotation or image is not there;
- while the labels are read (at construction): XML that does not parse, no
  <size>, an <object> without <name> or <bndbox>, a class not in `classes`,
  coordinates that are not numbers or lie outside the image;
- when an image is read: a JPEG that does not decode.

A label is the array gluoncv uses: one row per object, (xmin, ymin, xmax, ymax,
class index, difficult), 0-based pixels, shape (N, 6).
"""
import logging
import os
import xml.etree.ElementTree as ET
from core.errors import DataError

import numpy as np

LOG = logging.getLogger('voc')


class VOCError(DataError, ValueError):
    """A VOC folder, split file, annotation or image that cannot be used."""


def _ids(path):
    """The image ids a split file lists, each once (an id listed again is left out, with a warning:
    it would be trained on, or scored, twice); VOCError for a malformed line."""
    with open(path) as f:
        lines = f.read().splitlines()
    ids = []
    for n, line in enumerate(lines, 1):
        words = line.split()
        if not words:
            continue
        if len(words) != 1:
            raise VOCError('split file %s line %d is malformed (%r): one image id per line (the per-class files '
                           '<class>_<split>.txt are not split files)' % (path, n, line))
        ids.append((n, words[0]))
    if not ids:
        raise VOCError('split file %s lists no image: give a split with images' % path)
    from .idlists import once_each
    return [ids[k] for k in once_each([i for _, i in ids], path, 'split file')]


def check_voc(root, sets):
    """Check the VOCdevkit layout for `sets` [(year, split), ...] before anything is read; return
    the number of images. VOCError names the first problem."""
    if not os.path.isdir(root):
        raise VOCError('voc_root %s %s: give the VOCdevkit folder (the one holding VOC2007/, VOC2012/)'
                       % (root, 'is not a folder' if os.path.exists(root) else 'does not exist'))
    total = 0
    for year, split in sets:
        folder = os.path.join(root, 'VOC%d' % year)
        if not os.path.isdir(folder):
            have = sorted(d for d in os.listdir(root) if d.startswith('VOC') and os.path.isdir(os.path.join(root, d)))
            raise VOCError('voc_root %s has no VOC%d folder (set %d:%s); it holds %s' % (
                root, year, year, split, ', '.join(have) or 'no VOC<year> folder: is it the VOCdevkit folder?'))
        main = os.path.join(folder, 'ImageSets', 'Main')
        for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
            path = os.path.join(folder, sub)
            if not os.path.isdir(path):
                raise VOCError('voc_root %s: %s is missing (a VOCdevkit year folder holds Annotations/, JPEGImages/ '
                               'and ImageSets/Main/)' % (root, path))
        split_file = os.path.join(main, split + '.txt')
        if not os.path.isfile(split_file):
            have = sorted(f[:-4] for f in os.listdir(main) if f.endswith('.txt') and '_' not in f)
            raise VOCError('set %d:%s: %s does not exist; splits of VOC%d: %s'
                           % (year, split, split_file, year, ', '.join(have) or 'none'))
        ids = _ids(split_file)
        for n, i in ids:
            for path in (os.path.join(folder, 'Annotations', i + '.xml'), os.path.join(folder, 'JPEGImages', i + '.jpg')):
                if not os.path.isfile(path):
                    raise VOCError('split file %s line %d names %s, but %s does not exist: restore it or remove the '
                                   'line' % (split_file, n, i, path))
        total += len(ids)
    return total


def _number(node, key, path):
    child = node.find(key)
    try:
        return float(child.text)
    except (AttributeError, TypeError, ValueError):
        raise VOCError('annotation %s is malformed: <%s> is %s, not a number'
                       % (path, key, 'missing' if child is None else repr(child.text)))


def parse_annotation(path, classes):
    """(width, height, label (N, 6) float array) of one VOC annotation; `classes` maps the lower-case
    names to indices. Objects of every class must be in `classes` (VOCError otherwise)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise VOCError('annotation %s cannot be read (%s): fix or restore it, or remove its id from the split file'
                       % (path, e))
    for node in root.iter():            # (an XML namespace, <annotation xmlns="...">: VOC's tags all the same)
        if isinstance(node.tag, str) and node.tag.startswith('{'):
            node.tag = node.tag.split('}', 1)[1]
    size = root.find('size')
    if size is None:
        raise VOCError('annotation %s is malformed: it has no <size> (<width>, <height>)' % path)
    width, height = _number(size, 'width', path), _number(size, 'height', path)
    rows = []
    for k, obj in enumerate(root.iter('object'), 1):
        name, box = obj.find('name'), obj.find('bndbox')
        if name is None or not (name.text or '').strip() or box is None:
            raise VOCError('annotation %s is malformed: <object> %d has no <name> or no <bndbox>' % (path, k))
        cls = name.text.strip().lower()
        if cls not in classes:
            raise VOCError('annotation %s names class %r, which is not one of the %d configured classes (%s): set '
                           'classes=[...] to the dataset\'s classes' % (path, cls, len(classes), ', '.join(classes)))
        x0, y0, x1, y1 = (_number(box, k_, path) - 1 for k_ in ('xmin', 'ymin', 'xmax', 'ymax'))
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise VOCError('annotation %s: <object> %d (%s) has the box (%g, %g, %g, %g) (1-based), which is empty or '
                           'outside the %gx%g image: fix its <bndbox>' % (path, k, cls, x0 + 1, y0 + 1, x1 + 1, y1 + 1,
                                                                          width, height))
        difficult = obj.find('difficult')
        try:
            difficult = int((difficult.text or '0').strip()) if difficult is not None else 0
        except ValueError:
            difficult = 0
        rows.append([x0, y0, x1, y1, classes[cls], difficult])
    return width, height, np.array(rows, dtype='float32').reshape((-1, 6))


def _reason(error):
    """The line of an MXNetError that says what failed (not its traceback lines)."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    useful = [l for l in lines if not l.startswith(('Traceback', 'File ', 'Stack trace'))]
    text = useful[-1] if useful else (lines[-1] if lines else type(error).__name__)
    return text.replace('MXNetError: ', '')[:160]


def voc_class(classes):
    """gluoncv's VOCDetection for `classes` (a list of lower-case names), reading labels with
    `parse_annotation` and images with one clear error when they do not decode."""
    from gluoncv.data import VOCDetection
    import mxnet as mx

    class VOCData(VOCDetection):
        CLASSES = tuple(classes)

        def _load_items(self, splits):
            items = []
            for year, split in splits:
                folder = os.path.join(self._root, 'VOC%d' % year)
                items += [(folder, i) for _, i in _ids(os.path.join(folder, 'ImageSets', 'Main', split + '.txt'))]
            return items

        def _load_label(self, idx):
            path = self._anno_path.format(*self._items[idx])
            width, height, label = parse_annotation(path, self.index_map)
            self._im_shapes[idx] = (width, height)
            return label

        def image_path(self, idx):
            return self._image_path.format(*self._items[idx])

        def __getitem__(self, idx):
            path = self.image_path(idx)
            label = self._label_cache[idx] if self._label_cache else self._load_label(idx)
            try:
                img = mx.image.imread(path, 1)
            except mx.base.MXNetError as e:
                raise VOCError('image %s does not decode (%s): replace it or remove its id from the split file'
                               % (path, _reason(e)))
            size = self._im_shapes.get(idx)
            if size is not None and (int(size[0]), int(size[1])) != (img.shape[1], img.shape[0]):
                raise VOCError('annotation %s gives the image size %dx%d, but %s is %dx%d: fix its <size> (and the '
                               'boxes, if they were drawn on another size)' % (
                                   self._anno_path.format(*self._items[idx]), size[0], size[1], path, img.shape[1],
                                   img.shape[0]))
            if self._transform is not None:
                return self._transform(img, label)
            return img, label.copy()
    return VOCData


def voc_dataset(root, sets, classes):
    """The checked VOC dataset of `sets` under `root` (see the module docstring)."""
    check_voc(root, sets)
    return voc_class(classes)(root=root, splits=[(int(y), s) for y, s in sets], preload_label=True)


def resized(width, height, short, max_size):
    """(width, height) of an image after gluoncv's resize_short_within(short, max_size): the short side
    to `short` unless the long side would pass `max_size`, then the long side to `max_size`."""
    scale = float(short) / min(width, height)
    if round(scale * max(width, height)) > max_size:
        scale = float(max_size) / max(width, height)
    return int(round(width * scale)), int(round(height * scale))


def check_anchors(dataset, cfg, key, features, indices=None):
    """VOCError for an image of `dataset` (those at `indices`, default all) with fewer RPN anchors than
    config key `key` (rpn_train_post_nms or rpn_test_post_nms) keeps proposals, or too small for the
    backbone: a very wide or tall image, resized within short x max_size, has few positions on the
    stride-16 feature map `features` (a HybridBlock, whose output size is inferred for each resized
    size) and the RPN would fail in the middle of an epoch. Sizes from the annotations' <size>."""
    import mxnet as mx
    per_position = len(cfg.scales) * len(cfg.ratios)
    shapes = getattr(dataset, '_im_shapes', {})
    graph, positions = features(mx.sym.var('data')), {}
    for idx in sorted(shapes) if indices is None else indices:
        if idx not in shapes:
            continue
        width, height = shapes[idx]
        if min(width, height) <= 0:
            raise VOCError('annotation %s gives the image size %gx%g: fix its <size>'
                           % (dataset._anno_path.format(*dataset._items[idx]), width, height))
        w, h = resized(width, height, cfg.short, cfg.max_size)
        if (w, h) not in positions:
            try:
                out = graph.infer_shape(data=(1, 3, h, w))[1][0]
                positions[(w, h)] = out[2] * out[3]
            except mx.base.MXNetError:
                positions[(w, h)] = 0               # (a side too small for the backbone's pooling)
        anchors = positions[(w, h)] * per_position
        if anchors < cfg[key]:
            raise VOCError('image %s is %dx%d, resized to %dx%d (short=%d, max_size=%d): it has %d RPN anchors, fewer '
                           'than %s=%d proposals: %s, or leave the image out of its split'
                           % (dataset.image_path(idx), width, height, w, h, cfg.short, cfg.max_size, anchors, key,
                              cfg[key], 'lower %s to at most %d (and rpn_%s_pre_nms with it)'
                              % (key, anchors, key.split('_')[1]) if anchors else 'it is too small for the backbone'))


def scorable_objects(dataset, count=None):
    """The objects of the first `count` (default all) images of `dataset` that VOC07's mAP scores (not
    marked difficult); None when the labels are not loaded."""
    if not dataset._label_cache:
        return None
    return sum(int((label[:, 5] == 0).sum()) for label in dataset._label_cache[:count])


def with_objects(dataset):
    """Indices of the images of `dataset` that hold at least one object (Faster R-CNN trains only on
    those); a warning counts the others."""
    keep = [i for i in range(len(dataset)) if len(dataset._label_cache[i])] if dataset._label_cache else \
        list(range(len(dataset)))
    if len(keep) < len(dataset):
        LOG.warning('%d of %d training images hold no object and are left out', len(dataset) - len(keep), len(dataset))
    if not keep:
        raise VOCError('no training image holds an object: check the annotations')
    return keep


__all__ = ['VOCError', 'check_voc', 'parse_annotation', 'voc_class', 'voc_dataset', 'with_objects']
