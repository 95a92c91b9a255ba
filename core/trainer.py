"""The training loop: devices, kvstore, teacher, student, checkpoints, logs.

`run(cfg)` trains `cfg.network` for epochs [begin_epoch, num_epoch):
- each batch is split over the devices (`gpu_list`; [] = CPU), gradients are
  aggregated through the kvstore (`device`, `local`, `dist_sync`,
  `dist_device_sync`), and `Trainer.step` gets the global batch size; or, with
  `kv_store=horovod`, each process drives one device and Horovod's
  DistributedTrainer averages the gradients (`step` gets the worker's batch);
- the teacher runs without gradients, hybridized, in inference mode (or with
  batch statistics when `teacher_train_bn`);
- the learning rate is set every batch from the fractional epoch, and every
  epoch reseeds MXNet, numpy and the data order from (seed, epoch): a run
  resumed from a checkpoint repeats exactly what an uninterrupted run does;
- after every epoch: validation top-1/top-5 over the whole validation set
  (under dist_* the workers' counts are summed), an atomic checkpoint (rank 0),
  a log line and a JSON record in log/<model_prefix>.jsonl.
"""
import glob
import logging
import math
import os
import random
import sys
import time
import warnings

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

import symbols
from config import warnings_of
from data import DataSource
from data.device import device_inputs, on_gpu
from data.indices import sample_count, sample_indices
from . import checkpoint, gpu_libs, gpu_support, monitor, runs, schedule, stages
from .distiller import DistillBlock, plan_taps, plan_takes_indices
from .evaluate import evaluate, kvstore_sum, sum_over_workers
from .metrics import Running, NonFiniteLoss, LabelOutOfRange
from .records import append_record
from .teacher import load_teacher, BatchStatsGuard, TeacherError

LOG = logging.getLogger('train')
# A plain student (kt=False) gets a placeholder for the teacher logits it does not use.
warnings.filterwarnings('ignore', message='The 2-th input to HybridBlock is not used')
# Heads used in one mode only (FT's paraphraser decoder in its stage) are unused in the other.
warnings.filterwarnings('ignore', message='Parameter distill_extras_.* is not used by any computation')


from .errors import TrainingError, Diverged  # noqa: E402,F401


class LogFileHandler(logging.FileHandler):
    """A log file that, when it can no longer be written (a full disk), says so once and stops
    instead of printing a traceback for every message; training goes on. With `hold`, records are
    kept in memory and the file is not even created until `write_held()`: a run that stops while it
    is being set up (a wrong tap, a bad pack) leaves no log file behind (its messages were on
    stderr)."""

    def __init__(self, filename, mode='a', hold=False):
        super(LogFileHandler, self).__init__(filename, mode, delay=True)
        self._held = [] if hold else None

    def handleError(self, record):
        if not getattr(self, '_failed', False):
            self._failed = True              # called inside the failed emit: the exception is current
            sys.stderr.write('warning: cannot write the log file %s (%s); it gets no more lines, training goes '
                             'on\n' % (self.baseFilename, sys.exc_info()[1]))

    def emit(self, record):
        if self._held is not None:
            self._held.append(record)
        elif not getattr(self, '_failed', False):
            super(LogFileHandler, self).emit(record)

    def write_held(self):
        """Write the records held so far, and every later one as it comes. (Not `release`: that is
        logging.Handler's lock.)"""
        held, self._held = self._held or [], None
        for record in held:
            self.emit(record)


