"""One run per name, and nothing of a run overwritten by mistake.

A run named P owns, in `model_dir` D and `log_dir` L:
  D/P-NNNN.{params,extra.params,states,json}, D/P-best.*   its checkpoints
  L/P.log, L/P.jsonl                                        its logs and per-epoch records
  L/tensorboard/P/                                          its TensorBoard events (tensorboard=true)
  D/P.lock, L/P.lock                                        while it trains (JSON: pid, host, start; L's
                                                            when L is not D: a run of that name in
                                                            another model_dir shares L's files)

`RunLock` is held for the life of a run (by rank 0 of a distributed run): a
second run of the same name is refused at once; a lock whose process is gone
(same host, dead PID or a PID reused by another process) is taken over with a
warning.

`claim(cfg, resume_epoch)` applies the rules before anything is written:
- a new run (no `retrain`, or `retrain` from another run) under a name that
  already has checkpoints is refused, unless `overwrite=true`, which moves the
  old run's files to D/replaced/P-<time>/ (nothing is deleted);
- resuming a run from an epoch earlier than its latest is refused (it would
  overwrite the later epochs), unless `overwrite=true`, which moves the later
  epochs (and a best copy taken from them) aside and makes the best of the
  kept epochs the best copy again;
- log files of a name without checkpoints (a run that stopped before its first
  checkpoint) are moved aside with a warning when a new run starts;
- records in L of the run of that name in another model_dir that has checkpoints
  (a run copied to another folder) are never taken over: a new run or a resume of
  the copy with that log_dir is refused.
"""
import json
import logging
import os
import re
import shutil
import socket
import time

from . import checkpoint
from .atomic import aside_stamp, remove_stale
from .env import proc_stat
from .project import from_another_folder, in_project
from .interrupt import AT_FORCED_EXIT

LOG = logging.getLogger('runs')


from .errors import RunError  # noqa: E402,F401  (`resume`: resuming the existing run is one of the fixes)


# ------------------------------------------------------------------ the lock
def _start_ticks(pid):
    """Start time of process `pid` in clock ticks since boot (Linux), or None where unknown."""
    fields = proc_stat(pid)
    try:
        return int(fields[19])
    except (TypeError, ValueError, IndexError):
        return None


def process_alive(pid, ticks=None):
    """Whether process `pid` still runs on this host (and, given its start time `ticks`, is that
    process: the one that took a lock, not a later one with its number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    now = _start_ticks(pid)
    return ticks is None or now is None or now == ticks


def _runs_python(pid):
    """Whether process `pid` runs a Python interpreter (True where that cannot be read): a lock that
    names no start time (a pid file) held by, say, process 1 (init) is no run's."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv = f.read().split(b'\0')
    except OSError:
        return True
    return any(b'python' in os.path.basename(a).lower() for a in argv[:2])


