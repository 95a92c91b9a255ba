"""Per-epoch run records: `log/<model_prefix>.jsonl`, one JSON object per line.

Written by the trainer (`append_record`, once per finished epoch) and read by the
tools (`read_records`). A crash or a full disk while a record is written can
leave a partial last line. Neither function lets that spread:

- `append_record` starts on a fresh line when the file does not end with a
  newline, writes the whole line with one `os.write`, fsyncs it, and on a
  failed or short write truncates the file back to what it was, then raises
  `RecordsError` (an `OSError`, with the `errno` of the cause);
- `read_records` skips every line that is not a complete record, with one
  warning per file (logger `records`) naming the file and the line numbers.

Nothing here imports mxnet.
"""
import errno
import json
import logging
import os
import re
from .errors import UserError

LOG = logging.getLogger('records')


class RecordsError(UserError, OSError):
    """A records file that cannot be written (full disk, permissions) or read (missing, a folder);
    the message names the file and what to do, `errno` is the cause's."""

    def __init__(self, message, cause_errno=None):
        super(RecordsError, self).__init__(message)
        self.errno = cause_errno


def _plain(value):
    """JSON for numpy scalars and 0-d arrays (anything with .item()); other types are a caller's bug."""
    if hasattr(value, 'item'):
        return value.item()
    raise TypeError('%r (%s) is not JSON serialisable' % (value, type(value).__name__))


def _strict(record):
    """`record` with its NaN and infinite numbers as None: strict JSON (null), which every JSON
    reader takes (a class without pixels has no IoU); `read_records` reads them back as NaN."""
    def plain(v):
        v = v.item() if hasattr(v, 'item') and not isinstance(v, (list, dict)) else v
        return None if isinstance(v, float) and (v != v or v in (float('inf'), float('-inf'))) else v
    return {k: plain(v) for k, v in record.items()}


def _why(e):
    code = getattr(e, 'errno', None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return 'the disk is full: free some space'
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return 'permission denied: choose a writable log_dir or fix its permissions'
    return '%s: check log_dir' % (getattr(e, 'strerror', None) or e)


def append_record(path, record):
    """Append `record` (a dict; numpy scalars allowed) to the JSON-lines file `path` as one line.

    Guarantees: the folder and file are created if missing; the record starts on a line of its own
    (a newline is written first when the file does not end with one, e.g. after a crash cut the
    previous record short); the whole line goes out in one `os.write` and is fsynced before this
    returns; lines already in the file are never changed. On failure (full disk, permissions, I/O
    error) the file is truncated back to its previous size where possible and `RecordsError` (an
    OSError subclass whose `errno` is the cause's) is raised, naming the file. A record that cannot
    be serialised raises TypeError before the file is touched."""
    line = json.dumps(_strict(record), default=_plain, allow_nan=False) + '\n'
    folder = os.path.dirname(path)
    fd, size = None, None
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b'\n':
            line = '\n' + line
        data = line.encode('utf-8')
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, 'short write (%d of %d bytes)' % (written, len(data)))
        os.fsync(fd)
    except OSError as e:
        if fd is not None and size is not None:
            try:
                os.ftruncate(fd, size)            # leave no partial line behind
            except OSError:
                pass
        raise RecordsError('cannot append a record to %s (%s); earlier records are intact'
                           % (path, _why(e)), getattr(e, 'errno', None)) from e
    finally:
        if fd is not None:
            os.close(fd)


def _measured(key):
    """Whether record key `key` holds a measurement, a number (val_top1, train_kd, lr, ...)."""
    return key.startswith(('val_', 'train_', 'best_', 'iou_', 'ap_')) or key in ('lr', 'time', 'speed', 'steps',
                                                                                 'images')


#: the record keys that hold a fraction in 0..1 (accuracies, mIoU, AP): a value above 1 was written by hand
FRACTION = re.compile(r'(top\d+|miou|pixel_acc|_map)$')


#: the measurements every task's trainer writes (with each method's train_<term> and the iou_/ap_ of a class)
WRITTEN = ('val_top1', 'val_top5', 'val_n', 'val_map', 'val_miou', 'val_pixel_acc', 'lr', 'time', 'speed', 'steps',
           'images')


