"""The engine (core/engine.py) with a third, toy task written against the task interface only
(core/task.py): least-squares regression on generated data. Without touching the engine it gets
checkpoints, the best epoch, records, TensorBoard, exact resume and the run lock."""
import glob
import os

import numpy as np
import pytest

import core.compat  # noqa: F401
import mxnet as mx
from mxnet import gluon, nd

from config import Config
from core import checkpoint, engine, runs
from core.errors import RunError
from core.records import read_records
from core.task import Task

pytestmark = pytest.mark.slow


class RegressionTask(Task):
    """y = x.w + noise, x (B, 8): a Dense(1) trained on the squared error; validation score
    -MSE (higher is better)."""
    name = 'regression'
    best_metric = 'val_score'
    best_key = 'best_score'

    def prepare(self):
        rng = np.random.RandomState(7)
        w = rng.randn(8, 1)
        self.x = rng.randn(64, 8).astype('float32')
        self.y = (self.x.dot(w) + 0.1 * rng.randn(64, 1)).astype('float32')
        self.steps_per_epoch = 64 // self.engine.batch_size
        self.samples_per_step = self.engine.batch_size

    def build(self):
        self.net = gluon.nn.Dense(1, in_units=8, prefix='reg_')
        self.net.initialize(mx.init.Normal(0.1), ctx=self.engine.ctx)
        return self.net.collect_params()

    def saved_blocks(self):
        return self.net, None

    def set_epoch(self, epoch):
        self.sum, self.n = nd.zeros((1,)), 0

    def batches(self, epoch):
        order = np.random.permutation(64)              # seeded by the engine from (seed, epoch)
        b = self.engine.batch_size
        for i in range(0, 64, b):
            yield nd.array(self.x[order[i:i + b]]), nd.array(self.y[order[i:i + b]])

    def forward(self, batch):
        x, y = batch
        loss = ((self.net(x) - y) ** 2).mean(axis=1)
        return [loss], loss

    def after_step(self, step, loss):
        self.sum += loss.sum()
        self.n += loss.shape[0]

    def read(self):
        return {'mse': float(self.sum.asscalar()) / max(self.n, 1)}

    def evaluate(self):
        mse = float(((self.net(nd.array(self.x)) - nd.array(self.y)) ** 2).mean().asscalar())
        return {'val_score': -mse}


def config(root, **changes):
    values = dict(model_prefix='reg', model_dir=str(root / 'model'), log_dir=str(root / 'log'), gpu_list=[],
                  kv_store='device', batch_size=16, progress=False, tensorboard=True, dtype='float32', seed=3,
                  deterministic=True, optimizer='sgd', lr=0.02, wd=0.0, momentum=0.5, lr_step=[2], lr_factor=0.5,
                  num_epoch=3, frequent=2, retrain=False, model_load_prefix=None, model_load_epoch=-1,
                  overwrite=False)
    values.update(changes)
    if values['model_load_prefix'] is None:
        values['model_load_prefix'] = values['model_prefix']
    return Config(values)


def params(root, prefix, epoch):
    return {k: v.asnumpy() for k, v in mx.nd.load(checkpoint.paths(str(root / 'model'), prefix, epoch)['params'])
            .items()}


