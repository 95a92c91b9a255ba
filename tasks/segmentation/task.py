"""Semantic segmentation (DeepLabV3 / V3+ on PASCAL VOC) as a task of the engine (core/engine.py),
which owns devices, seeds, the schedule (poly by default here), resume, checkpoints, records, logs.

What is the task's own:
- data (data/segmentation.py): the VOC 2012 lists (and SBD's), every mask checked before training;
  training crops augmented from (seed, epoch, position) alone, so a resumed run repeats an
  uninterrupted one; each worker trains on its share of an epoch;
- the network (symbols/segmentation.py): a DeepLab head on a backbone of this project split by tap
  names and dilated to `output_stride`, optionally from pretrained backbone weights;
- the loss: per image, the mean cross-entropy of its pixels that are not 255 (losses.py), plus,
  with a teacher (a segmentation run of this project), any registered method on named taps of both
  networks, the logit methods on the class scores of every pixel (distill.py);
- validation: the confusion matrix over the whole validation set, single scale, one image a device
  (tasks/segmentation/evaluate.py): mIoU picks the best epoch; pixel accuracy and IoU per class are
  recorded.
"""
import logging
import os
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from core import checkpoint
from core.errors import TrainingError
from core.running import RunningTerms
from data.workers import WorkerLoader
from core.seeding import epoch_seed
from core.task import Task
from data import segmentation as segdata
from symbols.taps import TapError
from tasks.classification.distiller import loss_options, plan_taps, plan_takes_indices
from .distill import DenseDistillBlock
from .evaluate import evaluate, unscored_words

LOG = logging.getLogger('segmentation')
# without a teacher the distillation block's teacher-score input is a placeholder, unused (as classification's)
warnings.filterwarnings('ignore', message='The 2-th input to HybridBlock is not used')


class SegmentationError(TrainingError, ValueError):
    """A segmentation run that cannot go on as configured; says why and what to do."""


