"""DeepLab segmentation networks on a backbone of this project, split by TAP NAMES (as detection
splits one, symbols/detection.py).

A backbone gives two taps (`SegSplit`): `low`, a stride-4 map (DeepLabV3+'s decoder reads it), and
`high`, its last feature map (stride 32 as built). Where the split comes from, first match wins:
the config key `seg_taps`, the network's own `SEGMENTATION_SPLIT = (low, high)` attribute, then
`SEGMENTATION_SPLITS` below by network name. The backbone's forward chain (its top-level children,
a `features` Sequential counting as its items) runs up to the `high` tap's child; the layers past
`output_stride` run with dilation instead of stride (`dilate`), so `high` has stride 16 or 8.

Heads (Chen et al.): DeepLabV3, ASPP -> 3x3 conv -> 1x1 classifier at the output stride;
DeepLabV3+, ASPP upsampled to the `low` map's size, concatenated with a 48-channel 1x1 projection
of `low`, two 3x3 convs, classifier at stride 4. Either way the class scores are bilinearly
resized to the input: `SegNet(x)` -> (B, K, H, W).

A `SegNet` declares its taps by name for distillation: `low`, `high` (the backbone's maps),
`aspp` (the head's ASPP output), `logits` (the class scores before the final resize), and every
tap of the backbone's own as `backbone.<tap>`.
"""
import re
from collections import OrderedDict, namedtuple

import mxnet as mx
from mxnet import nd
from mxnet.gluon import nn, HybridBlock

from .common import batch_norm
from .taps import TapError, chain_position, declared_taps, forward_chain

SegSplit = namedtuple('SegSplit', 'low high')

SEGMENTATION_SPLITS = OrderedDict([
    # gluoncv ResNetV2 (pre-activation): stage1 at stride 4; the final BN + ReLU after stage4
    (r'^preact_resnet(18|34|50|101|152)$', SegSplit('stage1', 'relu1')),
    # gluoncv ResNetV1b/V1s
    (r'^(resnet50|resnet152|resnet50_nst)$', SegSplit('layer1', 'layer4')),
])
TRACE_SIZE = 64                # the side of the zero image `dilate` traces strides on
ASPP_RATES = (6, 12, 18)       # at output stride 16 (doubled at 8), DeepLabV3


class SegmentationNetworkError(TapError):
    """A backbone that cannot be a segmentation backbone as asked (no split, a chain the taps are
    not on, an output stride it cannot reach); says why and what to do."""


def segmentation_networks():
    """The names of the networks with a split in SEGMENTATION_SPLITS (the families, as patterns)."""
    return list(SEGMENTATION_SPLITS)


def segmentation_split(name, net=None, override=None):
    """The SegSplit of network `name` (see the module doc for the order of sources)."""
    if override:
        return SegSplit(*override)
    own = getattr(net, 'SEGMENTATION_SPLIT', None)
    if own:
        return SegSplit(*own)
    for pattern, split in SEGMENTATION_SPLITS.items():
        if re.match(pattern, name or ''):
            return split
    raise SegmentationNetworkError(
        'network %s has no segmentation split (a stride-4 tap and its last feature map): give seg_taps=[LOW, HIGH] '
        '(its taps: %s), or use one of %s' % (name, ', '.join(declared_taps(net)) if net is not None else '?',
                                              ', '.join(p.strip('^$') for p in SEGMENTATION_SPLITS)))


def _position(chain, net, tap, role):
    found = chain_position(chain, net, tap)
    if found is not None:
        return found
    name = getattr(net, 'network_name', type(net).__name__)
    raise SegmentationNetworkError('tap %r (the %s tap of the segmentation split) of network %s is not one of its '
                                   'top-level forward steps %s; its taps: %s'
                                   % (tap, role, name, [p for p, _ in chain], ', '.join(declared_taps(net))))


def _walk(block):
    yield block
    for c in block._children.values():
        yield from _walk(c)


