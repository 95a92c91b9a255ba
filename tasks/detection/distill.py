"""Distillation inside detection: a Faster R-CNN student trained on its own four losses plus any
registered method on named taps of the student and of a Faster R-CNN teacher of this project.
The routing (registry declarations, connectors, heads, margins, warm-ups) is classification's
`DistillBlock`; the student runs outside it (gluoncv's detector samples RoIs from the labels) and
hands in its detection loss, its RoI class scores and its taps.

Taps of a Faster R-CNN, the same names for the student and the teacher:
- `features` (`TAPS`): the backbone's stride-16 map (B, C, H/16, W/16) that the RPN and the RoI head
  read;
- `rcnn_logits` (`TAPS`): the RoI head's class scores (B, N, K + 1) of the N RoIs the student
  sampled. The teacher scores the same boxes: RoIAlign of its own `features` at the student's RoIs,
  then its top_features and class predictor;
- the backbone's taps inside `features` by their names (`detector.backbone_parts.stage_taps`, from
  symbols.detection.stage_taps): its stages and the outputs inside them (a pre-ReLU BatchNorm for
  OFD, whose margin comes from the teacher backbone's BatchNorm), kept by hooks (`TapHooks`).

    DetectionDistillBlock(det_loss, s_logits, t_logits, roi_classes, s_tap_1, ..., t_tap_1, ...,
                          margin_1, ...) -> (total, s_logits, det_loss, term_1, ..., term_M)

`det_loss` (B,) is the student's detection loss per image (RPN and RCNN terms summed);
`roi_classes` (B, N) the class target of each sampled RoI (-1: ignored). A logit method (kd, dist,
dkd with the RoIs' class targets) takes every RoI as a row, (B*N, K + 1), and its per-row loss is
averaged over the image's RoIs; so does a batch-relational method (sp, rkd, pkt, cc) given the tap
`rcnn_logits`: it relates the RoIs of the image. A feature method (fitnet, at, mmd, cwd, vid, ...)
pairs maps (`features` and stage taps), a method of several map taps (fsp, kdsvd, reviewkd, ab) takes
stage taps; a stage before epoch 0 that trains the student (AB's initialisation) trains the
backbone up to its taps. Batch-relational methods on maps (one image a device here) and map methods
on `rcnn_logits` are refused by the config (`config.detection`).
"""
from mxnet import autograd, nd
from mxnet.gluon import HybridBlock

from symbols.transfer import METHODS
from tasks.classification.distiller import DistillBlock, plan_taps

TAPS = ('features', 'rcnn_logits')


class PerRoI(HybridBlock):
    """A loss applied to every RoI as a row: scores (B, N, K) -> rows (B*N, K) for student and
    teacher, the loss's (B*N,) values averaged per image -> (B,). A batch-relational loss (sp, rkd,
    pkt, cc, dist) so relates the RoIs of the device's image. A loss that takes labels (dkd) gets each
    RoI's class target (B, N) from the detector's sampler; RoIs it ignores (-1) are left out of the
    image's mean."""

    def __init__(self, loss, labels=False, **kwargs):
        super(PerRoI, self).__init__(**kwargs)
        self.labels = labels
        with self.name_scope():
            self.loss = loss

    def build(self, *shapes):
        """The heads of the loss (cc's embeddings), from the per-row shapes."""
        return self.loss.build(*shapes)

    def hybrid_forward(self, F, s, t, label=None):
        shape = F.sum(s, axis=2)                                                          # (B, N)
        s, t = F.reshape(s, shape=(-3, 0)), F.reshape(t, shape=(-3, 0))
        if not self.labels:
            return F.mean(F.reshape_like(self.loss(s, t), shape), axis=1)                # (B*N,) -> (B,)
        label = F.reshape(label, shape=(-1,))
        valid = label >= 0
        per_row = self.loss(s, t, label * valid) * valid
        return F.sum(F.reshape_like(per_row, shape), axis=1) / F.maximum(F.sum(F.reshape_like(valid, shape), axis=1),
                                                                          1)


