"""Training checkpoints, written atomically.

Epoch N of run P in folder D is:
  D/P-NNNN.params        the student (Gluon structural names: loads into
                         `symbols.get_network(...)` under any prefix)
  D/P-NNNN.extra.params  training-only blocks (FitNet/OFD connectors, the trainable
                         heads of CC/VID/ReviewKD), if any
  D/P-NNNN.states        optimizer state (momentum buffers, update counts)
  D/P-NNNN.json          metadata, written last: a checkpoint without it is
                         incomplete and never used
and D/P-best.{params,extra.params,json}: the epoch with the best validation
top-1. The files of an epoch (and of the best copy) are all written under
temporary names and fsynced before any is renamed, the metadata last, so a
crash (or a full disk) while writing never damages an earlier checkpoint nor
leaves a half-written one.
Parameters and optimizer state that are not all finite (a diverged run) are
never written, and a params file holding NaN/Inf is refused when read
(`NonFiniteCheckpoint`).
"""
import glob
import json
import logging
import os
import re

import mxnet as mx
import numpy as np

from .atomic import discard, make_writable_folder, temporary_name, why_not_folder, write_synced


from .errors import CheckpointError, DamagedCheckpoint, NonFiniteCheckpoint  # noqa: E402,F401

LOG = logging.getLogger('checkpoint')


def ndarrays(obj):
    """Every NDArray inside `obj` (an NDArray, a Parameter dict, or lists/tuples/dicts of them; None
    and other leaves are skipped)."""
    if isinstance(obj, mx.nd.NDArray):
        return [obj]
    if isinstance(obj, mx.gluon.Parameter):
        return obj.list_data() if obj._data is not None else []
    if isinstance(obj, dict) or hasattr(obj, 'values') and callable(obj.values):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [a for item in obj for a in ndarrays(item)]
    return []


def all_finite(arrays):
    """True when no element of the NDArrays `arrays` is NaN or Inf (checked on their devices,
    one small read per device)."""
    by_ctx = {}
    for a in arrays:
        if a.size:
            ok_dtype = np.dtype(a.dtype).name in ('float32', 'float16')
            by_ctx.setdefault(a.context, []).append(a if ok_dtype else a.astype('float32'))
    for group in by_ctx.values():
        for i in range(0, len(group), 64):
            chunk = group[i:i + 64]
            if mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk)).asscalar() != 1:
                return False
    return True


def optimizer_arrays(trainer):
    """The optimizer-state NDArrays of a gluon.Trainer (momentum buffers, float32 master weights)."""
    updaters = list(getattr(trainer, '_updaters', None) or [])
    kv_updater = getattr(getattr(trainer, '_kvstore', None), '_updater', None)
    if getattr(trainer, '_update_on_kvstore', False) and kv_updater is not None:
        updaters = [kv_updater]
    return [a for u in updaters for a in ndarrays(getattr(u, 'states', {}))]


def ensure_writable(folder, key='model_dir', longest=None):
    """Create `folder` (the value of config key `key`) if needed and prove a file can be written there;
    `longest`: the longest file name the run will write there, which must fit the file system's
    limits on names and paths (a deep folder passed this check and failed the first checkpoint)."""
    try:
        make_writable_folder(folder)
    except OSError as e:
        raise CheckpointError('%s %s is not a writable folder (%s): choose another %s or fix its permissions'
                              % (key, folder, why_not_folder(folder, e), key))
    if longest:
        path = os.path.join(os.path.abspath(folder), longest)
        try:
            too_long = (len(os.fsencode(path)) >= os.pathconf(folder, 'PC_PATH_MAX') or
                        len(os.fsencode(longest)) > os.pathconf(folder, 'PC_NAME_MAX'))
        except (OSError, ValueError):
            too_long = False
        if too_long:
            raise CheckpointError('%s %s is too deep for the files a run writes there (%s, %d bytes with its folder: '
                                  'more than this file system allows): choose a %s with a shorter path, or a shorter '
                                  'model_prefix' % (key, folder, longest, len(os.fsencode(path)), key))