def _trace(net, run, in_channels):
    """[(block, input side, output side)] of every Conv2D and pooling layer of `net` in the order
    `run(x)` calls them, on a zero TRACE_SIZE image (parameters initialised)."""
    records, hooks = [], []
    for blk in _walk(net):
        if isinstance(blk, (nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D)):
            hooks.append(blk.register_forward_hook(
                lambda b, i, o: records.append((b, i[0].shape[2], o.shape[2]))))
    try:
        run(nd.zeros((1, in_channels, TRACE_SIZE, TRACE_SIZE)))
    finally:
        for h in hooks:
            h.detach()
    seen, out = set(), []
    for b, i, o in records:
        if id(b) not in seen:
            seen.add(id(b))
            out.append((b, i, o))
    return out


def dilate(net, run, output_stride, in_channels=3):
    """Make the layers of `net` past `output_stride` run with dilation instead of stride, as
    torchvision's replace_stride_with_dilation does: a layer whose input had stride s > OS (as
    built) keeps the resolution of stride OS, its 3x3 convolutions dilated by s / OS, and a layer
    that went past OS loses its stride (its own dilation from its input's stride). `run(x)` is
    the forward to trace (the part of `net` the segmentation network uses). Returns the output
    stride reached as built; SegmentationNetworkError for a layer this cannot keep aligned (a
    pooling window that is not 'same'-padded, a convolution without 'same' padding)."""
    reached = 1
    for block, side_in, side_out in _trace(net, run, in_channels):
        s_in, s_out = TRACE_SIZE // max(side_in, 1), TRACE_SIZE // max(side_out, 1)
        reached = max(reached, s_out)
        if s_out <= output_stride:
            continue
        kw = block._kwargs
        kernel = kw.get('kernel', (1, 1))
        if isinstance(block, nn.Conv2D):
            rate = max(1, s_in // output_stride)
            pad = tuple(kw.get('pad', (0, 0)))
            if any(k > 1 for k in kernel) and tuple(pad) != tuple(((k - 1) * kw.get('dilate', (1, 1))[0]) // 2
                                                                  for k in kernel):
                raise SegmentationNetworkError('a %sx%s convolution past output stride %d has no "same" padding '
                                               '(%s): this network cannot be dilated' % (kernel[0], kernel[1],
                                                                                          output_stride, pad))
            kw['stride'] = (1, 1)
            if any(k > 1 for k in kernel):
                kw['dilate'] = (rate, rate)
                kw['pad'] = tuple(rate * (k - 1) // 2 for k in kernel)
        else:
            if kw.get('global_pool'):
                continue
            pad = tuple(kw.get('pad', (0, 0)))
            if tuple(pad) != tuple((k - 1) // 2 for k in kernel) or any(k % 2 == 0 for k in kernel):
                raise SegmentationNetworkError('a %sx%s pooling (padding %s) past output stride %d cannot keep the '
                                               'map\'s size at stride 1: this network cannot run at output stride '
                                               '%d' % (kernel[0], kernel[1], pad, output_stride, output_stride))
            kw['stride'] = (1, 1)
    for blk in _walk(net):
        blk._clear_cached_op()
    return reached


class ConvBNReLU(HybridBlock):
    def __init__(self, channels, kernel, dilation=1, norm_layer=None, **kwargs):
        super(ConvBNReLU, self).__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                                  use_bias=False)
            self.bn = batch_norm(norm_layer)

    def hybrid_forward(self, F, x):
        return F.relu(self.bn(self.conv(x)))


class ImagePooling(HybridBlock):
    """ASPP's image-level branch: global average -> 1x1 conv + BN + ReLU -> back to the map's size."""

    def __init__(self, channels, norm_layer=None, **kwargs):
        super(ImagePooling, self).__init__(**kwargs)
        with self.name_scope():
            self.proj = ConvBNReLU(channels, 1, norm_layer=norm_layer)

    def hybrid_forward(self, F, x):
        pooled = self.proj(F.contrib.AdaptiveAvgPooling2D(x, output_size=1))
        return F.broadcast_like(pooled, x, lhs_axes=(2, 3), rhs_axes=(2, 3))


class ASPP(HybridBlock):
    """Atrous spatial pyramid pooling: a 1x1 conv, three 3x3 atrous convs (`rates`) and image
    pooling, each `channels` wide, concatenated and projected to `channels` (1x1 conv, BN, ReLU)."""

    def __init__(self, channels=256, rates=ASPP_RATES, norm_layer=None, **kwargs):
        super(ASPP, self).__init__(**kwargs)
        with self.name_scope():
            self.branches = nn.HybridSequential(prefix='branch_')     # (a list: each branch reads x)
            with self.branches.name_scope():
                self.branches.add(ConvBNReLU(channels, 1, norm_layer=norm_layer))
                for r in rates:
                    self.branches.add(ConvBNReLU(channels, 3, dilation=r, norm_layer=norm_layer))
                self.branches.add(ImagePooling(channels, norm_layer=norm_layer))
            self.project = ConvBNReLU(channels, 1, norm_layer=norm_layer)

    def hybrid_forward(self, F, x):
        return self.project(F.concat(*[branch(x) for branch in self.branches._children.values()], dim=1))


class DeepLabV3Head(HybridBlock):
    """ASPP -> 3x3 conv + BN + ReLU -> 1x1 classifier: class scores at the backbone's output stride."""
    low_level = False

    def __init__(self, num_classes, channels=256, rates=ASPP_RATES, norm_layer=None, **kwargs):
        super(DeepLabV3Head, self).__init__(**kwargs)
        with self.name_scope():
            self.aspp = ASPP(channels, rates, norm_layer)
            self.block = ConvBNReLU(channels, 3, norm_layer=norm_layer)
            self.classifier = nn.Conv2D(num_classes, 1)

    def hybrid_forward(self, F, high, low=None):
        return self.classifier(self.block(self.aspp(high)))


class DeepLabV3PlusHead(HybridBlock):
    """ASPP, resized to the low-level map, concatenated with its 48-channel 1x1 projection, two
    3x3 convs + BN + ReLU, 1x1 classifier: class scores at stride 4."""
    low_level = True

    def __init__(self, num_classes, channels=256, rates=ASPP_RATES, norm_layer=None, **kwargs):
        super(DeepLabV3PlusHead, self).__init__(**kwargs)
        with self.name_scope():
            self.aspp = ASPP(channels, rates, norm_layer)
            self.reduce = ConvBNReLU(48, 1, norm_layer=norm_layer)
            self.fuse = nn.HybridSequential(prefix='fuse_')
            with self.fuse.name_scope():
                self.fuse.add(ConvBNReLU(channels, 3, norm_layer=norm_layer),
                              ConvBNReLU(channels, 3, norm_layer=norm_layer))
            self.classifier = nn.Conv2D(num_classes, 1)

    def hybrid_forward(self, F, high, low):
        up = F.contrib.BilinearResize2D(self.aspp(high), like=low, mode='like')
        return self.classifier(self.fuse(F.concat(up, self.reduce(low), dim=1)))


HEADS = {'deeplabv3': DeepLabV3Head, 'deeplabv3+': DeepLabV3PlusHead}


def _drop_unused(backbone, used):
    """Remove the backbone's forward steps that are not in `used` (paths of `forward_chain`): the
    classifier and the global pooling, which a segmentation network never runs."""
    for name in list(backbone._children):
        child = backbone._children[name]
        if name == 'features' and isinstance(child, (nn.HybridSequential, nn.Sequential)):
            keys = list(child._children)
            for i, key in enumerate(keys):
                if 'features.%d' % i not in used:
                    del child._children[key]
        elif name not in used:
            del backbone._children[name]


class SegNet(HybridBlock):
    """`x` (B, C, H, W) -> class scores (B, K, H, W): the backbone's chain up to its `high` tap,
    a DeepLab head, a bilinear resize to the input. Build with `build_segmentation_network`."""

    def __init__(self, backbone, split, head, **kwargs):
        super(SegNet, self).__init__(**kwargs)
        chain = forward_chain(backbone)
        i_low, low_path = _position(chain, backbone, split.low, 'low')
        i_high, high_path = _position(chain, backbone, split.high, 'high')
        if i_high <= i_low:
            raise SegmentationNetworkError('the high tap %r comes before the low tap %r in the chain: give '
                                           'seg_taps=[LOW, HIGH] in that order' % (split.high, split.low))
        self._paths = [p for p, _ in chain[:i_high + 1]]
        _drop_unused(backbone, set(self._paths))  # the classifier and the pooling past `high`: no parameters unused
        self.i_low = i_low
        self.split = split
        self.backbone = backbone                   # registered child: the backbone's parameters are ours
        self.head = head
        taps = OrderedDict([('low', 'backbone.' + low_path), ('high', 'backbone.' + high_path),
                            ('aspp', 'head.aspp'), ('logits', 'head.classifier')])
        used = {p for p, _ in chain[:i_high + 1]}
        for tap, path in declared_taps(backbone).items():
            step = path.split(':')[0]
            if step in used or any(step.startswith(u + '.') for u in used):     # a step, or a block inside one
                taps['backbone.' + tap] = 'backbone.' + path
        self.TAPS = taps

    def steps(self):
        """The backbone's forward steps up to its `high` tap, in order."""
        out = []
        for path in self._paths:
            block = self.backbone
            for part in path.split('.'):
                block = block._children[part]
            out.append(block)
        return out

    def features(self, x):
        """(low, high) maps of the backbone."""
        low = None
        for i, block in enumerate(self.steps()):
            x = block(x)
            if i == self.i_low:
                low = x
        return low, x

    def hybrid_forward(self, F, x):
        low, high = self.features(x)
        scores = self.head(high, low) if self.head.low_level else self.head(high)
        return F.contrib.BilinearResize2D(scores, like=x, mode='like')


def build_segmentation_network(backbone_name, num_classes, head='deeplabv3+', output_stride=16, in_channels=3,
                               split=None, channels=256, prefix=None, ctx=None):
    """(SegNet, output stride the backbone reached as built): backbone `backbone_name` of this project
    (initialised on `ctx`, dilated to `output_stride`) under a DeepLab `head` ('deeplabv3',
    'deeplabv3+') for `num_classes` classes; the head is initialised too. SegmentationNetworkError
    when the backbone has no split or cannot run at that output stride."""
    import symbols
    ctx = ctx or [mx.cpu()]
    holder = symbols.NameScope(prefix=prefix or 'seg_')
    with holder.name_scope():
        backbone = symbols.get_network(backbone_name, 1000, in_channels)
        split = segmentation_split(backbone_name, backbone, split)
        rates = tuple(r * 16 // output_stride for r in ASPP_RATES)
        net = SegNet(backbone, split, HEADS[head](num_classes, channels, rates), prefix='segnet_')
    backbone.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2), ctx=ctx)

    def run(x):
        return net.features(x.as_in_context(ctx[0]))
    as_built = _trace_stride(net, run, in_channels, ctx)
    if as_built < output_stride:
        raise SegmentationNetworkError('network %s reaches only output stride %d at its %r tap, below the requested '
                                       'output_stride=%d (16 or 8): give seg_taps a HIGH tap of stride 8 or more, '
                                       'or use a backbone that downsamples further (%s)' % (
                                           backbone_name, as_built, split.high, output_stride,
                                                                     ', '.join(p.strip('^$') for p in
                                                                               SEGMENTATION_SPLITS)))
    dilate(backbone, run, output_stride, in_channels)
    reached = _trace_stride(net, run, in_channels, ctx)
    if reached != output_stride:
        raise SegmentationNetworkError('network %s runs at output stride %d after dilation, not %d: its layers past '
                                       'the stride cannot be dilated this way' % (backbone_name, reached,
                                                                                  output_stride))
    low_stride = TRACE_SIZE // net.features(nd.zeros((1, in_channels, TRACE_SIZE, TRACE_SIZE), ctx=ctx[0]))[0].shape[2]
    if head == 'deeplabv3+' and low_stride != 4:
        raise SegmentationNetworkError('the low tap %r of network %s has stride %d; DeepLabV3+ reads a stride-4 map: '
                                       'give seg_taps=[LOW, HIGH] with a stride-4 LOW' % (split.low, backbone_name,
                                                                                          low_stride))
    net.head.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2), ctx=ctx)
    net(nd.zeros((1, in_channels, TRACE_SIZE, TRACE_SIZE), ctx=ctx[0]))        # the head's shapes, from a forward
    net.network_name = backbone_name
    return net, as_built


