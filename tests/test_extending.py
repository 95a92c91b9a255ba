"""The extension points the README documents: a new network is a HybridBlock
that declares its taps plus one `NETWORKS` line; a new method is one loss block
plus one `METHODS` line. Both then train through train.py unchanged."""
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
    """1 - cos(s, t) of the flattened maps, per sample (equal shapes: a connector maps s to t)."""

    def _configure(self, shapes):
        if shapes[0] != shapes[1]:
            raise transfer.PairingError('cosine needs equal shapes, got %s and %s' % shapes)

    def hybrid_forward(self, F, s, t):
        s, t = F.flatten(s), F.flatten(F.stop_gradient(t))
        dot = F.sum(s * t, axis=1)
        return 1 - dot / F.sqrt(F.sum(s * s, axis=1) * F.sum(t * t, axis=1) + 1e-12)


def test_new_network_and_new_method_train_through_train_py(tmp_path, monkeypatch):
    monkeypatch.setitem(symbols.NETWORKS, 'tinynet', (lambda nc, ic, **kw: TinyNet(nc, ic, **kw), 32))
    monkeypatch.setitem(transfer.METHODS, 'cos',
                        transfer.Method('cos', 'feature', True, False, 1.0, lambda cfg: CosineLoss()))

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
