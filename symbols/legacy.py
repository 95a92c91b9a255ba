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


def load_legacy_network(prefix, epoch, ctx=None):
    """The checkpoint as a `LegacyNetwork` (x -> logits) with its weights loaded."""
    sym_file = '%s-symbol.json' % prefix
    par_file = '%s-%04d.params' % (prefix, epoch)
    for f in (sym_file, par_file):
        if not os.path.isfile(f):
            raise CheckpointError('legacy checkpoint file %s does not exist: check teacher_prefix=%r '
                                  'and teacher_epoch=%d' % (f, prefix, epoch))
    try:
        symbol = mx.sym.load(sym_file)
    except Exception as e:
        raise CheckpointError('cannot read symbol file %s (%s): is it a complete MXNet symbol JSON?'
                              % (sym_file, e))
    try:
        saved = mx.nd.load(par_file)
    except Exception as e:
        raise CheckpointError('cannot read params file %s (%s): the file is truncated or corrupt; '
                              'copy it again' % (par_file, e))
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


def load_legacy(prefix, epoch, taps, ctx=None):
    """``x -> (logits, tap_1, ..., tap_n)`` for a legacy Module checkpoint."""
    return with_taps(load_legacy_network(prefix, epoch, ctx), taps)
