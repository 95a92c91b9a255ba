"""Load a legacy MXNet Module checkpoint (``prefix-symbol.json`` +
``prefix-NNNN.params``) as a Gluon block ``x -> (logits, tap_1, ...)``.

The logits are the input of the checkpoint's final SoftmaxOutput (``fc1_output``
for the original NST teacher ``resnet-101``); taps are internal outputs named
as MXNet names them (``bn1_output``, or just ``bn1``).
"""
import json
import os

import mxnet as mx

from .taps import LegacyNetwork, with_taps


from core.errors import CheckpointError  # noqa: F401  (a legacy checkpoint missing, truncated or not fitting)


SOFTMAX_OPS = ('SoftmaxOutput', 'Softmax', 'SoftmaxActivation', 'softmax', 'log_softmax')


def _logits_of(symbol):
    """The input of the final softmax head, or the (first) output itself."""
    head = symbol[0] if len(symbol.list_outputs()) > 1 else symbol
    graph = json.loads(head.tojson())
    op = graph['nodes'][graph['heads'][0][0]]['op']
    if op in SOFTMAX_OPS:
        return head.get_children()[0]
    return head


def latest_legacy_epoch(prefix):
    """The highest N of the PREFIX-NNNN.params files beside PREFIX-symbol.json (0 when there is none:
    the load then names the missing file)."""
    folder, name = os.path.split(prefix)
    try:
        found = [f[len(name) + 1:-len('.params')] for f in os.listdir(folder or '.')
                 if f.startswith(name + '-') and f.endswith('.params')]
    except OSError:
        return 0
    epochs = [int(e) for e in found if e.isdigit() and len(e) == 4]
    return max(epochs) if epochs else 0


def legacy_files(prefix, epoch, keys=('teacher_prefix', 'teacher_epoch')):
    """(symbol file, params file) of legacy checkpoint `prefix` at `epoch`; CheckpointError naming
    the missing one and the config keys `keys` that named the prefix and the epoch."""
    sym_file = '%s-symbol.json' % prefix
    par_file = '%s-%04d.params' % (prefix, epoch)
    for f in (sym_file, par_file):
        if not os.path.isfile(f):
            raise CheckpointError('legacy checkpoint file %s does not exist: check %s=%r and %s=%d'
                                  % (f, keys[0], prefix, keys[1], epoch))
    return sym_file, par_file


def load_legacy_network(prefix, epoch, ctx=None, keys=('teacher_prefix', 'teacher_epoch')):
    """The checkpoint as a `LegacyNetwork` (x -> logits) with its weights loaded; `keys`: the config
    keys that named the prefix and the epoch, for the message when a file is missing."""
    sym_file, par_file = legacy_files(prefix, epoch, keys)
    try:
        symbol = mx.sym.load(sym_file)
    except Exception as e:
        from core.checkpoint import reason
        raise CheckpointError('cannot read symbol file %s (%s): it is not a complete MXNet symbol JSON (cut short by '
                              'a copy?); copy it again from the checkpoint\'s source' % (sym_file, reason(e)))
    try:
        saved = mx.nd.load(par_file)
    except Exception as e:
        from core.checkpoint import reason
        raise CheckpointError('cannot read params file %s (%s): the file is truncated or corrupt; '
                              'copy it again' % (par_file, reason(e)))
    logits = _logits_of(symbol)
    net = LegacyNetwork(symbol, logits, mx.sym.var('data'))
    arrays = {}
    for key, value in saved.items():
        name = key.split(':', 1)[1] if key.startswith(('arg:', 'aux:')) else key
        arrays[name] = value
    params = net.collect_params()
    missing = [n for n in params.keys() if n not in arrays]
    if missing:
        raise CheckpointError('params file %s lacks %d parameters of its symbol, e.g. %s'
                              % (par_file, len(missing), missing[:3]))
    ctx = ctx or mx.cpu()
    for name, p in params.items():
        p._load_init(arrays[name], ctx)
    return net


