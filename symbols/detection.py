"""Backbones for Faster R-CNN (paper §5.3): a network split by TAP NAMES.

A split is three tap names (`Split`): `stride16` ends `features` (the part run
once per image, before RoI pooling; output stride 16), `stride32` ends
`top_features` (the rest, run on every pooled RoI; stride 32 on a whole image),
and `frozen` is the last tap whose parameters stay fixed (the standard Faster
R-CNN recipe: stem and first stage fixed; every BatchNorm fixed as well).

Where a split comes from, first match wins:
1. the config key `backbone_split` (any network, and the only way for a legacy
   Module checkpoint, whose taps are its internal output names);
2. the network's own `DETECTION_SPLIT = (stride16, stride32, frozen)` attribute
   (your own backbone declares it next to its `TAPS`);
3. `DETECTION_SPLITS` below, by network name.

Two ways to split, sharing the backbone's Parameters (no copies):
- `split_backbone(net, split)`: a Gluon network whose forward pass is the chain
  of its top-level children (a `features` Sequential counts as its items):
  `features` runs the chain up to the stride16 tap's child, `top_features` the
  children after it up to the stride32 tap's child.
- `split_legacy(net, split)`: a legacy checkpoint (`LegacyNetwork`): `features`
  is the symbol's internal output `stride16`, `top_features` the graph between
  `stride16` and `stride32`, cut out of the symbol with `stride16` replaced by
  an input variable (refused when that part also reads the image another way).

`check_split` traces the result on a symbolic 224x224 input and refuses a split
whose parts do not have output strides 16 and 32 (or, for a Gluon network, do not
reproduce the network's own tap shapes).
"""
import json
import re
import warnings
from collections import OrderedDict, namedtuple

import mxnet as mx
from mxnet.gluon import nn, SymbolBlock

from .taps import chain_position, declared_taps, forward_chain, TapError, LegacyNetwork

Split = namedtuple('Split', 'stride16 stride32 frozen')

# family (regular expression on the network name) -> the split, in tap names.
DETECTION_SPLITS = OrderedDict([
    # Inception-BN: conv1/pool1/pool2 (stride 8), in3a-in3c (in3c downsamples to 16),
    # the 4th stage in4a-in4d at stride 16; in4e downsamples to 32, then in5a, in5b.
    (r'^inception_bn$', Split('in4d', 'in5b', 'in3c')),
    # gluoncv ResNetV2 (pre-activation): stage3 at stride 16, stage4 + the final BN/ReLU at 32
    (r'^preact_resnet(18|34|50|101|152)$', Split('stage3', 'relu1', 'stage1')),
    # gluoncv ResNetV1b/V1s: layer3 at stride 16, layer4 at 32 (gluoncv's own Faster R-CNN split)
    (r'^(resnet50|resnet152|resnet50_nst)$', Split('layer3', 'layer4', 'layer1')),
])
CHECK_SIZE = 224            # the side of the symbolic input `check_split` traces


class SplitError(TapError):
    """A backbone that cannot be split into stride-16 features and a stride-32 top."""


def as_split(value):
    """A Split from a Split, or a list/tuple of 2 or 3 tap names (frozen optional: None)."""
    if value is None or isinstance(value, Split):
        return value
    value = list(value)
    return Split(value[0], value[1], value[2] if len(value) > 2 else None)


def detection_split(name, net=None, override=None):
    """The Split of network `name` (`net`: the network itself, to read its DETECTION_SPLIT):
    `override` if given, else the network's declaration, else DETECTION_SPLITS. SplitError,
    naming the networks that have one, when there is none."""
    if override is not None:
        return as_split(override)
    declared = getattr(net, 'DETECTION_SPLIT', None) if net is not None else None
    if declared is None and net is None:
        for pattern, split in DETECTION_SPLITS.items():
            if re.match(pattern, name or ''):
                return split
        try:
            import symbols
            net = symbols.get_network(name, 10)
        except ValueError:
            net = None
        declared = getattr(net, 'DETECTION_SPLIT', None)
    if declared is not None:
        return as_split(declared)
    for pattern, split in DETECTION_SPLITS.items():
        if re.match(pattern, name or ''):
            return split
    raise SplitError('network %r declares no stride-16 / stride-32 split for Faster R-CNN; backbones that do: %s. '
                     'Give one with backbone_split=[STRIDE16_TAP, STRIDE32_TAP, FROZEN_TAP], or declare '
                     'DETECTION_SPLIT on the network (symbols/detection.py)' % (name, ', '.join(detection_networks())))


