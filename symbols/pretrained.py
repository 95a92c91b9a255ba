"""Pretrained weights: gluoncv model-zoo weights on disk (where gluoncv keeps them, and what to say
when they are not there), and starting a network from weights of another class count.

gluoncv stores the weights of zoo network NAME as ``NAME-HASH8.params`` (HASH8: the first 8 hex
digits of the file's SHA-1, from gluoncv's own table) in its model store, ``$MXNET_HOME/models``
(``~/.mxnet/models`` by default), and downloads ``NAME-HASH8.zip`` from
``$MXNET_GLUON_REPO/gluon/models/`` (Apache's S3 bucket by default) when the file is missing.
`weights_file` looks there first; it downloads only when the repository answers within a few
seconds, so a machine without internet gets one line naming the file, the folder and the URL at
once instead of a `requests` traceback after a time-out.
"""
import os
import socket
from urllib.parse import urlparse

from core.errors import NetworkError

# network of this project -> the gluoncv zoo weights of the same architecture (structural names agree)
ZOO_WEIGHTS = {'preact_resnet%d' % d: 'resnet%d_v2' % d for d in (18, 34, 50, 101, 152)}
ZOO_WEIGHTS.update({'resnet50': 'resnet50_v1b', 'resnet152': 'resnet152_v1b', 'resnet50_nst': 'resnet50_v1s',
                    'mobilenet1.0': 'mobilenet1.0'})

CONNECT_TIMEOUT = 4.0        # seconds to reach the weights repository before saying it cannot be reached


class WeightsError(NetworkError):
    """Zoo weights that are not on disk and cannot be downloaded, or are not in gluoncv's zoo."""


def store_folder():
    """gluoncv's model store: $MXNET_HOME/models, else ~/.mxnet/models."""
    home = os.environ.get('MXNET_HOME')
    return os.path.expanduser(os.path.join(home, 'models') if home else os.path.join('~', '.mxnet', 'models'))


def file_name(name):
    """NAME-HASH8.params, the file gluoncv expects for zoo weights `name`; WeightsError when gluoncv
    has no pretrained weights of that name."""
    from gluoncv.model_zoo import model_store
    try:
        return '%s-%s.params' % (name, model_store.short_hash(name))
    except ValueError:
        raise WeightsError('gluoncv has no pretrained weights named %r: give a .params file instead' % name)


def url_of(name):
    """Where gluoncv downloads zoo weights `name` from (a zip holding NAME-HASH8.params)."""
    from gluoncv.model_zoo import model_store
    repo = os.environ.get('MXNET_GLUON_REPO', model_store.apache_repo_url)
    return '%s/gluon/models/%s.zip' % (repo.rstrip('/'), file_name(name)[:-len('.params')])