RUNNING = ('running_mean', 'running_var')


def _differs(a, b):
    """Largest |a - b| relative to the largest |b| (numpy arrays)."""
    import numpy as np
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def as_network_weights(prefix, epoch, network, in_channels=3, image_size=None):
    """{structural name: NDArray} for network `network` of this project from the legacy Module
    checkpoint PREFIX-EPOCH of the same architecture (its class count: the checkpoint's).

    The two name their parameters differently (``stage1_unit1_bn1_gamma`` there,
    ``features.5.0.bn1.gamma`` here), so they are paired by order: the symbol's arguments in graph
    order with the network's parameters in creation order, its auxiliary states (moving mean and
    variance) with the network's BatchNorm running statistics. Each pair must have one shape, and
    one forward of a random `image_size` image (the network's own size by default) must give the
    same logits from both in predict mode (relative difference below 1e-3): a pairing that holds by
    shape but computes another function (another layer order, a fixed gamma meeting a learned one)
    is refused there. CheckpointError naming the first parameter that differs otherwise."""
    import numpy as np
    import symbols
    legacy = load_legacy_network(prefix, epoch, keys=('pretrained', 'pretrained_epoch'))
    logits = legacy.logits_symbol
    size = image_size or symbols.input_size(network)
    shape = (1, in_channels, size, size)
    where = 'legacy checkpoint %s epoch %d' % (prefix, epoch)
    try:
        _, (out_shape,), _ = logits.infer_shape(data=shape)
    except Exception as e:
        raise CheckpointError('%s does not take %s images (%s): give its image size (image_size=N) or its '
                              'network' % (where, 'x'.join(map(str, shape[1:])), str(e).splitlines()[0][:150]))
    holder = symbols.NameScope(prefix='legacy_start_')
    with holder.name_scope():
        net = symbols.get_network(network, out_shape[1], in_channels)
    net.initialize()
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, shape).astype('float32'))
    net(x)
    mine = net._collect_params_with_prefix()
    theirs = legacy.collect_params()
    pairs = []
    for kind, m_names, l_names in (
            ('parameters', [n for n in mine if not n.endswith(RUNNING)],
             [n for n in logits.list_arguments() if n != 'data']),
            ('BatchNorm statistics', [n for n in mine if n.endswith(RUNNING)], logits.list_auxiliary_states())):
        if len(m_names) != len(l_names):
            raise CheckpointError('%s has %d %s, network %s has %d: it holds another architecture; start from '
                                  'weights of network %s, or use the checkpoint as a teacher (teacher_prefix=%s)'
                                  % (where, len(l_names), kind, network, len(m_names), network, prefix))
        for m, l in zip(m_names, l_names):
            have, want = tuple(theirs[l].data().shape), tuple(mine[m].shape)
            if have != want:
                raise CheckpointError('%s does not pair with network %s: its %s number %d, %s %s, meets %s %s '
                                      'here; set network to the checkpoint\'s architecture, or use the checkpoint as '
                                      'a teacher (teacher_prefix=%s)' % (where, network, kind, m_names.index(m) + 1,
                                                                         l, have, m, want, prefix))
            pairs.append((m, l))
    arrays = {m: theirs[l].data() for m, l in pairs}
    for m, value in arrays.items():
        mine[m].set_data(value)
    with mx.autograd.predict_mode():
        diff = _differs(net(x).asnumpy(), legacy(x).asnumpy())
    if not diff < 1e-3:
        raise CheckpointError('%s pairs with network %s parameter by parameter, but computes another function '
                              '(logits differ by %.3g relative): its layers are ordered or configured otherwise; '
                              'use it as a teacher (teacher_prefix=%s) instead' % (where, network, diff, prefix))
    return arrays


def load_legacy(prefix, epoch, taps, ctx=None):
    """``x -> (logits, tap_1, ..., tap_n)`` for a legacy Module checkpoint."""
    return with_taps(load_legacy_network(prefix, epoch, ctx), taps)
