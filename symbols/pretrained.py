"""gluoncv model-zoo weights on disk: where gluoncv keeps them, and what to say when they are not there.

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