def detection_networks():
    """Registered network names with a split in DETECTION_SPLITS."""
    import symbols
    return [n for n in symbols.NETWORKS if any(re.match(p, n) for p in DETECTION_SPLITS)]


# ------------------------------------------------------------------ Gluon networks
def _index(chain, net, tap, role):
    found = chain_position(chain, net, tap)
    if found is not None:
        return found[0]
    name = getattr(net, 'network_name', type(net).__name__)
    if tap not in declared_taps(net) and not any(p == tap for p, _ in chain):
        raise SplitError('network %s has no tap %r (the %s tap of its split); its taps: %s'
                         % (name, tap, role, ', '.join(declared_taps(net)) or '(none declared)'))
    raise SplitError('tap %r (child %r) of network %s, the %s tap of its split, is not on its top-level forward '
                     'chain %s: a split tap must be one of these children' % (tap, declared_taps(net).get(tap, tap),
                                                                              name, role, [p for p, _ in chain]))


def _walk(block):
    yield block
    for c in block._children.values():
        yield from _walk(c)


def freeze_batchnorm(block):
    """Every BatchNorm of `block` uses its stored statistics (also while training) and its
    gamma/beta stay fixed."""
    for child in _walk(block):
        if isinstance(child, nn.BatchNorm):
            child._kwargs['use_global_stats'] = True
            for p in child.collect_params().values():
                p.grad_req = 'null'


def split_backbone(net, split=None, freeze=True):
    """(features, top_features) HybridSequentials sharing `net`'s blocks and parameters.

    `split`: a Split (default: `detection_split` of the network). With `freeze`, the blocks up
    to the split's `frozen` tap get grad_req 'null' and every BatchNorm is frozen (global
    statistics, fixed affine)."""
    split = as_split(split) or detection_split(getattr(net, 'network_name', None), net)
    chain = forward_chain(net)
    i16 = _index(chain, net, split.stride16, 'stride-16')
    i32 = _index(chain, net, split.stride32, 'stride-32')
    if i32 <= i16:
        raise SplitError('the stride-32 tap %r comes before (or is) the stride-16 tap %r in the network\'s chain: '
                         'give them in the order [stride16, stride32, frozen]' % (split.stride32, split.stride16))
    features = nn.HybridSequential(prefix='')
    top = nn.HybridSequential(prefix='')
    for _, block in chain[:i16 + 1]:
        features.add(block)
    for _, block in chain[i16 + 1:i32 + 1]:
        top.add(block)
    if freeze:
        if split.frozen is not None:
            i_frozen = _index(chain, net, split.frozen, 'frozen')
            if i_frozen > i16:
                raise SplitError('the frozen tap %r lies after the stride-16 tap %r: freeze part of `features` only'
                                 % (split.frozen, split.stride16))
            for _, block in chain[:i_frozen + 1]:
                for p in block.collect_params().values():
                    p.grad_req = 'null'
        freeze_batchnorm(features)
        freeze_batchnorm(top)
    return features, top


def stage_taps(net, split=None):
    """{tap name: child path} of the taps `net` declares inside its forward chain up to the split's
    stride-16 tap: the backbone's stages (chain steps) and the outputs inside them (a pre-ReLU
    BatchNorm, `layer3_pre`), which distillation inside a detector pairs by name; in chain order.
    The stride-16 tap itself is the detector's `features` tap as well."""
    split = as_split(split) or detection_split(getattr(net, 'network_name', None), net)
    chain = forward_chain(net)
    found = chain_position(chain, net, split.stride16)
    if found is None:
        return OrderedDict()
    steps = {p: i for i, (p, _) in enumerate(chain[:found[0] + 1])}
    taps = []
    for tap, path in declared_taps(net).items():
        bare = path[:-3] if path.endswith(':in') else path
        step = next((steps[p] for p in steps if bare == p or bare.startswith(p + '.')), None)
        if step is not None and not (path.endswith(':in') and bare in steps):     # (a step's input: the one before)
            taps.append((step, tap, path))
    return OrderedDict((tap, path) for _, tap, path in sorted(taps, key=lambda t: t[0]))