def teardown_logging():
    """Detach and close the handlers `setup_logging` added (a run's log file is closed when it ends)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, '_nst', False):
            root.removeHandler(h)
            h.close()


def setup_logging(cfg, rank=0, to_file=True, hold=False):
    """Log to stderr and, on rank 0 with `to_file`, to log_dir/<model_prefix>.log (with `hold`, only
    from `release_log_file()` on, the records before it included)."""
    teardown_logging()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if rank == 0 and to_file:
        fh = LogFileHandler(os.path.join(cfg.log_dir, '%s.log' % cfg.model_prefix), mode='a', hold=hold)
        fh.setFormatter(logging.Formatter('%(asctime)s %(name)s %(levelname)s %(message)s', '%m-%d %H:%M:%S'))
        fh._nst = True
        root.addHandler(fh)
    ch = logging.StreamHandler(sys.stderr)
    distributed = 'DMLC_ROLE' in os.environ or 'HOROVOD_RANK' in os.environ
    ch.setFormatter(logging.Formatter(('[worker %d] ' % rank if distributed else '') +
                                      '%(name)s %(levelname)s %(message)s'))
    ch._nst = True
    root.addHandler(ch)


def release_log_file():
    """Start writing the log file `setup_logging(..., hold=True)` held back."""
    for h in logging.getLogger().handlers:
        if isinstance(h, LogFileHandler):
            h.write_held()


def contexts(cfg, local_rank=None):
    """The devices of `gpu_list` (checked against the GPUs this MXNet build can run on), else CPU(s).

    Under Horovod (`local_rank` given) a process drives one device:
    gpu_list[local_rank], or one CPU."""
    ids = list(cfg.gpu_list)
    if local_rank is not None:
        if not ids:
            return [mx.cpu()]
        if local_rank >= len(ids):
            raise TrainingError('Horovod process %d on this machine has no GPU: gpu_list=%s lists %d; start at '
                                'most %d processes a machine' % (local_rank, ids, len(ids), len(ids)))
        ids = [ids[local_rank]]
    if not ids:
        return [mx.cpu(i) for i in range(int(os.environ.get('NST_CPU_DEVICES', '1')))]
    # before any CUDA work: the build, the driver's GPUs and their compute capabilities against the
    # build's table (core/gpu_support.py), so a GPU this build has no code for stops here, by name
    build, version = gpu_support.installed_build()
    driver = gpu_libs.driver_gpus() if build != 'cpu' else gpu_libs.DriverInfo(gpus=[])
    gpus = driver.gpus
    if gpus is None and build != 'cpu':
        try:           # the driver could not be asked directly: count what mxnet sees (no capabilities)
            gpus = [gpu_support.Gpu(i, 'GPU %d' % i, None) for i in range(mx.context.num_gpus())] or None
        except mx.base.MXNetError:
            gpus = None
        if gpus is not None:
            build = None          # capabilities unknown: check the count only
    problem = gpu_support.check_gpu_list(ids, build, gpus, version or '', driver.error)
    if problem:
        raise TrainingError(problem)
    return [mx.gpu(i) for i in ids]


def as_list(out):
    """A block's outputs as a list (a block without taps returns one NDArray)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def seed_everything(seed):
    mx.random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


def epoch_seed(cfg, epoch):
    return cfg.seed * 100003 + epoch


LOSS_OPTIONS = ('kd_t', 'mmd_kernel', 'mmd_degree', 'mmd_c', 'at_p', 'dkd_alpha', 'dkd_beta', 'dkd_t', 'dist_beta',
                'dist_gamma', 'dist_tau', 'rkd_distance', 'rkd_angle', 'kdsvd_k', 'cc_feat_dim', 'cc_normalize',
                'vid_init_pred_var', 'vid_eps', 'reviewkd_mid_channels', 'ab_margin', 'ab_init_epochs', 'ab_init_lr',
                'ft_p1', 'ft_p2', 'ft_rate', 'ft_init_epochs', 'ft_init_lr', 'crd_feat_dim', 'crd_nce_k',
                'crd_nce_t', 'crd_nce_m', 'kt_warmup_epochs')


def _loss_options(cfg, num_samples=None):
    """The config keys the loss blocks' `make(options)` and the stages read, and the number of
    training samples (the rows of a memory bank indexed by sample, e.g. CRD's)."""
    options = {k: cfg[k] for k in LOSS_OPTIONS}
    options['num_samples'] = num_samples
    return options


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


def no_checkpoint_to_resume(cfg):
    """What to say when retrain=true finds no complete checkpoint of model_load_prefix."""
    if cfg.model_load_prefix != cfg.model_prefix:
        metas = glob.glob(os.path.join(cfg.model_dir, '*-[0-9][0-9][0-9][0-9].json'))
        there = sorted({os.path.basename(f)[:-len('-0001.json')] for f in metas})
        return ('model_load_prefix=%s: %s has no complete checkpoint of that run to start from (runs there: %s); '
                'give one of them' % (cfg.model_load_prefix, cfg.model_dir, ', '.join(there) or 'none'))
    return ('retrain=True with model_load_epoch=-1 but %s has no complete checkpoint of %r: nothing to resume. Start '
            'the run without retrain=true (add overwrite=true if incomplete files of it are there)'
            % (cfg.model_dir, cfg.model_load_prefix))


