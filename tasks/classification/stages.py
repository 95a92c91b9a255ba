"""The training stages methods declare to run before the main training
(`symbols.transfer.Stage`: FT's paraphraser, AB's initialisation), run for any task whose
distillation block is a `DistillBlock` (classification, segmentation) without knowing any method.
The task is read through the engine's interface (`core.task.Task`): its `batches(epoch)`,
`forward(batch)` (one loss a device; the block gives the stage's loss while a stage is set),
`optimizer()`, `steps_per_epoch`, `step_batch`, `amp`, and its `block`, `loss_options` and `cfg`.

A new run runs every declared stage before epoch 0, in plan order: the distillation block
computes the stage's loss (`DistillBlock.set_stage`), and the run's optimizer (the task's
`optimizer()`) at the stage's constant learning rate trains what the stage
declares (`DistillBlock.stage_parameters`) for its epochs, `epoch_size` steps each when set,
on the training data; then the loss block's `finish_stage` freezes what must not change in the
main training. A resumed run only calls `finish_stage`: the stages' results (the student's
parameters and the loss's heads) are in the checkpoint. Each stage epoch reseeds MXNet, numpy
and the data order from (seed, stage, epoch), so a stage is repeatable.
"""
import logging
import time
import warnings

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd

from symbols.transfer import stage_settings

from core.engine import optimized
from core.errors import NonFiniteLoss

LOG = logging.getLogger('train')


class StageDiverged(NonFiniteLoss):
    """A stage's loss became NaN or Inf (nothing is saved before the main training)."""

    def __init__(self, stage, epoch, step, lr_key):
        self.term, self.step, self.epoch = stage, step, epoch
        FloatingPointError.__init__(self, 'the loss of stage %s became NaN or Inf at its epoch %d, step %d; nothing '
                                          'was saved. Lower its learning rate (%s) and start the run again'
                                    % (stage, epoch + 1, step + 1, lr_key))


def stage_seed(cfg, stage_index, epoch):
    """The seed of a stage epoch: apart from the main epochs' (`core.seeding.epoch_seed`)."""
    from core.seeding import epoch_seed
    return epoch_seed(cfg.seed, 50000 + 1000 * stage_index + epoch)


def run(session, resumed):
    """Run (or, when `resumed`, only finish) the stages of `session`'s plan; returns
    [(stage name, epochs run, last epoch's mean loss or None)]."""
    block, options = session.block, session.loss_options
    done = []
    for k, (m, stage) in enumerate(block.stages()):
        epochs, lr = stage_settings(stage, options)
        lr = session.cfg.lr if lr is None else lr
        loss = None
        if resumed:
            LOG.info('stage %s of %s: done before the checkpoint (its result was restored)', stage.name,
                     block.plan[m]['method'])
            epochs = 0
        elif epochs > 0:
            loss = _train(session, k, m, stage, epochs, lr)
        block.finish_stage(m, stage)
        done.append((stage.name, epochs, loss))
    return done


def _train(session, k, m, stage, epochs, lr):
    cfg, block = session.cfg, session.block
    method = block.plan[m]['method']
    params = optimized(block.stage_parameters(m, stage))
    LOG.info('stage %s of %s: %d epoch(s) at lr %g, training %d parameter arrays (%s)', stage.name, method,
             epochs, lr, len(params), 'the student up to its taps and the loss heads' if stage.trains == 'student'
             else 'the loss heads')
    name, options = session.optimizer()            # the run's optimizer, at the stage's constant lr
    trainer = gluon.Trainer(params, name, dict(options, learning_rate=lr), kvstore='device')
    scaled = session.amp is not None and cfg.dtype == 'float16'
    if session.amp is not None:
        session.amp.init_trainer(trainer)
    block.set_stage(m, stage)
    mean = None
    try:
        with warnings.catch_warnings():       # the stage's graph leaves the labels, maybe the data, and the
            warnings.filterwarnings('ignore', message='The .*-th input to HybridBlock is not used')   # parameters
            warnings.filterwarnings('ignore', message='Parameter .* is not used by any computation')  # of the rest
            for epoch in range(epochs):
                mean = _epoch(session, trainer, k, stage, epoch, epochs, scaled)
    finally:
        block.set_stage()
    return mean


def _epoch(session, trainer, k, stage, epoch, epochs, scaled):
    from core.seeding import seed_everything
    cfg = session.cfg
    seed_everything(stage_seed(cfg, k, epoch))
    tic, total, seen, pending = time.time(), 0.0, 0, []
    sums = None
    for i, batch in enumerate(session.batches(epoch)):
        if i >= session.steps_per_epoch:
            break
        with autograd.record():
            values, _ = session.forward(batch)
        if scaled:
            with session.amp.scale_loss(values, trainer) as scaled_values:
                autograd.backward(scaled_values)
        else:
            autograd.backward(values)
        trainer.step(session.step_batch)
        step_sum = nd.add_n(*[nd.sum(v).as_in_context(mx.cpu()) for v in values])
        pending.append((i, step_sum))
        sums = step_sum if sums is None else sums + step_sum
        seen += sum(v.shape[0] for v in values)
        if (i + 1) % cfg.frequent == 0 or i + 1 == session.steps_per_epoch:
            _check(pending, stage, epoch)
    _check(pending, stage, epoch)
    total = float(sums.asscalar()) if sums is not None else float('nan')
    mean = total / max(seen, 1)
    LOG.info('stage %s epoch %d/%d: loss %.6g (%d samples, %.1fs)', stage.name, epoch + 1, epochs, mean, seen,
             time.time() - tic)
    return mean


def _check(pending, stage, epoch):
    for step, value in pending:
        if not np.isfinite(value.asscalar()):
            raise StageDiverged(stage.name, epoch, step, stage.name + '_lr')
    del pending[:]
