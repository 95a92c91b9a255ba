"""The training engine: one loop for every task (core/task.py says what a task supplies).

`run(cfg, TaskClass)` trains (or resumes) run `cfg.model_prefix` for epochs [begin, num_epoch):

- devices: `gpu_list` checked against the MXNet build (core/devices.py), else NST_CPU_DEVICES CPUs;
  each batch is split over them; gradients are aggregated through the kvstore (`device`, `local`,
  `dist_sync`, `dist_device_sync`) or, with `kv_store=horovod`, each process drives one device and
  Horovod averages the gradients;
- before anything is written: the folders, the run's lock, one run per name (core/runs.py); the
  log file is held back until the run has started;
- retrain=true: the checkpoint to resume, what a resume sets aside and warns of (core/resume.py);
- seeds: the set-up from `seed`, every epoch from (seed, epoch); the learning rate is set every
  step from the fractional epoch and the global step (core/schedule.py): a resumed run repeats
  exactly what an uninterrupted run does;
- AMP (`dtype`): float16 (GPU, dynamic loss scaling) or bfloat16 (CPU), before any network;
- every `frequent` steps the task's running means are read (a NaN/Inf term stops the run with
  `Diverged`, nothing of the epoch saved), the progress bar and TensorBoard updated;
- after every epoch: the parameters and optimizer state checked finite, the task's validation
  (under dist_* / Horovod the task sums the workers' counts), a JSON record in
  log_dir/<model_prefix>.jsonl, then an atomic checkpoint (rank 0) numbered epoch + 1, the best
  epoch by the task's `best_metric` kept as <prefix>-best. A validation that fails keeps the
  epoch's checkpoint (without its result) and then says why.

Epochs are counted from 1 wherever a user reads them (logs, progress bars, messages: epoch N is
the one checkpoint N holds); the records keep the 0-based index `epoch` (records of epoch N have
`"epoch": N - 1`), as they always had.
"""
import contextlib
import logging
import os
import re
import sys
import time

import mxnet as mx
from mxnet import autograd, gluon

from . import checkpoint, interrupt, monitor, resume, runs, schedule, workers
from .devices import contexts
from .project import working_folder
from .errors import Diverged, NonFiniteLoss, RunError
from .records import append_record
from .runlog import setup_logging, teardown_logging, release_log_file
from .seeding import seed_everything, epoch_seed

LOG = logging.getLogger('train')