class RunLock(object):
    """D/P.lock for the life of a run: `acquire()` or RunError, `release()` (also on exit). Another
    job that must not run twice at once names itself in the errors: `subject` (default "run 'P'"),
    `doing` (default 'trained') and `instead` (default 'another model_prefix')."""

    def __init__(self, model_dir, prefix, subject=None, doing='trained', instead='another model_prefix'):
        self.path = os.path.join(model_dir, prefix + '.lock')
        self.prefix = prefix
        self.subject, self.doing, self.instead = subject or 'run %r' % prefix, doing, instead
        self.mine = {'pid': os.getpid(), 'host': socket.gethostname(), 'start': _start_ticks(os.getpid()),
                     'since': time.strftime('%Y-%m-%d %H:%M:%S')}
        self.held = False

    def _read(self):
        try:
            with open(self.path) as f:
                holder = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}                   # unreadable: written by a process that died while writing it
        if isinstance(holder, int) and not isinstance(holder, bool):
            return {'pid': holder}      # (a pid file another script wrote: its process id alone)
        return holder if isinstance(holder, dict) else {}

    @staticmethod
    def _alive(holder):
        """Whether the process a lock's content `holder` names (on this host) still runs: that process
        (its start time, where the lock has one), or a Python program (a pid file's bare id)."""
        pid = holder.get('pid') if holder else None
        return isinstance(pid, int) and process_alive(pid, holder.get('start')) and (
            holder.get('start') is not None or _runs_python(pid))

    def holder_alive(self):
        """Whether the lock is held by a live process on this host (a run training now)."""
        holder = self._read()
        return bool(holder) and holder.get('host') in (None, self.mine['host']) and self._alive(holder)

    def _create(self):
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, 'w') as f:
            json.dump(self.mine, f)

    def acquire(self):
        if os.path.isdir(self.path):
            raise RunError('%s, the lock file of %s, is a folder: remove it (no run uses it as one), or choose %s'
                           % (self.path, self.subject, self.instead))
        for _ in range(3):
            try:
                self._create()
                self.held = True
                AT_FORCED_EXIT.append(self.release)     # (a worker stuck in its kvstore when stopped)
                return self
            except FileExistsError:
                pass
            holder = self._read()
            if holder is None:
                continue                 # released meanwhile: try again
            same_host = holder.get('host') in (None, self.mine['host'])     # (a pid file names no host)
            pid = holder.get('pid')
            if holder and not same_host:
                raise RunError('%s is being %s by process %s on host %s since %s (lock %s). Wait for it or choose '
                               '%s; if that process is no longer running, delete the lock file'
                               % (self.subject, self.doing, pid, holder.get('host'), holder.get('since'), self.path,
                                  self.instead))
            if self._alive(holder):
                raise RunError('%s is already being %s by process %d on this host since %s (lock %s): wait for it '
                               'to finish, stop it, or choose %s' % (self.subject, self.doing, pid,
                                                                     holder.get('since'), self.path, self.instead))
            if pid is None:
                LOG.warning('taking over the lock %s, which names no process (damaged: a crash while it was '
                            'written?)', self.path)
            elif isinstance(pid, int) and holder.get('start') is None and process_alive(pid):
                LOG.warning('taking over the lock %s: the process it names (%d) runs no Python program, so no '
                            'training run', self.path, pid)
            else:
                LOG.warning('taking over the lock %s of a run that is no longer running (process %s%s)',
                            self.path, pid, ', since %s' % holder['since'] if holder.get('since') else '')
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RunError('could not take over the lock %s of %s (%s): remove it by hand, or choose %s'
                               % (self.path, self.subject, e.strerror or e, self.instead))
        raise RunError('could not take the lock %s of %s: another process keeps taking it; is it being started '
                       'twice?' % (self.path, self.subject))

    def release(self):
        if self.held and self._read() == self.mine:
            try:
                os.remove(self.path)
            except OSError:
                pass
        self.held = False
        if self.release in AT_FORCED_EXIT:
            AT_FORCED_EXIT.remove(self.release)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# ------------------------------------------------------------- the run's files
def checkpoint_files(model_dir, prefix):
    """Every checkpoint file of run `prefix` (complete or not, epochs and best), sorted."""
    pattern = re.compile(r'^%s-(\d{4}|best)\.(params|extra\.params|states|json)$' % re.escape(prefix))
    try:
        names = os.listdir(model_dir)
    except OSError:
        return []
    return sorted(os.path.join(model_dir, n) for n in names if pattern.match(n))


def _epoch_of(path):
    m = re.search(r'-(\d{4}|best)\.[a-z.]+$', os.path.basename(path))
    return m.group(1)


def epoch_files(model_dir, prefix, epochs):
    """The checkpoint files of run `prefix` at the given epoch numbers (and 'best' if listed)."""
    tags = {e if e == 'best' else '%04d' % e for e in epochs}
    return [f for f in checkpoint_files(model_dir, prefix) if _epoch_of(f) in tags]


def _records_owner(log_dir, prefix):
    """The model_dir the last record of log_dir/prefix.jsonl names (the engine writes it in every
    record), None when it names none."""
    from .records import read_records
    try:
        records = read_records(os.path.join(log_dir, prefix + '.jsonl'))
    except OSError:
        return None
    owner = records[-1].get('model_dir') if records else None
    return owner if isinstance(owner, str) else None