def check_batch_fits(cfg, batch_size, sizes, devices=1, workers=1):
    """TrainingError when one batch (`batch_size` a worker) is larger than the training or the
    validation set (`sizes`: {name: images a worker reads}): MXNet's iterator fails on it ('number
    of input images must be bigger than the batch size'), for validation only after an epoch."""
    for name, n in sizes.items():
        if batch_size > n:
            per = ' (%d devices x batch_size=%d)' % (devices, cfg.batch_size) if devices > 1 else ''
            share = ' (its share of %d workers)' % workers if workers > 1 else ''
            raise TrainingError('a batch takes %d images%s but the %s set of %s has %d%s: lower batch_size to at '
                                'most %d' % (batch_size, per, name, cfg.data_dir, n, share, max(1, n // devices)))


class Session(object):
    """Everything one training run holds; built by `prepare`, run by `fit`."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.kv, self.hvd = None, None
        self.rank, self.workers = 0, 1
        if cfg.kv_store == 'horovod':
            import horovod.mxnet as hvd
            hvd.init()
            self.hvd, self.rank, self.workers = hvd, hvd.rank(), hvd.size()
        elif cfg.kv_store.startswith('dist'):
            self.kv = mx.kv.create(cfg.kv_store)
            self.rank, self.workers = self.kv.rank, self.kv.num_workers
        self.ctx = contexts(cfg, self.hvd.local_rank() if self.hvd else None)
        self.batch_size = cfg.batch_size * len(self.ctx)          # per worker
        self.global_batch = self.batch_size * self.workers
        # Trainer.step rescales by 1/batch: Horovod averages the gradients over the workers
        # itself, the kvstore sums them
        self.step_batch = self.batch_size if self.hvd else self.global_batch
        self.monitor = monitor.create(cfg, self.rank)                # TensorBoard scalars (tensorboard=true)

    # ----------------------------------------------------------------- set-up
    def prepare(self):
        cfg, ctx = self.cfg, self.ctx
        self.amp = None
        if cfg.dtype != 'float32':
            # MXNet AMP: float16 (GPU, with dynamic loss scaling) or bfloat16 (CPU). It must be
            # initialised before any network is built.
            from mxnet.contrib import amp
            amp.init(target_dtype=cfg.dtype)
            self.amp = amp
        self.plan = cfg.plan
        check_methods_fit(self.plan, self.workers)
        self.data = DataSource(cfg, self.workers, self.rank, self.batch_size, indices=plan_takes_indices(self.plan),
                               colour_on_device=on_gpu(self.ctx))
        check_batch_fits(cfg, self.batch_size, {'training': self.data.num_train, 'validation': self.data.num_val},
                         len(self.ctx), self.workers)
        # a method whose memory has a row per training sample (registry `indices`) needs their count
        self.loss_options = _loss_options(cfg, sample_count(self.data) if plan_takes_indices(self.plan) else None)
        self.steps_per_epoch = cfg.epoch_size or int(math.ceil(self.data.num_train / float(self.batch_size)))
        seed_everything(cfg.seed)
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
        self.margins = []
        self._check_pairs()
        # what the optimizer updates: the student and the trained extras (connectors, heads); not
        # the extras no optimizer trains (a memory bank), which would only cost kvstore copies
        params = self.student.collect_params()
        params.update({n: p for n, p in self.block.extras.collect_params().items() if p.grad_req != 'null'})
        opt = {'learning_rate': cfg.lr, 'wd': cfg.wd, 'momentum': cfg.momentum}
        if cfg.dtype != 'float32':
            opt['multi_precision'] = True
        if self.hvd is not None:
            self.trainer = self.hvd.DistributedTrainer(params, cfg.optimizer, opt)
        else:
            kw = {'update_on_kvstore': False} if self.kv else {}
            self.trainer = gluon.Trainer(params, cfg.optimizer, opt, kvstore=self.kv or 'device', **kw)
        if self.amp is not None:
            self.amp.init_trainer(self.trainer)
        # how validation counts are summed over the workers (None: one worker)
        self.worker_sum = None
        if self.kv is not None:
            self.worker_sum = kvstore_sum(self.kv)
        elif self.hvd is not None:
            self.worker_sum = lambda counts: self.hvd.allreduce(counts, average=False, name='validation_counts')
        self.lr_at = schedule.from_config(cfg)
        self.begin_epoch = cfg.begin_epoch
        self.best = -1.0                       # best validation top-1 so far (restored by _resume)
        self.resumed = bool(cfg.retrain)
        if cfg.retrain:
            self._resume()
        if self.hvd is not None:      # every worker starts from rank 0's parameters
            self.hvd.broadcast_parameters(params, root_rank=0)
        self.block.hybridize(static_alloc=True, static_shape=True)
        self.student.hybridize(static_alloc=True)
        self.jsonl = os.path.join(cfg.log_dir, '%s.jsonl' % cfg.model_prefix)

    def _check_pairs(self):
        """One forward on a dummy batch: taps exist, class counts agree, shapes pair; adds connectors."""
        cfg, ctx = self.cfg, self.ctx[0]
        x = nd.zeros((2,) + self.data.data_shape, ctx=ctx)
        s_out = as_list(self.block.student(x))
        if self.teacher is None:
            return
        t_out = as_list(self.teacher(x))
        if t_out[0].shape[1] != cfg.num_classes:
            raise TrainingError('the teacher predicts %d classes but num_classes=%d: use a teacher trained on '
                                'this data' % (t_out[0].shape[1], cfg.num_classes))
        s_taps, t_taps = plan_taps(self.plan)
        s_shape = dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]]))
        t_shape = dict(zip(t_taps, [o.shape[1:] for o in t_out[1:]]))
        try:
            margin_taps = self.block.connect(s_shape, t_shape)
        except ValueError as e:
            raise TrainingError(str(e))
        self.margins = [self._ofd_margin(tap, channels) for tap, channels in margin_taps]
        self.block.extras.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2),
                                     ctx=self.ctx)
        index = [nd.zeros((2,), ctx=ctx)] if self.block.takes_indices else []
        try:
            with autograd.pause():
                self.block(x, nd.zeros((2,), ctx=ctx), t_out[0], *(list(t_out[1:]) +
                                                                   [mg[0] for mg in self.margins] + index))
        except ValueError as e:
            raise TrainingError('teacher and student features cannot be paired: %s' % e)

    def _ofd_margin(self, tap, channels):
        """OFD margin of a teacher tap from the BatchNorm that produces it."""
        from symbols.transfer import ofd_margin
        base = self.teacher.base
        bn_path = getattr(base, 'TAP_BN', {}).get(tap)
        try:
            bn, _ = symbols.resolve_tap(base, bn_path or tap)
        except symbols.TapError:
            bn = None
        params = {} if bn is None else {n.rsplit('_', 1)[-1]: p for n, p in bn.params.items()}
        if 'gamma' not in params or 'beta' not in params:
            raise TrainingError('ofd needs a teacher tap that is a BatchNorm output (pre-ReLU); %r is not. Use '
                                'a *_pre tap' % tap)
        m = ofd_margin(params['gamma'].data(self.ctx[0]).asnumpy(), params['beta'].data(self.ctx[0]).asnumpy())
        if len(m) != channels:
            raise TrainingError('ofd margin of tap %r has %d channels for a %d-channel map' % (tap, len(m), channels))
        return [nd.array(m, ctx=c) for c in self.ctx]

    def _load(self, epoch):
        cfg = self.cfg
        meta = checkpoint.read_meta(cfg.model_dir, cfg.model_load_prefix, epoch)
        saved_by = meta.get('model_prefix')
        if saved_by is not None and saved_by != cfg.model_load_prefix:
            LOG.warning('checkpoint %s epoch %d was saved by run %r (its metadata says model_prefix=%r): its files '
                        'were copied or renamed from that run. Training goes on as run %r; to branch from %r without '
                        'copying, use model_prefix=%s model_load_prefix=%s model_load_epoch=%d'
                        % (cfg.model_load_prefix, epoch, saved_by, saved_by, cfg.model_prefix, saved_by,
                           cfg.model_prefix, saved_by, epoch))
        trained = {'network': self.student.network_name, 'kt_type': cfg.kt_type if cfg.kt else None}
        differ = ['%s=%s (this run: %s)' % (k, meta[k], v) for k, v in trained.items()
                  if k in meta and meta[k] != v]
        if differ:
            raise TrainingError('checkpoint %s epoch %d was trained with %s: a resume keeps the network and the '
                                'transfer methods; set them as the checkpoint has them, or start a new run'
                                % (cfg.model_load_prefix, epoch, ', '.join(differ)))
        return checkpoint.load(cfg.model_dir, cfg.model_load_prefix, epoch, self.student, self.ctx,
                               self.block.extras, self.trainer)

    def _resume(self):
        """Restore model_load_prefix at model_load_epoch (-1: the latest checkpoint whose parameters
        and optimizer state are finite; later non-finite ones are moved aside, never trained over)."""
        cfg = self.cfg
        same_run = cfg.model_load_prefix == cfg.model_prefix
        if cfg.model_load_epoch == 0:
            have = checkpoint.epochs(cfg.model_dir, cfg.model_load_prefix)
            raise TrainingError('retrain=true resumes a checkpoint, and checkpoints are numbered from 1 (after the '
                                'first epoch): set model_load_epoch=-1 for the latest, or one of the epochs of %r in '
                                '%s: %s' % (cfg.model_load_prefix, cfg.model_dir, have or 'none yet'))
        try:
            if cfg.model_load_epoch > 0:
                epoch, meta = cfg.model_load_epoch, self._load(cfg.model_load_epoch)
            else:
                have = checkpoint.epochs(cfg.model_dir, cfg.model_load_prefix)
                if not have:
                    raise TrainingError(no_checkpoint_to_resume(cfg))
                meta, skipped = None, []
                for epoch in reversed(have):
                    try:
                        meta = self._load(epoch)
                        break
                    except checkpoint.NonFiniteCheckpoint as e:
                        LOG.warning('skipping epoch %d of %r: %s', epoch, cfg.model_load_prefix, e)
                        skipped.append(epoch)
                if meta is None:
                    raise TrainingError('every checkpoint of %r in %s (epochs %s) holds NaN or Inf: start over '
                                        'with overwrite=true and a lower lr' % (cfg.model_load_prefix,
                                                                                cfg.model_dir, have))
                if skipped and same_run and self.rank == 0:
                    runs.move_aside(cfg.model_dir, cfg.model_prefix,
                                    runs.epoch_files(cfg.model_dir, cfg.model_prefix, skipped),
                                    'non-finite checkpoints after epoch %d' % epoch)
        except checkpoint.CheckpointError as e:
            raise TrainingError(str(e))
        if same_run and self.rank == 0:
            runs.claim_resume(cfg, epoch)
        self.begin_epoch = epoch
        self.best = meta.get('best_top1', -1.0)
        LOG.info('resumed run %r from its epoch-%d checkpoint in %s (validation top-1 %.4f)%s',
                 cfg.model_load_prefix, epoch, cfg.model_dir, meta.get('val_top1', 0),
                 '' if same_run else '; training continues as run %r' % cfg.model_prefix)

    def validate(self, net):
        """Top-1/top-5 of `net` on the whole validation set (each dist worker evaluates its part)."""
        val = evaluate(net, self.data.val(), self.ctx, self.cfg.num_classes)
        return sum_over_workers(val, self.worker_sum) if self.worker_sum is not None else val

    # --------------------------------------------------------------- training
    def _teacher_forward(self, x):
        if self.teacher_guard is not None:
            return as_list(self.teacher_guard(self.teacher, x))
        return as_list(self.teacher(x))

    def train_epoch(self, epoch):
        try:
            return self._train_epoch(epoch)
        except NonFiniteLoss as e:
            raise NonFiniteLoss(e.term, e.step, epoch)

    def forward(self, batch):
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

    def _train_epoch(self, epoch):
        cfg = self.cfg
        seed_everything(epoch_seed(cfg, epoch))
        self.block.set_epoch(epoch)              # per-epoch factors the methods declare (DKD's warm-up)
        names = ['ce'] + [e['method'] for e in self.plan]
        running = Running(names, cfg.num_classes)
        it = self.data.train(epoch)
        show = cfg.progress and self.rank == 0
        from tqdm import tqdm
        bar = tqdm(total=self.steps_per_epoch, desc='epoch %d' % epoch, disable=not show, file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
        tic = time.time()
        seen = 0
        for i, batch in enumerate(it):
            if i >= self.steps_per_epoch:
                break
            self.trainer.set_learning_rate(self.lr_at(epoch + i / float(self.steps_per_epoch)))
            with autograd.record():
                outs, ys, idxs = self.forward(batch)
            if self.amp is not None and self.cfg.dtype == 'float16':
                with self.amp.scale_loss([out[0] for out in outs], self.trainer) as scaled:
                    autograd.backward(scaled)
            else:
                autograd.backward([out[0] for out in outs])
            self.trainer.step(self.step_batch)
            self.block.after_step(outs, idxs)         # state outputs (a memory bank), if a loss has any
            n_terms = 3 + self.block.n_terms
            for k, (out, y) in enumerate(zip(outs, ys)):
                running.update(k, i, out[1], y, list(out[2:n_terms]))
            seen += self.batch_size
            if (i + 1) % cfg.frequent == 0 or i + 1 == self.steps_per_epoch:
                stats = running.read()
                speed = seen / max(time.time() - tic, 1e-9)
                post = dict((n, '%.4g' % stats[n]) for n in names)
                post['acc'] = '%.4f' % stats['top1']
                post['img/s'] = '%.1f' % speed
                bar.set_postfix(post, refresh=False)
                self.monitor.step(epoch * self.steps_per_epoch + i + 1, dict(
                    [kv for kv in stats.items() if kv[0] != 'n'], lr=self.trainer.learning_rate, img_per_s=speed))
                bar.update(i + 1 - bar.n)
                if not show or (i + 1) % (cfg.frequent * 10) == 0:
                    LOG.info('Epoch[%d] Batch [%d] Speed: %.1f samples/sec %s', epoch, i + 1, speed,
                             ' '.join('%s=%s' % kv for kv in post.items() if kv[0] != 'img/s'))
        bar.close()
        mx.nd.waitall()
        stats = running.read()
        stats['time'] = time.time() - tic
        stats['speed'] = seen / max(stats['time'], 1e-9)
        return stats

    def fit(self):
        cfg = self.cfg
        if self.teacher is not None:
            LOG.info('teacher: %s', self.teacher_desc)
            t_val = self.validate(self.teacher)
            LOG.info('teacher validation: top-1 %.4f top-5 %.4f (%d images)', t_val['top1'], t_val['top5'],
                     t_val['n'])
            self.check_teacher(t_val)
        stages.run(self, self.resumed)          # the stages methods declare before epoch 0
        LOG.info('training %s on %s (%d train images, %d per epoch step), global batch %d, epochs %d..%d, '
                 'kt=%s', cfg.network, cfg.dataset, self.data.num_train, self.batch_size, self.global_batch,
                 self.begin_epoch, cfg.num_epoch - 1, cfg.kt_type if cfg.kt else 'none')
        result = {}
        self.monitor.start(self.begin_epoch * self.steps_per_epoch)
        for epoch in range(self.begin_epoch, cfg.num_epoch):
            stats = self.train_epoch(epoch)
            self._check_finite(epoch)
            val = self.validate(self.student)
            record = {'epoch': epoch, 'lr': self.trainer.learning_rate, 'time': stats['time'],
                      'speed': stats['speed'], 'train_top1': stats['top1'], 'train_top5': stats['top5'],
                      'val_top1': val['top1'], 'val_top5': val['top5'], 'val_n': val['n']}
            for n in ['ce'] + [e['method'] for e in self.plan]:
                record['train_' + n] = stats[n]
            best = val['top1'] > self.best
            self.best = max(self.best, val['top1'])
            record['best_top1'] = self.best
            LOG.info('Epoch[%d] Train-top1=%.4f Validation-top1=%.4f Validation-top5=%.4f (error %.2f%% / %.2f%%) '
                     'time %.1fs', epoch, stats['top1'], val['top1'], val['top5'], 100 * (1 - val['top1']),
                     100 * (1 - val['top5']), stats['time'])
            if self.rank == 0:
                # The record goes first: a run killed before its checkpoint repeats the epoch and writes
                # the record again; readers keep the last record of each epoch. A record that cannot be
                # written (a full disk) is reported, and the checkpoint is still attempted.
                try:
                    append_record(self.jsonl, dict(record, model_prefix=cfg.model_prefix))
                except OSError as e:
                    LOG.warning('could not write the record of epoch %d to %s (%s); writing the checkpoint',
                                epoch, self.jsonl, e.strerror or e)
                self.monitor.epoch((epoch + 1) * self.steps_per_epoch, record)
                meta = dict(record, network=self.student.network_name, num_classes=cfg.num_classes,
                            in_channels=self.data.channels, image_size=self.data.image_size,
                            mean=list(self.data.mean), std=list(self.data.std), dataset=cfg.dataset,
                            model_prefix=cfg.model_prefix, seed=cfg.seed, kt_type=cfg.kt_type if cfg.kt else None)
                checkpoint.save(cfg.model_dir, cfg.model_prefix, epoch + 1, self.student, self.block.extras,
                                self.trainer, meta, best=best)
            result = record
        return result

    def _check_finite(self, epoch):
        """Stop (exit 3) before validating or saving an epoch whose parameters or optimizer state
        hold NaN/Inf: the loss is read every `frequent` steps, and updates after the last read can
        still diverge."""
        arrays = checkpoint.ndarrays(self.student.collect_params()) + \
            checkpoint.ndarrays(self.block.extras.collect_params()) + checkpoint.optimizer_arrays(self.trainer)
        mx.nd.waitall()
        if not checkpoint.all_finite(arrays):
            have = checkpoint.epochs(self.cfg.model_dir, self.cfg.model_prefix)
            raise Diverged('the parameters became NaN or Inf during epoch %d (after the last loss check); '
                                'nothing of epoch %d was saved. Last good checkpoint: %s. Lower lr (or the kt_weight '
                                'of a transfer term) and resume with retrain=true model_load_epoch=-1'
                                % (epoch, epoch, 'epoch %d' % have[-1] if have else 'none'))

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


def run(cfg):
    """Train as configured; return the last epoch's record."""
    if cfg.deterministic:
        # The engine is created at the first operation, so this still takes effect here.
        os.environ['MXNET_ENGINE_TYPE'] = 'NaiveEngine'
    session = Session(cfg)
    setup_logging(cfg, session.rank, to_file=False)           # the log file is the run's: claimed first
    lock = None
    created = runs.missing_folders([cfg.model_dir, cfg.log_dir]) if session.rank == 0 else []
    started = False
    try:
        if session.rank == 0:
            # before anything is written: the folders, one run per name, no run overwritten by mistake
            checkpoint.ensure_writable(cfg.model_dir)
            checkpoint.ensure_writable(cfg.log_dir, 'log_dir')
            lock = runs.RunLock(cfg.model_dir, cfg.model_prefix).acquire()
            make_room = runs.claim(cfg, defer=True)
        setup_logging(cfg, session.rank, hold=True)         # no log file for a run that cannot start
        LOG.info('config: %s', getattr(cfg, 'source', 'given by the caller'))
        for text in warnings_of(cfg):
            LOG.warning('%s', text)
        session.prepare()
        if session.rank == 0:
            make_room()                 # overwrite=true: the old run goes aside only now that this one can start
        release_log_file()
        started = True
        return session.fit()
    except NonFiniteLoss as e:
        raise Diverged(str(e))          # nothing of the failing epoch was checkpointed
    except LabelOutOfRange as e:
        raise TrainingError(str(e))
    finally:
        session.monitor.close()
        teardown_logging()
        if lock is not None:
            lock.release()
        if not started:
            runs.remove_if_empty(created)           # model_dir / log_dir this run created for nothing