def epoch_order(cfg, count, epoch, rank=0, workers=1):
    """The training-sample positions worker `rank` of `workers` trains on in epoch `epoch`: all
    `count` shuffled with (seed, epoch), repeated or cut to epoch_size, every `workers`-th from
    `rank` on (the same count for every worker)."""
    order = list(np.random.RandomState(epoch_seed(cfg.seed, epoch) % (2 ** 32)).permutation(count))
    size = cfg.epoch_size or len(order)
    order = [order[i % len(order)] for i in range(size)]
    return order[rank::workers][:len(order) // workers]


class _TrainSet(object):
    """Sample `position` of an epoch's order: (image crop, mask crop, the image's index in the
    training list), augmented from (seed, epoch, position)."""

    def __init__(self, items, order, cfg, epoch):
        self.items, self.order, self.cfg = items, order, cfg
        self.base = epoch_seed(cfg.seed, epoch) * 1000003

    def __len__(self):
        return len(self.order)

    def __getitem__(self, position):
        cfg = self.cfg
        rng = np.random.Generator(np.random.PCG64((self.base + position) % (2 ** 63)))
        image, mask, _ = self.items[self.order[position]]
        crop, crop_mask = segdata.train_sample(image, mask, rng, cfg.crop_size, cfg.scale_min, cfg.scale_max, cfg.mean,
                                               cfg.std)
        return crop, crop_mask, np.float32(self.order[position])


def one_class_teacher(meta):
    """The warning when a segmentation checkpoint's recorded validation (its metadata's iou_<class>)
    finds at most one class (an IoU above 1 %): it predicts that class everywhere and teaches no
    boundary; else None."""
    ious = {k[len('iou_'):]: v for k, v in meta.items() if k.startswith('iou_') and isinstance(v, (int, float))}
    found = [c for c, v in ious.items() if v == v and v > 0.01]
    if len(ious) < 2 or len(found) > 1:
        return None
    return ('finds %s in its validation (mIoU %.2f%%; IoU 0 for %s): it predicts one class everywhere, and '
            'distilling from it teaches no class boundary; train it further, or give another teacher'
            % ('only %s' % found[0] if found else 'no class', 100 * meta.get('val_miou', 0.0),
               ', '.join(c for c in ious if c not in found)))


def crop_beyond_images(cfg, items, sample=20):
    """The warning when crop_size is more than twice the largest side of the first `sample` training
    images at the largest scale (most of every crop then is padding: ignored pixels, trained at the
    crop's cost), else None."""
    sides = [max(segdata.image_size(image)) for image, _, _ in items[:sample]]
    if not sides or max(sides) * cfg.scale_max * 2 >= cfg.crop_size:
        return None
    reach = int(round(max(sides) * cfg.scale_max))
    return ('crop_size=%d is more than twice the training images\' largest side at the largest scale (%d x '
            'scale_max %g = %d): most of every crop is padding (ignored pixels), trained at the cost of the crop; set '
            'crop_size near %d' % (cfg.crop_size, max(sides), cfg.scale_max, reach, reach))


class SegmentationTask(Task):
    """DeepLab on VOC: crops of batch_size images a device per step; mIoU picks the best epoch."""
    name = 'segmentation'
    best_metric = 'val_miou'
    best_key = 'best_miou'
    fits = 'resume with the network, head, output_stride, seg_taps and classes the run was trained with'
    diverged_fix = 'lower lr'

    @classmethod
    def load_config(cls, path=None, overrides=(), check_data=True):
        from config.segmentation import load_segmentation_config
        return load_segmentation_config(path, overrides, check=check_data)

    @classmethod
    def final_lines(cls, record, cfg):
        return ['final: epoch %d  mIoU %.2f%%  pixel accuracy %.2f%% on %d validation images'
                % (record['epoch'] + 1, 100 * record['val_miou'], 100 * record['val_pixel_acc'], record['val_n']),
                iou_table(record, cfg.classes)]

    def prepare(self):
        cfg, engine = self.cfg, self.engine
        self.train_items = segdata.voc_items(cfg.voc_root, cfg.train_split)
        self.val_items = segdata.voc_items(cfg.voc_root, cfg.val_split)
        if cfg.num_val:
            self.val_items = self.val_items[:cfg.num_val]
        if cfg.sbd_root is not None:                      # SBD's training list, without VOC's validation images
            held_out = {_id(image) for image, _, _ in self.val_items}
            known = {_id(image) for image, _, _ in self.train_items}
            self.train_items += [it for it in segdata.sbd_items(cfg.sbd_root, 'train')
                                 if _id(it[0]) not in held_out and _id(it[0]) not in known]
        todo = self.train_items + self.val_items
        bar = engine.progress(len(todo), 'checking masks')
        seen = set()
        try:
            segdata.check_items(todo, cfg.num_classes, bar, seen)
        finally:
            bar.close()
        absent = [name for k, name in enumerate(cfg.classes) if k not in seen]
        if absent:
            LOG.warning('no mask holds the class(es) %s (of classes=%s): their IoU is 0 where the network predicts '
                        'them and undefined (left out of the mIoU) where it does not; check classes against the masks',
                        ', '.join(absent), cfg.classes)
        too_large = crop_beyond_images(cfg, self.train_items)
        if too_large:
            LOG.warning('%s', too_large)
        shared = {_id(i) for i, _, _ in self.train_items} & {_id(i) for i, _, _ in self.val_items}
        if shared:
            LOG.warning('%d validation image(s) of %s are training images too (e.g. %s): the mIoU is measured on '
                        'images the network trains on; validate on a split without them (VOC: train, val)'
                        % (len(shared), cfg.val_split, sorted(shared)[0]))
        per_worker = len(epoch_order(cfg, len(self.train_items), 0, engine.rank, engine.workers))
        if per_worker < engine.batch_size:
            raise SegmentationError('a step takes %d images (batch_size=%d on %d device(s)) but each worker has %d '
                                    'training images an epoch: lower batch_size or raise epoch_size'
                                    % (engine.batch_size, cfg.batch_size, len(engine.ctx), per_worker))
        self.steps_per_epoch = per_worker // engine.batch_size
        self.samples_per_step = engine.batch_size
        self.plan = cfg.plan
        self.names = ['ce'] + [e['method'] for e in self.plan]
        # a method whose memory has a row per training image (registry `indices`: CRD) needs their count
        self.loss_options = loss_options(cfg, len(self.train_items) if plan_takes_indices(self.plan) else None)

    def build(self):
        from symbols.segmentation import build_segmentation_network, used_parameters, SegmentationNetworkError
        cfg, ctx = self.cfg, self.engine.ctx
        try:
            self.net, self.as_built = build_segmentation_network(
                cfg.network, cfg.num_classes, cfg.head, cfg.output_stride, split=cfg.seg_taps,
                channels=cfg.aspp_channels, prefix='student_', ctx=ctx)
        except SegmentationNetworkError as e:
            raise SegmentationError(str(e))
        if cfg.pretrained is not None:
            self._backbone_from_pretrained()
        s_taps, t_taps = plan_taps(self.plan)
        self.teacher, self.margins = None, []
        if cfg.kt:
            self.teacher, self.teacher_desc = self._load_teacher(t_taps)
        try:
            self.block = DenseDistillBlock(self.net, self.plan, self.loss_options, t_taps, prefix='distill_')
        except TapError as e:
            raise SegmentationError('student_symbol: %s' % e)
        if self.teacher is not None:
            self._pair()
        params = used_parameters(self.net)
        params.update({n: p for n, p in self.block.extras.collect_params().items() if p.grad_req != 'null'})
        return params

    @classmethod
    def tap_networks(cls, cfg):
        """The student as built and a teacher run of this project (loaded; a gluoncv teacher: None)."""
        from symbols.segmentation import build_segmentation_network, SegmentationNetworkError
        try:
            student = build_segmentation_network(cfg.network, cfg.num_classes, cfg.head, cfg.output_stride,
                                                 split=cfg.seg_taps, channels=cfg.aspp_channels, prefix='student_')[0]
        except SegmentationNetworkError as e:
            raise SegmentationError(str(e))
        if not cfg.kt or cfg.teacher_source == 'gluoncv':
            return student, None
        tag = cls.locate_teacher(cfg)[2]
        return student, load_network(cfg.teacher_prefix, tag, [mx.cpu()], prefix='teacher_')[0]

    @classmethod
    def locate_teacher(cls, cfg):
        """(the teacher's weights, a .params file; for a run of this project its metadata and the epoch
        or 'best' it is read at, else None, None), checked without building a network: a run of these
        classes, gluoncv weights on disk or in the store."""
        if cfg.teacher_source == 'gluoncv':
            from symbols import pretrained
            try:
                return cfg.teacher_prefix or pretrained.weights_file(cfg.teacher_network), None, None
            except pretrained.WeightsError as e:
                raise SegmentationError('teacher: %s' % e)
        try:
            checkpoint.check_run_prefix(cfg.teacher_prefix)      # a checkpoint file or a folder instead of a run
            folder, name = os.path.split(cfg.teacher_prefix)
            if not checkpoint.epochs(folder or '.', name) and not os.path.isfile(
                    checkpoint.paths(folder or '.', name, 'best')['meta']):
                raise SegmentationError('teacher_prefix=%s: no checkpoint of a run named %r in %s; train the teacher '
                                        'first (a segmentation run) or correct teacher_prefix'
                                        % (cfg.teacher_prefix, name, folder or '.'))
            folder, name, tag, meta = checkpoint.run_at(cfg.teacher_prefix, cfg.teacher_epoch, resolve=True)
        except checkpoint.CheckpointError as e:
            raise SegmentationError(str(e))
        if meta.get('kind') == 'segmentation' and list(meta.get('classes') or []) != list(cfg.classes):
            raise SegmentationError('the teacher %s was trained on the classes %s, this run has %s: use a teacher of '
                                    'these classes' % (cfg.teacher_prefix, meta['classes'], cfg.classes))
        return checkpoint.paths(folder, name, tag)['params'], meta, tag

    def _load_teacher(self, t_taps):
        """(tapped teacher, description): a segmentation run of this project with the classes of this
        run, its taps `t_taps`, hybridized, never trained."""
        cfg, ctx = self.cfg, self.engine.ctx
        if cfg.teacher_source == 'gluoncv':
            return self._load_gluoncv_teacher(t_taps)
        tag = self.locate_teacher(cfg)[2]
        net, meta = load_network(cfg.teacher_prefix, tag, ctx, prefix='teacher_')
        one = one_class_teacher(meta)
        if one:
            LOG.warning('the teacher %s %s', cfg.teacher_prefix, one)
        s = meta['segmentation']
        return _frozen_taps(net, t_taps), '%s (%s on %s, epoch %s)' % (cfg.teacher_prefix, s['head'], s['network'],
                                                                      meta.get('epoch'))

    def _load_gluoncv_teacher(self, t_taps):
        """(tapped teacher, description): gluoncv's DeepLabV3 `teacher_network`, its weights from
        `teacher_prefix` (a .params file) or gluoncv's model store (one line naming the file, the
        folder and the URL when it is missing offline)."""
        from symbols.segmentation import gluoncv_teacher, SegmentationNetworkError
        cfg, ctx = self.cfg, self.engine.ctx
        weights = self.locate_teacher(cfg)[0]
        try:
            net = gluoncv_teacher(cfg.teacher_network, weights, cfg.crop_size, ctx)
        except SegmentationNetworkError as e:
            raise SegmentationError(str(e))
        return _frozen_taps(net, t_taps), 'gluoncv %s (%s)' % (cfg.teacher_network, weights)

    def _pair(self):
        """One forward of both networks on a crop: the taps pair up, connectors and heads are built,
        the margins (OFD's teacher hook) computed on every device."""
        from symbols.transfer import METHODS, PairingError
        cfg, ctx = self.cfg, self.engine.ctx
        x = nd.zeros((1, 3, cfg.crop_size, cfg.crop_size), ctx=ctx[0])
        s_taps, t_taps = plan_taps(self.plan)
        s_out, t_out = _as_list(self.block.student(x)), _as_list(self.teacher(x))
        s_shape = dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]]))
        t_shape = dict(zip(t_taps, [o.shape[1:] for o in t_out[1:]]))
        try:
            margins = self.block.connect(s_shape, t_shape)
            for method, tap, _ in margins:
                m = METHODS[method].margin(self.teacher, tap, ctx[0])
                self.margins.append([nd.array(m, ctx=c) for c in ctx])
            self.block.extras.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2), ctx=ctx)
            index = [nd.zeros((1,), ctx=ctx[0])] if self.block.takes_indices else []
            with autograd.pause():
                self.block(x, nd.zeros((1, cfg.crop_size, cfg.crop_size), ctx=ctx[0]), t_out[0],
                           *(list(t_out[1:]) + [mg[0] for mg in self.margins] + index))
        except (ValueError, PairingError) as e:
            raise SegmentationError('teacher and student taps cannot be paired: %s' % e)

    def _backbone_from_pretrained(self):
        """The backbone's weights from config key `pretrained` (its classifier is not used here)."""
        from symbols import pretrained
        cfg = self.cfg
        try:
            kind, where = pretrained.source_of(cfg.pretrained, cfg.network, cfg.pretrained_epoch)
            named, weights = pretrained.weights_of(kind, where, cfg.network)
            loaded = pretrained.load_into_backbone(self.net.backbone, weights, named=named)
        except pretrained.WeightsError as e:
            raise SegmentationError(str(e))
        LOG.info('backbone starts from %s: %d parameters loaded', named, len(loaded))
        if cfg.pretrained_lr_mult != 1.0:
            params = self.net.backbone._collect_params_with_prefix()
            for name in loaded:
                params[name].lr_mult = cfg.pretrained_lr_mult

    def saved_blocks(self):
        return self.net, self.block.extras

    def _check_structure(self, meta, epoch):
        saved = meta.get('segmentation') or {}
        changed = ['%s=%s (this run: %s)' % (k, saved[k], v) for k, v in self._structure().items()
                   if k in saved and saved[k] != v]
        if changed:
            raise SegmentationError('run %r (epoch %d) was trained with %s: resume it as it was trained, or start a new '
                                    'run under another model_prefix' % (self.cfg.model_load_prefix, epoch,
                                                                       ', '.join(changed)))

    def _structure(self):
        cfg = self.cfg
        return {'network': cfg.network, 'head': cfg.head, 'output_stride': cfg.output_stride,
                'seg_taps': list(self.net.split), 'classes': list(cfg.classes), 'aspp_channels': cfg.aspp_channels}

    def describe_checkpoint(self, meta):
        return 'mIoU %.2f%%' % (100 * meta.get('val_miou', 0))

    def start(self, resumed):
        from tasks.classification import stages
        self.block.hybridize(static_alloc=True, static_shape=True)
        self.net.hybridize(static_alloc=True)
        if self.teacher is not None:
            LOG.info('teacher: %s; %s', self.teacher_desc, ', '.join(
                '%s x %g on %s' % (e['method'], e['weight'], ', '.join('%s<-%s' % p for p in e['pairs']) or 'the class '
                                   'scores of every pixel') for e in self.plan))
        stages.run(self, resumed)          # the stages methods declare before epoch 0 (AB's, FT's)

    def describe(self):
        cfg, ctx = self.cfg, self.engine.ctx
        return ('%s on %s (split %s / %s, output stride %d), %d classes; %d training images, %d validation images; '
                'crops of %d, %d a device; %d device(s)' % (
                    cfg.head, cfg.network, self.net.split.low, self.net.split.high, cfg.output_stride,
                    cfg.num_classes, len(self.train_items), len(self.val_items), cfg.crop_size, cfg.batch_size,
                    len(ctx)))

    def set_epoch(self, epoch):
        self.block.set_epoch(epoch)
        self.running = RunningTerms(self.names, self.diverged_fix)

    def batches(self, epoch):
        cfg, engine = self.cfg, self.engine
        order = epoch_order(cfg, len(self.train_items), epoch, engine.rank, engine.workers)
        return WorkerLoader(_TrainSet(self.train_items, order, cfg, epoch), batch_size=engine.batch_size,
                            shuffle=False, last_batch='discard', num_workers=cfg.num_workers)

    def forward(self, batch):
        """One loss a device (the images' total loss; while a stage is set, the stage's loss) and
        (the terms per device, the block's outputs, the sample indices per device or None)."""
        images, masks, index = batch
        ctx = self.engine.ctx
        xs = gluon.utils.split_and_load(images, ctx, even_split=False)
        ys = gluon.utils.split_and_load(masks, ctx, even_split=False)
        idxs = gluon.utils.split_and_load(index, ctx, even_split=False) if self.block.takes_indices else None
        n = 3 + self.block.n_terms
        outs = []
        for k, (x, y) in enumerate(zip(xs, ys)):
            if self.teacher is not None:
                with autograd.pause():
                    t_out = _as_list(self.teacher(x))
                rest = list(t_out[1:]) + [mg[k] for mg in self.margins] + ([idxs[k]] if idxs else [])
                outs.append(self.block(x, y, t_out[0], *rest))
            else:
                outs.append(self.block(x, y, nd.zeros((1,), ctx=x.context)))
        terms = None if self.block.staging else [[out[2]] + list(out[3:n]) for out in outs]
        return [out[0] for out in outs], (terms, outs, idxs)

    def after_step(self, step, out):
        terms, outs, idxs = out
        self.block.after_step(outs, idxs)         # state outputs (CRD's memory bank), if a loss has any
        self.running.update(step, terms)

    def read(self):
        return self.running.read()

    def progress_fields(self, stats):
        return dict((n, '%.4g' % stats[n]) for n in self.names if n in stats)

    def evaluate(self):
        """mIoU over the whole validation set (every worker evaluates all of it: the same result on
        each, without exchanging predictions)."""
        cfg = self.cfg
        samples = (segdata.val_sample(image, mask, cfg.mean, cfg.std) for image, mask, _ in self.val_items)
        bar = self.engine.progress(len(self.val_items), 'validation')
        try:
            res = evaluate(self.net, samples, cfg.num_classes, self.engine.ctx, bar)
        finally:
            bar.close()
        if not res['pixels'] and not getattr(self, '_said_unscored', False):
            self._said_unscored = True
            LOG.warning('%s', unscored_words(res['n']))
        val = {'val_miou': res['miou'], 'val_pixel_acc': res['pixel_acc'], 'val_n': res['n']}
        val.update(('iou_%s' % name, v) for name, v in zip(cfg.classes, res['iou']))
        return val

    def check_checkpoint(self, meta, epoch):
        self._check_structure(meta, epoch)
        kt = meta.get('kt_type')
        here = self.cfg.kt_type if self.cfg.kt else None
        if kt != here:
            raise SegmentationError('run %r (epoch %d) was trained with kt_type=%s (this run: %s): a resume keeps the '
                                    'transfer methods; set them as the checkpoint has them, or start a new run'
                                    % (self.cfg.model_load_prefix, epoch, kt, here))

    def checkpoint_meta(self, record):
        cfg = self.cfg
        return {'kind': 'segmentation', 'kt_type': cfg.kt_type if cfg.kt else None, 'network': cfg.network, 'num_classes': cfg.num_classes,
                'classes': list(cfg.classes), 'in_channels': 3, 'mean': list(cfg.mean), 'std': list(cfg.std),
                'segmentation': self._structure()}

    def epoch_line(self, epoch, stats, val):
        return 'epoch %d: mIoU %.2f%% pixel accuracy %.2f%% (%.1f s, %.2f img/s); %s' % (
            epoch, 100 * val['val_miou'], 100 * val['val_pixel_acc'], stats['time'], stats['speed'],
            ' '.join('%s %.4f' % (n, stats[n]) for n in self.names if n in stats))


