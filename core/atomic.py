"""Files written whole or not at all: a temporary file in the same folder, fsynced, then
renamed over the target (checkpoints, exports, tables, figures)."""
import errno
import os
import time


def temporary_name(path):
    """A name in `path`'s folder for writing `path` before renaming it there (same extension, so
    writers that go by the extension keep working)."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, '.%s.tmp-%d%s' % (stem, os.getpid(), ext))


def write_synced(tmp, write):
    """`write(tmp)`, then fsync the file `tmp`: its bytes are on disk before it is renamed."""
    write(tmp)
    with open(tmp, 'rb+') as f:
        os.fsync(f.fileno())


def make_writable_folder(folder):
    """Create `folder` if needed and prove that a file can be written there (a probe file is
    written and removed); OSError otherwise."""
    os.makedirs(folder, exist_ok=True)
    probe = os.path.join(folder, '.write-test-%d' % os.getpid())
    with open(probe, 'w') as f:
        f.write('ok')
    os.remove(probe)


def broken_link(path):
    """(the link, what it is) when `path`, or a folder on the way to it, is a symbolic link that loops
    ('a symbolic link that loops back on itself') or points nowhere ('a symbolic link to Y, which does
    not exist'); None otherwise. (The system's own words, "does not exist" or ELOOP, name neither.)"""
    parts = os.path.abspath(path).split(os.sep)
    for k in range(2, len(parts) + 1):
        here = os.sep.join(parts[:k])
        if os.path.islink(here):
            try:
                os.stat(here)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    return here, 'a symbolic link that loops back on itself'
                return here, 'a symbolic link to %s, which does not exist' % os.readlink(here)
    return None


def why_not_folder(folder, error):
    """Why `folder` could not be made a writable folder, `error` being the OSError that said so: a
    symbolic link that loops or points nowhere (it, or a folder on the way), a file, or the error's
    own words."""
    link = broken_link(folder)
    if link:
        return ('it is %s' if link[0] == os.path.abspath(folder) else link[0] + ' is %s') % link[1]
    if os.path.exists(folder) and not os.path.isdir(folder):
        return 'it is a file, not a folder'
    return getattr(error, 'strerror', None) or str(error)


def discard(tmp):
    """Remove the temporary file `tmp` if it is there (nothing else to do if that fails)."""
    if os.path.lexists(tmp):
        try:
            os.remove(tmp)
        except OSError:
            pass


def write_atomic(path, write):
    """Write `path` whole or not at all: `write(tmp)` writes a temporary file in the same folder,
    which is fsynced and renamed over `path`. On any failure the temporary file is removed, an
    earlier `path` is left as it was, and the error propagates (a plain OS error is raised again
    naming `path`, not the temporary file). `write` may also be a str."""
    if isinstance(write, str):
        text = write

        def write(tmp):
            with open(tmp, 'w') as f:
                f.write(text)
    tmp = temporary_name(path)
    try:
        write_synced(tmp, write)
        os.replace(tmp, path)
    except BaseException as e:
        discard(tmp)
        if isinstance(e, OSError) and e.strerror and type(e).__module__ == 'builtins':
            raise type(e)(e.errno, e.strerror, path) from e
        raise


def remove_stale(folder, pattern, stale=lambda match, path: True):
    """Remove the files of `folder` whose names match regular expression `pattern` and that
    `stale(match, path)` calls left over (their writer was killed before its rename); returns the
    paths removed. A file that cannot be looked at or removed is left as it is."""
    import re
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = re.match(pattern, name)
        path = os.path.join(folder, name)
        try:
            if m and stale(m, path):
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
    return removed



def aside_stamp():
    """The time in the name of a folder that keeps what was set aside (replaced/<name>-<stamp>/): UTC,
    so that the names sort in the order they were made whatever the time zone each command ran in."""
    return time.strftime('%Y%m%d-%H%M%SZ', time.gmtime())
