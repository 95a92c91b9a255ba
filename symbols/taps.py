"""Named intermediate outputs ("taps") of any Gluon HybridBlock.

One mechanism serves the project's networks, gluoncv model-zoo networks and
legacy MXNet Module checkpoints:

1. A tap name is resolved to a point of the network's symbolic graph:
   - a name the network declares in its `TAPS` dict (name -> child path);
   - a child path such as ``'features.9'`` or ``'layer4.2.relu3'``; the
     suffix ``':in'`` takes the child's input instead of its output (the
     pre-ReLU sum in front of a ReLU child, for instance);
   - an internal output name of the traced symbol (``'bn1_output'``), which is
     how legacy checkpoints name their layers.
2. The network is traced once on ``mx.sym.var('data')`` with forward hooks on
   the tapped children, and the outputs ``(logits, tap_1, ..., tap_n)`` are
   grouped into a `SymbolBlock` that *shares* the network's parameters
   (no copies: training the tapped block trains the network).
"""
import warnings
from core.errors import NetworkError
from collections import OrderedDict

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn


class TapError(NetworkError):
    """A tap name that the network does not offer."""


def declared_taps(net):
    """The tap names a network declares (name -> child path), in order."""
    return OrderedDict(getattr(net, 'TAPS', None) or OrderedDict())


def tap_names(net):
    """List the tap names `net` offers by name.

    For the project's and the wrapped gluoncv networks these are the declared
    names; for a legacy checkpoint, every internal output of its symbol.
    Child paths (``'features.3'``) are accepted by `with_taps` as well.
    """
    if isinstance(net, LegacyNetwork):
        return list(net.internal_names())
    return list(declared_taps(net).keys())


def _child(net, path):
    """The child block at dotted `path` (attribute names or Sequential indices)."""
    block = net
    for part in path.split('.'):
        children = block._children
        if part in children:
            block = children[part]
        elif part.lstrip('-').isdigit() and len(children) and \
                -len(children) <= int(part) < len(children):
            block = list(children.values())[int(part)]
        else:
            raise KeyError(part)
    return block


def _available(net):
    names = tap_names(net)
    shown = ', '.join(names[:60]) + (' ...' if len(names) > 60 else '')
    return shown or '(none declared; give a child path such as "features.3")'


# the original's ResNet teacher (tornadomeet's symbol) -> the same layer's tap in this project's
# pre-activation networks (symbols/common.add_preact_head, gluoncv's ResNetV2 in symbols/zoo.py)
LEGACY_EQUIVALENT = {'bn1_output': 'bn1', 'relu1_output': 'relu1', 'pool1_output': 'pool'}


def resolve_tap(net, tap):
    """Return (child block, 'in' or 'out') for a declared name or child path. The original teacher's
    (a legacy checkpoint's) names of its head's outputs stand for the declared taps of the same
    layers (LEGACY_EQUIVALENT), so a preset written for that teacher fits this project's
    pre-activation networks too (and a legacy checkpoint takes ``bn1`` for ``bn1_output``)."""
    declared = declared_taps(net)
    if tap not in declared and LEGACY_EQUIVALENT.get(tap) in declared:
        tap = LEGACY_EQUIVALENT[tap]
    path = declared.get(tap, tap)
    side = 'out'
    if path.endswith(':in'):
        path, side = path[:-3], 'in'
    try:
        return _child(net, path), side
    except KeyError:
        raise TapError('unknown tap %r for network %s. Available taps: %s'
                       % (tap, type(net).__name__, _available(net)))


class TappedNetwork(gluon.SymbolBlock):
    """`x -> (logits, tap_1, ..., tap_n)`, sharing the parameters of `base`.

    Attributes: `base` (the wrapped network), `taps` (the tap names, in
    output order).
    """

    def __init__(self, outputs, data, base, taps):
        with warnings.catch_warnings():  # deferred shapes are expected here
            warnings.simplefilter('ignore')
            super(TappedNetwork, self).__init__(outputs, data, params=base.collect_params())
        self.taps = list(taps)
        # Not a registered child: the parameters are already shared.
        object.__setattr__(self, 'base', base)