def reason(error):
    """The line of `error` that says what went wrong: for MXNet's errors, the last line naming a
    failed check or an error, without the C++ traceback around it (one line, at most 200 characters)."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip() and not l.strip().startswith((
        'Traceback', 'File "', 'Stack trace', '[bt]'))]
    text = next((l for l in reversed(lines) if 'Check failed' in l or 'Error' in l), lines[-1] if lines else
                type(error).__name__)
    return text[:200]


def _write_advice(error, folder):
    """What to do about a checkpoint file that could not be written (`error`) into `folder`."""
    import errno
    code = getattr(error, 'errno', None)
    if code == errno.ENOENT and not os.path.isdir(folder):
        return ('its folder %s no longer exists (moved, renamed or deleted while the run trained?): put it back, or '
                'resume the run where it is now' % folder)
    if code == errno.ENAMETOOLONG:
        return ('the path of the checkpoint\'s files is longer than this file system allows: choose a model_dir with '
                'a shorter path, or a shorter model_prefix')
    if code in (errno.EACCES, errno.EROFS, errno.EPERM):
        return 'model_dir is not writable now: make it writable, or resume in another model_dir'
    return 'free disk space or choose another model_dir'


def _write_together(files):
    """Write the files [(path, write)] of one checkpoint tag as a unit: each `write(tmp)` to a
    temporary name in the same folder and fsynced, and only when all are written, each renamed
    over its path in order (the metadata last). On a failure (a full disk) or Ctrl-C nothing is
    renamed and the temporary files are removed: no file of the tag is left half new, and no
    incomplete checkpoint takes up the space. CheckpointError naming the file."""
    written = []
    try:
        for path, write in files:
            tmp = temporary_name(path)
            written.append(tmp)
            write_synced(tmp, write)
    except BaseException as e:
        for tmp in written:
            discard(tmp)
        if not isinstance(e, Exception):
            raise
        raise CheckpointError('cannot write %s (%s): %s; earlier checkpoints are intact'
                              % (path, reason(e), _write_advice(e, os.path.dirname(path))))
    for tmp, (path, _) in zip(written, files):
        os.replace(tmp, path)


def _write_json(obj):
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=1, sort_keys=True)
    return write


def jsonable(values):
    """The items of dict `values` that JSON can hold (a run's configuration as its metadata keeps it,
    as `config`; a derived value such as the method plan is left out)."""
    out = {}
    for key, value in values.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def paths(model_dir, prefix, tag):
    base = os.path.join(model_dir, '%s-%s' % (prefix, tag if isinstance(tag, str) else '%04d' % tag))
    return {'params': base + '.params', 'extra': base + '.extra.params', 'states': base + '.states',
            'meta': base + '.json'}


def save(model_dir, prefix, epoch, student, extra=None, trainer=None, meta=None, best=False):
    """Write epoch `epoch` (and the best copy when `best`). `meta` is a JSON-able dict."""
    mx.nd.waitall()   # BatchNorm statistics and updates must be complete before reading them
    if not all_finite(ndarrays(student.collect_params())):
        raise NonFiniteCheckpoint('the parameters of epoch %d hold NaN or Inf; epoch %d was not saved (%s)'
                                  % (epoch, epoch, paths(model_dir, prefix, epoch)['params']))
    if extra is not None and not all_finite(ndarrays(extra.collect_params())):
        raise NonFiniteCheckpoint('the connector parameters of epoch %d hold NaN or Inf; epoch %d was not saved'
                                  % (epoch, epoch))
    if trainer is not None and not all_finite(optimizer_arrays(trainer)):
        raise NonFiniteCheckpoint('the optimizer state of epoch %d holds NaN or Inf; epoch %d was not saved'
                                  % (epoch, epoch))
    meta = dict(meta or {}, epoch=epoch)
    tags = [epoch] + (['best'] if best else [])
    for tag in tags:
        p = paths(model_dir, prefix, tag)

        def write_params(tmp):             # (its checksum goes into the metadata, written after it)
            student.save_parameters(tmp)
            meta['params_crc32'] = file_crc32(tmp)
        files = [(p['params'], write_params)]
        if extra is not None and list(extra.collect_params().keys()):
            files.append((p['extra'], extra.save_parameters))
        if trainer is not None and tag != 'best':
            def write_states(tmp):
                trainer.save_states(tmp)
                meta['states_crc32'] = file_crc32(tmp)
            files.append((p['states'], write_states))
        _write_together(files + [(p['meta'], _write_json(meta))])     # (meta has the checksum by then)


def file_crc32(path):
    """CRC-32 of a file's bytes."""
    import zlib
    crc = 0
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            crc = zlib.crc32(block, crc)
    return crc


