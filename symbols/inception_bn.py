"""Inception-BN (Ioffe & Szegedy 2015) as in the NST code base, and the small
Inception-BN the NST paper uses on CIFAR.

Every convolution is followed by a BatchNorm (eps 2e-5, momentum 0.9, learned
gamma); convolutions keep their bias as in the MXNet originals. Each inception
block concatenates the BatchNorm outputs of its branches, marks the
concatenation with a pre-ReLU tap ``<block>_bn`` and applies one ReLU (the
same values as the original's per-branch ReLUs before the concat).

`inception_bn` (224x224 input) puts a BatchNorm with fixed gamma on the raw
input instead of mean/std normalisation. Taps: ``bn_data``, ``conv1``,
``pool1``, ``conv2``, ``pool2`` (192x27x27), ``in3a`` (256x27x27), ``in3b``
(320x27x27), ``in3c`` (576x14x14), ``in4a``/``in4b`` (576x14x14),
``in4c``/``in4d`` (608x14x14), ``in4e`` (1056x7x7), ``in5a``, ``in5b``
(1024x7x7), each with ``_bn`` for its pre-ReLU concatenation (``in5b_bn`` is
the feature the original NST code transfers), ``pool`` (1024).

`inception_bn_small` (32x32 input): 3x3 stem of 96 filters, simple blocks
(1x1 ‖ 3x3) and downsample blocks (3x3 stride-2 conv ‖ 3x3 stride-2 max
pool). Taps: ``conv1`` (96x32x32), ``in3a``, ``in3b``, ``in3c`` (160x16x16),
``in4a`` .. ``in4e`` (240x8x8), ``in5a``, ``in5b`` (336x8x8), each simple
block with its ``_bn`` pre-ReLU tap, ``pool`` (336).
"""
from collections import OrderedDict

from mxnet.gluon import nn, HybridBlock

from .common import Tap, batch_norm


def conv_bn(channels, kernel, strides=1, padding=0, relu=True, norm_layer=None):
    """Convolution (with bias) + BatchNorm (+ ReLU)."""
    seq = nn.HybridSequential(prefix='')
    seq.add(nn.Conv2D(channels, kernel, strides, padding), batch_norm(norm_layer))
    if relu:
        seq.add(nn.Activation('relu'))
    return seq


class Branches(HybridBlock):
    """Run branches on one input, concatenate them, tap (`preact`), ReLU."""

    def __init__(self, branches, **kwargs):
        super(Branches, self).__init__(**kwargs)
        with self.name_scope():
            self.branches = nn.HybridSequential(prefix='')
            for b in branches:
                self.branches.add(b)
            self.preact = Tap()
            self.relu = nn.Activation('relu')

    def hybrid_forward(self, F, x):
        outs = [b(x) for b in self.branches._children.values()]
        return self.relu(self.preact(F.concat(*outs, dim=1)))


def _seq(*layers):
    seq = nn.HybridSequential(prefix='')
    seq.add(*layers)
    return seq


def inception_a(n1x1, n3x3red, n3x3, nd3x3red, nd3x3, pool, proj, norm_layer=None, prefix=None):
    Pool = nn.AvgPool2D if pool == 'avg' else nn.MaxPool2D
    return Branches([
        conv_bn(n1x1, 1, relu=False, norm_layer=norm_layer),
        _seq(conv_bn(n3x3red, 1, norm_layer=norm_layer),
             conv_bn(n3x3, 3, padding=1, relu=False, norm_layer=norm_layer)),
        _seq(conv_bn(nd3x3red, 1, norm_layer=norm_layer),
             conv_bn(nd3x3, 3, padding=1, norm_layer=norm_layer),
             conv_bn(nd3x3, 3, padding=1, relu=False, norm_layer=norm_layer)),
        _seq(Pool(3, 1, 1), conv_bn(proj, 1, relu=False, norm_layer=norm_layer)),
    ], prefix=prefix)


def inception_b(n3x3red, n3x3, nd3x3red, nd3x3, norm_layer=None, prefix=None):
    return Branches([
        _seq(conv_bn(n3x3red, 1, norm_layer=norm_layer),
             conv_bn(n3x3, 3, 2, 1, relu=False, norm_layer=norm_layer)),
        _seq(conv_bn(nd3x3red, 1, norm_layer=norm_layer),
             conv_bn(nd3x3, 3, 1, 1, norm_layer=norm_layer),
             conv_bn(nd3x3, 3, 2, 1, relu=False, norm_layer=norm_layer)),
        nn.MaxPool2D(3, 2, 1),
    ], prefix=prefix)