def _trace(net, taps):
    """Trace `net` symbolically; return (data, logits symbol, tap symbols)."""
    hooks, caught = [], {}
    for tap in taps:
        block, side = resolve_tap(net, tap)

        def hook(block, inputs, output, _tap=tap, _side=side):
            value = inputs[0] if _side == 'in' else output
            if isinstance(value, (list, tuple)):
                value = value[0]
            caught.setdefault(_tap, value)
        hooks.append(block.register_forward_hook(hook))
    data = mx.sym.var('data')
    try:
        logits = net(data)
    finally:
        for h in hooks:
            h.detach()
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    missing = [t for t in taps if t not in caught]
    if missing:
        raise TapError('taps %s of network %s were never reached in the forward pass'
                       % (missing, type(net).__name__))
    return data, logits, [caught[t] for t in taps]


def with_taps(net, taps):
    """Wrap `net` as a HybridBlock `x -> (logits, tap_1, ..., tap_n)`.

    The result shares `net`'s parameters, works hybridized and not, and its
    outputs follow the order of `taps`. An unknown tap raises `TapError`
    naming it and listing the available ones.
    """
    taps = list(taps or [])
    if isinstance(net, LegacyNetwork):
        return net.with_taps(taps)
    if isinstance(net, TappedNetwork):
        net = net.base
    data, logits, outs = _trace(net, taps)
    return TappedNetwork(mx.sym.Group([logits] + outs), data, net, taps)


class LegacyNetwork(gluon.SymbolBlock):
    """A legacy MXNet Module checkpoint as a Gluon block `x -> logits`.

    `symbol` is the checkpoint's full symbol; `logits` its internal output
    feeding the final SoftmaxOutput (or the output itself when there is none).
    """

    def __init__(self, symbol, logits, data):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            super(LegacyNetwork, self).__init__(logits, data)
        object.__setattr__(self, 'full_symbol', symbol)
        object.__setattr__(self, 'logits_symbol', logits)

    def internal_names(self):
        """The outputs of the checkpoint's operators (its variables, weights and BatchNorm statistics
        whatever their names, excepted): the taps it offers."""
        symbol = self.full_symbol
        variables = set(symbol.list_arguments()) | set(symbol.list_auxiliary_states())
        return [n for n in symbol.get_internals().list_outputs() if n not in variables]

    def internal(self, tap):
        internals = self.full_symbol.get_internals()
        names = internals.list_outputs()
        for candidate in (tap, tap + '_output'):
            if candidate in names:
                return internals[candidate]
        raise TapError('unknown tap %r for this legacy checkpoint. Available internal outputs: %s'
                       % (tap, ', '.join(self.internal_names())))

    def with_taps(self, taps):
        outs = [self.internal(t) for t in taps]
        data = mx.sym.var('data')
        block = TappedNetwork.__new__(TappedNetwork)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            gluon.SymbolBlock.__init__(block, mx.sym.Group([self.logits_symbol] + outs), data,
                                       params=self.collect_params())
        block.taps = list(taps)
        object.__setattr__(block, 'base', self)
        return block


def forward_chain(net):
    """The network's forward chain as [(path, block)]: its top-level children in order, a
    `features` Sequential expanded into its items (detection and segmentation split a backbone on it)."""
    out = []
    for name, child in net._children.items():
        if name == 'features' and isinstance(child, (nn.HybridSequential, nn.Sequential)):
            out.extend(('features.%d' % i, c) for i, c in enumerate(child._children.values()))
        else:
            out.append((name, child))
    return out


def chain_position(chain, net, tap):
    """(index, path) of tap `tap` (a declared name or a child path) in `chain`; None when it is not one
    of the chain's steps."""
    path = declared_taps(net).get(tap, tap)
    for i, (p, _) in enumerate(chain):
        if p == path:
            return i, p
    return None
