"""Per-epoch training records (log/<model_prefix>.jsonl) as written by the trainer, found by run
name, and what to tell a user whose runs are not there.

Reading a file is `core.records.read_records`: a damaged line (a run interrupted while writing
it) is skipped with one warning per file, never a crash.
"""
import logging
import os
import re
from collections import OrderedDict

from core.records import RecordsError, read_records  # noqa: F401  (the names the tools use)
from .cli import UsageError

RUN_NAME = re.compile(r'^(?P<stem>.+)_s(?P<seed>\d+)$')
LISTED = 8                      # run names quoted in a message at most


def find_runs(folder, prefix=''):
    """{model_prefix: records} for every <prefix>*.jsonl in `folder`, by name (a file whose records
    name another run, copied or renamed, or that holds none, is left out with a warning). Raises RecordsError
    (an OSError naming the folder and what to give instead) when `folder` is not an existing
    folder; damaged lines are skipped as read_records does."""
    if not os.path.isdir(folder):
        raise RecordsError("records folder %s %s: pass the folder that holds the runs' <model_prefix>.jsonl "
                           'files (--records; training writes them to log_dir, log/ by default)'
                           % (folder, 'is not a folder' if os.path.exists(folder) else 'does not exist'))
    runs = OrderedDict()
    for name in sorted(os.listdir(folder)):
        if name.endswith('.jsonl') and name.startswith(prefix):
            run = name[:-6]
            records = read_records(os.path.join(folder, name))
            if not records:                 # (training writes a record a finished epoch: emptied by hand?)
                logging.getLogger('records').warning(
                    '%s holds no record (emptied, or cut short?): run %s is left out' % (os.path.join(folder, name), run))
                continue
            foreign = sorted({r['model_prefix'] for r in records if r.get('model_prefix') not in (None, run)})
            if foreign:                     # a records file copied or renamed: it would count twice
                logging.getLogger('records').warning(
                    '%s holds the records of run %s, not of %s (copied or renamed?): left out'
                    % (os.path.join(folder, name), foreign[0], run))
                continue
            runs[run] = records
    return runs


def _known_methods():
    from .results_table import LABELS
    return sorted(LABELS, key=len, reverse=True)


def split_run_name(name):
    """(prefix, method) of a run named <prefix><method>_s<seed>: the longest method name of the
    results table that is the whole stem or follows a '_' (exp_kd_s0: 'exp_', 'kd'; exp_format_s0
    is not an 'at' run), else the part after the first '_' ('exp_', 'format'), else the whole
    stem with the prefix ''; None for names without _s<seed>."""
    m = RUN_NAME.match(name)
    if not m:
        return None
    stem = m.group('stem')
    for method in _known_methods():
        if stem == method or stem.endswith('_' + method):
            return stem[:-len(method)], method
    head, sep, tail = stem.partition('_')
    return (head + sep, tail) if sep and tail else ('', stem)


def _quote(names):
    names = list(names)
    return ', '.join(names[:LISTED]) + (', ... (%d in all)' % len(names) if len(names) > LISTED else '')


def settled_prefix(runs, prefix, log=None):
    """`prefix` as the runs are named: with its '_' when every run it starts is named prefix_<method>_s<seed>
    (--prefix tiny for tiny_kd_s0 would read the method as '_kd'), said on `log`; else `prefix`."""
    named = [n for n in runs if n.startswith(prefix)]
    if prefix and not prefix.endswith('_') and named and all(n[len(prefix):].startswith('_') and
                                                             RUN_NAME.match(n[len(prefix) + 1:]) for n in named):
        if log is not None:
            log.warning('--prefix %s: the runs are named %s_<method>_s<seed>; read as --prefix %s_' % (prefix, prefix,
                                                                                                     prefix))
        return prefix + '_'
    return prefix


def matching_runs(runs, prefix):
    """Names of `runs` named <prefix><method>_s<seed>."""
    return [n for n in runs if n.startswith(prefix) and RUN_NAME.match(n[len(prefix):])]


def methods_of(runs, prefix):
    """Sorted method names of the runs named <prefix><method>_s<seed>."""
    return sorted({RUN_NAME.match(n[len(prefix):]).group('stem') for n in matching_runs(runs, prefix)})


def _prefix_advice(runs):
    """What to pass as --prefix for the runs there: "--prefix 'P' (N runs)" for every prefix P the
    run names suggest, N the runs that prefix then matches, plus the records whose names do not
    follow <prefix><method>_s<seed> (no --prefix reads them)."""
    prefixes = sorted({split_run_name(n)[0] for n in runs if split_run_name(n)})
    found = ['--prefix %r (%d run%s)' % (p, len(matching_runs(runs, p)), '' if len(matching_runs(runs, p)) == 1
                                         else 's') for p in prefixes]
    others = [n for n in runs if not RUN_NAME.match(n)]
    text = ('pass one of these: %s' % _quote(found)) if found else ''
    if others:
        text += '%sthe records %s are not named <prefix><method>_s<seed>, so no table reads them (train runs ' \
                'to compare as model_prefix=<prefix><method>_s<seed>, e.g. exp_kd_s0)' % (
                    '; ' if text else '', _quote(others))
    return text