def check_params_file(meta, path):
    """DamagedCheckpoint when parameters file `path` is not the one written with metadata `meta` (its
    CRC-32 differs from the one the metadata records: a file copied from another run or epoch)."""
    want = meta.get('params_crc32')
    if isinstance(want, int) and os.path.isfile(path) and file_crc32(path) != want:
        raise DamagedCheckpoint('%s is not the parameters file written with its metadata (its checksum differs: '
                                'copied from another run or epoch?): copy the .params saved with this .json, or use '
                                'another epoch' % path)


def epochs_text(numbers):
    """Epoch numbers as a user reads them: '1..40' for a run of consecutive ones, '1, 3, 7..9' else
    ('none' for none)."""
    numbers = sorted(numbers)
    if not numbers:
        return 'none'
    parts, start = [], 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            first, last = numbers[start], numbers[i - 1]
            parts.append(str(first) if first == last else
                         ('%d, %d' % (first, last) if last == first + 1 else '%d..%d' % (first, last)))
            start = i
    return ', '.join(parts)


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
            raise CheckpointError('checkpoint %s is incomplete: its metadata %s is missing (copied without it, or the '
                                  'run was interrupted while writing it): copy the .json with the .params, or use '
                                  'another epoch' % (params, p))
        have = epochs(model_dir, prefix)
        lone = sorted(glob.glob(os.path.join(model_dir, glob.escape(prefix) + '-*.params')))
        lone = [os.path.basename(f) for f in lone if not f.endswith('.extra.params') and not os.path.isfile(
            f[:-len('.params')] + '.json')]
        raise CheckpointError('no checkpoint %s; complete epochs of %r in %s: %s%s' % (
            p, prefix, model_dir, epochs_text(have), '' if not lone else ' (%s %s there without %s .json: copy the '
            'metadata with the parameters)' % (', '.join(lone[:3]), 'is' if len(lone) == 1 else 'are',
                                               'its' if len(lone) == 1 else 'their')))
    try:
        with open(p) as f:
            meta = json.load(f)
    except ValueError as e:
        others = [t for t in epochs(model_dir, prefix) if t != tag]
        raise DamagedCheckpoint('checkpoint metadata %s is corrupt (%s): it was damaged (a copy cut short?); use another '
                              'epoch of the run (%s), or copy the file again from where the run was trained'
                              % (p, e, 'its epochs: %s' % epochs_text(others) if others else 'it has no other'))
    if not isinstance(meta, dict):
        raise DamagedCheckpoint('checkpoint metadata %s is not a JSON object (edited, or another program\'s file): copy '
                                'the .json written with the checkpoint' % p)
    said = meta.get('epoch')
    if said is not None and (not isinstance(said, int) or isinstance(said, bool) or said < 1):
        raise DamagedCheckpoint('checkpoint metadata %s says epoch %s, not a whole number >= 1 (edited, or another '
                                'program\'s file): copy the .json written with the checkpoint, or use another epoch'
                                % (p, json.dumps(said)))
    config = meta.get('config') if isinstance(meta.get('config'), dict) else {}
    for key in ('network', 'num_classes'):      # (metadata edited, or written by another program: from its config)
        if meta.get(key) is None and config.get(key) is not None:
            meta[key] = config[key]
    if meta.get('in_channels') is None and config.get('dataset'):         # (the dataset's channels)
        from data import DEFAULTS
        if config['dataset'] in DEFAULTS:
            meta['in_channels'] = DEFAULTS[config['dataset']][0]
    return meta


def network_of(meta, where):
    """(network name, class count) a classification checkpoint's metadata names; CheckpointError
    naming what is missing (metadata edited, or written by another program)."""
    missing = [k for k in ('network', 'num_classes') if meta.get(k) is None]
    if missing:
        raise CheckpointError('the metadata of %s names no %s (edited, or written by another program): copy the .json '
                              'written with its parameters%s' % (where, ' and no '.join(missing),
                                                                 ', or give teacher_network=NAME' if missing == [
                                                                     'network'] and 'teacher' in where else ''))
    return meta['network'], meta['num_classes']


def _names(names, most=3):
    names = sorted(names)
    return ', '.join(names[:most]) + (', ... (%d in all)' % len(names) if len(names) > most else '')


