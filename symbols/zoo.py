"""Networks taken from gluoncv's model zoo, with their taps declared.

gluoncv hard-codes some name prefixes (``resnetv1b_``); `symbols.get_network`
builds every network inside its own name scope, so a teacher and a student of
the same family do not collide.

- ``preact_resnet18/34/50/101/152``: gluoncv's ResNetV2 (pre-activation,
  input BatchNorm without affine parameters), so gluoncv's ``resnet*_v2``
  weights load into them. Taps (224 input; C = 512 for 18/34, 2048 else):
  ``stem`` (64x112x112), ``pool1`` (64x56x56), ``stage1`` .. ``stage4``
  (stage sums; stage4 Cx7x7), ``bn1`` (the final BatchNorm before the last
  ReLU, as the original ResNet-101 teacher's ``bn1``), ``relu1``, ``pool`` (C).
- ``resnet50``, ``resnet152``: gluoncv ``resnet*_v1b``; ``resnet50_nst``:
  gluoncv ``resnet50_v1s``, i.e. ResNet-50 with the 7x7 stem replaced by three
  3x3 convolutions (64, 64, 128) and stride 2 in the bottleneck's 3x3, the
  modified ResNet-50 of the NST code base (SENet paper, appendix B). Taps:
  ``stem``, ``layer1`` .. ``layer4`` (post-ReLU; layer4 2048x7x7),
  ``layerK_pre`` (the last unit's sum before its ReLU), ``pool`` (2048).
- ``mobilenet1.0``: gluoncv MobileNet 1.0. Taps: ``features_pre`` (the last
  BatchNorm, 1024x7x7), ``features`` (its ReLU), ``pool`` (1024).
"""
from collections import OrderedDict

PREACT_DEPTHS = (18, 34, 50, 101, 152)


def preact_resnet(depth, num_classes=1000, in_channels=3, norm_layer=None, **kwargs):
    from gluoncv.model_zoo.resnet import get_resnet
    if depth not in PREACT_DEPTHS:
        raise ValueError('ImageNet pre-activation ResNet depth must be one of %s, got %d'
                         % (PREACT_DEPTHS, depth))
    extra = {'norm_layer': norm_layer} if norm_layer is not None else {}
    net = get_resnet(2, depth, classes=num_classes, **extra)
    net.TAPS = OrderedDict([('stem', 'features.3'), ('pool1', 'features.4'),
                            ('stage1', 'features.5'), ('stage2', 'features.6'),
                            ('stage3', 'features.7'), ('stage4', 'features.8'),
                            ('bn1', 'features.9'), ('relu1', 'features.10'),
                            ('pool', 'features.12')])
    # a pre-activation stage's pre-ReLU response (OFD's "BN before ReLU"): the BatchNorm that the next
    # stage's first block applies to it; the last stage's is the final bn1
    for k in range(1, 4):
        net.TAPS['stage%d_pre' % k] = 'features.%d.0.bn1' % (5 + k)
    net.TAPS['stage4_pre'] = 'features.9'
    return net


def _v1b_taps(net):
    taps = OrderedDict([('stem', 'relu')])
    for k in range(1, 5):
        layer = getattr(net, 'layer%d' % k)
        taps['layer%d' % k] = 'layer%d' % k
        taps['layer%d_pre' % k] = 'layer%d.%d.relu3:in' % (k, len(layer) - 1)
    taps['pool'] = 'flat'
    return taps


def gluoncv_resnet_v1b(variant, num_classes=1000, in_channels=3, norm_layer=None, **kwargs):
    from gluoncv.model_zoo import get_model
    extra = {'norm_layer': norm_layer} if norm_layer is not None else {}
    net = get_model(variant, classes=num_classes, pretrained=False, **extra)
    net.TAPS = _v1b_taps(net)
    net.TAP_BN = OrderedDict(('layer%d_pre' % k, 'layer%d.%d.bn3' % (k, len(getattr(net, 'layer%d' % k)) - 1))
                             for k in range(1, 5))
    return net


def mobilenet(multiplier=1.0, num_classes=1000, in_channels=3, norm_layer=None, **kwargs):
    from gluoncv.model_zoo import get_model
    net = get_model('mobilenet%s' % multiplier, classes=num_classes, pretrained=False)
    n = len(net.features)
    net.TAPS = OrderedDict([('features_pre', 'features.%d' % (n - 4)),
                            ('features', 'features.%d' % (n - 3)),
                            ('pool', 'features.%d' % (n - 1))])
    return net
