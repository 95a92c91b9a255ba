"""Classification with knowledge transfer: a student, optionally a teacher and transfer losses.

What the engine (core/engine.py) does not own: the data (data.DataSource: packs, CIFAR pickles,
arrays), the student and the teacher, the distillation block (the student plus the loss terms of
`cfg.plan`, distiller.py here), the stages some methods run before epoch 0 (stages.py), the
running top-1/top-5 and loss terms, and validation top-1/top-5 over the whole validation set
(under dist_* / Horovod the workers' counts are summed).

- the teacher runs without gradients, hybridized, in inference mode (or with batch statistics
  when `teacher_train_bn`);
- each step's loss is the distillation block's per-sample total on each device's share of the
  batch: cross-entropy + the weighted transfer terms.
"""
import logging
import math
import os
import warnings

import mxnet as mx
from mxnet import autograd, gluon, nd

import symbols
from config import warnings_of
from core.errors import TrainingError
from core.health import logit_warning, loss_warning
from core.task import Task
from data import DataSource, class_names
from data.device import device_inputs, on_gpu
from data.indices import sample_count, sample_indices
from . import stages
from .distiller import DistillBlock, loss_options, plan_taps, plan_takes_indices
from .evaluate import evaluate, sum_over_workers
from .metrics import Running, TOP5_FROM, accuracy_text
from .teacher import load_teacher, locate_teacher, BatchStatsGuard, TeacherError

LOG = logging.getLogger('train')
# A plain student (kt=False) gets a placeholder for the teacher logits it does not use.
warnings.filterwarnings('ignore', message='The 2-th input to HybridBlock is not used')
# Heads used in one mode only (FT's paraphraser decoder in its stage) are unused in the other.
warnings.filterwarnings('ignore', message='Parameter distill_extras_.* is not used by any computation')