def log_files(log_dir, prefix):
    return [p for p in (os.path.join(log_dir, prefix + '.log'), os.path.join(log_dir, prefix + '.jsonl'))
            if os.path.isfile(p)] + [p for p in [os.path.join(log_dir, 'tensorboard', prefix)] if os.path.isdir(p)]


def move_aside(model_dir, prefix, files, why):
    """Move `files` to model_dir/replaced/<prefix>-<time>/ (nothing is deleted); return that folder."""
    stamp = aside_stamp()
    dest = os.path.join(model_dir, 'replaced', '%s-%s' % (prefix, stamp))
    n = 1
    while os.path.exists(dest):
        n += 1
        dest = os.path.join(model_dir, 'replaced', '%s-%s-%d' % (prefix, stamp, n))
    try:
        os.makedirs(dest)
        for f in files:
            shutil.move(f, os.path.join(dest, os.path.basename(f)))
    except OSError as e:
        kept = os.path.join(model_dir, 'replaced')
        if os.path.lexists(kept) and not os.path.isdir(kept):
            raise RunError('could not move the files of run %r aside: %s is a file, where runs set aside go; nothing '
                           'was trained. Move that file away' % (prefix, kept))
        raise RunError('could not move the files of run %r to %s (%s); nothing was trained. Free disk space or '
                       'fix the permissions' % (prefix, dest, e))
    if files:
        LOG.warning('%s: moved %d file(s) of run %r to %s', why, len(files), prefix, dest)
    else:
        LOG.warning('%s: kept in %s', why, dest)
    return dest


def _describe(model_dir, prefix):
    have = checkpoint.epochs(model_dir, prefix)
    if not have:
        return 'incomplete checkpoint files only'
    text = 'epochs %s' % checkpoint.epochs_text(have)
    try:
        best = checkpoint.read_meta(model_dir, prefix, 'best').get('best_top1')
        if best is not None:
            text += ', best val top-1 %.2f%%' % (100 * best)
    except checkpoint.CheckpointError:
        pass
    return text


def missing_folders(folders):
    """[(folder, the outermost of it and its parents that does not exist)] for the `folders` not
    there yet: what creating them creates, for `remove_if_empty`."""
    out = []
    for folder in folders:
        folder = os.path.abspath(folder)
        if not os.path.exists(folder):
            top = folder
            while not os.path.exists(os.path.dirname(top)):
                top = os.path.dirname(top)
            out.append((folder, top))
    return out


def remove_if_empty(created):
    """Remove the folders `missing_folders` listed (each up to its outermost created parent) where
    they are empty: a run that could not start leaves no empty model/ or log/ behind."""
    for folder, top in created:
        while True:
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError:
                break                   # something is in it
            if folder == top or os.path.dirname(folder) == folder:
                break
            folder = os.path.dirname(folder)


def same_folder(a, b):
    """Whether paths `a` and `b` name the same folder (symbolic links followed)."""
    return os.path.realpath(a) == os.path.realpath(b)


def _refuse_records_of_another_folder(cfg, what):
    """RunError when log_dir's records of run model_prefix are those of the run of that name in another
    model_dir, which has checkpoints (the run copied to another folder, or two runs of one name): `what`
    this run would do to them."""
    prefix, model_dir = cfg.model_prefix, cfg.model_dir
    owner = _records_owner(cfg.log_dir, prefix)
    if not owner or same_folder(owner, model_dir):
        return
    have = checkpoint.epochs(owner, prefix)
    if not have:
        return
    try:                    # (that run's own log_dir, as its checkpoint says: a copied tree has one of its own)
        meta = checkpoint.read_meta(owner, prefix, have[-1])
        theirs = (meta.get('config') or {}).get('log_dir')
        if isinstance(theirs, str) and theirs and not os.path.isabs(theirs) and meta.get('cwd'):
            theirs = os.path.join(meta['cwd'], theirs)
    except checkpoint.CheckpointError:
        theirs = None
    if isinstance(theirs, str) and theirs and not same_folder(theirs, cfg.log_dir):
        return              # (the records were copied with the run: this copy's own now)
    raise RunError('%s holds the records of run %r in %s, which has checkpoints: this run (model_dir=%s) %s. '
                   'Give it a log_dir of its own (e.g. log_dir=%s), or another model_prefix'
                   % (os.path.join(cfg.log_dir, prefix + '.jsonl'), prefix, owner, model_dir, what,
                      os.path.join(model_dir, 'log')))


