"""Pre-activation networks for 32x32 inputs: WRN-d-k and ResNet-164/1001.

Both share one skeleton: a 3x3 conv of 16 filters, three stages of
pre-activation units (stride 2 at the start of stages 2 and 3), then
BN-ReLU-global pool-FC.

- WRN-d-k (Zagoruyko & Komodakis 2016): basic units BN-ReLU-conv3x3-BN-ReLU-
  conv3x3, widths 16k/32k/64k, (d-4)/6 units a stage.
- Pre-activation ResNet-164/1001 (He et al., Identity Mappings 2016):
  bottleneck units BN-ReLU-conv1x1(w)-BN-ReLU-conv3x3(w)-BN-ReLU-conv1x1(4w),
  w = 16/32/64, (d-2)/9 units a stage.

Shortcuts are identities, or a 1x1 projection of the pre-activated input
where the shape changes. Convolutions carry no bias.

Taps (input 32x32, C1..C3 the stage output channels):
``stage1`` (C1x32x32), ``stage2`` (C2x16x16), ``stage3`` (C3x8x8): the stage
sums; ``stageK_pre``: the BatchNorm that follows the stage (the next unit's
first BN; for stage 3 the final BN, ``bn1`` in the MXNet originals): the
pre-ReLU feature NST and OFD use; ``stageK_relu``: its ReLU; ``pool``: the
pooled feature (C3).
"""
from collections import OrderedDict

from mxnet.gluon import nn, HybridBlock

from .common import add_preact_head, batch_norm, conv1x1, conv3x3


class PreActBasic(HybridBlock):
    expansion = 1

    def __init__(self, in_channels, width, strides, dropout=0.0, norm_layer=None, **kwargs):
        super(PreActBasic, self).__init__(**kwargs)
        out = width * self.expansion
        self.project = strides != 1 or in_channels != out
        with self.name_scope():
            self.bn1 = batch_norm(norm_layer)
            self.relu1 = nn.Activation('relu')
            self.conv1 = conv3x3(width, strides, in_channels)
            self.bn2 = batch_norm(norm_layer)
            self.relu2 = nn.Activation('relu')
            self.drop = nn.Dropout(dropout) if dropout > 0 else None
            self.conv2 = conv3x3(width, 1, width)
            self.shortcut = conv1x1(out, strides, in_channels) if self.project else None

    def hybrid_forward(self, F, x):
        act = self.relu1(self.bn1(x))
        shortcut = self.shortcut(act) if self.project else x
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop is not None:
            out = self.drop(out)
        return self.conv2(out) + shortcut


class PreActBottleneck(HybridBlock):
    expansion = 4

    def __init__(self, in_channels, width, strides, dropout=0.0, norm_layer=None, **kwargs):
        super(PreActBottleneck, self).__init__(**kwargs)
        out = width * self.expansion
        self.project = strides != 1 or in_channels != out
        with self.name_scope():
            self.bn1 = batch_norm(norm_layer)
            self.relu1 = nn.Activation('relu')
            self.conv1 = conv1x1(width, 1, in_channels)
            self.bn2 = batch_norm(norm_layer)
            self.relu2 = nn.Activation('relu')
            self.conv2 = conv3x3(width, strides, width)
            self.bn3 = batch_norm(norm_layer)
            self.relu3 = nn.Activation('relu')
            self.conv3 = conv1x1(out, 1, width)
            self.shortcut = conv1x1(out, strides, in_channels) if self.project else None

    def hybrid_forward(self, F, x):
        act = self.relu1(self.bn1(x))
        shortcut = self.shortcut(act) if self.project else x
        out = self.relu2(self.bn2(self.conv1(act)))
        out = self.relu3(self.bn3(self.conv2(out)))
        return self.conv3(out) + shortcut


class PreActCIFARNet(HybridBlock):
    """Stem conv, three stages of `unit` (`units` each, widths `widths`), BN-ReLU-pool-FC."""

    def __init__(self, unit, units, widths, num_classes=10, in_channels=3, dropout=0.0,
                 norm_layer=None, **kwargs):
        super(PreActCIFARNet, self).__init__(**kwargs)
        taps = OrderedDict()
        with self.name_scope():
            self.conv1 = conv3x3(16, 1, in_channels)
            prev = 16
            for s, w in enumerate(widths):
                stage = nn.HybridSequential(prefix='stage%d_' % (s + 1))
                with stage.name_scope():
                    for i in range(units):
                        stage.add(unit(prev, w, 2 if (i == 0 and s > 0) else 1,
                                       dropout=dropout, norm_layer=norm_layer))
                        prev = w * unit.expansion
                setattr(self, 'stage%d' % (s + 1), stage)
            add_preact_head(self, num_classes, prev, norm_layer)
        for s in range(3):
            taps['stage%d' % (s + 1)] = 'stage%d' % (s + 1)
            if s < 2:
                taps['stage%d_pre' % (s + 1)] = 'stage%d.0.bn1' % (s + 2)
                taps['stage%d_relu' % (s + 1)] = 'stage%d.0.relu1' % (s + 2)
            else:
                taps['stage3_pre'], taps['stage3_relu'] = 'bn1', 'relu1'
        taps['bn1'] = 'bn1'
        taps['pool'] = 'flatten'
        self.TAPS = taps

    def hybrid_forward(self, F, x):
        x = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        return self.output(self.flatten(self.pool(self.relu1(self.bn1(x)))))


def wide_resnet(depth, width, num_classes=10, in_channels=3, **kwargs):
    if (depth - 4) % 6:
        raise ValueError('WRN depth must be 6n+4 (16, 22, 28, 40), got %d' % depth)
    return PreActCIFARNet(PreActBasic, (depth - 4) // 6, [16 * width, 32 * width, 64 * width],
                          num_classes, in_channels, **kwargs)


def preact_resnet_cifar(depth, num_classes=10, in_channels=3, **kwargs):
    if (depth - 2) % 9:
        raise ValueError('pre-activation bottleneck ResNet depth must be 9n+2 (164, 1001), got %d' % depth)
    return PreActCIFARNet(PreActBottleneck, (depth - 2) // 9, [16, 32, 64],
                          num_classes, in_channels, **kwargs)