def test_a_toy_task_gets_checkpoints_records_tensorboard_best_and_exact_resume(tmp_path):
    last = engine.run(config(tmp_path), RegressionTask)
    model = str(tmp_path / 'model')
    assert checkpoint.epochs(model, 'reg') == [1, 2, 3]
    records = read_records(str(tmp_path / 'log' / 'reg.jsonl'))
    assert [r['epoch'] for r in records] == [0, 1, 2] and dict(last, model_prefix='reg') == records[-1]
    assert records[-1]['val_score'] > records[0]['val_score'] and records[-1]['train_mse'] > 0
    assert [r['lr'] for r in records] == [0.02, 0.02, 0.01]             # lr_step at epoch 2
    best = max(range(3), key=lambda i: records[i]['val_score'])
    assert checkpoint.read_meta(model, 'reg', 'best')['epoch'] == best + 1
    assert records[-1]['best_score'] == max(r['val_score'] for r in records)
    assert glob.glob(str(tmp_path / 'log' / 'tensorboard' / 'reg' / 'events.out.tfevents.*'))
    assert 'epoch 3: val_score' in open(str(tmp_path / 'log' / 'reg.log')).read()
    # the same run in two pieces: bit-identical parameters and optimizer state
    engine.run(config(tmp_path, model_prefix='piece', num_epoch=2), RegressionTask)
    engine.run(config(tmp_path, model_prefix='piece', num_epoch=3, retrain=True), RegressionTask)
    for k, v in params(tmp_path, 'reg', 3).items():
        np.testing.assert_array_equal(v, params(tmp_path, 'piece', 3)[k], err_msg=k)
    assert open(checkpoint.paths(model, 'reg', 3)['states'], 'rb').read() == \
        open(checkpoint.paths(model, 'piece', 3)['states'], 'rb').read()
    assert engine.run(config(tmp_path, model_prefix='piece', num_epoch=3, retrain=True), RegressionTask) == {}


def test_a_toy_task_gets_the_run_rules_and_the_lock(tmp_path):
    engine.run(config(tmp_path, num_epoch=1), RegressionTask)
    with pytest.raises(RunError, match="run 'reg' already exists"):
        engine.run(config(tmp_path, num_epoch=1), RegressionTask)
    with runs.RunLock(str(tmp_path / 'model'), 'other'):
        with pytest.raises(RunError, match="run 'other' is already being trained by process %d" % os.getpid()):
            engine.run(config(tmp_path, model_prefix='other', num_epoch=1), RegressionTask)
    assert checkpoint.epochs(str(tmp_path / 'model'), 'other') == []


class NormalisedRegressionTask(RegressionTask):
    """The toy regression with a BatchNorm on its input, each batch split over the run's devices;
    it keeps the batches it trained on."""

    def build(self):
        self.net = gluon.nn.HybridSequential(prefix='norm_')
        with self.net.name_scope():
            self.net.add(gluon.nn.BatchNorm(in_channels=8), gluon.nn.Dense(1, in_units=8))
        self.net.initialize(mx.init.Normal(0.1), ctx=self.engine.ctx)
        self.trained_on = []
        return self.net.collect_params()

    def forward(self, batch):
        x, y = batch
        self.trained_on.append(x.asnumpy())
        losses = [((self.net(a) - b) ** 2).mean(axis=1) for a, b in zip(
            gluon.utils.split_and_load(x, self.engine.ctx), gluon.utils.split_and_load(y, self.engine.ctx))]
        return losses, losses[0]

    def after_step(self, step, loss):
        pass


def test_every_device_keeps_the_running_statistics_of_its_first_batch(tmp_path, monkeypatch):
    """#18's leftover (Horovod's rank 1 ended its first epoch with other statistics than one process's
    second device): Gluon's trainer initialises its kvstore at the first step, after the step's
    backward, and copied the first device's running statistics over every other device's (and rank
    0's over every worker's under dist_sync), so the other devices' first batches were lost. Averaged
    over the devices at the end of the epoch, the running mean is then the moving average of the
    whole batches' means."""
    monkeypatch.setenv('NST_CPU_DEVICES', '2')
    holder = {}

    class Task(NormalisedRegressionTask):
        def build(self):
            holder['task'] = self
            return super().build()
    engine.run(config(tmp_path, num_epoch=1, batch_size=8, tensorboard=False), Task)
    expected = np.zeros(8)
    for x in holder['task'].trained_on:             # 4 steps of 16 images, 8 on each device
        expected = 0.9 * expected + 0.1 * x.mean(axis=0)
    saved = params(tmp_path, 'reg', 1)
    assert len(holder['task'].trained_on) == 4
    np.testing.assert_allclose(saved['0.running_mean'], expected, rtol=1e-5, atol=1e-6)