def run_names(folder):
    """Names of the checkpointed runs in `folder`: this project's (RUN-NNNN.json / RUN-best.json)
    and legacy Module checkpoints (RUN-symbol.json), sorted."""
    names = set()
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    for f in entries:
        m = re.match(r'^(.+)-(\d{4}|best|symbol)\.json$', f)
        if m:
            names.add(m.group(1))
    return sorted(names)


def _refuse_lookalike(cfg):
    """RunError when model_prefix is new but another run in model_dir or log_dir has a name that
    reads the same, written with other Unicode code points (NFC and NFD: 'café' typed on two systems,
    or copied from another program): two runs the listings cannot tell apart."""
    import unicodedata
    same = unicodedata.normalize('NFC', cfg.model_prefix)
    try:
        logs = [f[:-len('.jsonl')] for f in os.listdir(cfg.log_dir) if f.endswith('.jsonl')]
    except OSError:
        logs = []
    for folder, names in ((cfg.model_dir, run_names(cfg.model_dir)), (cfg.log_dir, logs)):
        for name in names:
            if name != cfg.model_prefix and unicodedata.normalize('NFC', name) == same:
                raise RunError('model_prefix=%s reads as run %s in %s but is written with other Unicode characters '
                               '(%s against %s: typed on another system, or copied from another program), so it would '
                               'be a second run that looks the same: give the existing name exactly (copy it from '
                               'the folder\'s listing), or another model_prefix'
                               % (cfg.model_prefix, name, folder, ascii(cfg.model_prefix), ascii(name)))


def claim(cfg, defer=False):
    """Check (and with overwrite=true, make) the room a run needs before it writes anything:
    see the module docstring. Raises RunError. With `defer`, the moves are not made yet: the
    function that makes them is returned (the trainer calls it once the run is set up, so a run
    that cannot start leaves the old one where it was); else returns None."""
    model_dir, prefix = cfg.model_dir, cfg.model_prefix
    for name in (prefix + '.jsonl', prefix + '.log'):      # (a folder there: found only after an epoch)
        path = os.path.join(cfg.log_dir, name)
        if os.path.isdir(path):
            raise RunError('%s is a folder, where run %r writes its %s: move it away, or give the run another '
                           'model_prefix or log_dir' % (path, prefix, 'records' if name.endswith('.jsonl') else 'log'))
    files = checkpoint_files(model_dir, prefix)
    logs = log_files(cfg.log_dir, prefix)
    if not files and not logs:
        _refuse_lookalike(cfg)
    resume_same = cfg.retrain and cfg.model_load_prefix == prefix
    moves = []
    if resume_same:
        # (the later-epoch rule needs the resolved epoch: `claim_resume`; without checkpoints here the resume
        # says what is wrong)
        if checkpoint.epochs(model_dir, prefix):
            records = lambda d: os.path.isfile(os.path.join(d, prefix + '.jsonl'))
            there = None if records(cfg.log_dir) else in_project(cfg.log_dir, records)
            if there:        # (run from another folder: its records would start again there, split in two files)
                raise RunError('config key ' + from_another_folder('log_dir', cfg.log_dir, there,
                                                                   'the records file of run %r' % prefix))
            _refuse_records_of_another_folder(cfg, 'resuming this copy would take them over (write, rewind or set '
                                                   'aside its records)')
    elif files:
        if not cfg.overwrite and not checkpoint.epochs(model_dir, prefix):
            raise RunError('run %r in %s has only incomplete checkpoint files (%s: a run stopped while writing its '
                           'first checkpoint), so there is nothing to resume: start over with overwrite=true (they '
                           'are moved to %s/replaced/, nothing is deleted), or choose another model_prefix'
                           % (prefix, model_dir, ', '.join(os.path.basename(f) for f in files[:4]), model_dir))
        if not cfg.overwrite:
            what = 'starting over' if not cfg.retrain else 'starting from run %r' % cfg.model_load_prefix
            raise RunError('run %r already exists in %s (%s); %s under its name would overwrite it. Resume it '
                           '(command below), start over with overwrite=true (the old run is moved to %s/replaced/, '
                           'nothing is deleted), or choose another model_prefix'
                           % (prefix, model_dir, _describe(model_dir, prefix), what, model_dir), resume=True)
        moves.append((files + logs, 'overwrite=true'))
    elif logs:
        _refuse_records_of_another_folder(cfg, 'would take them over')
        moves.append((logs, 'logs of an earlier run %r without checkpoints' % prefix))

    def make_room():
        for found, why in moves:
            move_aside(model_dir, prefix, found, why)
    if defer:
        return make_room
    make_room()


