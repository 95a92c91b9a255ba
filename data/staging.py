"""Building pack files beside the ones they replace: a temporary folder inside the output folder
(`staging`), moved in whole when complete (`_commit`), removed on any failure or signal; the
partial folders of killed builds are removed by the next build (`_alive`)."""
import contextlib
import logging
import os
import shutil
import tempfile

from core.atomic import aside_stamp

from .packfile import PackError

LOG = logging.getLogger('pack')
SPLITS = ('train', 'val')
PACK_FILES = ['classes.txt', 'fashion_mnist.json'] + [s + e for s in SPLITS for e in ('.lst', '.rec', '.idx',
                                                                                         '.decoded.json')]


def check_out_dir(out_dir):
    """PackError if `out_dir` exists but is not a folder."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise PackError('--out %s is a file, not a folder: give a folder for the packs (it is created if missing)'
                        % out_dir)


def _first_missing(path):
    """The outermost of `path` and its parents that does not exist (None if `path` exists)."""
    path, missing = os.path.abspath(path), None
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _remove_created(path, created):
    """Remove the (empty) folders from `path` up to `created`, which were created for it."""
    if created is None:
        return
    path = os.path.abspath(path)
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == created or os.path.dirname(path) == path:
            return
        path = os.path.dirname(path)


def _commit(stage, out_dir):
    """Move the files built in `stage` into `out_dir`. out_dir's pack files (PACK_FILES) are first
    moved aside into stage/.replaced, so one the new build lacks does not survive beside it; if a
    move fails, everything is put back and the error raised."""
    new = sorted(os.listdir(stage))
    aside = os.path.join(stage, '.replaced')
    os.mkdir(aside)
    old = [n for n in PACK_FILES if os.path.lexists(os.path.join(out_dir, n))]
    moved_old, moved_new = [], []
    try:
        for n in old:
            os.replace(os.path.join(out_dir, n), os.path.join(aside, n))
            moved_old.append(n)
        for n in new:
            os.replace(os.path.join(stage, n), os.path.join(out_dir, n))
            moved_new.append(n)
    except BaseException:
        for n in moved_new:
            os.replace(os.path.join(out_dir, n), os.path.join(stage, n))
        for n in moved_old:
            os.replace(os.path.join(aside, n), os.path.join(out_dir, n))
        raise
    gone = [n for n in old if n not in new]
    if gone:
        LOG.info('removed %s from %s: they belonged to the pack just replaced, and the new one has no such files',
                 ', '.join(gone), out_dir)


def _alive(staging_name):
    """Whether the process that made staging folder `.building-<pid>-*` still runs (this machine)."""
    try:
        pid = int(staging_name.split('-')[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except OSError:                   # (another user's process: it runs)
        return True
    return True


@contextlib.contextmanager
def staging(out_dir, keep=False):
    """A context giving a new, empty temporary folder inside `out_dir` (created if missing) to
    build pack files in.

    When the block completes, the files built there replace out_dir's pack files (classes.txt,
    train.*, val.*; an old one the new build lacks is removed, so a new train never sits beside an
    old val); other files in out_dir stay. On any exception in the block, Ctrl-C included, the
    temporary folder is removed and out_dir is left as it was (removed again, with the parents,
    if this created it); errors from the file system or MXNet's writer become PackError. Only a
    process killed while the files are being moved (a handful of renames) leaves a mix; the
    replaced files are then in out_dir/.building-*/.replaced. With `keep`, the replaced pack files
    go to out_dir/replaced/<time>/ instead of being removed.
    """
    import mxnet as mx
    check_out_dir(out_dir)
    kept = os.path.join(out_dir, 'replaced')
    if keep and os.path.lexists(kept) and not os.path.isdir(kept):
        raise PackError('--out %s holds a file named replaced, where --overwrite keeps the pack it replaces: move that '
                        'file away (nothing was written)' % out_dir)
    created = _first_missing(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        stage = tempfile.mkdtemp(prefix='.building-%d-' % os.getpid(), dir=out_dir)
    except OSError as e:
        _remove_created(out_dir, created)
        raise PackError('cannot write the packs into %s (%s): choose a writable --out'
                        % (out_dir, e.strerror or e))
    stale = sorted(n for n in os.listdir(out_dir) if n.startswith('.building-')
                   and os.path.join(out_dir, n) != stage)
    # a killed build's folder holds only its partial packs unless it was moving the old ones in
    # (.replaced): those of writers no longer running are removed, the others kept and named
    partial = [n for n in stale if not _alive(n) and not os.path.exists(os.path.join(out_dir, n, '.replaced'))]
    for name in partial:
        shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    if partial:
        LOG.info('removed %s: the partial packs of a build that was killed', ', '.join(partial))
    stale = [n for n in stale if n not in partial]
    if stale:
        LOG.warning('%s holds %s, left by a pack build that was killed (with the pack files it was replacing '
                    'in .replaced, if it was killed while moving them in); delete it once you do not need it',
                    out_dir, ', '.join(stale))

    def abandon():
        shutil.rmtree(stage, ignore_errors=True)
        _remove_created(out_dir, created)
    try:
        yield stage
        _commit(stage, out_dir)
    except PackError:
        abandon()
        raise
    except (OSError, mx.base.MXNetError) as e:
        abandon()
        raise PackError('writing the packs into %s failed (%s); %s is unchanged. Free some space or choose '
                        'another --out' % (out_dir, str(e).strip().splitlines()[-1] if str(e).strip() else
                                           type(e).__name__, out_dir))
    except BaseException:
        abandon()
        raise
    if keep:
        dest = os.path.join(out_dir, 'replaced', aside_stamp())
        aside = os.path.join(stage, '.replaced')
        try:
            os.makedirs(dest, exist_ok=True)
            for n in os.listdir(aside):
                os.replace(os.path.join(aside, n), os.path.join(dest, n))
        except OSError as e:           # (the new pack is in place; the old one stays whole where it is)
            raise PackError('the new pack is in %s, but the pack it replaced could not be moved to %s (%s): it is '
                            'whole in %s; move it from there yourself' % (out_dir, dest, e.strerror or e, aside))
        LOG.info('the pack it replaced is kept in %s', dest)
    shutil.rmtree(stage, ignore_errors=True)        # (what is left: the replaced pack files)