def misfit(block, path, error=None):
    """(why, copied): why params file `path` does not load into `block`, in words: the network its
    metadata (the .json beside it) names (`copied`: the same network as `block` but parameter names
    of another, so the file was copied from elsewhere), the parameter names one side has and the
    other lacks, the class count it was trained for, or the first shape that differs; MXNet's own text (`error`, less its ignore_extra/allow_missing
    advice, which is not a setting of this toolkit) when the names and shapes all agree."""
    try:
        saved = {n.split(':', 1)[-1]: v.shape for n, v in mx.nd.load(path).items()}
    except (mx.base.MXNetError, AttributeError):
        saved = None
    parts, copied, meta = [], False, {}
    meta_path = path[:-len('.params')] + '.json' if path.endswith('.params') else None
    if meta_path and not path.endswith('.extra.params') and os.path.isfile(meta_path):
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            parts.append('its metadata %s says network=%s, %s classes, %s input channel(s)' % (
                os.path.basename(meta_path), meta.get('network'), meta.get('num_classes'), meta.get('in_channels')))
        except (OSError, ValueError):
            meta = {}
    same_network = bool(meta.get('network')) and meta.get('network') == getattr(block, 'network_name', None)
    if saved is not None:
        mine = {n: p.shape for n, p in block._collect_params_with_prefix().items()}
        extra, missing = set(saved) - set(mine), set(mine) - set(saved)
        if (extra or missing) and same_network:          # the names of another network under this one's metadata
            copied = True
            parts.append('as this network, so the params file does not belong with it (copied from another run?): '
                         'copy the .params and .json of one checkpoint together')
        if extra:
            parts.append('%d of its parameters are not in this network (%s)' % (len(extra), _names(extra)))
        if missing:
            parts.append('%d of this network\'s parameters are not in it (%s)' % (len(missing), _names(missing)))
        shapes = [n for n in sorted(set(saved) & set(mine)) if mine[n] and all(mine[n])
                  and tuple(saved[n]) != tuple(mine[n])]
        if shapes and not (extra or missing):
            first = shapes[0]
            if saved[first][0] == meta.get('num_classes') and tuple(saved[first][1:]) == tuple(mine[first][1:]):
                parts.append('it was trained for %d classes (its classifier %s has %d outputs), this network has %d'
                             % (saved[first][0], first.rsplit('.', 1)[0], saved[first][0], mine[first][0]))
            else:
                parts.append('%d parameter(s) differ in shape, e.g. %s: %s in the file, %s here'
                             % (len(shapes), first, tuple(saved[first]), tuple(mine[first])))
    if len(parts) == (1 if meta else 0):           # names and shapes agree: MXNet's own words say what differs
        why = str(error or '').split(' Set allow_missing')[0].split(' Set ignore_extra')[0]
        parts.append(why.strip()[:300])
    return '; '.join(p for p in parts if p), copied


def best_recorded(model_dir, prefix, metric=None, upto=None):
    """The complete epoch (<= `upto`) of run `prefix` whose metadata has the highest `metric` (None:
    the metric each metadata names as `best_metric`, else val_top1 or val_map), the first of equal
    ones as a run keeps its best copy; None when no epoch has one."""
    scored = []
    for e in epochs(model_dir, prefix):
        if upto is None or e <= upto:
            try:
                meta = read_meta(model_dir, prefix, e)
            except CheckpointError:
                continue
            key = metric or meta.get('best_metric') or ('val_map' if 'val_map' in meta else 'val_top1')
            value = meta.get(key)
            if isinstance(value, (int, float)) and value == value:
                scored.append((value, e))
    if not scored:
        return None
    top = max(m for m, _ in scored)
    return min(e for m, e in scored if m == top)


_SAID = set()         # the best copies resolve_tag warned of


def _weights_of(model_dir, prefix, epoch):
    """The CRC-32 of epoch `epoch`'s weights that its metadata records, or None."""
    try:
        return read_meta(model_dir, prefix, epoch).get('params_crc32')
    except CheckpointError:
        return None