def hybridize_around(block, targets):
    """Hybridize `block` except the blocks on the way to `targets` (blocks whose forward hooks must
    run: a hook on a block inside a hybridized whole never does): those stay imperative, everything
    beside them (and each target itself) is hybridized on its own."""
    def holds(b):
        return any(c is t or holds(c) for c in b._children.values() for t in targets)
    if not holds(block):
        block.hybridize(static_alloc=True)
        return
    for child in block._children.values():
        hybridize_around(child, targets)


# ------------------------------------------------------------------ legacy checkpoints
def _node_of(net, tap, role):
    """(node name, output index) of a legacy network's internal output `tap`."""
    try:
        sym = net.internal(tap)
    except TapError as e:
        raise SplitError('the %s tap of backbone_split: %s' % (role, e))
    graph = json.loads(sym.tojson())
    node, index = graph['heads'][0][0], graph['heads'][0][1]
    return graph['nodes'][node]['name'], index


def _subgraph(symbol, cut=None, input_name='data', freeze_bn=False):
    """`symbol` as a graph JSON dict, with the node output `cut` = (name, index) replaced by the
    variable `input_name`, pruned to what the output needs; BatchNorms set to use_global_stats
    when `freeze_bn`. SplitError when the graph reads another output of the cut node."""
    graph = json.loads(symbol.tojson())
    nodes = graph['nodes']
    cut_id = None
    if cut is not None:
        ids = [i for i, n in enumerate(nodes) if n['name'] == cut[0] and n['op'] != 'null']
        if len(ids) != 1:
            raise SplitError('the legacy symbol has %d nodes named %r: cannot cut it there' % (len(ids), cut[0]))
        cut_id = ids[0]
    keep, stack = set(), [h[0] for h in graph['heads']]
    while stack:                                    # nodes the output needs, not looking past the cut
        i = stack.pop()
        if i in keep:
            continue
        keep.add(i)
        if i == cut_id:
            continue
        for inp in nodes[i]['inputs']:
            if inp[0] == cut_id and inp[1] != cut[1]:
                raise SplitError('the legacy graph after %r reads its output %d as well as output %d: it cannot be '
                                 'cut there' % (cut[0], inp[1], cut[1]))
            stack.append(inp[0])
    order = sorted(keep)
    new_id = {old: new for new, old in enumerate(order)}
    out = []
    for old in order:
        if old == cut_id:
            out.append({'op': 'null', 'name': input_name, 'inputs': []})
            continue
        node = dict(nodes[old])
        node['inputs'] = [[new_id[i], 0 if i == cut_id else k, v] for i, k, v in node['inputs']]
        if freeze_bn and node['op'] == 'BatchNorm':
            node['attrs'] = dict(node.get('attrs', {}), use_global_stats='True')
        out.append(node)
    return {'nodes': out, 'arg_nodes': [i for i, n in enumerate(out) if n['op'] == 'null'],
            'node_row_ptr': list(range(len(out) + 1)),
            'heads': [[new_id[h[0]], h[1], h[2]] for h in graph['heads']], 'attrs': graph.get('attrs', {})}


def _block(graph, params):
    symbol = mx.sym.load_json(json.dumps(graph))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return SymbolBlock(symbol, mx.sym.var('data'), params=params)


def split_legacy(net, split, freeze=True):
    """(features, top_features) SymbolBlocks cut out of legacy checkpoint `net` (a LegacyNetwork),
    sharing its parameters. `split` names internal outputs (e.g. 'ch_concat_4d_chconcat'); with
    `freeze`, every parameter the `frozen` output depends on is fixed, and every BatchNorm uses its
    stored statistics with fixed gamma/beta."""
    if not isinstance(net, LegacyNetwork):
        raise TypeError('split_legacy takes a LegacyNetwork')
    split = as_split(split)
    cut = _node_of(net, split.stride16, 'stride-16')
    _node_of(net, split.stride32, 'stride-32')
    s16, s32 = net.internal(split.stride16), net.internal(split.stride32)
    if split.stride16 == split.stride32 or cut[0] not in [n['name'] for n in json.loads(s32.tojson())['nodes']]:
        raise SplitError('the stride-32 tap %r does not come after the stride-16 tap %r in the legacy graph: give '
                         'them in the order [stride16, stride32, frozen]' % (split.stride32, split.stride16))
    top_graph = _subgraph(s32, cut, freeze_bn=freeze)
    reads = [n['name'] for n in top_graph['nodes'] if n['op'] == 'null' and n['name'] == 'data']
    if len(reads) != 1:
        raise SplitError('the legacy graph between %r and %r also reads the image directly: %r is not a point every '
                         'path passes through; choose another stride-16 tap' % (split.stride16, split.stride32,
                                                                                 split.stride16))
    params = net.collect_params()
    features = _block(_subgraph(s16, freeze_bn=freeze), params)
    top = _block(top_graph, params)
    if freeze:
        if split.frozen is not None:
            _node_of(net, split.frozen, 'frozen')
            frozen = net.internal(split.frozen)
            for name in frozen.list_arguments() + frozen.list_auxiliary_states():
                if name in params.keys():
                    params[name].grad_req = 'null'
        for block in (features, top):
            nodes = json.loads(block._cached_graph[1].tojson())['nodes']
            for node in nodes:
                if node['op'] == 'BatchNorm':          # inputs: data, gamma, beta (+ the statistics)
                    for name in (nodes[i[0]]['name'] for i in node['inputs'][1:3]):
                        if name in params.keys():
                            params[name].grad_req = 'null'
    return features, top


