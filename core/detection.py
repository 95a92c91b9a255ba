"""Training Faster R-CNN on PASCAL VOC with a backbone of this project (paper §5.3, Table 4).

`train(cfg)` trains (or resumes) run `cfg.model_prefix` (config/detection.py)
and evaluates VOC07 mAP after every epoch:

- data: gluoncv's VOCDetection over the checked VOCdevkit (data/voc.py), its
  Faster R-CNN training transform (resize, random flip, RPN targets) and
  batchify; one image per device per step; the order, flips and RPN/RCNN
  sampling are seeded from (seed, epoch, position), so a resumed run repeats an
  uninterrupted one;
- losses (gluoncv's recipe): RPN sigmoid cross-entropy + smooth L1, RCNN softmax
  cross-entropy + smooth L1, each normalised by its sampled anchors/RoIs;
- SGD with momentum and weight decay, lr steps by epoch (`lr_step`), linear
  warm-up; several devices through the kvstore (`gpu_list`, or NST_CPU_DEVICES);
- run rules of core/runs.py before anything is written (one run per name, the
  lock, `overwrite=true`, later epochs never overwritten by a resume);
  checkpoints through core/checkpoint.py (epochs, the best mAP as `best`, the
  optimizer state), one record per epoch in log_dir/<prefix>.jsonl
  (core/records.py), the log in log_dir/<prefix>.log, a progress bar per epoch.

A loss that becomes NaN/Inf stops the run (`Diverged`) with the last good
checkpoint kept.
"""
import logging
import os
import random
import sys
import time

import core.compat  # noqa: F401
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from . import checkpoint, runs
from .errors import TrainingError
from .detector import build_detector, trainable, structure, structure_differences, STRUCTURE
from .detection_eval import evaluate, normalisation, val_loader

LOG = logging.getLogger('detection')
TERMS = ('rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box')


from .errors import Diverged  # noqa: E402,F401


class DetectionError(TrainingError, ValueError):
    """A detection run that cannot go on as configured; says why and what to do."""


# ------------------------------------------------------------------ devices, seeds, schedule
def devices(cfg):
    """The devices of gpu_list (checked as train.py checks them), else NST_CPU_DEVICES CPUs (1)."""
    if not cfg.gpu_list:
        return [mx.cpu(i) for i in range(int(os.environ.get('NST_CPU_DEVICES', '1') or 1))]
    from . import gpu_libs, gpu_support
    build, version = gpu_support.installed_build()
    driver = gpu_libs.driver_gpus() if build != 'cpu' else gpu_libs.DriverInfo(gpus=[])
    gpus = driver.gpus
    if gpus is None and build != 'cpu':
        try:
            gpus = [gpu_support.Gpu(i, 'GPU %d' % i, None) for i in range(mx.context.num_gpus())] or None
        except mx.base.MXNetError:
            gpus = None
        if gpus is not None:
            build = None
    problem = gpu_support.check_gpu_list(list(cfg.gpu_list), build, gpus, version or '', driver.error)
    if problem:
        raise DetectionError(problem)
    return [mx.gpu(i) for i in cfg.gpu_list]


def seed_all(seed):
    mx.random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


def learning_rate(cfg, epoch, step):
    """lr at `epoch` (steps by lr_step) and global step `step` (linear warm-up over warmup_iters)."""
    lr = cfg.lr * (cfg.lr_factor ** sum(1 for s in cfg.lr_step if epoch >= s))
    if cfg.warmup_iters and step < cfg.warmup_iters:
        lr *= (step + 1) / float(cfg.warmup_iters)
    return lr


# ------------------------------------------------------------------ data
def epoch_order(cfg, usable, epoch, num_devices):
    """The dataset indices of epoch `epoch`: `usable` shuffled with (seed, epoch), repeated or cut to
    epoch_size, cut to a multiple of the device count."""
    order = list(np.random.RandomState((cfg.seed * 100003 + epoch) % (2 ** 32)).permutation(usable))
    size = cfg.epoch_size or len(order)
    order = [order[i % len(order)] for i in range(size)]
    return order[:len(order) - len(order) % num_devices]