def resolve_tag(model_dir, prefix, tag):
    """`tag` itself, except 'best' for a run whose best copy is missing (it could not be written,
    e.g. on a full disk): then its best recorded epoch, with a warning saying so."""
    best = paths(model_dir, prefix, 'best')
    if tag != 'best':
        return tag
    if not os.path.isfile(best['meta']) or not os.path.isfile(best['params']):
        why = '%s is missing' % os.path.basename(best['meta'] if not os.path.isfile(best['meta']) else best['params'])
    else:
        try:
            meta = read_meta(model_dir, prefix, 'best')
        except CheckpointError:
            why = '%s is corrupt' % os.path.basename(best['meta'])
        else:
            have, said = epochs(model_dir, prefix), meta.get('epoch')
            if have and isinstance(said, int) and (model_dir, prefix, said) not in _SAID:
                _SAID.add((model_dir, prefix, said))          # (once a process)
                if said > have[-1]:
                    LOG.warning('the best copy of run %r says it is epoch %d, after the run\'s last checkpoint (epoch '
                                '%d): its later checkpoints were deleted, or %s was copied from another run or edited'
                                % (prefix, said, have[-1], os.path.basename(best['meta'])))
                elif said in have and _weights_of(model_dir, prefix, said) not in (None, meta.get('params_crc32')):
                    same = next((e for e in have if _weights_of(model_dir, prefix, e) == meta.get('params_crc32')),
                                None)
                    LOG.warning('the best copy of run %r says it is epoch %d, but its weights are not epoch %d\'s (%s): '
                                '%s was edited, or copied from another run; evaluate an epoch by its number to be sure'
                                % (prefix, said, said, 'they are epoch %d\'s' % same if same is not None else
                                   'nor any other checkpoint\'s of the run', os.path.basename(best['meta'])))
            return tag
    e = best_recorded(model_dir, prefix)
    if e is None:
        have = epochs(model_dir, prefix)
        if have and not os.path.isfile(best['meta']):
            raise CheckpointError('run %r has no best copy: none of its epochs (%s) has a validation score (n/a: '
                                  'nothing in its validation set could be scored?), so none became the best; name an '
                                  'epoch instead (tools: --epoch %d; a teacher: teacher_epoch=%d; a starting point: '
                                  'pretrained_epoch=%d)' % (prefix, epochs_text(have), have[-1], have[-1], have[-1]))
        return tag                                  # read_meta names what is there
    LOG.warning('run %r has no best copy (%s): using epoch %d, the best validation score its checkpoints '
                'record', prefix, why, e)
    return e


def check_run_prefix(path, key='teacher_prefix', epoch_key='teacher_epoch'):
    """CheckpointError when config key `key` = `path` names a checkpoint file or a folder instead of a
    run (model_dir/RUN), saying which prefix (and `epoch_key`) to give."""
    m = re.match(r'^(.*)-(\d{4}|best)\.(params|extra\.params|states|json)$', path)
    if m and os.path.isfile(path):
        epoch = -1 if m.group(2) == 'best' else int(m.group(2))
        raise CheckpointError('%s=%s is a checkpoint file; give the run it belongs to and the epoch: %s=%s %s=%d'
                              % (key, path, key, m.group(1), epoch_key, epoch))
    m = re.match(r'^(.*)-(\d{4}|best)$', path)
    if m and os.path.isfile(path + '.json') and not glob.glob(glob.escape(path) + '-*.json'):
        raise CheckpointError('%s=%s names a checkpoint of run %s, not a run; give the run and the epoch: %s=%s %s=%d'
                              % (key, path, m.group(1), key, m.group(1), epoch_key,
                                 -1 if m.group(2) == 'best' else int(m.group(2))))
    if path.endswith(('/', os.sep)) and not os.path.isdir(path) and glob.glob(glob.escape(path.rstrip('/' + os.sep))
                                                                             + '-*.json'):
        raise CheckpointError('%s=%s ends with a slash, as a folder would; the run is %s=%s'
                              % (key, path, key, path.rstrip('/' + os.sep)))
    if os.path.isdir(path):
        found = sorted({n.rsplit('-', 1)[0] for n in os.listdir(path) if re.match(r'^.+-(\d{4}|best)\.json$', n)})
        raise CheckpointError('%s=%s is a folder; give a run in it, %s=%s/RUN%s'
                              % (key, path, key, path.rstrip('/'), ' (runs there: %s)' % ', '.join(found) if found
                                 else ' (it holds no checkpoints)'))


