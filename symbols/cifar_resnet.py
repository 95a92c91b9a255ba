"""CIFAR ResNets (He et al. 2016, section 4.2): ResNet-20/32/44/56/110.

Post-activation basic blocks, widths 16/32/64, and "option B" shortcuts
(a 1x1 projection conv + BN where the shape changes, as in gluoncv's
CIFAR ResNets): 0.27M / 0.47M / 0.66M / 0.86M / 1.73M parameters on CIFAR-10.

Taps (input 32x32): ``stem`` (16x32x32), ``stage1`` (16x32x32),
``stage2`` (32x16x16), ``stage3`` (64x8x8): post-ReLU stage outputs;
``stageK_pre``: the same sums before the last ReLU of the stage;
``pool``: the pooled 64-d feature.
"""
from collections import OrderedDict

from mxnet.gluon import nn, HybridBlock

from .common import Tap, batch_norm, conv1x1, conv3x3


class BasicBlock(HybridBlock):
    """conv3x3-BN-ReLU-conv3x3-BN (+ shortcut) -> Tap `preact` -> ReLU."""

    def __init__(self, in_channels, channels, strides, norm_layer=None, **kwargs):
        super(BasicBlock, self).__init__(**kwargs)
        with self.name_scope():
            self.conv1 = conv3x3(channels, strides, in_channels)
            self.bn1 = batch_norm(norm_layer)
            self.relu1 = nn.Activation('relu')
            self.conv2 = conv3x3(channels, 1, channels)
            self.bn2 = batch_norm(norm_layer)
            if strides != 1 or in_channels != channels:
                self.down = nn.HybridSequential(prefix='down_')
                self.down.add(conv1x1(channels, strides, in_channels), batch_norm(norm_layer))
            else:
                self.down = None
            self.preact = Tap()
            self.relu2 = nn.Activation('relu')

    def hybrid_forward(self, F, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = self.down(x) if self.down is not None else x
        return self.relu2(self.preact(out + shortcut))


class CIFARResNet(HybridBlock):
    def __init__(self, depth, num_classes=10, in_channels=3, widths=(16, 32, 64),
                 norm_layer=None, **kwargs):
        super(CIFARResNet, self).__init__(**kwargs)
        if (depth - 2) % 6:
            raise ValueError('CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got %d' % depth)
        n = (depth - 2) // 6
        taps = OrderedDict()
        with self.name_scope():
            self.conv1 = conv3x3(widths[0], 1, in_channels)
            self.bn1 = batch_norm(norm_layer)
            self.relu1 = nn.Activation('relu')
            taps['stem'] = 'relu1'
            prev = widths[0]
            for s, width in enumerate(widths):
                stage = nn.HybridSequential(prefix='stage%d_' % (s + 1))
                with stage.name_scope():
                    for i in range(n):
                        stage.add(BasicBlock(prev, width, 2 if (i == 0 and s > 0) else 1, norm_layer))
                        prev = width
                setattr(self, 'stage%d' % (s + 1), stage)
                taps['stage%d' % (s + 1)] = 'stage%d' % (s + 1)
                taps['stage%d_pre' % (s + 1)] = 'stage%d.%d.preact' % (s + 1, n - 1)
            self.pool = nn.GlobalAvgPool2D()
            self.flatten = nn.Flatten()
            taps['pool'] = 'flatten'
            self.output = nn.Dense(num_classes, in_units=prev)
        self.TAPS = taps
        # BatchNorm whose affine parameters define each pre-ReLU tap (OFD margin).
        self.TAP_BN = OrderedDict(('stage%d_pre' % (s + 1), 'stage%d.%d.bn2' % (s + 1, n - 1))
                                  for s in range(len(widths)))
        self.num_stages = len(widths)

    def hybrid_forward(self, F, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        for s in range(self.num_stages):
            x = getattr(self, 'stage%d' % (s + 1))(x)
        return self.output(self.flatten(self.pool(x)))


def cifar_resnet(depth, num_classes=10, in_channels=3, **kwargs):
    return CIFARResNet(depth, num_classes, in_channels, **kwargs)