def claim_resume(cfg, epoch, metric='val_top1'):
    """Resuming run `model_prefix` from `epoch`: refuse (or with overwrite=true move aside) its later
    epochs, which the resumed run would overwrite; the best copy is then the best kept epoch by
    `metric` (the record key the run's task rates epochs by)."""
    model_dir, prefix = cfg.model_dir, cfg.model_prefix
    later = [e for e in checkpoint.epochs(model_dir, prefix) if e > epoch]
    if later and not cfg.overwrite:
        raise RunError('resuming run %r from epoch %d would overwrite its later epochs %s. Resume from the latest '
                       'with model_load_epoch=-1, branch into a new run with model_prefix=NEW '
                       'model_load_prefix=%s model_load_epoch=%d, or overwrite=true to move epochs %s aside (to '
                       '%s/replaced/, nothing is deleted)' % (prefix, epoch, checkpoint.epochs_text(later), prefix,
                                                              epoch, checkpoint.epochs_text(later), model_dir))
    # later files, complete or not (an incomplete one would be overwritten without loss, but is kept too)
    moving = [f for f in checkpoint_files(model_dir, prefix) if _epoch_of(f) != 'best' and int(_epoch_of(f)) > epoch]
    if not moving:
        restore_best(model_dir, prefix, epoch, metric)      # a best copy that was never written (a full disk)
        return
    best_epoch = None
    try:
        best_epoch = checkpoint.read_meta(model_dir, prefix, 'best').get('epoch')
    except checkpoint.CheckpointError:
        pass
    best_files = [f for f in checkpoint_files(model_dir, prefix) if _epoch_of(f) == 'best']
    if best_files and (best_epoch is None or best_epoch > epoch):
        moving += best_files
    complete = set(checkpoint.epochs(model_dir, prefix))
    incomplete = []                  # (why a later epoch is not resumed: a file of it deleted, or never written)
    for e in sorted({int(_epoch_of(f)) for f in moving if _epoch_of(f) != 'best'} - complete):
        lacks = [kind for kind in ('.params', '.json')
                 if not os.path.isfile(os.path.join(model_dir, '%s-%04d%s' % (prefix, e, kind)))]
        folders = [k for k in lacks if os.path.isdir(os.path.join(model_dir, '%s-%04d%s' % (prefix, e, k)))]
        incomplete.append('epoch %d has no %s%s' % (e, ' nor '.join(lacks), ' (its %s a folder)' % (
            ' and '.join(folders) + (' is' if len(folders) == 1 else ' are')) if folders else ''))
    why = 'resuming %r from epoch %d' % (prefix, epoch)
    if incomplete:
        why += ', its latest complete epoch (%s: deleted, or its writing was interrupted)' % '; '.join(incomplete)
    dest = move_aside(model_dir, prefix, moving, why)
    if best_files and (best_epoch is None or best_epoch > epoch):
        restore_best(model_dir, prefix, epoch, metric)
    rewind_records(os.path.join(cfg.log_dir, prefix + '.jsonl'), epoch, dest)