def run_at(prefix_path, epoch=-1, key='teacher_prefix', epoch_key='teacher_epoch', resolve=False):
    """(model_dir, run name, tag, metadata) of run `prefix_path` (model_dir/RUN, named by config keys
    `key` and `epoch_key`) at `epoch` (-1: its best; with `resolve`, the best recorded epoch when the
    best copy is missing). CheckpointError for a checkpoint file or a folder given instead of a run,
    or a run without that checkpoint."""
    check_run_prefix(prefix_path, key, epoch_key)
    folder, name = os.path.split(prefix_path)
    folder = folder or '.'
    tag = 'best' if epoch < 0 else epoch
    if resolve:
        tag = resolve_tag(folder, name, tag)
    return folder, name, tag, read_meta(folder, name, tag)


def refuse_other_kind(meta, prefix_path, wanted='a classification network'):
    """CheckpointError when checkpoint `prefix_path` is of another task (its metadata's `kind`:
    a segmentation or a Faster R-CNN run) than `wanted`."""
    kind = meta.get('kind')
    if kind in ('segmentation', 'faster_rcnn'):
        task = 'segmentation' if kind == 'segmentation' else 'detection'
        raise CheckpointError('checkpoint %s is a %s run (task=%s), not %s: python -m tools.evaluate --prefix %s '
                              'evaluates it; give a run of that task here, or a classification run'
                              % (prefix_path, task, task, wanted, prefix_path))


def warn_if_copied(meta, name, tag):
    """A warning when checkpoint `name` at `tag` was saved by another run (its metadata's
    model_prefix): its files were copied or renamed, and what it holds is that run's."""
    saved_by, said = meta.get('model_prefix'), meta.get('epoch')
    if saved_by and saved_by != name:
        LOG.warning('checkpoint %s epoch %s was saved by run %r (its metadata says model_prefix=%r): its files were '
                    'copied or renamed from that run, so this is %r\'s network (epoch %s of it)'
                    % (name, tag, saved_by, saved_by, saved_by, said))
    elif isinstance(tag, int) and isinstance(said, int) and said != tag:
        LOG.warning('checkpoint %s epoch %d says it is epoch %d (its metadata): its files were copied or renamed from '
                    'that epoch, so this is the network of epoch %d' % (name, tag, said, said))


def load_params(block, path, ctx, what='params', fits='check network/num_classes'):
    """Load a Gluon params file into `block`, with a clear error for bad files (`fits`: what to check when
    the file's shapes do not fit the block)."""
    if os.path.isdir(path):
        raise CheckpointError('%s file %s is a folder, not a file: copy the checkpoint\'s file there' % (what, path))
    if not os.path.isfile(path):
        raise CheckpointError('%s file %s does not exist' % (what, path))
    try:
        block.load_parameters(path, ctx=ctx)
    except mx.base.MXNetError as e:
        text = reason(e)
        raise DamagedCheckpoint('%s file %s cannot be read: it is truncated or corrupt (%s); use another '
                              'epoch or copy the file again' % (what, path, text[:200]))
    except (AssertionError, ValueError) as e:
        why, copied = misfit(block, path, e)
        raise CheckpointError('%s file %s does not fit this network (%s)%s'
                              % (what, path, why, '' if copied else ': ' + fits))
    if not all_finite(ndarrays(block.collect_params())):
        raise NonFiniteCheckpoint('%s file %s holds NaN or Inf values (saved from a diverged run): use an '
                                  'earlier epoch' % (what, path))


def _earlier_epoch_advice(model_dir, prefix, tag):
    """What to resume instead of epoch `tag` of run `prefix`, whose optimizer state is unusable: its
    latest earlier epoch with one, else a new run from the weights."""
    earlier = [e for e in epochs(model_dir, prefix) if isinstance(tag, int) and e < tag and
               os.path.isfile(paths(model_dir, prefix, e)['states'])]
    if earlier:
        return 'resume from an earlier epoch that has one (model_load_epoch=%d)' % earlier[-1]
    return ('no earlier epoch of %r has one: start a new run from its weights, e.g. model_prefix=%s_more pretrained=%s '
            'pretrained_epoch=%s (the optimizer starts afresh)' % (prefix, prefix, os.path.join(model_dir, prefix),
                                                                  tag))


