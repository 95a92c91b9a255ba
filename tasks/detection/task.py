"""Faster R-CNN on PASCAL VOC with a backbone of this project (paper §5.3, Table 4), as a task of the
engine (core/engine.py), which owns devices, seeds, schedule, resume, checkpoints, records, logs.

What is the task's own:
- data: gluoncv's VOCDetection over the checked VOCdevkit (data/voc.py), its Faster R-CNN training
  transform (resize, random flip, RPN targets) and batchify; one image per device per step; the
  order, flips and RPN/RCNN sampling are seeded from (seed, epoch, position), so a resumed run
  repeats an uninterrupted one;
- the detector (tasks/detection/detector.py): gluoncv's FasterRCNN on the backbone's stride-16/32
  split;
- losses (gluoncv's recipe): RPN sigmoid cross-entropy + smooth L1, RCNN softmax cross-entropy +
  smooth L1, each normalised by its sampled anchors/RoIs; the step's loss is their sum;
- validation: VOC07 11-point AP per class and mAP (tasks/detection/evaluate.py), which picks the
  best epoch.
"""
import logging
import os
import random

import numpy as np
from mxnet import gluon, nd

from core.errors import TrainingError
from core.running import RunningTerms
from data.workers import WorkerLoader
from core.seeding import epoch_seed
from core.task import Task
from .detector import build_detector, trainable, structure, structure_differences, STRUCTURE
from .evaluate import evaluate, evaluated, normalisation, unscored, val_loader

LOG = logging.getLogger('detection')
TERMS = ('rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box')


class DetectionError(TrainingError, ValueError):
    """A detection run that cannot go on as configured; says why and what to do."""