# ------------------------------------------------------------------ checks
def _stride(side, out_shape):
    return side / float(out_shape[2]) if len(out_shape) == 4 and out_shape[2] else None


def check_split(features, top, split, net=None, in_channels=3):
    """SplitError unless `features` has output stride 16 and `top_features(features)` stride 32 on
    a CHECK_SIZE input (and, for a Gluon network `net`, the same shapes as its own taps).
    Returns the two output shapes (C, H, W) at that size."""
    x = mx.sym.var('data')
    shape = (1, in_channels, CHECK_SIZE, CHECK_SIZE)
    try:
        f = features(x)
        _, (c16,), _ = f.infer_shape(data=shape)
        _, (c32,), _ = top(f).infer_shape(data=shape)
    except mx.base.MXNetError as e:
        raise SplitError('the backbone split at %r / %r does not run on a %dx%d input (%s)'
                         % (split.stride16, split.stride32, CHECK_SIZE, CHECK_SIZE,
                            str(e).strip().splitlines()[0][:200]))
    s16, s32 = _stride(CHECK_SIZE, c16), _stride(CHECK_SIZE, c32)
    if s16 is None or s32 is None or round(s16) != 16 or round(s32) != 32:
        raise SplitError('the backbone split needs a stride-16 tap and a stride-32 tap, but on a %dx%d input %r gives '
                         '%s (stride %s) and %r gives %s (stride %s): choose other taps (backbone_split)'
                         % (CHECK_SIZE, CHECK_SIZE, split.stride16, c16[1:], '%g' % s16 if s16 else '?',
                            split.stride32, c32[1:], '%g' % s32 if s32 else '?'))
    if net is not None and not isinstance(net, LegacyNetwork):
        from .taps import with_taps
        tapped = with_taps(net, [split.stride16, split.stride32])
        _, (_, t16, t32), _ = mx.sym.Group(tapped(x)).infer_shape(data=shape)
        if (t16, t32) != (c16, c32):
            raise SplitError('the chain split of network %s at %r / %r gives shapes %s / %s, but its taps are %s / %s: '
                             'its forward pass is not the chain of its top-level children; declare taps that are'
                             % (getattr(net, 'network_name', type(net).__name__), split.stride16, split.stride32,
                                c16, c32, t16, t32))
    return c16[1:], c32[1:]


def legacy_candidates(net, in_channels=3):
    """{16: [...], 32: [...]}: the internal outputs of a legacy network with stride 16 / 32 on a
    CHECK_SIZE input (for the error that asks for backbone_split)."""
    internals = net.full_symbol.get_internals()
    shape = (1, in_channels, CHECK_SIZE, CHECK_SIZE)
    try:
        _, outs, _ = internals.infer_shape_partial(data=shape)
    except mx.base.MXNetError:
        return {16: [], 32: []}
    found = {16: [], 32: []}
    names = set(net.internal_names())
    for name, shape_ in zip(internals.list_outputs(), outs):
        if name in names and shape_ and len(shape_) == 4 and shape_[2]:
            s = round(CHECK_SIZE / float(shape_[2]))
            if s in found:
                found[s].append(name)
    return found


__all__ = ['DETECTION_SPLITS', 'Split', 'SplitError', 'as_split', 'detection_split', 'detection_networks',
           'split_backbone', 'split_legacy', 'stage_taps', 'hybridize_around', 'check_split', 'legacy_candidates',
           'freeze_batchnorm']