def progress_bar(total, desc, enabled):
    """A tqdm bar on stderr (`enabled` false: one that shows nothing)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


# Operators without inputs (random draws, constants) in MXNet 1.9.1's bfloat16 list of operators cast
# to float32: AMP's symbol wrapper casts an operator's inputs and fails on one that has none
# ("'NoneType' object is not iterable", e.g. gluoncv's Faster R-CNN sampler, F.random.uniform). Their
# outputs are float32 already, so they are left out of that list.
INPUTLESS = re.compile(r'^(_random_(?!.*_like$).*|_zeros|_zeros_without_dtype|_ones|_full|_arange|_linspace|_eye)$')


def init_amp(dtype):
    """MXNet AMP for `dtype`: float16 (GPU, with dynamic loss scaling) or bfloat16 (CPU). It must be
    initialised before any network is built; returns the amp module."""
    from mxnet.contrib import amp
    if dtype == 'bfloat16':
        from mxnet.contrib.amp.lists import symbol_bf16
        amp.init(target_dtype=dtype, fp32_ops=[op for op in symbol_bf16.FP32_FUNCS if not INPUTLESS.match(op)])
    else:
        amp.init(target_dtype=dtype)
    return amp


def optimized(params):
    """{name: Parameter} of `params` (a dict or ParameterDict) the optimizer updates: without the
    parameters marked `for_statistics_only`, whose gradient only makes a BatchNorm's backward run
    (`symbols.common.keep_statistics_running`)."""
    return {n: p for n, p in params.items() if not getattr(p, 'for_statistics_only', False)}


class Engine(object):
    """Everything one training run holds besides its task: devices, workers, optimizer, schedule."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.kv, self.hvd = None, None
        self.aside = None          # the folder a resume set checkpoints aside in (runs.move_aside)
        self.rank, self.workers = 0, 1
        kv_store = cfg.get('kv_store', 'device')
        if kv_store == 'horovod':
            import horovod.mxnet as hvd
            hvd.init()
            self.hvd, self.rank, self.workers = hvd, hvd.rank(), hvd.size()
        elif kv_store.startswith('dist'):
            from .env import wait_for_scheduler
            problem = wait_for_scheduler()
            if problem:
                raise RunError(problem)
            self.kv = mx.kv.create(kv_store)
            self.rank, self.workers = self.kv.rank, self.kv.num_workers
        self.ctx = contexts(cfg, self.hvd.local_rank() if self.hvd else None)
        self.batch_size = cfg.get('batch_size', 1) * len(self.ctx)          # per worker
        self.global_batch = self.batch_size * self.workers
        # Trainer.step rescales by 1/batch: Horovod averages the gradients over the workers
        # itself, the kvstore sums them
        self.step_batch = self.batch_size if self.hvd else self.global_batch
        self.monitor = monitor.create(cfg, self.rank)                # TensorBoard scalars (tensorboard=true)
        self.amp = None
        self.task = None
        self.show_progress = cfg.progress and self.rank == 0
        self.sums = workers.WorkerSums(self.kv, self.hvd)
        self.statistics = []                # the BatchNorm running statistics, averaged every epoch

    # ----------------------------------------------------------------- services to tasks
    def progress(self, total, desc):
        """A progress bar for a long loop of the task (validation), shown on rank 0 with progress=true."""
        return progress_bar(total, desc, self.show_progress)

    def worker_sum(self):
        """A function that sums a (SUM_LENGTH,) NDArray of counts over the workers (None for one worker):
        every worker must call it at the same point."""
        if not self.sums.distributed:
            return None
        return lambda counts: self.sums.sum('validation', counts)

    # ----------------------------------------------------------------- set-up
    def prepare(self, task_cls):
        cfg = self.cfg
        if cfg.get('dtype', 'float32') != 'float32':
            self.amp = init_amp(cfg.dtype)
        task = self.task = task_cls(cfg, self)
        task.prepare()
        self.steps_per_epoch = task.steps_per_epoch
        seed_everything(cfg.seed)
        params = optimized(task.build())
        name, opt = task.optimizer()
        if self.amp is not None:
            opt['multi_precision'] = True
        if self.hvd is not None:
            self.trainer = self.hvd.DistributedTrainer(params, name, opt)
        else:
            kw = {'update_on_kvstore': False} if self.kv else {}
            self.trainer = gluon.Trainer(params, name, opt, kvstore=self.kv or 'device', **kw)
        if self.amp is not None:
            self.amp.init_trainer(self.trainer)
        net, extra = task.saved_blocks()
        self.statistics = workers.statistics_of([net, extra])
        # every worker registers its sums in the same order, before training
        self.sums.register('validation', workers.SUM_LENGTH)
        self.sums.register('train', workers.TRAIN_FIGURES + 1)
        length = workers.statistics_length(self.statistics)
        if self.statistics and length is None:
            if len(self.ctx) > 1 or self.workers > 1:      # (a backbone whose shapes are known at its first step)
                LOG.warning('the BatchNorm running statistics of %s are not averaged over the devices and workers: '
                            'their shapes are not known before training; each device keeps its own, and the '
                            'checkpoint holds the first device\'s (of rank 0)' % cfg.get('network'))
            self.statistics = []
        if self.statistics:
            self.sums.register('statistics', length)
        self.lr_at = schedule.from_config(cfg)
        self.begin_epoch = cfg.begin_epoch if cfg.get('begin_epoch') is not None else 0
        self.best = None                       # best validation metric so far (restored by resume.resume)
        self.resumed = bool(cfg.retrain)
        self.jsonl = os.path.join(cfg.log_dir, '%s.jsonl' % cfg.model_prefix)
        if cfg.retrain:
            resume.resume(self)
        if self.hvd is not None:      # every worker starts from rank 0's parameters
            self.hvd.broadcast_parameters(params, root_rank=0)

    @contextlib.contextmanager
    def keys_left_to_first_step(self):
        """Within the `with` (a checkpoint's optimizer state loading), the trainer initialises no key of
        a parameter-server kvstore: they are left to the first step (`_init_kvstore_keys`).

        Gluon's `Trainer.load_states` also initialises the kvstore: on a `dist_*` store rank 0 pushes
        every parameter to the servers. On CPU, a network whose last forward ran outside training (the
        task's shape check) holds its convolution weights in oneDNN's inference layout, which that push
        cannot read ("We can't generate TBlob for MKLDNN data", in an engine thread): the key is never
        stored and the other workers' pull aborts the server ("init N first"). A training forward puts
        the weights back in the default layout, so the keys are initialised at the first step, as in a
        run that starts afresh (every worker then takes rank 0's parameters, as it would have here).
        Parameters without a gradient (BatchNorm's running statistics) get no key then: every worker
        loaded the same."""
        trainer = self.trainer
        if self.kv is None:
            yield
            return
        pending, trainer._params_to_init = trainer._params_to_init, []
        try:
            yield
        finally:
            trainer._params_to_init = [p for p in pending if p.grad_req != 'null'] + trainer._params_to_init

    def _init_kvstore_keys(self):
        """Initialise the parameter server's keys of the trainer's parameters (rank 0's values, pulled by
        every worker) and wait until every worker has them, before the first gradients are pushed.
        Gluon does it inside the first `Trainer.step`, where a worker's pull of a key's initial value
        raced with that step's gradient push: once the servers had summed the gradients, the pull
        returned the sum as the parameter (one worker's copy of a layer then went its own way, or every
        worker started from gradients). Called after the first training forward, which puts oneDNN's
        convolution weights back in the layout the push reads."""
        trainer = self.trainer
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        if trainer._params_to_init:
            trainer._init_params()
            mx.nd.waitall()

    # --------------------------------------------------------------- training
    def train_epoch(self, epoch):
        try:
            return self._train_epoch(epoch)
        except NonFiniteLoss as e:
            raise NonFiniteLoss(e.term, e.step, epoch, e.fix)

    def _train_epoch(self, epoch):
        cfg, task = self.cfg, self.task
        seed_everything(epoch_seed(cfg.seed, epoch))
        task.set_epoch(epoch)
        steps = self.steps_per_epoch
        bar = progress_bar(steps, 'epoch %d' % (epoch + 1), self.show_progress)
        tic, seen, done = time.time(), 0, 0
        try:
            for i, batch in enumerate(task.batches(epoch)):
                if i >= steps:
                    break
                self.trainer.set_learning_rate(self.lr_at(epoch + i / float(steps), epoch * steps + i))
                with autograd.record():
                    losses, out = task.forward(batch)
                if self.amp is not None and cfg.dtype == 'float16':
                    with self.amp.scale_loss(losses, self.trainer) as scaled:
                        autograd.backward(scaled)
                else:
                    autograd.backward(losses)
                first = self.trainer._params_to_init or not self.trainer._kv_initialized
                if first:                           # (the first step; a parameter initialised late)
                    own = workers.own_copies(self.statistics)
                    if self.kv is not None:
                        self._init_kvstore_keys()
                self.trainer.step(self.step_batch)
                if first:
                    workers.restore_copies(self.statistics, own)
                task.after_step(i, out)
                seen += task.samples_per_step or self.batch_size
                done = i + 1
                if done % cfg.frequent == 0 or done == steps:
                    stats = task.read()
                    speed = seen / max(time.time() - tic, 1e-9)
                    post = task.progress_fields(stats)
                    post['img/s'] = '%.1f' % speed
                    bar.set_postfix(post, refresh=False)
                    self.monitor.step(epoch * steps + done, dict(
                        [kv for kv in stats.items() if kv[0] != 'n'], lr=self.trainer.learning_rate, img_per_s=speed))
                    bar.update(done - bar.n)
                    if not self.show_progress or done % (cfg.frequent * 10) == 0:
                        LOG.info('Epoch[%d] Batch [%d] Speed: %.1f samples/sec %s', epoch + 1, done, speed,
                                 ' '.join('%s=%s' % kv for kv in post.items() if kv[0] != 'img/s'))
        finally:
            bar.close()
        mx.nd.waitall()
        stats = workers.mean_over_workers(task.read(), self.sums)
        stats['time'] = time.time() - tic
        # the job's images and speed: every worker takes the same steps of the same batch
        stats['steps'], stats['images'] = done, seen * self.workers
        stats['speed'] = stats['images'] / max(stats['time'], 1e-9)
        return stats

    def _check_finite(self, epoch):
        """Stop (exit 3) before validating or saving an epoch whose parameters or optimizer state
        hold NaN/Inf: the loss is read every `frequent` steps, and updates after the last read can
        still diverge."""
        net, extra = self.task.saved_blocks()
        arrays = checkpoint.ndarrays(net.collect_params()) + checkpoint.optimizer_arrays(self.trainer)
        if extra is not None:
            arrays += checkpoint.ndarrays(extra.collect_params())
        mx.nd.waitall()
        if not checkpoint.all_finite(arrays):
            have = checkpoint.epochs(self.cfg.model_dir, self.cfg.model_prefix)
            raise Diverged('the parameters became NaN or Inf during epoch %d (after the last loss check); '
                           'nothing of epoch %d was saved. Last good checkpoint: %s. %s'
                           % (epoch + 1, epoch + 1, 'epoch %d' % have[-1] if have else 'none (no epoch was saved yet)',
                              self.task.diverged_fix[0].upper() + self.task.diverged_fix[1:]))

    def _save(self, epoch, meta, best=False):
        cfg = self.cfg
        net, extra = self.task.saved_blocks()
        meta = dict(meta, config=checkpoint.jsonable(cfg), best_metric=self.task.best_metric, cwd=working_folder(),
                    global_batch=self.global_batch)     # the run's configuration: tools read a checkpoint with it
        try:
            checkpoint.save(cfg.model_dir, cfg.model_prefix, epoch + 1, net, extra, self.trainer, meta, best=best)
        except checkpoint.NonFiniteCheckpoint as e:
            raise Diverged('%s: the training diverged; %s; every earlier checkpoint is kept'
                           % (e, self.task.diverged_fix))

    def fit(self):
        cfg, task = self.cfg, self.task
        task.start(self.resumed)
        LOG.info('%s', task.describe())
        result = {}
        steps = self.steps_per_epoch
        self.monitor.start(self.begin_epoch * steps)
        for epoch in range(self.begin_epoch, cfg.num_epoch):
            stats = self.train_epoch(epoch)
            self._check_finite(epoch)
            # validated and saved alike, whichever device or worker computed them
            workers.average_statistics(self.statistics, self.sums, self.workers)
            try:
                val = task.evaluate()
            except Exception as e:          # the epoch trained is kept (without its result), then the error as it is
                if self.rank == 0:
                    self._save(epoch, dict(task.checkpoint_meta({'epoch': epoch}), epoch=epoch,
                                           model_prefix=cfg.model_prefix, **{task.best_key: self.best}))
                    LOG.warning('validating epoch %d failed (%s); the epoch is checkpointed without its validation: '
                                'resume with retrain=true once the cause is fixed', epoch + 1, type(e).__name__)
                raise
            with interrupt.deferred():       # a validated epoch is recorded and checkpointed whole
                record = {'epoch': epoch, 'lr': self.trainer.learning_rate, 'time': stats['time'],
                          'speed': stats['speed'], 'steps': stats['steps'], 'images': stats['images']}
                record.update(('train_' + k, v) for k, v in stats.items()
                              if k not in ('n', 'time', 'speed', 'steps', 'images'))
                record.update(val)
                # what the run is, for the tables of its records: its network and, distilled, its teacher and methods
                teacher = (os.path.basename(str(cfg.get('teacher_prefix') or '')) or cfg.get('teacher_network')) \
                    if cfg.get('kt') else None
                record.update((k, v) for k, v in (('network', cfg.get('network')), ('teacher', teacher),
                                                  ('kt_type', cfg.get('kt_type') if cfg.get('kt') else None)) if v)
                record['model_dir'] = os.path.abspath(cfg.model_dir)      # whose records these are
                record['num_epoch'] = cfg.num_epoch                       # (a table tells finished runs by it)
                score = val[task.best_metric]
                # (a NaN score is never the best)
                best = score == score and (self.best is None or self.best != self.best or score > self.best)
                if best:
                    self.best = score
                record[task.best_key] = self.best
                if self.rank == 0:     # (the figures are the workers' together: one line for the job)
                    LOG.info('%s', task.epoch_line(epoch + 1, stats, val) + (' (best)' if best else ''))
                    # The record goes first: a run killed before its checkpoint repeats the epoch and writes
                    # the record again; readers keep the last record of each epoch. A record that cannot be
                    # written (a full disk) is reported, and the checkpoint is still attempted.
                    try:
                        append_record(self.jsonl, dict(record, model_prefix=cfg.model_prefix))
                    except OSError as e:
                        LOG.warning('could not write the record of epoch %d to %s (%s); writing the checkpoint',
                                    epoch + 1, self.jsonl, e.strerror or e)
                    self.monitor.epoch((epoch + 1) * steps, record)
                    meta = dict(record, model_prefix=cfg.model_prefix, seed=cfg.seed, **task.checkpoint_meta(record))
                    self._save(epoch, meta, best=best)
            result = record
        return result


