"""Training checkpoints, written atomically.

Epoch N of run P in folder D is:
  D/P-NNNN.params        the student (Gluon structural names: loads into
                         `symbols.get_network(...)` under any prefix)
  D/P-NNNN.extra.params  training-only blocks (FitNet/OFD connectors), if any
  D/P-NNNN.states        optimizer state (momentum buffers, update counts)
  D/P-NNNN.json          metadata, written last: a checkpoint without it is
                         incomplete and never used
and D/P-best.{params,extra.params,json}: the epoch with the best validation
top-1. Every file is written under a temporary name, flushed and renamed, so
a crash (or a full disk) while writing never damages an earlier checkpoint.
"""
import glob
import json
import os
import re

import mxnet as mx


class CheckpointError(IOError):
    """A checkpoint that cannot be written or read; says which file and why."""


def ensure_writable(folder):
    """Create `folder` if needed and prove a file can be written there."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, '.write-test-%d' % os.getpid())
        with open(probe, 'w') as f:
            f.write('ok')
        os.remove(probe)
    except OSError as e:
        raise CheckpointError('model folder %s is not writable (%s): choose another model_dir or fix its '
                              'permissions' % (folder, e.strerror or e))


def _atomic(path, write):
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        write(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as e:
        if os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass
        raise CheckpointError('cannot write %s (%s): free disk space or choose another model_dir; earlier '
                              'checkpoints are intact' % (path, e))


def _write_json(obj):
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=1, sort_keys=True)
    return write


def paths(model_dir, prefix, tag):
    base = os.path.join(model_dir, '%s-%s' % (prefix, tag if isinstance(tag, str) else '%04d' % tag))
    return {'params': base + '.params', 'extra': base + '.extra.params', 'states': base + '.states',
            'meta': base + '.json'}


def save(model_dir, prefix, epoch, student, extra=None, trainer=None, meta=None, best=False):
    """Write epoch `epoch` (and the best copy when `best`). `meta` is a JSON-able dict."""
    mx.nd.waitall()   # BatchNorm statistics and updates must be complete before reading them
    meta = dict(meta or {}, epoch=epoch)
    tags = [epoch] + (['best'] if best else [])
    for tag in tags:
        p = paths(model_dir, prefix, tag)
        _atomic(p['params'], student.save_parameters)
        if extra is not None and list(extra.collect_params().keys()):
            _atomic(p['extra'], extra.save_parameters)
        if trainer is not None and tag != 'best':
            _atomic(p['states'], trainer.save_states)
        _atomic(p['meta'], _write_json(meta))


def epochs(model_dir, prefix):
    """Complete checkpoint epochs of a run (those whose .json exists), ascending."""
    found = []
    for f in glob.glob(os.path.join(model_dir, glob.escape(prefix) + '-[0-9][0-9][0-9][0-9].json')):
        m = re.search(r'-(\d{4})\.json$', f)
        if m and os.path.isfile(f[:-5] + '.params'):
            found.append(int(m.group(1)))
    return sorted(found)


def read_meta(model_dir, prefix, tag):
    p = paths(model_dir, prefix, tag)['meta']
    if not os.path.isfile(p):
        params = paths(model_dir, prefix, tag)['params']
        if os.path.isfile(params):
            raise CheckpointError('checkpoint %s is incomplete (its %s is missing; the run was interrupted while '
                                  'writing it): resume from an earlier epoch' % (params, p))
        have = epochs(model_dir, prefix)
        raise CheckpointError('no checkpoint %s; complete epochs of %r in %s: %s' % (
            p, prefix, model_dir, have or 'none'))
    try:
        with open(p) as f:
            return json.load(f)
    except ValueError as e:
        raise CheckpointError('checkpoint metadata %s is corrupt (%s)' % (p, e))


def load_params(block, path, ctx, what='params'):
    """Load a Gluon params file into `block`, with a clear error for bad files."""
    if not os.path.isfile(path):
        raise CheckpointError('%s file %s does not exist' % (what, path))
    try:
        block.load_parameters(path, ctx=ctx)
    except mx.base.MXNetError as e:
        text = str(e).split('\n')[0]
        raise CheckpointError('%s file %s cannot be read: it is truncated or corrupt (%s); use another '
                              'epoch or copy the file again' % (what, path, text[:200]))
    except AssertionError as e:
        raise CheckpointError('%s file %s does not fit this network (%s): check network/num_classes'
                              % (what, path, str(e)[:300]))


def load(model_dir, prefix, tag, student, ctx, extra=None, trainer=None):
    """Restore a checkpoint into `student` (+ `extra`, `trainer`); return its metadata."""
    meta = read_meta(model_dir, prefix, tag)
    p = paths(model_dir, prefix, tag)
    load_params(student, p['params'], ctx)
    if extra is not None and list(extra.collect_params().keys()):
        load_params(extra, p['extra'], ctx, 'connector params')
    if trainer is not None:
        if not os.path.isfile(p['states']):
            raise CheckpointError('optimizer state %s is missing; it is needed to resume exactly' % p['states'])
        try:
            trainer.load_states(p['states'])
        except Exception as e:
            raise CheckpointError('optimizer state %s cannot be read (%s): it is truncated or corrupt'
                                  % (p['states'], str(e).split('\n')[0][:200]))
    return meta


def load_network(prefix_path, tag, ctx, prefix=None):
    """(network, metadata) of checkpoint `prefix_path` (e.g. 'model/RUN') at `tag` (epoch or 'best'):
    the network named in its metadata, built under `prefix`, with the saved parameters."""
    import symbols
    model_dir, name = os.path.split(prefix_path)
    model_dir = model_dir or '.'
    meta = read_meta(model_dir, name, tag)
    net = symbols.get_network(meta['network'], meta['num_classes'], meta.get('in_channels', 3), prefix=prefix)
    load_params(net, paths(model_dir, name, tag)['params'], ctx)
    return net, meta