def _trace_stride(net, run, in_channels, ctx):
    _, high = run(nd.zeros((1, in_channels, TRACE_SIZE, TRACE_SIZE), ctx=ctx[0]))
    return TRACE_SIZE // high.shape[2]


def used_parameters(net):
    """{name: Parameter} of `net` (a SegNet) that its forward reads: the backbone's classifier and
    anything past the high tap are left out (they would get no gradient)."""
    out = net(mx.sym.var('data'))
    names = set(out.list_arguments()) | set(out.list_auxiliary_states())
    return {n: p for n, p in net.collect_params().items() if n in names}


# gluoncv's DeepLabV3 on a dilated ResNet v1s (output stride 8) as a teacher: name -> its dataset
GLUONCV_TEACHER = re.compile(r'^deeplab_resnet(50|101|152)_(voc|ade|coco|citys)$')
GLUONCV_DATASETS = {'voc': 'pascal_voc', 'ade': 'ade20k', 'coco': 'coco', 'citys': 'citys'}
GLUONCV_TAPS = OrderedDict([('logits', 'head'), ('aspp', 'head.aspp'), ('layer1', 'layer1'), ('layer2', 'layer2'),
                            ('layer3', 'layer3'), ('layer4', 'layer4')])


def gluoncv_teacher_classes(name):
    """The class count of gluoncv segmentation network `name` (its dataset's); SegmentationNetworkError
    naming the accepted names when `name` is not a gluoncv DeepLabV3 on a ResNet."""
    from gluoncv.data import datasets
    from gluoncv.model_zoo.model_store import _model_sha1
    m = GLUONCV_TEACHER.match(name or '')
    if not m or name not in _model_sha1:
        known = sorted(n for n in _model_sha1 if GLUONCV_TEACHER.match(n))
        raise SegmentationNetworkError('%r is not a gluoncv DeepLabV3 this project can take as a teacher; gluoncv\'s: %s'
                                       % (name, ', '.join(known)))
    return datasets[GLUONCV_DATASETS[m.group(2)]].NUM_CLASS