def rename_records(path, prefix):
    """Name run `prefix` in every record of the records file `path` (a run renamed, records and all),
    written whole or not at all."""
    from .atomic import write_atomic
    from .records import read_records
    records = [dict(r, model_prefix=prefix) for r in read_records(path)]
    write_atomic(path, ''.join(json.dumps(r) + '\n' for r in records))


def rewind_records(path, epoch, dest):
    """Keep in the records file `path` only the epochs before checkpoint `epoch` (record epochs
    0..epoch-1), after copying it whole to folder `dest`."""
    if not os.path.isfile(path):
        return
    from .records import read_records
    try:
        shutil.copy2(path, os.path.join(dest, os.path.basename(path)))
        kept = [r for r in read_records(path) if r['epoch'] < epoch]
        with open(path + '.tmp', 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in kept)
        os.replace(path + '.tmp', path)
    except OSError as e:
        raise RunError('could not rewind the records %s to epoch %d (%s); its copy is in %s' % (path, epoch, e, dest))


# keys that say how a run is run, not what it trains: changing them on resume keeps the run what it was
RUN_KEYS = ('retrain', 'model_load_epoch', 'model_load_prefix', 'model_prefix', 'begin_epoch', 'overwrite', 'progress',
            'frequent', 'tensorboard', 'data_threads', 'gpu_list', 'kv_store', 'model_dir', 'log_dir', 'plan')

PROBE_AGE = 60.0            # seconds after which a folder's write-test probe is a leftover of a killed process


def clear_leftovers(model_dir, log_dir, prefix):
    """Remove what a killed process of run `prefix` left behind (SIGKILL or a power cut between
    writing and renaming): its hidden checkpoint files `.PREFIX-NNNN[.extra].tmp-PID.{params,states,json}`
    (only this run, whose lock the caller holds, writes them), and, in both folders, write-test
    probes `.write-test-PID` older than a minute (a live one exists for microseconds). Returns the
    paths removed."""
    removed = remove_stale(model_dir, r'^\.%s-(\d{4}|best)(\.extra)?\.tmp-\d+\.(params|states|json)$' % re.escape(prefix))
    for folder in sorted({model_dir, log_dir}):
        removed += remove_stale(folder, r'^\.write-test-\d+$',
                                lambda m, path: time.time() - os.path.getmtime(path) > PROBE_AGE)
    if removed:
        LOG.info('removed %d file(s) left by an interrupted process: %s', len(removed),
                 ', '.join(os.path.basename(p) for p in removed))
    return removed


def restore_best(model_dir, prefix, upto, metric='val_top1'):
    """Make the kept epoch (<= upto) with the highest `metric` the best copy, if it is not: of equal
    values the first, as an uninterrupted run keeps it (a later epoch is best only when better)."""
    e = checkpoint.best_recorded(model_dir, prefix, metric, upto)
    if e is None:
        return
    try:
        if checkpoint.read_meta(model_dir, prefix, 'best').get('epoch') == e and \
                os.path.isfile(checkpoint.paths(model_dir, prefix, 'best')['params']):
            return
    except checkpoint.CheckpointError:
        pass
    src, dst = checkpoint.paths(model_dir, prefix, e), checkpoint.paths(model_dir, prefix, 'best')
    for kind in ('params', 'extra', 'meta'):          # metadata last: it makes the copy complete
        if os.path.isfile(src[kind]):
            shutil.copyfile(src[kind], dst[kind] + '.tmp')
            os.replace(dst[kind] + '.tmp', dst[kind])
    LOG.info('best copy of %r is now epoch %d', prefix, e)


__all__ = ['RunError', 'RunLock', 'claim', 'clear_leftovers', 'claim_resume', 'checkpoint_files', 'epoch_files', 'move_aside',
           'restore_best', 'log_files']
