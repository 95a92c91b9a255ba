"""Networks with named feature taps, and the transfer losses.

`get_network(name, num_classes, in_channels=3, prefix=None)` builds an
uninitialised HybridBlock; `tap_names(net)` lists its taps; `with_taps(net,
taps)` maps `x -> (logits, tap_1, ..., tap_n)` sharing `net`'s parameters;
`load_legacy(prefix, epoch, taps)` does the same for a legacy MXNet Module
checkpoint.
"""
import re
from collections import OrderedDict

import core.compat  # noqa: F401  (before mxnet: what it needs from older numpy/Python)
from mxnet.gluon import HybridBlock

from .common import count_parameters, keep_statistics_running, Tap
from .taps import tap_names, with_taps, TapError, TappedNetwork, LegacyNetwork, resolve_tap
from .legacy import load_legacy, load_legacy_network, latest_legacy_epoch, CheckpointError


def _cifar_resnet(depth):
    def make(num_classes, in_channels, **kw):
        from .cifar_resnet import cifar_resnet
        return cifar_resnet(depth, num_classes, in_channels, **kw)
    return make


def _preact_cifar(depth):
    def make(num_classes, in_channels, **kw):
        from .preact_cifar import preact_resnet_cifar
        return preact_resnet_cifar(depth, num_classes, in_channels, **kw)
    return make


def _preact_imagenet(depth):
    def make(num_classes, in_channels, **kw):
        from .zoo import preact_resnet
        return preact_resnet(depth, num_classes, in_channels, **kw)
    return make


def _v1b(variant):
    def make(num_classes, in_channels, **kw):
        from .zoo import gluoncv_resnet_v1b
        return gluoncv_resnet_v1b(variant, num_classes, in_channels, **kw)
    return make


def _pyramid(depth, alpha, bottleneck):
    def make(num_classes, in_channels, **kw):
        from .pyramidnet import pyramidnet
        return pyramidnet(depth, alpha, bottleneck, num_classes, in_channels, **kw)
    return make


def _inception(small):
    def make(num_classes, in_channels, **kw):
        from .inception_bn import inception_bn, inception_bn_small
        return (inception_bn_small if small else inception_bn)(num_classes, in_channels, **kw)
    return make


def _mobilenet(num_classes, in_channels, **kw):
    from .zoo import mobilenet
    return mobilenet(1.0, num_classes, in_channels, **kw)


# name -> (factory(num_classes, in_channels, **kw), native input size)
NETWORKS = OrderedDict()
NETWORKS['inception_bn'] = (_inception(False), 224)
NETWORKS['inception_bn_small'] = (_inception(True), 32)
for _d in (18, 34, 50, 101, 152):
    NETWORKS['preact_resnet%d' % _d] = (_preact_imagenet(_d), 224)
for _d in (164, 1001):
    NETWORKS['preact_resnet%d' % _d] = (_preact_cifar(_d), 32)
NETWORKS['resnet50_nst'] = (_v1b('resnet50_v1s'), 224)
for _d in (8, 14, 20, 32, 44, 56, 110):
    NETWORKS['cifar_resnet%d' % _d] = (_cifar_resnet(_d), 32)
NETWORKS['pyramidnet110'] = (_pyramid(110, 84, False), 32)
NETWORKS['pyramidnet200'] = (_pyramid(200, 240, True), 32)
NETWORKS['resnet50'] = (_v1b('resnet50_v1b'), 224)
NETWORKS['resnet152'] = (_v1b('resnet152_v1b'), 224)
NETWORKS['mobilenet1.0'] = (_mobilenet, 224)
WRN_PATTERN = re.compile(r'^wrn(\d+)_(\d+)$')
FAMILIES = ('preact_resnet', 'cifar_resnet', 'pyramidnet')


def network_names():
    """All fixed network names (plus the pattern ``wrn{depth}_{width}``)."""
    return list(NETWORKS) + ['wrn{depth}_{width}']


def resolve_name(network, depth=None):
    """Map the config's `network` (+ `depth`) to a registered name.

    ``network='preact_resnet', depth=101`` -> ``'preact_resnet101'``; a full
    name is returned as is. Unknown names raise ValueError listing the choices.
    """
    if network in NETWORKS or WRN_PATTERN.match(network):
        return network
    if depth is not None and network in FAMILIES and '%s%d' % (network, depth) in NETWORKS:
        return '%s%d' % (network, depth)
    raise ValueError('unknown network %r%s. Available: %s' % (
        network, '' if depth is None else ' (depth %s)' % depth, ', '.join(network_names())))


def input_size(name):
    """The network's native input side (32 for CIFAR networks, 224 for ImageNet)."""
    if WRN_PATTERN.match(name):
        return 32
    return NETWORKS[resolve_name(name)][1]


class NameScope(HybridBlock):
    """A name scope holder: networks built inside get the holder's prefix."""


def get_network(name, num_classes, in_channels=3, prefix=None, **kwargs):
    """Build network `name` (uninitialised) for `num_classes` classes.

    `prefix` puts every parameter name under it ('teacher_', 'student_'), so
    two networks of one family can live side by side. Extra keyword arguments
    go to the factory (e.g. ``norm_layer``, ``dropout`` for WRN).
    """
    name = resolve_name(name)
    m = WRN_PATTERN.match(name)
    if m:
        from .preact_cifar import wide_resnet
        factory = lambda nc, ic, **kw: wide_resnet(int(m.group(1)), int(m.group(2)), nc, ic, **kw)
    else:
        factory = NETWORKS[name][0]
    if prefix is None:
        net = factory(num_classes, in_channels, **kwargs)
    else:
        holder = NameScope(prefix=prefix)
        with holder.name_scope():
            net = factory(num_classes, in_channels, **kwargs)
    keep_statistics_running(net)
    net.network_name = name
    return net


__all__ = ['get_network', 'NameScope', 'tap_names', 'with_taps', 'load_legacy', 'load_legacy_network', 'latest_legacy_epoch',
           'count_parameters', 'network_names', 'resolve_name', 'input_size', 'TapError',
           'CheckpointError', 'TappedNetwork', 'LegacyNetwork', 'Tap', 'resolve_tap']
