"""Segmentation scores from a confusion matrix over the whole validation set, single scale.

confusion[i, j] counts the pixels of true class i predicted as j (pixels labelled 255 left out).
For class c: IoU_c = C[c, c] / (sum_j C[c, j] + sum_i C[i, c] - C[c, c]); a class that is neither
in the labels nor in the predictions (union 0) has no IoU (NaN) and is left out of the mean, as
mmsegmentation does; mIoU = mean of the defined IoU_c; pixel accuracy = trace(C) / sum(C).
"""
import numpy as np
from mxnet import nd

IGNORE = 255


def confusion(pred, label, num_classes):
    """(K, K) int64 confusion matrix of predicted classes `pred` against `label` (same shape, numpy)."""
    valid = label != IGNORE
    index = label[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(conf):
    """{'miou', 'pixel_acc', 'iou': [IoU_c or NaN], 'pixels': the pixels scored} of confusion matrix
    `conf`; mIoU and pixel accuracy are NaN (not measured) when no pixel could be scored (every one
    'ignore', 255)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, tp / np.maximum(union, 1e-12), np.nan)
    total = conf.sum()
    return {'miou': float(np.nanmean(iou)) if total else float('nan'),
            'pixel_acc': float(tp.sum() / total) if total else float('nan'), 'iou': [float(v) for v in iou],
            'pixels': int(total)}


def unscored_words(n):
    """What to say when the `n` validation masks held no pixel to score (`scores`' 'pixels' is 0)."""
    return ('the %d validation masks hold no pixel to score (every pixel is 255, "ignore"): mIoU and pixel accuracy '
            'are n/a, and no epoch becomes the best; check the validation masks' % n)


def evaluate(net, samples, num_classes, ctx, bar=None):
    """Scores (`scores`, plus 'n' images) of `net` (x -> class scores (B, K, H, W)) on `samples`,
    an iterable of (image (3, H, W) float32, mask (H, W)) numpy pairs, one image a device in turn;
    each prediction is waited for before the next is sent (a Ctrl-C then reaches Python)."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    n = 0
    for k, (image, mask) in enumerate(samples):
        c = ctx[k % len(ctx)]
        pred = nd.argmax(net(nd.array(image[None], ctx=c)), axis=1)[0].asnumpy().astype(np.int64)
        if pred.shape != np.shape(mask):               # (read_image and check_items keep them equal)
            raise ValueError('a prediction of %s for a mask of %s' % (pred.shape, np.shape(mask)))
        conf += confusion(pred, np.asarray(mask), num_classes)
        n += 1
        if bar is not None:
            bar.update(1)
    out = scores(conf)
    out['n'] = n
    return out