def _reachable(url, timeout=CONNECT_TIMEOUT):
    """Whether a TCP connection to `url`'s host opens within `timeout` seconds."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def missing_text(name, why):
    """One line: zoo weights `name` are not on disk (`why` they could not be fetched); the file, the
    folder and the URL."""
    return ('gluoncv weights %r are not on disk and %s: download %s, unzip it into %s (gluoncv\'s model store; '
            'MXNET_HOME moves it) so that %s is there, or give the .params file\'s path instead'
            % (name, why, url_of(name), store_folder(), os.path.join(store_folder(), file_name(name))))


def weights_file(name):
    """The path of zoo weights `name` in gluoncv's model store, downloaded by gluoncv if missing and
    its repository can be reached; WeightsError (one line: file, folder, URL) otherwise."""
    path = os.path.join(store_folder(), file_name(name))
    if os.path.isfile(path):
        return path
    url = url_of(name)
    if not _reachable(url):
        raise WeightsError(missing_text(name, '%s cannot be reached from this machine' % urlparse(url).hostname))
    from gluoncv.model_zoo.model_store import get_model_file
    try:
        return get_model_file(name, root=store_folder())
    except Exception as e:                 # requests, zipfile and hash errors alike: the download failed
        raise WeightsError(missing_text(name, 'the download failed (%s: %s)' % (type(e).__name__,
                                                                             str(e).splitlines()[0][:120])))


def zoo_weights_of(network):
    """The zoo weights name of `network` (a network of this project, or a gluoncv zoo name itself);
    WeightsError when gluoncv has none for it."""
    from gluoncv.model_zoo import model_store
    name = ZOO_WEIGHTS.get(network, network)
    if name not in model_store._model_sha1:
        raise WeightsError('gluoncv has no ImageNet weights for network %s; networks with zoo weights: %s'
                           % (network, ', '.join(sorted(ZOO_WEIGHTS))))
    return name


def saved_arrays(weights, mine=()):
    """{structural name: NDArray} of `weights`: a Gluon params file (a Module file's arg:/aux:
    prefixes dropped) or such a dict already read. A segmentation run's file, whose backbone's names
    start with 'backbone.', gives its backbone alone when that is what fits the names `mine` (a
    backbone or a classification network)."""
    import mxnet as mx
    if isinstance(weights, dict):
        return dict(weights)
    try:
        saved = {n.split(':', 1)[-1]: v for n, v in mx.nd.load(weights).items()}
    except mx.base.MXNetError as e:
        raise WeightsError('params file %s cannot be read (%s): it is truncated or not an MXNet params file'
                           % (weights, str(e).strip().splitlines()[-1][:150]))
    backbone = {n[len('backbone.'):]: v for n, v in saved.items() if n.startswith('backbone.')}
    if backbone and not set(mine) & set(saved) and set(mine) & set(backbone):
        return backbone
    return saved


def few(names, shown=4):
    """`names` joined by commas, the first `shown` of them, with the total when there are more."""
    return ', '.join(names[:shown]) + (', ... (%d in all)' % len(names) if len(names) > shown else '')


def fit_problems(mine, saved, ignored=(), deferred=False):
    """What keeps arrays `saved` {name: NDArray} from setting parameters `mine` {name: Parameter}: a
    list of phrases (empty when they fit) naming the network's parameters the file lacks, the file's
    arrays the network lacks (those whose names start with one of `ignored` excepted; `ignored`
    None: all of them) and the shapes that differ. `deferred`: a 0 in a parameter's shape (not
    inferred yet) matches any size."""
    missing = sorted(set(mine) - set(saved))
    extra = [] if ignored is None else sorted(n for n in set(saved) - set(mine) if not n.startswith(tuple(ignored)))

    def differs(have, want):
        if deferred:
            return len(have) != len(want) or any(a != b and b != 0 for a, b in zip(have, want))
        return have != want
    wrong = ['%s %s in the file, %s here' % (n, tuple(saved[n].shape), tuple(mine[n].shape))
             for n in sorted(set(mine) & set(saved)) if differs(tuple(saved[n].shape), tuple(mine[n].shape))]
    return [text for text in (
        '%d parameter(s) of the network are not in the file (%s)' % (len(missing), few(missing)) if missing else '',
        '%d of the file are not in the network (%s)' % (len(extra), few(extra)) if extra else '',
        '; '.join(wrong[:3]) + (' (%d in all)' % len(wrong) if len(wrong) > 3 else '') if wrong else '') if text]


def load_with_new_head(net, weights, num_classes, what='pretrained weights', named=None):
    """Set the initialised (shapes known) network `net` from `weights` (a params file, or its arrays
    by structural name, then `named` in messages), the classifier
    excepted where it was trained for another class count: the parameters whose shapes differ from
    the file's only in a dimension that is `num_classes` here (the last Dense layer's weight and
    bias) keep their fresh initialisation. Returns (loaded names, replaced names). WeightsError,
    naming them, when names are missing on either side or other shapes differ: the file holds
    another network."""
    mine = net._collect_params_with_prefix()
    saved = saved_arrays(weights, mine)
    path = named or weights
    missing = sorted(set(mine) - set(saved))
    extra = sorted(set(saved) - set(mine))
    new = [n for n in missing if mine[n].shape and mine[n].shape[0] == num_classes]
    if new and len(new) == len(missing) and not extra:   # a backbone without classifier (a segmentation run's)
        missing = []
    if missing or extra:
        raise WeightsError('%s %s do not fit network %s: %s; give weights of the same architecture'
                           % (what, path, getattr(net, 'network_name', type(net).__name__),
                              '; '.join(fit_problems({n: mine[n] for n in missing}, {n: saved[n] for n in extra}))))
    replaced, wrong = [n for n in new if n not in saved], []
    for name, p in mine.items():
        if name not in saved:
            continue
        have, want = tuple(saved[name].shape), tuple(p.shape)
        if have == want:
            continue
        if len(have) == len(want) and want[0] == num_classes and have[1:] == want[1:]:
            replaced.append(name)
        else:
            wrong.append('%s %s in the file, %s here' % (name, have, want))
    if wrong:
        raise WeightsError('%s %s do not fit network %s: %s%s; give weights of the same architecture'
                           % (what, path, getattr(net, 'network_name', type(net).__name__), '; '.join(wrong[:3]),
                              ' (%d in all)' % len(wrong) if len(wrong) > 3 else ''))
    loaded = [n for n in mine if n not in replaced]
    for name in loaded:
        for d in mine[name].list_data():
            saved[name].copyto(d)
    return loaded, replaced


def source_of(value, network, epoch=-1):
    """What config key `pretrained` = `value` names, for `network`, without reading any weights:
    ('zoo', zoo weights name) for 'zoo' (the zoo weights of `network`) or a zoo weights name,
    ('file', path) for a .params file, ('run', (model_dir, prefix, tag)) for a checkpoint of this
    project (model_dir/RUN; `epoch` -1: its best), ('legacy', (prefix, epoch)) for a legacy MXNet
    Module checkpoint (PREFIX-symbol.json; `epoch` -1: its latest). WeightsError naming the accepted
    forms otherwise."""
    import os
    if value == 'zoo':
        return 'zoo', zoo_weights_of(network)
    if value.endswith('.params'):
        if not os.path.isfile(value):
            raise WeightsError('pretrained=%s: no such file' % value)
        import re
        m = re.match(r'^(.*)-(\d{4})\.params$', value)
        if m and os.path.isfile(m.group(1) + '-symbol.json'):
            raise WeightsError('pretrained=%s is the parameters of the legacy MXNet Module checkpoint %s: give its '
                               'prefix, pretrained=%s pretrained_epoch=%d' % (value, m.group(1), m.group(1),
                                                                              int(m.group(2))))
        return 'file', value
    folder, name = os.path.split(value)
    folder = folder or '.'
    if os.path.isfile(value + '-symbol.json'):
        from .legacy import latest_legacy_epoch
        return 'legacy', (value, latest_legacy_epoch(value) if epoch < 0 else epoch)
    if os.path.isdir(folder) and any(f.startswith(name + '-') and f.endswith('.json') for f in os.listdir(folder)):
        return 'run', (folder, name, 'best' if epoch < 0 else epoch)
    from gluoncv.model_zoo import model_store
    if value in model_store._model_sha1:
        return 'zoo', value
    raise WeightsError('pretrained=%s is neither \'zoo\', a gluoncv weights name (e.g. resnet18_v2), a .params file, '
                       'a run of this project (model_dir/RUN with checkpoints) nor a legacy MXNet Module checkpoint (PREFIX with '
                       'PREFIX-symbol.json)' % value)


def weights_of(kind, where, network, in_channels=3, image_size=None):
    """(what, weights) of a `source_of` answer: a params file's path (zoo weights found or fetched by
    `weights_file`; a run's checkpoint at its tag, the best recorded epoch for a missing best copy),
    or for a legacy Module checkpoint its arrays under the names of `network`
    (`symbols.legacy.as_network_weights`, checked by one forward of an `image_size` image); `what`
    says where they came from, for the log."""
    if kind == 'legacy':
        from .legacy import as_network_weights
        from core.errors import CheckpointError
        prefix, epoch = where
        try:
            arrays = as_network_weights(prefix, epoch, network, in_channels, image_size)
        except CheckpointError as e:
            raise WeightsError('pretrained=%s: %s' % (prefix, e))
        return 'legacy checkpoint %s epoch %d' % (prefix, epoch), arrays
    path = weights_path(kind, where)
    return path, path


def weights_path(kind, where):
    """The params file of a `source_of` answer of kind zoo, file or run (see `weights_of`)."""
    from core import checkpoint
    if kind == 'zoo':
        return weights_file(where)
    if kind == 'file':
        return where
    folder, name, tag = where
    tag = checkpoint.resolve_tag(folder, name, tag)
    checkpoint.read_meta(folder, name, tag)            # CheckpointError naming the epochs there
    return checkpoint.paths(folder, name, tag)['params']


def load_into_backbone(net, weights, what='pretrained weights', named=None):
    """Set every parameter of `net` (a backbone whose classifier was removed) from `weights` (as in
    `load_with_new_head`); the file's other parameters (its classifier) are not used. Returns the loaded names;
    WeightsError naming them when the network has parameters the file lacks or shapes differ."""
    mine = net._collect_params_with_prefix()
    saved = saved_arrays(weights, mine)
    path = named or weights
    problems = fit_problems(mine, saved, ignored=None)          # the file's classifier is not used
    if problems:
        raise WeightsError('%s %s do not fit backbone %s: %s; give weights of the same architecture'
                           % (what, path, getattr(net, 'network_name', type(net).__name__), '; '.join(problems)))
    for name, p in mine.items():
        for d in p.list_data():
            saved[name].copyto(d)
    return list(mine)