def missing_runs(folder, runs, prefix, num_epoch=None, prefix_fix=None, epoch_fix=None):
    """UsageError for finding no (finished) run named <prefix><method>_s<seed> among `runs`
    (find_runs(folder)): says what was searched and what is there (each --prefix that would match
    runs there, with its count, and the records no prefix matches; or the unfinished runs with their
    last epoch), then the fix."""
    if not runs:
        there = [n for n in os.listdir(folder) if n.endswith('.jsonl')] if os.path.isdir(folder) else []
        if there:
            return UsageError('the records files in %s (%s) were all left out: each holds the records of another '
                              'run (the warnings above name it; copied or renamed?). Pass the log_dir the runs wrote, '
                              'or name the copies after the runs they hold' % (folder, _quote(sorted(there))))
        return UsageError('no run records (*.jsonl) in %s: training writes log_dir/<model_prefix>.jsonl '
                          '(log/ by default); pass that folder as --records' % folder)
    matching = matching_runs(runs, prefix)
    pattern = '%r<method>_s<seed>' % prefix
    if not matching:
        return UsageError('no runs named %s in %s; %s' % (pattern, folder, prefix_fix or _prefix_advice(runs)))
    last = ['%s (last epoch %s)' % (n, runs[n][-1]['epoch'] + 1 if runs[n] else 'none: no readable record')
            for n in matching]
    if num_epoch is None:
        return UsageError('the runs named %s in %s have no readable record: %s' % (pattern, folder, _quote(last)))
    return UsageError('no run named %s in %s reached epoch %d (--num-epoch %d): %s; %s' % (
        pattern, folder, num_epoch, num_epoch, _quote(last), epoch_fix or 'let the runs finish or lower --num-epoch'))


def reached_num_epoch(records):
    """Whether a run's `records` end at the num_epoch they name: it finished (not stopped short)."""
    return records[-1].get('num_epoch') == records[-1]['epoch'] + 1


def training_now(runs, names):
    """The runs among `names` whose lock (model_dir/NAME.lock, from their last record's model_dir) names a
    live process: their last record is not their last epoch."""
    from core.runs import RunLock
    out = []
    for n in names:
        recs = runs.get(n) or []
        folder = recs[-1].get('model_dir') if recs else None
        if isinstance(folder, str) and os.path.isfile(os.path.join(folder, n + '.lock')) and \
                RunLock(folder, n).holder_alive():
            out.append(n)
    return out


def still_training(runs, names):
    """['NAME (epoch N so far)'] of `training_now`."""
    return ['%s (epoch %d so far)' % (n, runs[n][-1]['epoch'] + 1) for n in training_now(runs, names)]


def finished_runs(runs, names, log=None):
    """The names among `names` (runs with records) whose last epoch is the latest any of them
    reached. The others stopped short (crashed, interrupted, still training): they are left out,
    with one warning on `log` naming each and its last epoch, since averaging them with finished
    seeds would pull the mean towards an earlier epoch."""
    last = OrderedDict((n, runs[n][-1]['epoch']) for n in names if runs[n])
    if not last:
        return []
    end = max(last.values())
    # (epochs counted from 1 in the messages; a run whose records say it reached its num_epoch finished)
    ended = [n for n, e in last.items() if e < end and reached_num_epoch(runs[n])]
    done_at = [last[n] for n in ended]
    done = ['%s (num_epoch %d)' % (n, last[n] + 1) for n in ended]
    short = ['%s (last epoch %d)' % (n, e + 1) for n, e in last.items() if e < end and n not in ended]
    if done and log is not None:
        log.warning('left out %d run(s) that finished at their num_epoch, before epoch %d, which the other runs '
                    'reached: %s. Pass --num-epoch %d to compare every run at epoch %d (those that reached it)',
                    len(done), end + 1, _quote(done), min(done_at) + 1, min(done_at) + 1)
    if short and log is not None:
        log.warning('left out %d run(s) that stopped before epoch %d, the last epoch the other runs reached: %s. '
                    'Let them finish (resume: retrain=true model_load_epoch=-1), or pass --num-epoch N to '
                    'compare every run at epoch N (those that reached it)', len(short), end + 1, _quote(short))
    return [n for n, e in last.items() if e == end]
