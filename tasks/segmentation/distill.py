"""Distillation inside segmentation: classification's DistillBlock (every registered method routed
from its registry declaration, connectors, heads, margins, warm-ups) with the task's own loss and
per-pixel class scores.

    DenseDistillBlock(x, label, t_scores, t_feat_1, ..., margin_1, ...)
        -> (total, scores, ce, term_1, ..., term_M)

`ce` (B,) is the per-image pixel cross-entropy (255 ignored, `PixelLoss`); a method that takes
logits (KD, DIST, DKD) gets the class scores of every pixel as rows, (B*H*W, K) (DKD also each
pixel's class, its 255 pixels left out), and its per-row loss is averaged over each image's
pixels, (B,): "for dense tasks the per-sample loss is over the
sample's spatial positions". Feature methods (CWD, AT, FitNet, NST, OFD, ...) take the named taps
of the student and the teacher as classification's do (`logits` is the head's class-score map).
"""
from mxnet.gluon import HybridBlock

from symbols.transfer import METHODS
from tasks.classification.distiller import DistillBlock
from .losses import PixelLoss, IGNORE


class PerPixel(HybridBlock):
    """A logit loss applied to every pixel: scores (B, K, H, W) -> rows (B*H*W, K) for student and
    teacher, the loss's (B*H*W,) values averaged per image -> (B,). A loss that takes labels (DKD)
    gets each pixel's class from the mask (B, H, W); its pixels labelled 255 are left out of the
    image's mean (an image without a labelled pixel gives 0)."""

    def __init__(self, loss, labels=False, **kwargs):
        super(PerPixel, self).__init__(**kwargs)
        self.labels = labels
        with self.name_scope():
            self.loss = loss

    def hybrid_forward(self, F, s, t, label=None):
        rows = lambda x: F.reshape(F.transpose(x, axes=(0, 2, 3, 1)), shape=(-1, 0), reverse=True)   # noqa: E731
        shape = F.sum(s, axis=1).reshape((0, -1))                                        # (B, H*W)
        if not self.labels:
            per_row = self.loss(rows(s), rows(t))                                        # (B*H*W,)
            return F.mean(F.reshape_like(per_row, shape), axis=1)
        label = F.reshape(label, shape=(-1,))
        valid = label != IGNORE
        per_row = self.loss(rows(s), rows(t), label * valid) * valid
        per_image = F.sum(F.reshape_like(per_row, shape), axis=1)
        return per_image / F.maximum(F.sum(F.reshape_like(valid, shape), axis=1), 1)


class DenseDistillBlock(DistillBlock):
    def __init__(self, student, plan, loss_options, teacher_taps, **kwargs):
        super(DenseDistillBlock, self).__init__(student, plan, loss_options, teacher_taps, task_loss=PixelLoss(),
                                                **kwargs)
        for m, entry in enumerate(plan):
            if METHODS[entry['method']].inputs == 'logits':
                name = self._loss_name(m, 0)
                owner = self.extras if METHODS[entry['method']].heads else self
                owner._children[name] = PerPixel(owner._children[name], labels=METHODS[entry['method']].labels,
                                                 prefix='%s_pixels_' % name)