# ------------------------------------------------------------------ data
def epoch_order(cfg, usable, epoch, num_devices, rank=0, workers=1):
    """The dataset indices worker `rank` of `workers` trains on in epoch `epoch`: `usable` shuffled
    with (seed, epoch), repeated or cut to epoch_size, every `workers`-th from `rank` on (the same
    count for every worker), cut to a multiple of the worker's device count."""
    order = list(np.random.RandomState(epoch_seed(cfg.seed, epoch) % (2 ** 32)).permutation(usable))
    size = cfg.epoch_size or len(order)
    order = [order[i % len(order)] for i in range(size)]
    order = order[rank::workers][:len(order) // workers]
    return order[:len(order) - len(order) % num_devices]


def train_loader(net, dataset, order, cfg, ctx, epoch):
    """Batches of len(ctx) images for gluoncv's Faster R-CNN training transform: shards of (img, label,
    rpn_cls_targets, rpn_box_targets, rpn_box_masks, the image's index in `dataset`). Each sample is
    transformed under a seed of its own, so flips and RPN anchor sampling do not depend on the
    loader's workers."""
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform
    from gluoncv.data.batchify import FasterRCNNTrainBatchify
    mean, std = normalisation(cfg)
    transform = FasterRCNNDefaultTrainTransform(cfg.short, cfg.max_size, net, mean=mean, std=std, ashape=128)
    base = epoch_seed(cfg.seed, epoch) * 1000003

    def sample(position):
        seed = (base + position) % (2 ** 31)
        np.random.seed(seed)                    # the transform's flip (random) and RPN sampling (numpy)
        random.seed(seed)
        img, label = dataset[order[position]]
        return transform(img, label) + (np.float32(order[position]),)
    items = gluon.data.SimpleDataset(list(range(len(order)))).transform(sample)
    return WorkerLoader(items, batch_size=len(ctx), shuffle=False, last_batch='discard',
                        batchify_fn=WithIndex(FasterRCNNTrainBatchify(net, len(ctx))), num_workers=cfg.num_workers)


class WithIndex(object):
    """gluoncv's batchify of the training samples, then each device's image index (1,): a class at
    module level, as the loader's worker processes receive it pickled with every batch."""

    def __init__(self, batchify):
        self.batchify = batchify

    def __call__(self, samples):
        return tuple(self.batchify([x[:-1] for x in samples])) + ([nd.array([x[-1]]) for x in samples],)


def shards(batch, ctx):
    """One tuple of arrays per device from FasterRCNNTrainBatchify's output."""
    parts = [part if isinstance(part, (list, tuple)) else [part] for part in batch]
    return [tuple(p[k].as_in_context(c) for p in parts) for k, c in enumerate(ctx)]


# ------------------------------------------------------------------ losses
class Losses(object):
    """gluoncv's Faster R-CNN losses of one device's shard: (rpn_cls, rpn_box, rcnn_cls, rcnn_box), scalars."""

    def __init__(self):
        self.rpn_cls = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box = gluon.loss.HuberLoss(rho=1. / 9.)
        self.rcnn_cls = gluon.loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box = gluon.loss.HuberLoss()

    def __call__(self, net, data, label, rpn_cls_targets, rpn_box_targets, rpn_box_masks, index=None, outputs=None):
        """data (B, 3, H, W), label (B, N, 6), RPN targets (B, A), (B, A, 4), (B, A, 4), as a shard of
        `train_loader` gives them (`index`, the images' indices, is not read here). `outputs`, a
        dict, receives the RoI class scores `cls_pred` (B, R, K + 1), the sampled RoIs `rois`
        (B, R, 4) and their class targets `cls_targets` (B, R; -1 ignored) for distillation."""
        gt_label, gt_box = label[:, :, 4:5], label[:, :, :4]
        cls_pred, box_pred, rois, _, _, rpn_score, rpn_box, _, cls_targets, box_targets, box_masks, _ = \
            net(data, gt_box, gt_label)
        if outputs is not None:
            outputs.update(cls_pred=cls_pred, rois=rois, cls_targets=cls_targets)
        rpn_score = rpn_score.squeeze(axis=-1)
        num_rpn = (rpn_cls_targets >= 0).sum()
        rpn_cls = self.rpn_cls(rpn_score, rpn_cls_targets, rpn_cls_targets >= 0) * rpn_cls_targets.size / num_rpn
        rpn_box = self.rpn_box(rpn_box, rpn_box_targets, rpn_box_masks) * rpn_box.size / num_rpn
        num_rcnn = (cls_targets >= 0).sum()
        rcnn_cls = self.rcnn_cls(cls_pred, cls_targets, cls_targets.expand_dims(-1) >= 0) * \
            cls_targets.size / num_rcnn
        rcnn_box = self.rcnn_box(box_pred, box_targets, box_masks) * box_pred.size / num_rcnn
        return [rpn_cls.sum(), rpn_box.sum(), rcnn_cls.sum(), rcnn_box.sum()]


# ------------------------------------------------------------------ the task
class DetectionTask(Task):
    """Faster R-CNN on VOC: one image per device per step, VOC07 mAP picks the best epoch."""
    name = 'detection'
    best_metric = 'val_map'
    best_key = 'best_map'
    fits = 'resume with the detector keys it was trained with (%s)' % ', '.join(STRUCTURE)
    diverged_fix = ('lower lr (or raise warmup_iters), and check that mean/std are those the backbone was trained '
                    'with')

    @classmethod
    def load_config(cls, path=None, overrides=(), check_data=True):
        from config.detection import load_detection_config
        return load_detection_config(path, overrides, backbone=check_data)

    @classmethod
    def final_lines(cls, record, cfg):
        from tools.detection_report import results_table
        return ['VOC07 11-point mAP: %.2f%%' % (100 * record['val_map']),
                results_table([result_of(record, cfg)], cfg.classes)]

    @classmethod
    def warnings(cls, cfg):
        out = []
        twice = sorted({'%d:%s' % s for s in cfg.train_sets if cfg.train_sets.count(s) > 1})
        if twice:
            out.append('train_sets names %s twice: its images are trained on twice an epoch' % ', '.join(twice))
        shared = ['%d:%s' % s for s in cfg.train_sets if s in cfg.val_sets]
        if shared:
            out.append('train_sets and val_sets both hold %s: the mAP is measured on training images (VOC07: train '
                       'on 2007:trainval,2012:trainval, evaluate on 2007:test)' % ', '.join(shared))
        return out

    def prepare(self):
        from data.voc import voc_dataset, with_objects
        cfg, ctx = self.cfg, self.engine.ctx
        self.train_set = voc_dataset(cfg.voc_root, cfg.train_sets, cfg.classes)
        self.val_set = voc_dataset(cfg.voc_root, cfg.val_sets, cfg.classes)
        unscored(self.val_set, cfg)
        self.usable = with_objects(self.train_set)
        engine = self.engine
        self.steps_per_epoch = len(epoch_order(cfg, self.usable, 0, len(ctx), engine.rank, engine.workers)) // len(ctx)
        self.samples_per_step = len(ctx)
        from tasks.classification.distiller import loss_options, plan_takes_indices
        # a method whose memory has a row per training image (registry `indices`: CRD) needs their count
        self.loss_options = loss_options(cfg, len(self.train_set) if plan_takes_indices(cfg.plan) else None)

    def build(self):
        from data.voc import check_anchors
        self.net, self.backbone = build_detector(self.cfg, self.engine.ctx)   # a backbone that cannot be used stops here
        # (an image with fewer anchors than the proposals kept: refused now, not in the middle of an epoch)
        check_anchors(self.train_set, self.cfg, 'rpn_train_post_nms', self.net.features, self.usable)
        check_anchors(self.val_set, self.cfg, 'rpn_test_post_nms', self.net.features, evaluated(self.val_set, self.cfg))
        self.losses = Losses()
        self.teacher, self.block, self.margins = None, None, []
        self.names = list(TERMS) + [e['method'] for e in self.cfg.plan]
        params = trainable(self.net)
        if self.cfg.kt:
            self._build_distillation()
            params.update({n: p for n, p in self.block.extras.collect_params().items() if p.grad_req != 'null'})
        return params

    @classmethod
    def locate_teacher(cls, cfg):
        """(model_dir, run, tag) of the teacher: a Faster R-CNN run of this project with this run's classes."""
        from core import checkpoint
        try:
            checkpoint.check_run_prefix(cfg.teacher_prefix)      # a checkpoint file or a folder instead of a run
            try:
                folder, name, tag, meta = checkpoint.run_at(cfg.teacher_prefix, cfg.teacher_epoch, resolve=True)
            except checkpoint.CheckpointError as e:
                raise checkpoint.CheckpointError('teacher_prefix=%s: %s; train the teacher first (a Faster R-CNN run) '
                                                 'or correct teacher_prefix / teacher_epoch' % (cfg.teacher_prefix, e))
        except checkpoint.CheckpointError as e:
            raise DetectionError(str(e))
        if meta.get('kind') != 'faster_rcnn':
            raise DetectionError('teacher_prefix=%s is not a Faster R-CNN run (its checkpoint says %s): give a run '
                                 'trained with tools.detection or a voc_* preset'
                                 % (cfg.teacher_prefix, meta.get('kind') or 'network=%s' % meta.get('network')))
        if list(meta.get('classes') or []) != list(cfg.classes):
            raise DetectionError('the teacher %s detects the classes %s, this run %s: use a teacher of these classes'
                                 % (cfg.teacher_prefix, ','.join(meta.get('classes') or []), ','.join(cfg.classes)))
        return folder, name, tag

    def _build_distillation(self):
        """The teacher (frozen, inference mode), the distillation block, its connectors and heads
        fitted to the taps' shapes on one image, the margins of the methods that declare a teacher hook."""
        import mxnet as mx
        from mxnet import autograd, nd
        from symbols.transfer import METHODS, PairingError
        from .detector import load_detector, DetectorError
        from .distill import TAPS, DetectionDistillBlock, TapHooks, block_taps, teacher_taps
        cfg, ctx = self.cfg, self.engine.ctx
        folder, name, tag = self.locate_teacher(cfg)
        try:
            self.teacher, meta = load_detector(folder, name, tag, ctx, cfg, scope='teacher_')
        except DetectorError as e:
            raise DetectionError('teacher: %s' % e)
        for p in self.teacher.collect_params().values():
            p.grad_req = 'null'
        self.teacher_roi = (meta.get('detector') or {}).get('roi_size', cfg.roi_size)   # the RoIs it was trained on
        trained = meta.get('config') or {}
        for key in ('short', 'max_size'):
            if trained.get(key) is not None and trained[key] != cfg[key]:
                LOG.warning('the teacher %s was trained at %s=%s, this run uses %s=%s: it sees the images at another '
                            'scale than it learnt; use %s=%s unless that is intended', cfg.teacher_prefix, key,
                            trained[key], key, cfg[key], key, trained[key])
        self.teacher_desc = '%s (Faster R-CNN on %s, epoch %s, VOC07 mAP %.2f%%, RoIAlign %dx%d)' % (
            cfg.teacher_prefix, meta.get('network'), meta.get('epoch'), 100 * meta.get('val_map', 0),
            self.teacher_roi, self.teacher_roi)
        self.s_taps, self.t_taps, self.wants_logits = block_taps(cfg.plan)
        for role, taps, net, whose in (('student_symbol', self.s_taps, self.net, 'the student'),
                                       ('teacher_symbol', self.t_taps, self.teacher, 'the teacher %s' % name)):
            have = net.backbone_parts.stage_taps
            unknown = [t for t in taps if t not in TAPS and t not in have]
            if unknown:
                raise DetectionError('%s: %r is not a tap of %s; its taps are %s' % (
                    role, unknown[0], whose, ', '.join(list(TAPS) + [t for t in have if t not in TAPS])))
        # the detectors run imperatively around their hybridized backbone parts, hooks keep the taps
        self.s_hooks, self.t_hooks = TapHooks(self.net, self.s_taps), TapHooks(self.teacher, self.t_taps)
        self.block = DetectionDistillBlock(cfg.plan, self.loss_options, self.t_taps, prefix='distill_')
        self.block.student_tap_parameters = self._student_tap_parameters
        x = nd.zeros((1, 3, cfg.short, cfg.short), ctx=ctx[0])
        with autograd.pause(train_mode=False):
            self.net.features(x)
        s_maps = dict(self.s_hooks.values)
        t_maps = teacher_taps(self.teacher, x, None, ['features'], self.teacher_roi, self.t_hooks)
        logits = (cfg.num_sample, len(cfg.classes) + 1)
        # (a method given the tap rcnn_logits takes each RoI as a row: (K + 1,) per row)
        s_shape = dict({t: v.shape[1:] for t, v in s_maps.items()}, rcnn_logits=logits[1:])
        t_shape = dict({t: v.shape[1:] for t, v in t_maps.items()}, rcnn_logits=logits[1:])
        try:
            parts = self.teacher.backbone_parts
            for method, tap, _ in self.block.connect(s_shape, t_shape):
                # (a teacher hook reads the teacher's backbone network: `features` is its stride-16 tap)
                try:
                    margin = METHODS[method].margin(parts.network if parts.network is not None else self.teacher,
                                                    parts.split.stride16 if tap == 'features' else tap, ctx[0])
                except PairingError as e:             # (named as the user named it)
                    raise PairingError(str(e).replace(repr(parts.split.stride16), "'features' (the backbone's %s)"
                                                      % parts.split.stride16) if tap == 'features' else str(e))
                self.margins.append([nd.array(margin, ctx=c) for c in ctx])
            self.block.extras.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2), ctx=ctx)
            with autograd.pause():
                zeros = nd.zeros((1,) + logits, ctx=ctx[0])
                s_maps['rcnn_logits'] = t_maps['rcnn_logits'] = zeros
                self.block(nd.zeros((1,), ctx=ctx[0]), zeros, zeros, nd.zeros((1, logits[0]), ctx=ctx[0]),
                           *([s_maps[t] for t in self.s_taps] + [t_maps[t] for t in self.t_taps] +
                             [m[0] for m in self.margins] + ([nd.zeros((1,), ctx=ctx[0])]
                                                             if self.block.takes_indices else [])))
        except (ValueError, PairingError) as e:
            raise DetectionError('teacher and student taps cannot be paired: %s' % e)

    def saved_blocks(self):
        return self.net, (self.block.extras if self.block is not None else None)

    def check_checkpoint(self, meta, epoch):
        changed = structure_differences(meta.get('detector') or {}, self.cfg)
        if changed:
            raise DetectionError('run %r (epoch %d) was trained with another detector than configured: %s; resume '
                                 'it as it was trained (set those keys back), or start a new run under another '
                                 'model_prefix' % (self.cfg.model_load_prefix, epoch, ', '.join(changed)))
        kt, here = meta.get('kt_type'), (self.cfg.kt_type if self.cfg.kt else None)
        if kt != here:
            raise DetectionError('run %r (epoch %d) was trained with kt_type=%s (this run: %s): a resume keeps the '
                                 'transfer methods; set them as the checkpoint has them, or start a new run'
                                 % (self.cfg.model_load_prefix, epoch, kt, here))

    def describe_checkpoint(self, meta):
        return 'VOC07 mAP %.2f%%' % (100 * meta.get('val_map', 0))

    def start(self, resumed):
        if self.block is None:
            self.net.hybridize(static_alloc=True)
            return
        LOG.info('teacher: %s; %s', self.teacher_desc, ', '.join(
            '%s x %g on %s' % (e['method'], e['weight'], ', '.join('%s<-%s' % p for p in e['pairs']) or
                               "the class scores of the student's RoIs") for e in self.cfg.plan))
        from tasks.classification import stages
        stages.run(self, resumed)          # the stages methods declare before epoch 0 (FT's paraphraser)

    def describe(self):
        cfg, ctx = self.cfg, self.engine.ctx
        return ('backbone: %s; Faster R-CNN, %d classes; %d training images (%d with objects), %d evaluation images; '
                '%d device(s): %s' % (self.backbone.description, len(cfg.classes), len(self.train_set),
                                      len(self.usable), len(self.val_set), len(ctx), ', '.join(str(c) for c in ctx)))

    def set_epoch(self, epoch):
        if self.block is not None:
            self.block.set_epoch(epoch)            # the methods' declared warm-ups
        self.running = RunningTerms(self.names, self.diverged_fix)

    def batches(self, epoch):
        cfg, ctx = self.cfg, self.engine.ctx
        order = epoch_order(cfg, self.usable, epoch, len(ctx), self.engine.rank, self.engine.workers)
        return train_loader(self.net, self.train_set, order, cfg, ctx, epoch)

    def forward(self, batch):
        """One loss a device (the image's total; while a stage is set, the stage's loss) and (the terms
        per device, the distillation block's outputs and the image indices per device, or None)."""
        if self.block is None:
            terms = [self.losses(self.net, *shard) for shard in shards(batch, self.engine.ctx)]
            return [sum(t) for t in terms], (terms, None, None)
        from .distill import teacher_taps, zeros_like_logits
        if self.block.staging:
            return self._stage_forward(batch)
        totals, terms, outs, idxs = [], [], [], []
        for k, shard in enumerate(shards(batch, self.engine.ctx)):
            outputs = {}
            own = self.losses(self.net, *shard, outputs=outputs)
            s_tap = dict(self.s_hooks.values, rcnn_logits=outputs['cls_pred'])
            t_tap = teacher_taps(self.teacher, shard[0], outputs['rois'], self.t_taps + (
                ['rcnn_logits'] if self.wants_logits else []), self.teacher_roi, self.t_hooks)
            t_logits = t_tap['rcnn_logits'] if self.wants_logits else zeros_like_logits(shard[0].context)
            index = [shard[5]] if self.block.takes_indices else []
            out = self.block(sum(own), outputs['cls_pred'], t_logits, outputs['cls_targets'],
                             *([s_tap[t] for t in self.s_taps] + [t_tap[t] for t in self.t_taps] +
                               [m[k] for m in self.margins] + index))
            totals.append(out[0])
            terms.append(list(own) + list(out[3:3 + self.block.n_terms]))
            outs.append(out)
            idxs.append(shard[5])
        return totals, (terms, outs, idxs if self.block.takes_indices else None)

    def _stage_forward(self, batch):
        """A stage before epoch 0: the stage's loss on each device's image, from the teacher's taps
        (FT's paraphraser: the student does not run) and, for a stage that trains the student (AB's
        initialisation), the student backbone's taps (its `features` runs, not the detector's heads)."""
        from .distill import teacher_taps
        _, stage = self.block.current_stage
        losses = []
        for shard in shards(batch, self.engine.ctx):
            t_tap = teacher_taps(self.teacher, shard[0], None, ['features'], self.teacher_roi, self.t_hooks)
            # (the RoI scores need the student's RoIs; a stage reads only its own method's map taps)
            s_feats = None
            if stage.trains == 'student':
                self.net.features(shard[0])
                s_feats = [self.s_hooks.values.get(t) for t in self.s_taps]
            losses.append(self.block.stage_loss([t_tap.get(t) for t in self.t_taps], s_feats)[0])
        return losses, None

    def _student_tap_parameters(self, taps):
        """The student's backbone parameters that its `taps` depend on (traced on the backbone network's
        graph, as classification's stages do: not the layers after a tap inside a stage, nor the RPN
        and the heads); a legacy backbone (no network to trace): all of `features`."""
        import mxnet as mx
        from symbols.taps import with_taps
        parts = self.net.backbone_parts
        if parts.network is None:
            return dict(self.net.features.collect_params().items())
        named = list(dict.fromkeys(parts.split.stride16 if t == 'features' else t for t in taps))
        used = mx.sym.Group(list(with_taps(parts.network, named)(mx.sym.var('data'))[1:]))
        names = set(used.list_arguments()) | set(used.list_auxiliary_states())
        return {p.name: p for p in self.net.features.collect_params().values() if p.name in names}

    def after_step(self, step, out):
        terms, outs, idxs = out
        if outs:
            self.block.after_step(outs, idxs)     # state outputs (CRD's memory bank), if a loss has any
        self.running.update(step, terms)

    def read(self):
        return self.running.read()

    def evaluate(self):
        """VOC07 mAP over the whole evaluation set (every worker of a distributed run evaluates all of
        it: the same result on each, without exchanging detections)."""
        cfg, ctx = self.cfg, self.engine.ctx
        per_class, m = evaluate(self.net, val_loader(self.val_set, cfg, ctx), cfg.classes, ctx,
                                     bar=self.engine.progress(len(self.val_set) if not cfg.num_val else
                                                              min(cfg.num_val, len(self.val_set)), 'validation'))
        val = {'val_map': m}
        val.update(('ap_' + k, v) for k, v in per_class.items())
        from core.health import loss_warning
        running = self.running.read()
        warning = loss_warning({k: running[k] for k in TERMS if k in running}, 'this epoch')
        if warning:
            LOG.warning('%s', warning)
        return val

    def checkpoint_meta(self, record):
        cfg = self.cfg
        meta = {'kind': 'faster_rcnn', 'network': cfg.network, 'classes': list(cfg.classes),
                'kt_type': cfg.kt_type if cfg.kt else None,
                'backbone': self.backbone.description, 'method': method_label(cfg), 'paper_map': cfg.paper_map,
                'detector': structure(cfg), 'log_dir': os.path.abspath(cfg.log_dir)}
        if 'val_map' in record:
            meta['per_class_ap'] = per_class_of(record)
        return meta

    def epoch_line(self, epoch, stats, val):
        return 'epoch %d: VOC07 mAP %.2f%% (%.1f s, %.2f img/s); losses %s' % (
            epoch, 100 * val['val_map'], stats['time'], stats['speed'],
            ' '.join('%s %.4f' % (k, stats[k]) for k in self.names if k in stats))


def method_label(cfg):
    """The run's label in the tables: config key `method`, or, for a detector distilled from a
    detector under the default label, 'distilled: KT_TYPE'."""
    if cfg.kt and cfg.method == 'baseline':
        return 'distilled: %s' % cfg.kt_type
    return cfg.method


def per_class_of(record):
    """{class: AP} of an epoch record (its ap_<class> keys, in the order evaluate gave them)."""
    return {k[3:]: v for k, v in record.items() if k.startswith('ap_')}


def result_of(record, cfg):
    """What tools.detection prints of a run's last epoch record: {'epoch' (1-based), 'map',
    'per_class', 'losses', 'network', 'method', 'paper_map', 'time'}."""
    return dict(epoch=record['epoch'] + 1, map=record['val_map'], network=cfg.network, method=method_label(cfg),
                paper_map=cfg.paper_map, time=record['time'],
                per_class=per_class_of(record),
                losses={k: record['train_' + k] for k in TERMS if 'train_' + k in record})


__all__ = ['DetectionTask', 'DetectionError', 'Losses', 'epoch_order', 'train_loader', 'shards', 'result_of', 'TERMS']