class DetectionDistillBlock(DistillBlock):
    """See the module doc."""

    def __init__(self, plan, loss_options, teacher_taps, **kwargs):
        super(DetectionDistillBlock, self).__init__(None, plan, loss_options, teacher_taps, **kwargs)
        for m, entry in enumerate(plan):
            spec = METHODS[entry['method']]
            owner = self.extras if spec.heads else self
            for p in range(self._calls(m)):
                if spec.inputs == 'logits' or tuple(entry['pairs'][p]) == ('rcnn_logits', 'rcnn_logits'):
                    name = self._loss_name(m, p)
                    owner._children[name] = PerRoI(owner._children[name], labels=spec.labels,
                                                   prefix='%s_rois_' % name)

    # the student's taps of a stage that trains the student (`stage_loss`), read by `_student`
    _stage_taps = None
    # taps -> {name: Parameter} of the student that they depend on: set by the task, which knows the
    # detector (the block does not hold the student)
    student_tap_parameters = None

    def stage_loss(self, t_feats, s_feats=None):
        """(the stage's loss (B,),) of a stage on the teacher's taps `t_feats` (in `t_index` order) and,
        when it trains the student (AB's initialisation), the student's taps `s_feats` (in `s_index`
        order), which the detector computed."""
        self._stage_taps = s_feats
        try:
            return (self._stage_total(None, t_feats),)
        finally:
            self._stage_taps = None

    def _student(self, x):
        return None, list(self._stage_taps)

    def hybrid_forward(self, F, det_loss, s_logits, t_logits, roi_classes, *rest):
        n_s = len(self.s_index)
        return self.distil(s_logits, list(rest[:n_s]), det_loss, roi_classes, t_logits, *rest[n_s:])


class TapHooks(object):
    """The last outputs of a detector's `features` (tap `features`) and of the backbone taps inside
    it that the plan names (`detector.backbone_parts.stage_taps`), as {tap: NDArray} in `values`.
    The detector then runs imperatively around its hybridized backbone parts: `features` hybridized
    around the blocks the hooks read (a hook inside a hybridized whole never runs; whole when only
    `features` itself is read), and `top_features`."""

    def __init__(self, detector, taps):
        from symbols.detection import hybridize_around
        from symbols.taps import resolve_tap
        self.values, hooks = {}, [(detector.features, 'features', 'out')]
        parts = detector.backbone_parts
        for tap in taps:
            if tap in parts.stage_taps and tap != 'features':
                block, side = resolve_tap(parts.network, tap)
                hooks.append((block, tap, side))
        hybridize_around(detector.features, [b for b, _, _ in hooks[1:]])
        if detector.top_features is not None:
            detector.top_features.hybridize(static_alloc=True)
        for block, tap, side in hooks:            # (after hybridize, which warns of hooks already there)
            block.register_forward_hook(self._keep(tap, side))

    def _keep(self, tap, side):
        def hook(block, inputs, output):
            self.values[tap] = inputs[0] if side == 'in' else output
        return hook


def teacher_taps(teacher, x, rois, taps, roi_size, hooks=None):
    """{tap: NDArray} of the frozen teacher detector on images `x` (B, 3, H, W): `features`, the
    backbone stages `hooks` (TapHooks on the teacher) keep, and `rcnn_logits` (B, N, K + 1) at the
    student's sampled RoIs `rois` (B, N, 4) when asked for."""
    out = {}
    with autograd.pause(train_mode=False):
        feat = teacher.features(x)
        if hooks is not None:
            out.update(hooks.values)
        out['features'] = feat
        if 'rcnn_logits' in taps:
            b, n = rois.shape[0], rois.shape[1]
            index = nd.repeat(nd.arange(0, b, ctx=x.context), n).reshape((-1, 1))
            boxes = nd.concat(index, rois.reshape((-1, 4)), dim=-1)
            pooled = nd.contrib.ROIAlign(feat, boxes, (roi_size, roi_size), 1. / 16, sample_ratio=2)
            top = teacher.top_features(pooled) if teacher.top_features is not None else pooled
            pooled = teacher.box_features(top) if teacher.box_features is not None else \
                nd.contrib.AdaptiveAvgPooling2D(top, output_size=1)
            out['rcnn_logits'] = teacher.class_predictor(pooled).reshape((b, n, -1))
    return out


def block_taps(plan):
    """(student taps, teacher taps) the block takes, in its input order, and whether any method
    reads the RoI class scores (as logits or as a tap)."""
    s_taps, t_taps = plan_taps(plan)
    logits = any(METHODS[e['method']].inputs == 'logits' for e in plan) or 'rcnn_logits' in list(s_taps) + list(
        t_taps)
    return list(s_taps), list(t_taps), logits


def zeros_like_logits(ctx):
    """The teacher-logits input of a plan without logit methods (unused by the block)."""
    return nd.zeros((1, 1, 1), ctx=ctx)


__all__ = ['TAPS', 'DetectionDistillBlock', 'TapHooks', 'PerRoI', 'teacher_taps', 'block_taps',
           'zeros_like_logits']