def simple_block(n1x1, n3x3, norm_layer=None, prefix=None):
    return Branches([conv_bn(n1x1, 1, relu=False, norm_layer=norm_layer),
                     conv_bn(n3x3, 3, 1, 1, relu=False, norm_layer=norm_layer)], prefix=prefix)


def downsample_block(n3x3, norm_layer=None, prefix=None):
    return Branches([conv_bn(n3x3, 3, 2, 1, relu=False, norm_layer=norm_layer),
                     nn.MaxPool2D(3, 2, 1)], prefix=prefix)


class InceptionBN(HybridBlock):
    """Stem layers and inception blocks as named children, then pool + FC."""

    def __init__(self, stem, blocks, num_classes, **kwargs):
        super(InceptionBN, self).__init__(**kwargs)
        taps = OrderedDict()
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='')
            with self.features.name_scope():
                for name, make in stem + blocks:
                    self.features.add(make(name + '_'))
            self.pool = nn.GlobalAvgPool2D()
            self.flatten = nn.Flatten()
            self.output = nn.Dense(num_classes)
        for i, (name, _) in enumerate(stem + blocks):
            taps[name] = 'features.%d' % i
            if isinstance(self.features[i], Branches):
                taps[name + '_bn'] = 'features.%d.preact' % i
        taps['pool'] = 'flatten'
        self.TAPS = taps

    def hybrid_forward(self, F, x):
        return self.output(self.flatten(self.pool(self.features(x))))


def inception_bn(num_classes=1000, in_channels=3, norm_layer=None, **kwargs):
    nl = norm_layer
    stem = [
        ('bn_data', lambda p: batch_norm(nl, scale=False, prefix=p)),
        ('conv1', lambda p: conv_bn(64, 7, 2, 3, norm_layer=nl)),
        ('pool1', lambda p: nn.MaxPool2D(3, 2, prefix=p)),
        ('conv2', lambda p: _seq(conv_bn(64, 1, norm_layer=nl), conv_bn(192, 3, 1, 1, norm_layer=nl))),
        ('pool2', lambda p: nn.MaxPool2D(3, 2, prefix=p)),
    ]
    spec_a = {'in3a': (64, 64, 64, 64, 96, 'avg', 32), 'in3b': (64, 64, 96, 64, 96, 'avg', 64),
              'in4a': (224, 64, 96, 96, 128, 'avg', 128), 'in4b': (192, 96, 128, 96, 128, 'avg', 128),
              'in4c': (160, 128, 160, 128, 160, 'avg', 128), 'in4d': (96, 128, 192, 160, 192, 'avg', 128),
              'in5a': (352, 192, 320, 160, 224, 'avg', 128), 'in5b': (352, 192, 320, 192, 224, 'max', 128)}
    spec_b = {'in3c': (128, 160, 64, 96), 'in4e': (128, 192, 192, 256)}
    order = ['in3a', 'in3b', 'in3c', 'in4a', 'in4b', 'in4c', 'in4d', 'in4e', 'in5a', 'in5b']
    blocks = [(n, (lambda p, n=n: inception_a(*spec_a[n], norm_layer=nl, prefix=p)) if n in spec_a
               else (lambda p, n=n: inception_b(*spec_b[n], norm_layer=nl, prefix=p))) for n in order]
    return InceptionBN(stem, blocks, num_classes, **kwargs)


def inception_bn_small(num_classes=10, in_channels=3, norm_layer=None, **kwargs):
    nl = norm_layer
    stem = [('conv1', lambda p: conv_bn(96, 3, 1, 1, norm_layer=nl))]
    spec = [('in3a', (32, 32)), ('in3b', (32, 48)), ('in3c', 80), ('in4a', (112, 48)),
            ('in4b', (96, 64)), ('in4c', (80, 80)), ('in4d', (48, 96)), ('in4e', 96),
            ('in5a', (176, 160)), ('in5b', (176, 160))]
    blocks = [(n, (lambda p, s=s: simple_block(*s, norm_layer=nl, prefix=p)) if isinstance(s, tuple)
               else (lambda p, s=s: downsample_block(s, norm_layer=nl, prefix=p))) for n, s in spec]
    return InceptionBN(stem, blocks, num_classes, **kwargs)