def train_loader(net, dataset, order, cfg, ctx, epoch):
    """Batches of len(ctx) images for gluoncv's Faster R-CNN training transform: shards of (img, label,
    rpn_cls_targets, rpn_box_targets, rpn_box_masks). Each sample is transformed under a seed of its
    own, so flips and RPN anchor sampling do not depend on the loader's workers."""
    from gluoncv.data.transforms.presets.rcnn import FasterRCNNDefaultTrainTransform
    from gluoncv.data.batchify import FasterRCNNTrainBatchify
    mean, std = normalisation(cfg)
    transform = FasterRCNNDefaultTrainTransform(cfg.short, cfg.max_size, net, mean=mean, std=std, ashape=128)
    base = (cfg.seed * 100003 + epoch) * 1000003

    def sample(position):
        seed = (base + position) % (2 ** 31)
        np.random.seed(seed)                    # the transform's flip (random) and RPN sampling (numpy)
        random.seed(seed)
        img, label = dataset[order[position]]
        return transform(img, label)
    items = gluon.data.SimpleDataset(list(range(len(order)))).transform(sample)
    return gluon.data.DataLoader(items, batch_size=len(ctx), shuffle=False, last_batch='discard',
                                 batchify_fn=FasterRCNNTrainBatchify(net, len(ctx)), num_workers=cfg.num_workers)


# ------------------------------------------------------------------ losses
class Losses(object):
    """gluoncv's Faster R-CNN losses of one device's shard: (rpn_cls, rpn_box, rcnn_cls, rcnn_box), scalars."""

    def __init__(self):
        self.rpn_cls = gluon.loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)
        self.rpn_box = gluon.loss.HuberLoss(rho=1. / 9.)
        self.rcnn_cls = gluon.loss.SoftmaxCrossEntropyLoss()
        self.rcnn_box = gluon.loss.HuberLoss()

    def __call__(self, net, data, label, rpn_cls_targets, rpn_box_targets, rpn_box_masks):
        """data (B, 3, H, W), label (B, N, 6), RPN targets (B, A), (B, A, 4), (B, A, 4)."""
        gt_label, gt_box = label[:, :, 4:5], label[:, :, :4]
        cls_pred, box_pred, _, _, _, rpn_score, rpn_box, _, cls_targets, box_targets, box_masks, _ = \
            net(data, gt_box, gt_label)
        rpn_score = rpn_score.squeeze(axis=-1)
        num_rpn = (rpn_cls_targets >= 0).sum()
        rpn_cls = self.rpn_cls(rpn_score, rpn_cls_targets, rpn_cls_targets >= 0) * rpn_cls_targets.size / num_rpn
        rpn_box = self.rpn_box(rpn_box, rpn_box_targets, rpn_box_masks) * rpn_box.size / num_rpn
        num_rcnn = (cls_targets >= 0).sum()
        rcnn_cls = self.rcnn_cls(cls_pred, cls_targets, cls_targets.expand_dims(-1) >= 0) * \
            cls_targets.size / num_rcnn
        rcnn_box = self.rcnn_box(box_pred, box_targets, box_masks) * box_pred.size / num_rcnn
        return [rpn_cls.sum(), rpn_box.sum(), rcnn_cls.sum(), rcnn_box.sum()]


def _shards(batch, ctx):
    """One tuple of arrays per device from FasterRCNNTrainBatchify's output."""
    parts = [part if isinstance(part, (list, tuple)) else [part] for part in batch]
    return [tuple(p[k].as_in_context(c) for p in parts) for k, c in enumerate(ctx)]


# ------------------------------------------------------------------ logging
class RunLog(object):
    """The run's messages: stdout and log_dir/<prefix>.log (a log file that cannot be written is one
    warning; training goes on)."""

    def __init__(self, path):
        self.path, self.failed = path, False

    def __call__(self, message):
        print(message, flush=True)
        if self.failed:
            return
        try:
            with open(self.path, 'a') as f:
                f.write('%s %s\n' % (time.strftime('%m-%d %H:%M:%S'), message))
        except OSError as e:
            self.failed = True
            LOG.warning('cannot write the log file %s (%s); it gets no more lines, training goes on', self.path, e)