def gluoncv_teacher(name, weights, crop_size, ctx, prefix='teacher_'):
    """gluoncv's DeepLabV3 `name` (e.g. deeplab_resnet101_voc) built without its auxiliary FCN head
    (training-only) and set from params file `weights` (gluoncv's own file: its auxiliary head's
    parameters are left out). It declares `GLUONCV_TAPS`: `logits` (class scores at stride 8, before
    the resize to the input), `aspp`, and the backbone's `layer1`..`layer4`. Its final resize goes to
    `crop_size` (gluoncv fixes it at construction). SegmentationNetworkError when the file does not
    fit, naming the parameters that differ."""
    from gluoncv.model_zoo.deeplabv3 import get_deeplab
    import symbols
    m = GLUONCV_TEACHER.match(name)
    gluoncv_teacher_classes(name)
    import warnings
    holder = symbols.NameScope(prefix=prefix)
    with holder.name_scope(), warnings.catch_warnings():
        warnings.simplefilter('ignore')                # gluoncv initialises its head twice
        net = get_deeplab(GLUONCV_DATASETS[m.group(2)], 'resnet%s' % m.group(1), pretrained=False,
                          pretrained_base=False, aux=False, crop_size=crop_size, ctx=ctx[0])
    from symbols.pretrained import WeightsError, saved_arrays, fit_problems
    mine = net._collect_params_with_prefix()
    try:
        saved = saved_arrays(weights, mine)
    except WeightsError as e:
        raise SegmentationNetworkError('teacher %s' % e)
    problems = fit_problems(mine, saved, ignored=('auxlayer.',), deferred=True)   # training-only auxiliary head
    if problems:
        raise SegmentationNetworkError('teacher weights %s do not fit gluoncv network %s: %s; give that network\'s '
                                       'own weights (gluoncv\'s %s-*.params) or the teacher_network they are of'
                                       % (weights, name, '; '.join(problems), name))
    for n, p in mine.items():
        p._load_init(saved[n], ctx)
    net.TAPS = OrderedDict(GLUONCV_TAPS)
    net.network_name = name
    return net
