"""Faster R-CNN evaluation: VOC07 11-point AP per class and mAP (gluoncv's VOC07MApMetric,
IoU 0.5, difficult objects ignored), and detections of single images.

- `val_loader(dataset, cfg, ctx)`: gluoncv's Faster R-CNN validation transform
  (shorter side `short`, longer at most `max_size`, mean/std), one image per
  device per batch; `num_val` keeps the first N images.
- `evaluate(net, loader, classes, ctx)` -> ({class: AP}, mAP), fractions in [0, 1];
  `unscored(dataset)` warns when no object there counts (the mAP is then NaN).
- `detect(net, img, cfg, ctx)` -> (ids (N,), scores (N,), boxes (N, 4) in the
  original image's pixels), sorted by score, for the figures.
"""
import logging
import warnings

import core.compat  # noqa: F401
import numpy as np
from mxnet import gluon

from data.workers import WorkerLoader


def normalisation(cfg):
    """(mean, std) of 0-1 pixels as gluoncv's transforms take them, from cfg.mean/std (0-255)."""
    mean = cfg.mean * 3 if len(cfg.mean) == 1 else cfg.mean
    std = cfg.std * 3 if len(cfg.std) == 1 else cfg.std
    return tuple(m / 255.0 for m in mean), tuple(s / 255.0 for s in std)


def val_loader(dataset, cfg, ctx):
    """Batches of len(ctx) images: ([img (1, 3, H, W)], [label (1, N, 6)], [scale (1, 1)]) per device."""
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultValTransform
    from gluoncv.data.batchify import Tuple, Append
    mean, std = normalisation(cfg)
    if cfg.num_val and cfg.num_val < len(dataset):
        full = dataset
        dataset = gluon.data.SimpleDataset(list(range(cfg.num_val))).transform(lambda i: full[i])
    base = FasterRCNNDefaultValTransform(cfg.short, cfg.max_size, mean, std)

    def transform(img, label):
        # an image without objects gets one padding row (class -1, which the metric leaves out): its
        # detections still count, as false positives, and the batchify can stack its label
        img, label, scale = base(img, label)
        if label.shape[0] == 0:
            label = np.full((1, 6), -1, dtype='float32')
        return img, label, scale
    return WorkerLoader(dataset.transform(transform), batch_size=len(ctx), shuffle=False,
                        batchify_fn=Tuple(*[Append() for _ in range(3)]), last_batch='keep',
                        num_workers=cfg.num_workers)


def evaluated(dataset, cfg):
    """The indices of `dataset` that an evaluation reads (`num_val` keeps the first N)."""
    return list(range(min(cfg.num_val, len(dataset)) if cfg.num_val else len(dataset)))


def unscored(dataset, cfg):
    """Warn (and return True) when no object of the images of evaluation set `dataset` that are evaluated
    counts in VOC07's mAP (every one is marked difficult, or there is none): the mAP is then n/a, and no
    epoch becomes the best."""
    from data.voc import scorable_objects
    count = len(evaluated(dataset, cfg))
    if scorable_objects(dataset, count) != 0:
        return False
    logging.getLogger('detection').warning(
        'the %d evaluation images hold no object that VOC07\'s mAP scores (every object is marked <difficult>, or '
        'there is none): the mAP is n/a, and no epoch becomes the best; evaluate on images with objects that are '
        'not difficult', count)
    return True


def evaluate(net, loader, classes, ctx, bar=None):
    """VOC07 11-point AP per class and their mean: ({class: AP}, mAP). A class without test objects
    has AP NaN and is left out of the mean (as gluoncv's metric does). `bar`, a progress bar, counts
    the images (and is closed at the end)."""
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
    from gluoncv.nn.bbox import BBoxClipToImage
    metric = VOC07MApMetric(iou_thresh=0.5, class_names=list(classes))
    clip = BBoxClipToImage()
    net._clear_cached_op()          # a hybridized detector is called with other inputs in training
    try:
        for imgs, labels, scales in loader:
            for x, y, scale, device in zip(imgs, labels, scales, ctx):     # one image per device
                x = x.as_in_context(device)
                ids, scores, boxes = net(x)
                s = scale.reshape((-1)).asscalar()
                # one image at a time: the metric cannot stack images with different object counts
                metric.update(clip(boxes, x) * s, ids, scores, y.slice_axis(axis=-1, begin=0, end=4) * s,
                              y.slice_axis(axis=-1, begin=4, end=5), y.slice_axis(axis=-1, begin=5, end=6))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)       # (the mean of no AP: NaN, said by `unscored`)
        names, values = metric.get()
    net._clear_cached_op()
    return {n: float(v) for n, v in zip(names[:-1], values[:-1])}, float(values[-1])


def detect(net, img, cfg, ctx):
    """Detections of one image (HxWx3 uint8 NDArray): (ids (N,), scores (N,), boxes (N, 4) in its
    pixels), the valid ones only, best first."""
    from gluoncv.data.transforms.presets.rcnn import transform_test
    from gluoncv.nn.bbox import BBoxClipToImage
    mean, std = normalisation(cfg)
    x, _ = transform_test(img, short=cfg.short, max_size=cfg.max_size, mean=mean, std=std)
    x = x.as_in_context(ctx[0])
    ids, scores, boxes = net(x)
    boxes = BBoxClipToImage()(boxes, x) * (img.shape[0] / float(x.shape[2]))
    ids, scores, boxes = ids[0].asnumpy()[:, 0], scores[0].asnumpy()[:, 0], boxes[0].asnumpy()
    keep = ids >= 0
    order = np.argsort(-scores[keep])
    return ids[keep][order].astype(int), scores[keep][order], boxes[keep][order]


__all__ = ['normalisation', 'val_loader', 'evaluate', 'detect']