# ------------------------------------------------------------------ one epoch
def train_epoch(net, trainer, losses, loader, steps, cfg, ctx, epoch, step, log):
    """One epoch; returns (mean of each loss term, images/s, global step after it)."""
    from tqdm import tqdm
    bar = tqdm(total=steps, desc='epoch %d' % (epoch + 1), disable=not cfg.progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5)
    try:
        return _train_steps(net, trainer, losses, loader, steps, cfg, ctx, epoch, step, log, bar)
    finally:
        bar.close()


def _train_steps(net, trainer, losses, loader, steps, cfg, ctx, epoch, step, log, bar):
    sums, n, tic = np.zeros(len(TERMS)), 0, time.time()
    for batch in loader:
        trainer.set_learning_rate(learning_rate(cfg, epoch, step))
        with autograd.record():
            terms = [losses(net, *shard) for shard in _shards(batch, ctx)]
            autograd.backward([sum(t) for t in terms])
        trainer.step(len(ctx))
        values = np.array([[t.asscalar() for t in device] for device in terms]).mean(axis=0)
        if not np.all(np.isfinite(values)):
            raise Diverged('a loss became NaN/Inf at epoch %d step %d (%s): lower lr (or raise warmup_iters); '
                           'every earlier checkpoint is kept' % (epoch + 1, n + 1, ', '.join(
                               '%s %g' % kv for kv in zip(TERMS, values))))
        sums += values
        n += 1
        step += 1
        bar.set_postfix(dict(zip(TERMS, ('%.3f' % v for v in sums / n)), lr='%.2g' % trainer.learning_rate,
                             **{'img/s': '%.1f' % (n * len(ctx) / max(time.time() - tic, 1e-9))}), refresh=False)
        bar.update(1)
        if n % cfg.frequent == 0:
            log('epoch %d step %d/%d: %s' % (epoch + 1, n, steps, ' '.join('%s %.4f' % kv for kv in
                                                                          zip(TERMS, sums / n))))
    mx.nd.waitall()
    return sums / max(n, 1), n * len(ctx) / max(time.time() - tic, 1e-9), step


# ------------------------------------------------------------------ the run
def _resume_epoch(cfg):
    have = checkpoint.epochs(cfg.model_dir, cfg.model_load_prefix)
    if not have:
        raise DetectionError('retrain=true but run %r has no checkpoint in %s: leave out retrain to start it'
                             % (cfg.model_load_prefix, cfg.model_dir))
    if cfg.model_load_epoch < 0:
        return have[-1]
    if cfg.model_load_epoch not in have:
        raise DetectionError('model_load_epoch=%d: run %r has no checkpoint of that epoch in %s; its epochs: %s'
                             % (cfg.model_load_epoch, cfg.model_load_prefix, cfg.model_dir, have))
    return cfg.model_load_epoch


def best_by_map(model_dir, prefix, upto):
    """Make the epoch <= `upto` with the highest VOC07 mAP the best copy, if it is not (after a resume
    moved later epochs aside: core/runs.py rates classification runs by top-1)."""
    import shutil
    scored = [(checkpoint.read_meta(model_dir, prefix, e).get('val_map', -1.0), e)
              for e in checkpoint.epochs(model_dir, prefix) if e <= upto]
    if not scored:
        return
    top = max(m for m, _ in scored)
    e = min(e for m, e in scored if m == top)      # the first of equal mAPs, as the uninterrupted run (m > best)
    try:
        if checkpoint.read_meta(model_dir, prefix, 'best').get('epoch') == e:
            return
    except checkpoint.CheckpointError:
        pass
    src, dst = checkpoint.paths(model_dir, prefix, e), checkpoint.paths(model_dir, prefix, 'best')
    for kind in ('params', 'meta'):                 # the metadata last: it makes the copy complete
        shutil.copyfile(src[kind], dst[kind] + '.tmp')
        os.replace(dst[kind] + '.tmp', dst[kind])