def _as_list(out):
    """A block's outputs as a list (a tapped network without taps gives its single output itself)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _id(path):
    return os.path.splitext(os.path.basename(path))[0]


def iou_table(record, classes):
    """Markdown: IoU per class of an epoch record (its iou_<class> keys), '-' where undefined."""
    rows = ['| class | IoU (%) |', '|---|---|']
    for name in classes:
        v = record.get('iou_%s' % name)
        rows.append('| %s | %s |' % (name, '-' if v is None or v != v else '%.2f' % (100 * v)))
    return '\n'.join(rows)


__all__ = ['SegmentationTask', 'SegmentationError', 'epoch_order', 'iou_table', 'load_network']


def _frozen_taps(net, taps):
    """The teacher `net` giving `taps` (x -> (scores, tap_1, ...)), hybridized, never trained."""
    import symbols
    try:
        tapped = symbols.with_taps(net, taps)
    except TapError as e:
        raise SegmentationError('teacher_symbol: %s' % e)
    for p in net.collect_params().values():
        p.grad_req = 'null'
    tapped.hybridize(static_alloc=True)
    return tapped


def load_network(prefix_path, tag, ctx, prefix='seg_', output_stride=None):
    """(SegNet, metadata) of segmentation checkpoint `prefix_path` at `tag` (epoch or 'best', the best
    recorded epoch when the best copy is missing), built as its metadata says (at `output_stride`
    when given: the dilations change, the parameters do not), parameters loaded."""
    from symbols.segmentation import build_segmentation_network
    folder, name = os.path.split(prefix_path)
    tag = checkpoint.resolve_tag(folder or '.', name, tag)
    meta = checkpoint.read_meta(folder or '.', name, tag)
    checkpoint.warn_if_copied(meta, name, tag)
    s = meta.get('segmentation')
    if meta.get('kind') != 'segmentation' or not s:
        raise SegmentationError('checkpoint %s (epoch %s) is not a segmentation run (its metadata says %s): give a '
                                'run trained with task=segmentation' % (prefix_path, tag, meta.get('kind') or
                                                                       'network=%s' % meta.get('network')))
    net, _ = build_segmentation_network(s['network'], len(s['classes']), s['head'], output_stride or s['output_stride'],
                                        split=s['seg_taps'], channels=s['aspp_channels'], prefix=prefix, ctx=ctx)
    params = checkpoint.paths(folder or '.', name, tag)['params']
    checkpoint.load_params(net, params, ctx, fits='evaluate it with the configuration it was trained with')
    checkpoint.check_params_file(meta, params)
    return net, meta


def evaluate_checkpoint(cfg, prefix_path, tag, max_images=None):
    """(scores as `evaluate` gives them, metadata) of a segmentation checkpoint on the validation
    list of `cfg` (its classes must be the checkpoint's)."""
    from core.devices import contexts
    ctx = contexts(cfg)
    net, meta = load_network(prefix_path, tag, ctx, output_stride=cfg.output_stride)
    built = meta['segmentation']
    differs = ['%s=%s (the checkpoint: %s)' % (k, cfg[k], built[k]) for k in ('network', 'head', 'aspp_channels')
               if cfg[k] != built[k]]
    if differs:
        raise SegmentationError('the config says %s: a checkpoint is evaluated as it was built (only output_stride may '
                                'differ, e.g. 8 at evaluation); leave those keys out' % ', '.join(differs))
    if list(meta['classes']) != list(cfg.classes):
        raise SegmentationError('checkpoint %s was trained on the classes %s, the config names %s: evaluate it on data '
                                'of its classes (leave out --cfg to use the configuration saved with it)'
                                % (prefix_path, meta['classes'], cfg.classes))
    items = segdata.voc_items(cfg.voc_root, cfg.val_split)[:max_images or cfg.num_val or None]
    segdata.check_items(items, cfg.num_classes, fix='the checkpoint predicts these %d classes: evaluate it on data '
                        'of its classes (leave out voc_root to use its run\'s data)' % cfg.num_classes)
    net.hybridize(static_alloc=True)
    samples = (segdata.val_sample(image, mask, cfg.mean, cfg.std) for image, mask, _ in items)
    return evaluate(net, samples, cfg.num_classes, ctx), meta