def as_list(out):
    """A block's outputs as a list (a block without taps returns one NDArray)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def check_methods_fit(plan, workers):
    """TrainingError if a method's declaration cannot run with this many worker processes: a
    stage before the training (its own optimizer, outside the workers' gradient exchange) or a
    memory indexed by sample (each worker would see only its own samples)."""
    from symbols.transfer import METHODS
    special = [e['method'] for e in plan if METHODS[e['method']].stages or METHODS[e['method']].indices]
    if workers > 1 and special:
        raise TrainingError('%s %s a stage before training or a memory of every training sample, which this '
                            'trainer runs in one process: train with one worker (several devices of one machine, '
                            'gpu_list=[0,1,...], are fine), not %d workers under dist_*/horovod'
                            % (', '.join(special), 'has' if len(special) == 1 else 'have', workers))


def check_batch_fits(cfg, batch_size, sizes, devices=1, workers=1):
    """TrainingError when one batch (`batch_size` a worker) is larger than the training or the
    validation set (`sizes`: {name: images a worker reads}): MXNet's iterator fails on it ('number
    of input images must be bigger than the batch size'), for validation only after an epoch."""
    smallest = min(sizes.values()) if sizes else None           # (the advice fits every set at once)
    for name, n in sizes.items():
        if batch_size > n:
            per = ' (%d devices x batch_size=%d)' % (devices, cfg.batch_size) if devices > 1 else ''
            share = ' (its share of %d workers)' % workers if workers > 1 else ''
            others = ['the %s set has %d' % (k, v) for k, v in sizes.items() if k != name and v < batch_size]
            given = getattr(cfg, 'num_examples', None)
            used = ' (num_examples=%d)' % given if name == 'training' and given and given <= n * workers else ''
            raise TrainingError('a batch takes %d images%s but the %s set of %s has %d%s%s%s: lower batch_size to at '
                                'most %d%s' % (batch_size, per, name, cfg.data_dir, n, used, share,
                                               ' (and %s)' % ', '.join(others) if others else '',
                                               max(1, smallest // devices),
                                               ', or raise num_examples' if used else ''))


class ClassificationTask(Task):
    """A student trained on labels, with the transfer terms of `cfg.plan` from a teacher (`kt`)."""
    name = 'classification'
    best_metric = 'val_top1'
    best_key = 'best_top1'
    fits = 'check network/num_classes'

    @classmethod
    def load_config(cls, path=None, overrides=(), check_data=True):
        from config import load_config
        return load_config(path, overrides, check_data=check_data)

    @classmethod
    def final_lines(cls, record, cfg):
        return ['final: epoch %d  %s on %d %s validation images'
                % (record['epoch'] + 1, accuracy_text(record['val_top1'], record.get('val_top5'), cfg.num_classes),
                   record['val_n'], cfg.dataset)]

    @classmethod
    def warnings(cls, cfg):
        return warnings_of(cfg)

    @classmethod
    def locate_teacher(cls, cfg):
        locate_teacher(cfg)

    @classmethod
    def tap_networks(cls, cfg):
        """The student as built, and a teacher run of this project's network (its weights are not read;
        other teachers: None). Tap names do not depend on the image channels."""
        from .teacher import teacher_network_name
        student = symbols.get_network(cfg.network, cfg.num_classes, 3, prefix='student_')
        name = teacher_network_name(cfg) if cfg.kt else None
        return student, symbols.get_network(name, cfg.num_classes, 3, prefix='teacher_') if name else None

    # ----------------------------------------------------------------- set-up
    def prepare(self):
        cfg, engine = self.cfg, self.engine
        self.plan = cfg.plan
        self.epoch, self.warned_logits = 0, False
        check_methods_fit(self.plan, engine.workers)
        self.data = DataSource(cfg, engine.workers, engine.rank, engine.batch_size,
                               indices=plan_takes_indices(self.plan), colour_on_device=on_gpu(engine.ctx))
        check_batch_fits(cfg, engine.batch_size, {'training': self.data.num_train, 'validation': self.data.num_val},
                         len(engine.ctx), engine.workers)
        # a method whose memory has a row per training sample (registry `indices`) needs their count
        self.loss_options = loss_options(cfg, sample_count(self.data) if plan_takes_indices(self.plan) else None)
        one_pass = int(math.ceil(self.data.num_train / float(engine.batch_size)))
        if cfg.epoch_size and cfg.epoch_size > one_pass:       # (the schedule follows the steps that run)
            LOG.warning('epoch_size=%d is more than the %d steps of one pass over the %d training images: an epoch '
                        'is one pass, %d steps (epoch_size stops an epoch early; it does not repeat the data)',
                        cfg.epoch_size, one_pass, self.data.num_train, one_pass)
        self.steps_per_epoch = min(cfg.epoch_size or one_pass, one_pass)
        self.samples_per_step = engine.batch_size
        self.names = ['ce'] + [e['method'] for e in self.plan]
        self.class_names = class_names(cfg)

    def build(self):
        cfg, ctx = self.cfg, self.ctx
        self.student = symbols.get_network(cfg.network, cfg.num_classes, self.data.channels, prefix='student_')
        s_taps, t_taps = plan_taps(self.plan)
        self.teacher = None
        if cfg.kt:
            try:
                self.teacher, desc = load_teacher(cfg, t_taps, self.data.channels, ctx)
            except TeacherError as e:
                raise TrainingError(str(e))
            self.teacher_desc = desc
            self.teacher_guard = BatchStatsGuard(self.teacher) if cfg.teacher_train_bn else None
        try:
            self.block = DistillBlock(self.student, self.plan, self.loss_options, t_taps, prefix='distill_')
        except symbols.TapError as e:
            raise TrainingError('student_symbol: %s' % e)
        self.student.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2), ctx=ctx)
        if cfg.pretrained is not None:
            self._start_from_pretrained()
        self.margins = []
        self._check_pairs()
        # what the optimizer updates: the student and the trained extras (connectors, heads); not
        # the extras no optimizer trains (a memory bank), which would only cost kvstore copies
        params = self.student.collect_params()
        params.update({n: p for n, p in self.block.extras.collect_params().items() if p.grad_req != 'null'})
        return params

    def _start_from_pretrained(self):
        """The student's weights from config key `pretrained` (a resume then loads its checkpoint over
        them); a classifier of another class count is new; `pretrained_lr_mult` on what was loaded."""
        from symbols import pretrained
        cfg = self.cfg
        self.student(nd.zeros((1,) + self.data.data_shape, ctx=self.ctx[0]))      # the shapes, for the check
        try:
            kind, where = pretrained.source_of(cfg.pretrained, cfg.network, cfg.pretrained_epoch)
            shape = self.data.data_shape
            named, weights = pretrained.weights_of(kind, where, cfg.network, shape[0], shape[1])
            loaded, replaced = pretrained.load_with_new_head(self.student, weights, cfg.num_classes, named=named)
        except pretrained.WeightsError as e:
            raise TrainingError(str(e))
        LOG.info('student starts from %s: %d parameters loaded%s', named, len(loaded),
                 '; its classifier (%s) is new, for %d classes' % (', '.join(replaced), cfg.num_classes)
                 if replaced else '')
        if cfg.pretrained_lr_mult != 1.0:
            params = self.student._collect_params_with_prefix()
            for name in loaded:
                params[name].lr_mult = cfg.pretrained_lr_mult

    def _check_pairs(self):
        """One forward on a dummy batch: taps exist, class counts agree, shapes pair; adds connectors."""
        cfg, ctx = self.cfg, self.ctx[0]
        x = nd.zeros((2,) + self.data.data_shape, ctx=ctx)
        s_out = as_list(self.block.student(x))
        if self.teacher is None:
            return
        try:
            t_out = as_list(self.teacher(x))
            t_out[0].wait_to_read()
        except mx.base.MXNetError as e:
            said = [l.strip() for l in str(e).splitlines() if l.strip() and 'Error' in l]
            import re
            weights = re.search(r'Provided = \[(\d+),(\d+),\d+,\d+\], inferred shape=\((\d+),(\d+),\d+,\d+\)', str(e))
            channels = self.data.data_shape[0]
            if weights and int(weights.group(4)) == channels and int(weights.group(2)) != channels:
                raise TrainingError('the teacher (%s) takes %s-channel images (a convolution\'s weights are [%s, %s, '
                                    '...]) but this data has %d channel(s): use a teacher trained on %d-channel images'
                                    % (self.teacher_desc, weights.group(2), weights.group(1), weights.group(2),
                                       channels, channels))
            trained = (getattr(self.teacher, 'trained_with', None) or {}).get('image_size')
            raise TrainingError('the teacher (%s) cannot run on this data\'s %s inputs%s (MXNet: %s): use a '
                                'teacher trained on images of this size, or set image_size to its size'
                                % (self.teacher_desc, 'x'.join(map(str, self.data.data_shape)),
                                   ' (it was trained on %dx%d images)' % (trained, trained) if trained else '',
                                   (said[-1] if said else str(e).strip())[:200]))
        if t_out[0].shape[1] != cfg.num_classes:
            raise TrainingError('the teacher predicts %d classes but num_classes=%d: use a teacher trained on '
                                'this data' % (t_out[0].shape[1], cfg.num_classes))
        s_taps, t_taps = plan_taps(self.plan)
        s_shape = dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]]))
        t_shape = dict(zip(t_taps, [o.shape[1:] for o in t_out[1:]]))
        try:
            margin_taps = self.block.connect(s_shape, t_shape)
            self.margins = [self._margin(method, tap, channels) for method, tap, channels in margin_taps]
        except ValueError as e:
            raise TrainingError(str(e))
        self.block.extras.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2),
                                     ctx=self.ctx)
        index = [nd.zeros((2,), ctx=ctx)] if self.block.takes_indices else []
        try:
            with autograd.pause():
                self.block(x, nd.zeros((2,), ctx=ctx), t_out[0], *(list(t_out[1:]) +
                                                                   [mg[0] for mg in self.margins] + index))
        except ValueError as e:
            raise TrainingError('teacher and student features cannot be paired: %s' % e)

    def _margin(self, method, tap, channels):
        """The per-channel margin of teacher tap `tap` from the teacher hook `method` declares
        (OFD's: from the BatchNorm that produces the tap), on every device."""
        from symbols.transfer import METHODS
        m = METHODS[method].margin(self.teacher, tap, self.ctx[0])
        if len(m) != channels:
            raise TrainingError('%s margin of tap %r has %d channels for a %d-channel map'
                                % (method, tap, len(m), channels))
        return [nd.array(m, ctx=c) for c in self.ctx]

    def saved_blocks(self):
        return self.student, self.block.extras

    def check_checkpoint(self, meta, epoch):
        cfg = self.cfg
        trained = {'network': self.student.network_name, 'kt_type': cfg.kt_type if cfg.kt else None}
        differ = ['%s=%s (this run: %s)' % (k, meta[k], v) for k, v in trained.items()
                  if k in meta and meta[k] != v]
        if differ:
            branch = ''
            if 'network' not in meta or meta['network'] == trained['network']:
                import shlex
                branch = ('; to train its weights on with other methods, start a new run from them: %spretrained=%s '
                          'pretrained_epoch=%d, without retrain'
                          % ('model_prefix=NEW ' if cfg.model_load_prefix == cfg.model_prefix else '',
                             shlex.quote(os.path.join(cfg.model_dir, cfg.model_load_prefix)), epoch))
            raise TrainingError('checkpoint %s epoch %d was trained with %s: a resume keeps the network and the '
                                'transfer methods; set them as the checkpoint has them, or start a new run%s'
                                % (cfg.model_load_prefix, epoch, ', '.join(differ), branch))
        was = meta.get('teacher_params_crc32')
        now = (getattr(self.teacher, 'trained_with', None) or {}).get('params_crc32')
        saved_teacher = (meta.get('config') or {}).get('teacher_prefix')
        from config.checks import same_run
        same_teacher = (not isinstance(saved_teacher, str) or not cfg.teacher_prefix or same_run(
            saved_teacher, cfg.teacher_prefix)) and (meta.get('config') or {}).get('teacher_epoch',
                                                                                   cfg.get('teacher_epoch')) == \
            cfg.get('teacher_epoch')
        if cfg.kt and was is not None and now is not None and was != now and same_teacher:
            # (another teacher_prefix or teacher_epoch than the checkpoint's: the warning of changed keys says so)
            LOG.warning('the teacher %s is not the one epochs 1..%d of run %r were distilled from: its parameters '
                        'changed since (retrained or replaced under the same name); the later epochs learn from the '
                        'new one', self.teacher_desc, epoch, cfg.model_load_prefix)

    def describe_checkpoint(self, meta):
        return 'validation top-1 %.4f' % meta.get('val_top1', 0)

    def start(self, resumed):
        self.block.hybridize(static_alloc=True, static_shape=True)
        self.student.hybridize(static_alloc=True)
        if self.teacher is not None:
            LOG.info('teacher: %s', self.teacher_desc)
            t_val = self.validate(self.teacher, 'teacher validation')
            LOG.info('teacher validation: %s (%d images)', accuracy_text(t_val['top1'], t_val['top5'],
                                                                         self.cfg.num_classes), t_val['n'])
            self.check_teacher(t_val)
        stages.run(self, resumed)          # the stages methods declare before epoch 0

    def describe(self):
        cfg, engine = self.cfg, self.engine
        return ('training %s on %s (%d train images, %d per epoch step), global batch %d, epochs %d..%d, kt=%s'
                % (cfg.network, cfg.dataset, self.data.num_train, engine.batch_size, engine.global_batch,
                   engine.begin_epoch + 1, cfg.num_epoch, cfg.kt_type if cfg.kt else 'none'))

    def check_teacher(self, t_val):
        """Warn when the teacher does much worse here than on its own validation set (another
        image_size, mean/std or dataset than it was trained with)."""
        own = getattr(self.teacher, 'trained_with', None) or {}
        size, top1 = own.get('image_size'), own.get('val_top1')
        if size is not None and size != self.data.image_size:
            LOG.warning('the teacher was trained on %dx%d images (its validation top-1 then %s) but image_size=%d '
                        'here: it reaches top-1 %.2f%% at this size. Use image_size=%d unless that is intended',
                        size, size, '%.2f%%' % (100 * top1) if top1 is not None else 'unknown',
                        self.data.image_size, 100 * t_val['top1'], size)
        elif top1 is not None and t_val['top1'] < top1 - 0.1:
            LOG.warning('the teacher reaches top-1 %.2f%% here but %.2f%% on its own validation set: check that '
                        'dataset, mean/std and image_size match its training', 100 * t_val['top1'], 100 * top1)
        diverged = logit_warning(t_val.get('max_logit', 0.0), 'the teacher %s' % self.cfg.teacher_prefix)
        if diverged:
            LOG.warning('%s', diverged.replace('train again, or use an earlier epoch', 'distil from another teacher '
                                               'or an earlier epoch of it (teacher_epoch)'))
        chance = 1.0 / max(self.cfg.num_classes, 1)
        if self.cfg.num_classes > 1 and t_val['top1'] <= 1.5 * chance:
            LOG.warning('the teacher scores at chance here (top-1 %.2f%% on %d classes, chance %.2f%%): distilling from '
                        'it teaches nothing of these classes; check teacher_prefix (an untrained or diverged run?)',
                        100 * t_val['top1'], self.cfg.num_classes, 100 * chance)

    # --------------------------------------------------------------- an epoch
    def set_epoch(self, epoch):
        self.epoch = epoch
        self.block.set_epoch(epoch)              # per-epoch factors the methods declare (DKD's warm-up)
        self.running = Running(self.names, self.cfg.num_classes)

    def batches(self, epoch):
        return self.data.train(epoch)

    def _teacher_forward(self, x):
        if self.teacher_guard is not None:
            return as_list(self.teacher_guard(self.teacher, x))
        return as_list(self.teacher(x))

    def forward_outputs(self, batch):
        """The distillation block on each device's share of `batch` (call under autograd.record):
        (outputs per device, labels per device, sample indices per device or None)."""
        ctx = self.ctx
        xs = device_inputs(batch, ctx)
        ys = gluon.utils.split_and_load(batch.label[0], ctx)
        idxs = None
        if self.block.takes_indices:
            idxs = gluon.utils.split_and_load(sample_indices(self.data, batch, self.loss_options['num_samples']),
                                              ctx)
        outs = []
        for k, (x, y) in enumerate(zip(xs, ys)):
            if self.teacher is not None:
                with autograd.pause():
                    t_out = self._teacher_forward(x)
                rest = list(t_out[1:]) + [mg[k] for mg in self.margins] + ([idxs[k]] if idxs else [])
                outs.append(self.block(x, y, t_out[0], *rest))
            else:
                outs.append(self.block(x, y, nd.zeros((1,), ctx=x.context)))
        return outs, ys, idxs

    def forward(self, batch):
        outs, ys, idxs = self.forward_outputs(batch)
        return [out[0] for out in outs], (outs, ys, idxs)

    def after_step(self, step, out):
        outs, ys, idxs = out
        self.block.after_step(outs, idxs)         # state outputs (a memory bank), if a loss has any
        n_terms = 3 + self.block.n_terms
        for k, (o, y) in enumerate(zip(outs, ys)):
            self.running.update(k, step, o[1], y, list(o[2:n_terms]))

    def read(self):
        return self.running.read()

    def progress_fields(self, stats):
        post = dict((n, '%.4g' % stats[n]) for n in self.names if n in stats)
        if 'top1' in stats:
            post['acc'] = '%.4f' % stats['top1']
        return post

    def validate(self, net, desc='validation'):
        """Top-1/top-5 of `net` on the whole validation set (each dist worker evaluates its part)."""
        batches = int(math.ceil(self.data.num_val / float(self.engine.batch_size)))
        bar = self.engine.progress(batches, desc)
        try:
            val = evaluate(net, self.data.val(), self.ctx, self.cfg.num_classes, bar=bar)
        finally:
            bar.close()
        reduce = self.engine.worker_sum()
        return sum_over_workers(val, reduce) if reduce is not None else val

    def evaluate(self):
        val = self.validate(self.student)
        warning = logit_warning(val.get('max_logit', 0.0), 'the student (validation of epoch %d)' % (self.epoch + 1))
        # (or its training cross-entropy: far beyond ln(classes) once logits have blown up in training)
        warning = warning or loss_warning({'ce': self.running.read().get('ce', 0.0)}, 'epoch %d' % (self.epoch + 1))
        if warning and not self.warned_logits:       # once a run: it stays so until the run is fixed
            LOG.warning('%s', warning)
            self.warned_logits = True
        if self.cfg.num_classes < TOP5_FROM:           # top-5 of 5 classes or fewer says nothing: not recorded
            return {'val_top1': val['top1'], 'val_n': val['n']}
        return {'val_top1': val['top1'], 'val_top5': val['top5'], 'val_n': val['n']}

    def checkpoint_meta(self, record):
        cfg, data = self.cfg, self.data
        teacher = (getattr(self.teacher, 'trained_with', None) or {}).get('params_crc32')
        return dict(network=self.student.network_name, num_classes=cfg.num_classes, in_channels=data.channels,
                    image_size=data.image_size, mean=list(data.mean), std=list(data.std), dataset=cfg.dataset,
                    kt_type=cfg.kt_type if cfg.kt else None, classes=self.class_names,
                    **({'teacher_params_crc32': teacher} if teacher is not None else {}))

    def epoch_line(self, epoch, stats, val):
        if self.cfg.num_classes < TOP5_FROM:
            return ('Epoch[%d] Train-top1=%.4f Validation-top1=%.4f (error %.2f%%) time %.1fs'
                    % (epoch, stats['top1'], val['val_top1'], 100 * (1 - val['val_top1']), stats['time']))
        return ('Epoch[%d] Train-top1=%.4f Validation-top1=%.4f Validation-top5=%.4f (error %.2f%% / %.2f%%) '
                'time %.1fs' % (epoch, stats['top1'], val['val_top1'], val['val_top5'], 100 * (1 - val['val_top1']),
                                100 * (1 - val['val_top5']), stats['time']))