def operator_threads(n):
    """Set the OpenMP threads of the operators this thread runs: 1 for deterministic=true (several
    threads add partial sums in varying order in some backward passes, bilinear resizing and adaptive
    pooling among them, so two runs would differ in the last bits; NaiveEngine runs the operators in
    this thread), the configured count (OMP_NUM_THREADS) again after the run."""
    import ctypes
    mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(int(n)))


def _nothing_to_train(cfg):
    """Whether the checkpoint a resume loads (model_load_prefix at model_load_epoch, -1 its latest)
    is at or past num_epoch, so that the run has no epoch to train."""
    if not cfg.retrain or not cfg.get('model_load_epoch'):
        return False                    # (model_load_epoch=0 with retrain=true: refused when resuming)
    have = checkpoint.epochs(cfg.model_dir, cfg.model_load_prefix)
    epoch = cfg.model_load_epoch if cfg.model_load_epoch > 0 else max(have, default=0)
    return epoch in have and epoch >= cfg.num_epoch


# what an MXNetError of a Horovod collective says when another rank has stopped: Horovod shut down, or
# (the other rank gone before that) its Gloo connection closed
HOROVOD_GONE = ('Horovod has been shut down', 'Connection reset by peer', 'Connection closed by peer')

# The parameter-server kvstores of runs that stopped early, kept until the process ends: freeing one
# shuts ps-lite down, which waits at a barrier for the other workers while they wait for this one
# (train.py ends such a worker with os._exit, and tools.launch stops the rest of the job).
UNFINISHED_KVSTORES = []