def _written(key):
    return key in WRITTEN or key.startswith(('train_', 'best_', 'iou_', 'ap_'))


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_records(path):
    """Records of one run sorted by epoch; a repeated epoch keeps its last record, with a warning (a
    resume rewinds the records of the epochs it trains again, so a repeat was pasted or is old).

    Never fails on the file's content: a line that is not a JSON object with an integer 'epoch'
    (cut short by a crash, two records on one line, not UTF-8, ...) is skipped, and one warning on
    the `records` logger names the file and the numbers of all skipped lines. Blank lines are
    ignored. A record whose measurement is not a number, or whose accuracy is no fraction in 0..1
    (`FRACTION`; a percentage written by hand), is skipped likewise; a field named like a
    measurement that no record gives as a number (a note added by hand) is dropped, with a warning.
    Raises RecordsError (an OSError) only when the file cannot be read at all."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except OSError as e:
        what = {errno.ENOENT: 'does not exist', errno.EISDIR: 'is a folder, not a records file'}.get(
            e.errno, 'cannot be read (%s)' % (e.strerror or e))
        raise RecordsError('records file %s %s' % (path, what), e.errno) from e
    if raw.startswith(b'\xef\xbb\xbf'):           # (a byte-order mark an editor wrote)
        raw = raw[3:]
    by_epoch, damaged, no_epoch, wrong, unit, repeated = {}, [], [], [], [], {}
    parsed = []
    for n, line in enumerate(raw.split(b'\n'), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode('utf-8'))
        except ValueError:                         # JSONDecodeError and UnicodeDecodeError
            rec = None
        if not isinstance(rec, dict) or 'epoch' not in rec:
            damaged.append(n)
        elif not (isinstance(rec.get('epoch'), int) and not isinstance(rec['epoch'], bool)):
            no_epoch.append('%d (epoch=%r)' % (n, rec.get('epoch')))
        else:
            rec.update((k, float('nan')) for k, v in list(rec.items()) if _measured(k) and v is None)  # (not measured)
            parsed.append((n, rec))
    # a field named like a measurement that no record gives as a number was added by hand (a note), unless
    # it is one the trainer writes: ignored
    notes = sorted({k for _, rec in parsed for k in rec if _measured(k) and not _written(k)} -
                   {k for _, rec in parsed for k, v in rec.items() if _measured(k) and _number(v)})
    for n, rec in parsed:
        for k in notes:
            rec.pop(k, None)
        bad = [k for k, v in rec.items() if _measured(k) and not _number(v)]
        if bad:
            wrong.append('%d (%s=%r)' % (n, bad[0], rec[bad[0]]))
            continue
        over = [k for k, v in rec.items() if _measured(k) and FRACTION.search(k) and (v < 0 or v > 1)]  # (NaN passes)
        if over:
            unit.append('%d (%s=%r)' % (n, over[0], rec[over[0]]))
            continue
        if rec['epoch'] in by_epoch:
            repeated.setdefault(rec['epoch'], []).append(n)
        by_epoch[rec['epoch']] = rec
    if damaged:
        LOG.warning('%s line%s %s: skipped damaged line%s (not a complete JSON record; a run interrupted while '
                    'writing one leaves such a line)', path, 's' if len(damaged) > 1 else '',
                    ', '.join(map(str, damaged)), 's' if len(damaged) > 1 else '')
    if no_epoch:
        LOG.warning('%s line%s %s: skipped record%s whose "epoch" is not a whole number (edited by hand? training '
                    'writes "epoch": 0 for the first)', path, 's' if len(no_epoch) > 1 else '', ', '.join(no_epoch),
                    's' if len(no_epoch) > 1 else '')
    if notes:
        LOG.warning('%s: ignored field%s %s, which no record gives as a number (added by hand?)', path,
                    's' if len(notes) > 1 else '', ', '.join(notes))
    if wrong:
        LOG.warning('%s line%s %s: skipped record%s whose measurement is not a number (edited by hand?)', path,
                    's' if len(wrong) > 1 else '', ', '.join(wrong), 's' if len(wrong) > 1 else '')
    if unit:
        LOG.warning('%s line%s %s: skipped record%s whose accuracy is not a fraction between 0 and 1 (a percentage '
                    'written by hand? training writes 0.975 for 97.5 %%)', path, 's' if len(unit) > 1 else '',
                    ', '.join(unit), 's' if len(unit) > 1 else '')
    if repeated:
        LOG.warning('%s: epoch(s) %s recorded more than once (again at line(s) %s: pasted, or a file of an older '
                    'version); the last record of each is used', path, ', '.join(str(e + 1) for e in sorted(repeated)),
                    ', '.join(str(n) for e in sorted(repeated) for n in repeated[e]))
    return [by_epoch[e] for e in sorted(by_epoch)]