def load(model_dir, prefix, tag, student, ctx, extra=None, trainer=None, fits='check network/num_classes'):
    """Restore a checkpoint into `student` (+ `extra`, `trainer`); return its metadata. `fits`: what
    to do when the parameters do not fit the network."""
    meta = read_meta(model_dir, prefix, tag)
    said, saved_by = meta.get('epoch'), meta.get('model_prefix')
    # (a training run resumes the epoch it names: the schedule, the records and the next checkpoint's number
    # follow it; a checkpoint copied from another run at its own epoch is warned of as such, `resume`)
    if isinstance(tag, int) and isinstance(said, int) and said != tag:
        meta_path = paths(model_dir, prefix, tag)['meta']
        if saved_by in (None, prefix):
            raise CheckpointError('checkpoint %s is epoch %d by its file names but epoch %d by its metadata (the files '
                                  'were renamed from another epoch?): name them back (%s-%04d.*), or resume that epoch'
                                  % (meta_path, tag, said, prefix, said))
        raise CheckpointError('checkpoint %s is epoch %d by its file names but epoch %d of run %r by its metadata (copied '
                              'from that run): resumed as epoch %d, its schedule would restart at a point its weights '
                              'are not at. Branch from that run without copying: model_prefix=NEW retrain=true '
                              'model_load_prefix=%s model_load_epoch=%d (in the model_dir that holds it), or name the '
                              'copies %s-%04d.*' % (meta_path, tag, said, saved_by, tag, saved_by, said, prefix, said))
    p = paths(model_dir, prefix, tag)
    load_params(student, p['params'], ctx, fits=fits)
    check_params_file(meta, p['params'])          # (after the load: a NaN file is named as such first)
    if extra is not None and list(extra.collect_params().keys()):
        load_params(extra, p['extra'], ctx, 'training-only params (connectors, heads, memory banks)',
                    'resume with the network, kt_type, taps and training data the run started with (a memory bank '
                    'has a row per training image)')
    if trainer is not None:
        instead = _earlier_epoch_advice(model_dir, prefix, tag)
        if os.path.isdir(p['states']):
            raise DamagedCheckpoint('optimizer state %s is a folder, not a file; the file is needed to resume exactly: '
                                    'copy the .states saved with this .json there, or %s' % (p['states'], instead))
        if not os.path.isfile(p['states']):
            raise DamagedCheckpoint('optimizer state %s is missing; it is needed to resume exactly: %s'
                                    % (p['states'], instead))
        if os.path.getsize(p['states']) == 0:
            raise DamagedCheckpoint('optimizer state %s is empty (0 bytes: a copy or a write that was cut off): copy '
                                    'the .states saved with this .json again, or %s' % (p['states'], instead))
        want = meta.get('states_crc32')
        if isinstance(want, int) and file_crc32(p['states']) != want:
            raise DamagedCheckpoint('%s is not the optimizer state written with its metadata (its checksum differs: '
                                    'copied from another run or epoch, or cut short?): copy the .states saved with '
                                    'this .json, or %s' % (p['states'], instead))
        try:
            trainer.load_states(p['states'])
        except Exception as e:
            raise DamagedCheckpoint('optimizer state %s cannot be read (%s): it is truncated or corrupt'
                                  % (p['states'], str(e).split('\n')[0][:200]))
        if not all_finite(optimizer_arrays(trainer)):
            raise NonFiniteCheckpoint('optimizer state %s holds NaN or Inf values (saved from a diverged run): '
                                      'resume from an earlier epoch' % p['states'])
    return meta


def load_network(prefix_path, tag, ctx, prefix=None):
    """(network, metadata) of checkpoint `prefix_path` (e.g. 'model/RUN') at `tag` (epoch or 'best'):
    the network named in its metadata, built under `prefix`, with the saved parameters."""
    import symbols
    model_dir, name = os.path.split(prefix_path)
    model_dir = model_dir or '.'
    tag = resolve_tag(model_dir, name, tag)
    meta = read_meta(model_dir, name, tag)
    warn_if_copied(meta, name, tag)
    refuse_other_kind(meta, prefix_path)
    network, num_classes = network_of(meta, 'checkpoint %s epoch %s' % (prefix_path, tag))
    net = symbols.get_network(network, num_classes, meta.get('in_channels', 3), prefix=prefix)
    load_params(net, paths(model_dir, name, tag)['params'], ctx)
    check_params_file(meta, paths(model_dir, name, tag)['params'])
    return net, meta