def run(cfg, task_cls):
    """Train run `cfg.model_prefix` as configured with the task `task_cls`; return the last epoch's
    record ({} when the run was already at num_epoch; None on the workers of a distributed job other
    than rank 0, which reports for the job)."""
    if cfg.get('deterministic'):
        # The engine is created at the first operation, so this still takes effect here.
        os.environ['MXNET_ENGINE_TYPE'] = 'NaiveEngine'
        operator_threads(1)
    elif cfg.get('kv_store') == 'horovod' and not cfg.gpu_list:
        # Horovod's collectives on CPU arrays that oneDNN computed, under MXNet's threaded engine,
        # exchange mismatched buffers (gloo: 'op.preamble.length <= op.nbytes') and abort a rank: such a
        # run computes without oneDNN unless the user says otherwise (read at the first operation too)
        os.environ.setdefault('MXNET_MKLDNN_ENABLED', '0')
    engine = Engine(cfg)
    setup_logging(cfg, engine.rank, to_file=False)           # the log file is the run's: claimed first
    lock = log_lock = None
    created = runs.missing_folders([cfg.model_dir, cfg.log_dir]) if engine.rank == 0 else []
    started = finished = False
    try:
        if engine.rank == 0:
            # before anything is written: the folders, one run per name, no run overwritten by mistake
            # (the longest names: a checkpoint's temporary extra params, the records' rewind copy)
            checkpoint.ensure_writable(cfg.model_dir, longest=os.path.basename(checkpoint.temporary_name(
                checkpoint.paths(cfg.model_dir, cfg.model_prefix, 'best')['extra'])) + '0000000')
            checkpoint.ensure_writable(cfg.log_dir, 'log_dir', longest='.%s.jsonl.tmp-00000000000' % cfg.model_prefix)
            lock = runs.RunLock(cfg.model_dir, cfg.model_prefix).acquire()
            if not runs.same_folder(cfg.log_dir, cfg.model_dir):
                # (two runs of one name in other model_dirs would write the same records and log)
                log_lock = runs.RunLock(cfg.log_dir, cfg.model_prefix).acquire()
            runs.clear_leftovers(cfg.model_dir, cfg.log_dir, cfg.model_prefix)
            make_room = runs.claim(cfg, defer=True)
        setup_logging(cfg, engine.rank, hold=True)         # no log file for a run that cannot start
        LOG.info('config: %s', getattr(cfg, 'source', None) or 'given by the caller')
        if _nothing_to_train(cfg):
            finished = True
            return {} if engine.rank == 0 else None      # (neither its data nor its teacher is read)
        for text in list(getattr(cfg, 'notes', [])) + task_cls.warnings(cfg):
            LOG.warning('%s', text)
        engine.prepare(task_cls)
        if engine.rank == 0:
            make_room()                 # overwrite=true: the old run goes aside only now that this one can start
        release_log_file()
        started = True
        record = engine.fit()
        finished = True
        return record if engine.rank == 0 else None
    except NonFiniteLoss as e:
        raise Diverged(str(e))          # nothing of the failing epoch was checkpointed
    except mx.base.MXNetError as e:
        if engine.hvd is not None and any(m in str(e) for m in HOROVOD_GONE):
            raise RunError('the Horovod job was shut down while this rank (%d of %d) trained: another rank stopped or '
                           'failed (its own message is above, prefixed with its number); every finished epoch is '
                           'checkpointed' % (engine.rank, engine.workers), resume=True) from None
        raise
    finally:
        if not finished and engine.kv is not None:
            UNFINISHED_KVSTORES.append(engine.kv)
        engine.task = None              # the task (its data: temporary files, decoding workers) goes now
        engine.monitor.close()
        teardown_logging()
        if log_lock is not None:
            log_lock.release()
        if lock is not None:
            lock.release()
        if cfg.get('deterministic'):
            operator_threads(os.environ.get('OMP_NUM_THREADS') or 1)
        if not started:
            runs.remove_if_empty(created)           # model_dir / log_dir this run created for nothing


__all__ = ['run', 'Engine', 'progress_bar']
