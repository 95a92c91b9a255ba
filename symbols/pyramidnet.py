"""PyramidNet (Han et al. 2017) for 32x32 inputs.

Channels grow by alpha / (3N) every unit (N units a stage, N = (d-2)/6 for
basic units, (d-2)/9 for bottlenecks), rounded per unit. Units:
basic BN-conv3x3-BN-ReLU-conv3x3-BN, bottleneck BN-conv1x1-BN-ReLU-conv3x3-
BN-ReLU-conv1x1(x4)-BN. Shortcuts: 2x2 average pooling where the unit
downsamples, then zero channels up to the unit's width. Stem: conv3x3(16)-BN;
head: BN-ReLU-global pool-FC.

Taps (input 32x32): ``stage1``/``stage2``/``stage3``: the stage sums (no ReLU
follows them inside the network); ``stage1_pre`` and ``stage2_pre`` are the
same sums, ``stage3_pre`` the final BN (pre-ReLU), ``stage3_relu`` its ReLU;
``pool``: the pooled feature.
"""
from collections import OrderedDict

from mxnet.gluon import nn, HybridBlock

from .common import add_preact_head, batch_norm, conv1x1, conv3x3, zero_pad_channels


class PyramidUnit(HybridBlock):
    def __init__(self, in_channels, width, strides, bottleneck, norm_layer=None, **kwargs):
        super(PyramidUnit, self).__init__(**kwargs)
        self.in_channels = in_channels
        self.out_channels = width * (4 if bottleneck else 1)
        self.strides = strides
        with self.name_scope():
            body = nn.HybridSequential(prefix='')
            if bottleneck:
                body.add(batch_norm(norm_layer), conv1x1(width, 1, in_channels),
                         batch_norm(norm_layer), nn.Activation('relu'),
                         conv3x3(width, strides, width),
                         batch_norm(norm_layer), nn.Activation('relu'),
                         conv1x1(self.out_channels, 1, width), batch_norm(norm_layer))
            else:
                body.add(batch_norm(norm_layer), conv3x3(width, strides, in_channels),
                         batch_norm(norm_layer), nn.Activation('relu'),
                         conv3x3(width, 1, width), batch_norm(norm_layer))
            self.body = body
            self.down = nn.AvgPool2D(2, 2, ceil_mode=True) if strides > 1 else None

    def hybrid_forward(self, F, x):
        shortcut = self.down(x) if self.down is not None else x
        shortcut = zero_pad_channels(F, shortcut, self.out_channels - self.in_channels, self.in_channels)
        return self.body(x) + shortcut


class PyramidNet(HybridBlock):
    def __init__(self, depth, alpha, bottleneck, num_classes=10, in_channels=3,
                 norm_layer=None, **kwargs):
        super(PyramidNet, self).__init__(**kwargs)
        per = 9 if bottleneck else 6
        if (depth - 2) % per:
            raise ValueError('PyramidNet depth must be %dn+2, got %d' % (per, depth))
        n = (depth - 2) // per
        step = float(alpha) / (3 * n)
        taps = OrderedDict()
        with self.name_scope():
            self.conv1 = conv3x3(16, 1, in_channels)
            self.bn0 = batch_norm(norm_layer)
            dim, prev = 16.0, 16
            for s in range(3):
                stage = nn.HybridSequential(prefix='stage%d_' % (s + 1))
                with stage.name_scope():
                    for i in range(n):
                        dim += step
                        unit = PyramidUnit(prev, int(round(dim)), 2 if (i == 0 and s > 0) else 1,
                                           bottleneck, norm_layer)
                        stage.add(unit)
                        prev = unit.out_channels
                setattr(self, 'stage%d' % (s + 1), stage)
            add_preact_head(self, num_classes, prev, norm_layer)
        last_bn = 'body.%d' % (8 if bottleneck else 5)
        for s in range(3):
            taps['stage%d' % (s + 1)] = 'stage%d' % (s + 1)
        taps['stage1_pre'], taps['stage2_pre'] = 'stage1', 'stage2'
        taps['stage3_pre'], taps['stage3_relu'] = 'bn1', 'relu1'
        taps['pool'] = 'flatten'
        self.TAPS = taps
        self.TAP_BN = OrderedDict([('stage1_pre', 'stage1.%d.%s' % (n - 1, last_bn)),
                                   ('stage2_pre', 'stage2.%d.%s' % (n - 1, last_bn)),
                                   ('stage3_pre', 'bn1')])

    def hybrid_forward(self, F, x):
        x = self.stage3(self.stage2(self.stage1(self.bn0(self.conv1(x)))))
        return self.output(self.flatten(self.pool(self.relu1(self.bn1(x)))))


def pyramidnet(depth, alpha, bottleneck, num_classes=10, in_channels=3, **kwargs):
    return PyramidNet(depth, alpha, bottleneck, num_classes, in_channels, **kwargs)
