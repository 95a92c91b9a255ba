"""The extension points the docs describe: a new network is a HybridBlock that declares its taps
plus one `NETWORKS` line; a new method is one loss block plus one registered `Method` that declares
its options and stages. Both then train through train.py unchanged, the method's options are config
keys with their checks, and its stage runs before epoch 0."""
import json
from collections import OrderedDict

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn, HybridBlock

import symbols
import train
from symbols import transfer
from tests.helpers import make_cifar, tiny_train_args

pytestmark = pytest.mark.slow


class TinyNet(HybridBlock):
    """conv-BN (the pre-ReLU tap 'body_pre') -> ReLU ('body') -> pool -> dense."""
    TAPS = OrderedDict([('body_pre', 'bn'), ('body', 'relu')])

    def __init__(self, num_classes, in_channels=3, width=8, **kwargs):
        super(TinyNet, self).__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(width, 3, strides=2, padding=1, in_channels=in_channels)
            self.bn = nn.BatchNorm()
            self.relu = nn.Activation('relu')
            self.pool = nn.GlobalAvgPool2D()
            self.output = nn.Dense(num_classes)

    def hybrid_forward(self, F, x):
        return self.output(self.pool(self.relu(self.bn(self.conv(x)))))


class CosineLoss(transfer.ShapedLoss):
    """1 - cos(s, t) of the flattened maps, per sample (equal shapes: a connector maps s to t);
    `eps` keeps the norm of a zero map away from 0."""

    def __init__(self, eps=1e-12, **kwargs):
        super(CosineLoss, self).__init__(**kwargs)
        self.eps = eps

    def finish_stage(self, name):
        self.finished = name

    def _configure(self, shapes):
        if shapes[0] != shapes[1]:
            raise transfer.PairingError('cosine needs equal shapes, got %s and %s' % shapes)

    def hybrid_forward(self, F, s, t):
        s, t = F.flatten(s), F.flatten(F.stop_gradient(t))
        dot = F.sum(s * t, axis=1)
        return 1 - dot / F.sqrt(F.sum(s * s, axis=1) * F.sum(t * t, axis=1) + self.eps)


def test_new_network_and_new_method_train_through_train_py(tmp_path, monkeypatch):
    monkeypatch.setitem(symbols.NETWORKS, 'tinynet', (lambda nc, ic, **kw: TinyNet(nc, ic, **kw), 32))
    cos = transfer.Method(
        'cos', 'feature', 1.0, lambda o: CosineLoss(o['cos_eps']), 'a test of the registry', connector=True,
        stages=(transfer.Stage('cos_init', 'student', 2, None, lambda loss: loss),),
        options=[transfer.Option('cos_eps', 1e-12, 'cosine: added to the product of the norms', min=0, strict=True),
                 transfer.Option('cos_init_epochs', None, 'cosine: epochs of its stage; null: 2', type='int', min=0,
                                 optional=True),
                 transfer.Option('cos_init_lr', None, 'cosine: lr of its stage; null: the run\'s', min=0,
                                 strict=True, optional=True)])
    monkeypatch.setitem(transfer.METHODS, 'cos', cos)

    net = symbols.get_network('tinynet', 10, prefix='x_')
    assert symbols.tap_names(net) == ['body_pre', 'body']
    net.initialize()
    logits, body = symbols.with_taps(net, ['body'])(mx.nd.ones((2, 3, 32, 32)))
    assert logits.shape == (2, 10) and body.shape == (2, 8, 16, 16)
    x = mx.nd.random.normal(shape=(3, 4, 5, 5))
    np.testing.assert_allclose(CosineLoss()(x, x).asnumpy(), 0, atol=1e-6)

    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=32, test=16)
    common = tiny_train_args(tmp_path, tmp_path / 'cifar')
    assert train.main(common + ['network=tinynet', 'model_prefix=teacher', 'kt=false']) == 0
    assert train.main(common + ['network=tinynet', 'model_prefix=student', 'kt=true', 'kt_type=kd+cos',
                                'teacher_prefix=%s' % (tmp_path / 'model' / 'teacher'), 'teacher_epoch=1',
                                'teacher_symbol=[null, body_pre]', 'student_symbol=[null, body]']) == 0
    with open(str(tmp_path / 'log' / 'student.jsonl')) as f:
        rec = json.loads(f.readlines()[-1])
    assert np.isfinite(rec['train_cos']) and rec['train_cos'] > 0
    log = open(str(tmp_path / 'log' / 'student.log')).read()
    assert 'stage cos_init of cos: 2 epoch(s)' in log and 'stage cos_init epoch 2/2' in log
    # its options are config keys, with their checks and defaults; the stage's keys override it
    from config import load_config
    from config.checks import ConfigError
    assert load_config(None, ['cos_eps=0.5'], check_data=False).cos_eps == 0.5
    assert load_config(None, [], check_data=False).cos_eps == 1e-12
    with pytest.raises(ConfigError, match="config key 'cos_eps'.*cosine: added to the product"):
        load_config(None, ['cos_eps=-1'], check_data=False)
    assert train.main(common + ['network=tinynet', 'model_prefix=student1', 'kt=true', 'kt_type=cos',
                                'teacher_prefix=%s' % (tmp_path / 'model' / 'teacher'), 'teacher_epoch=1',
                                'teacher_symbol=body_pre', 'student_symbol=body', 'cos_init_epochs=1']) == 0
    assert 'stage cos_init of cos: 1 epoch(s)' in open(str(tmp_path / 'log' / 'student1.log')).read()