def train(cfg):
    """Train or resume run cfg.model_prefix as configured; return the last epoch's result
    {'epoch', 'map', 'per_class', 'losses', 'network', 'method', 'paper_map', ...}."""
    from data.voc import voc_dataset, with_objects, VOCError
    from .records import append_record, RecordsError
    if cfg.deterministic:
        os.environ['MXNET_ENGINE_TYPE'] = 'NaiveEngine'     # effective before the engine's first operation
    ctx = devices(cfg)
    # everything that can be checked is checked before anything is written
    twice = sorted({'%d:%s' % s for s in cfg.train_sets if cfg.train_sets.count(s) > 1})
    if twice:
        LOG.warning('train_sets names %s twice: its images are trained on twice an epoch', ', '.join(twice))
    shared = ['%d:%s' % s for s in cfg.train_sets if s in cfg.val_sets]
    if shared:
        LOG.warning('train_sets and val_sets both hold %s: the mAP is measured on training images (VOC07: train on '
                    '2007:trainval,2012:trainval, evaluate on 2007:test)', ', '.join(shared))
    train_set = voc_dataset(cfg.voc_root, cfg.train_sets, cfg.classes)
    val_set = voc_dataset(cfg.voc_root, cfg.val_sets, cfg.classes)
    usable = with_objects(train_set)
    checkpoint.ensure_writable(cfg.model_dir, 'model_dir')
    checkpoint.ensure_writable(cfg.log_dir, 'log_dir')
    cfg['model_load_prefix'] = cfg.model_load_prefix or cfg.model_prefix
    branch = cfg.retrain and cfg.model_load_prefix != cfg.model_prefix      # a new run from another's epoch
    with runs.RunLock(cfg.model_dir, cfg.model_prefix):
        begin = _resume_epoch(cfg) if cfg.retrain else 0
        if begin:
            saved = checkpoint.read_meta(cfg.model_dir, cfg.model_load_prefix, begin).get('detector') or {}
            changed = structure_differences(saved, cfg)
            if changed:
                raise DetectionError('run %r (epoch %d) was trained with another detector than configured: %s; '
                                     'resume it as it was trained (set those keys back), or start a new run under '
                                     'another model_prefix' % (cfg.model_load_prefix, begin, ', '.join(changed)))
        seed_all(cfg.seed)
        net, backbone = build_detector(cfg, ctx)        # a backbone that cannot be used stops here
        runs.claim(cfg)                                 # then the run rules, which may move files aside
        if begin and not branch:
            runs.claim_resume(cfg, begin)
            best_by_map(cfg.model_dir, cfg.model_prefix, begin)
        log = RunLog(os.path.join(cfg.log_dir, cfg.model_prefix + '.log'))
        trainer = gluon.Trainer(trainable(net), 'sgd', {'learning_rate': cfg.lr, 'wd': cfg.wd,
                                                        'momentum': cfg.momentum},
                                kvstore='device' if len(ctx) > 1 else None)
        best = -1.0
        if begin:
            try:
                meta = checkpoint.load(cfg.model_dir, cfg.model_load_prefix, begin, net, ctx, trainer=trainer)
            except checkpoint.CheckpointError as e:
                if 'check network/num_classes' not in str(e):
                    raise
                raise DetectionError(str(e).replace('check network/num_classes', 'resume with the detector keys it '
                                                    'was trained with (%s)' % ', '.join(STRUCTURE)))
            best = -1.0 if branch else meta.get('best_map', -1.0)      # a branch's best is of its own epochs
            if branch:
                log('run %r starts from epoch %d of run %r (VOC07 mAP %.2f%%)'
                    % (cfg.model_prefix, begin, cfg.model_load_prefix, 100 * meta.get('val_map', 0)))
            else:
                log('resumed run %r from its epoch-%d checkpoint (VOC07 mAP %.2f%%)'
                    % (cfg.model_prefix, begin, 100 * meta.get('val_map', 0)))
        log('backbone: %s; Faster R-CNN, %d classes; %d training images (%d with objects), %d evaluation images; '
            '%d device(s): %s' % (backbone.description, len(cfg.classes), len(train_set), len(usable), len(val_set),
                                  len(ctx), ', '.join(str(c) for c in ctx)))
        net.hybridize(static_alloc=True)
        losses = Losses()
        steps = len(epoch_order(cfg, usable, 0, len(ctx))) // len(ctx)
        step, result = begin * steps, None
        for epoch in range(begin, cfg.num_epoch):
            seed_all(cfg.seed * 100003 + epoch)
            loader = train_loader(net, train_set, epoch_order(cfg, usable, epoch, len(ctx)), cfg, ctx, epoch)
            tic = time.time()
            terms, speed, step = train_epoch(net, trainer, losses, loader, steps, cfg, ctx, epoch, step, log)
            meta = {'kind': 'faster_rcnn', 'network': cfg.network, 'classes': list(cfg.classes),
                    'backbone': backbone.description, 'method': cfg.method, 'paper_map': cfg.paper_map,
                    'detector': structure(cfg), 'log_dir': os.path.abspath(cfg.log_dir)}
            try:
                per_class, m = evaluate(net, val_loader(val_set, cfg, ctx), cfg.classes, ctx)
            except Exception as e:          # the epoch trained is kept (without its mAP), then the error
                checkpoint.save(cfg.model_dir, cfg.model_prefix, epoch + 1, net, trainer=trainer,
                                meta=dict(meta, best_map=best))
                if isinstance(e, (DetectionError, VOCError)):
                    raise type(e)('%s (epoch %d is checkpointed without its mAP)' % (e, epoch + 1))
                raise DetectionError('evaluating epoch %d failed (%s: %s); the epoch is checkpointed without its '
                                     'mAP (resume with retrain=true once the cause is fixed)'
                                     % (epoch + 1, type(e).__name__, (str(e).strip().splitlines() or [''])[-1][:200]))
            is_best = m > best
            best = max(best, m)
            meta.update(val_map=m, best_map=best, per_class_ap=per_class)
            try:
                checkpoint.save(cfg.model_dir, cfg.model_prefix, epoch + 1, net, trainer=trainer, meta=meta,
                                best=is_best)
            except checkpoint.NonFiniteCheckpoint as e:
                raise Diverged('%s: the training diverged; lower lr (or raise warmup_iters), and check that mean/std '
                               'are those the backbone was trained with; every earlier checkpoint is kept' % e)
            result = dict(epoch=epoch + 1, map=m, per_class=per_class, network=cfg.network, method=cfg.method,
                          paper_map=cfg.paper_map, losses=dict(zip(TERMS, terms.tolist())), time=time.time() - tic)
            record = dict({'epoch': epoch, 'val_map': m, 'lr': learning_rate(cfg, epoch, step - 1),
                           'steps': steps, 'images': steps * len(ctx), 'time': result['time'], 'speed': speed},
                          **{'train_' + k: v for k, v in result['losses'].items()})
            record.update(('ap_' + k, v) for k, v in per_class.items())
            try:
                append_record(os.path.join(cfg.log_dir, cfg.model_prefix + '.jsonl'), record)
            except RecordsError as e:
                LOG.warning('%s; the checkpoint of epoch %d is written', e, epoch + 1)
            log('epoch %d: VOC07 mAP %.2f%%%s (%.1f s, %.2f img/s); losses %s' % (
                epoch + 1, 100 * m, ' (best)' if is_best else '', result['time'], speed,
                ' '.join('%s %.4f' % kv for kv in result['losses'].items())))
        if result is None:
            raise DetectionError('run %r is already at epoch %d of num_epoch=%d: raise num_epoch to train further'
                                 % (cfg.model_prefix, begin, cfg.num_epoch))
        return result


__all__ = ['train', 'DetectionError', 'Diverged', 'Losses', 'devices', 'learning_rate', 'epoch_order',
           'train_loader', 'train_epoch', 'TERMS']
