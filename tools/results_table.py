"""Markdown results table of any task's runs.

    python -m tools.results_table --records results/records --prefix repro_ [--out table.md]
    python -m tools.results_table --task detection voc_baseline voc_kd_nst [model_dir=model]

Detection (the paper's Table 4): the best checkpoint of each run named (a detection preset, or
model_dir/RUN), its VOC07 mAP beside the paper's and the AP per class, as
`python -m tools.detection --table` gives it.

Classification:
Runs are named <prefix><method>_s<seed>; each is compared at one epoch
(--num-epoch N: epoch N, the record whose "epoch" is N-1; runs that did not reach it left out;
without it, the latest epoch any of these runs reached: a seed that stopped
short is left out, with a warning). Each row: method, student, teacher, top-1 and
top-5 error (%) of the last epoch as mean +- std over seeds, seeds counted.
"""
import json
import logging
import os
import re
import sys
from collections import OrderedDict

import numpy as np

from . import cli
from .records import (RUN_NAME, find_runs, finished_runs, matching_runs, missing_runs, settled_prefix,
                      still_training)
from .markdown import cell

LOG = logging.getLogger('results_table')
NAME = re.compile(r'^(?P<prefix>.*?)(?P<method>[a-z0-9_]+?)_s(?P<seed>\d+)$')
LABELS = OrderedDict([
    ('student', 'student alone'), ('kd', 'KD'), ('fitnet', 'FitNet'), ('at', 'AT'),
    ('nst', 'NST'), ('nst_linear', 'NST (linear)'), ('nst_poly', 'NST (poly)'), ('nst_gaussian', 'NST (Gaussian)'),
    ('fsp', 'FSP'), ('ofd', 'OFD'), ('kd_nst', 'KD + NST'), ('kd_fitnet', 'KD + FitNet'),
    ('kd_fitnet_nst', 'KD + FitNet + NST'), ('sp', 'SP'), ('rkd', 'RKD'), ('pkt', 'PKT'), ('kdsvd', 'KDSVD'),
    ('dkd', 'DKD'), ('dist', 'DIST'), ('cc', 'CC'), ('vid', 'VID'), ('reviewkd', 'ReviewKD'), ('ab', 'AB'),
    ('ft', 'FT'), ('crd', 'CRD'), ('cwd', 'CWD'), ('mmd', 'NST'), ('kd_mmd', 'KD + NST'),
])


def group_runs(runs, prefix, num_epoch=None, best=None):
    """{method: [the record compared of each seed]} for runs named <prefix><method>_s<seed>: with
    num_epoch, the record of epoch num_epoch - 1 of every run that reached it; without, the last
    record of the runs that reached the latest last epoch of these runs (the others are left out
    with a warning naming them). `best` (a record key, e.g. val_miou): instead of that record, the
    one with the highest `best` up to it (the first of equal ones, as a run keeps its best epoch)."""
    names = matching_runs(runs, prefix)
    if num_epoch is None:
        names = finished_runs(runs, names, LOG)
    for name, kt_type in misnamed_runs(names, runs, prefix):
        LOG.warning('run %s trained with kt_type %s, which its name does not say: it is tabled under the method its '
                    'name says (runs are named <prefix><method>_s<seed>; rename the run with its records to table it '
                    'right)', name, kt_type)
    groups = OrderedDict()
    for name in names:
        recs = runs[name]
        if num_epoch is None:
            rec = recs[-1] if recs else None
        else:
            rec = next((r for r in recs if r['epoch'] == num_epoch - 1), None)
        if rec is not None and best is not None:
            upto = [r for r in recs if r['epoch'] <= rec['epoch'] and r.get(best) == r.get(best)]
            rec = max(upto, key=lambda r: (r[best], -r['epoch'])) if upto else rec
        if rec is not None:
            groups.setdefault(RUN_NAME.match(name[len(prefix):]).group('stem'), []).append(rec)
    return groups


def _methods_named(stem):
    """The transfer methods a run's name says (kd_nst -> {kd, mmd}; 'student' -> the empty set), None
    when its words name none (a name of the user's own, e.g. baseline)."""
    words = stem.split('_')
    named = {'mmd' if w == 'nst' else w for w in words if w in LABELS and w != 'student'}
    return named if named or 'student' in words else None


def _methods_run(record):
    """The transfer methods a run's record says it trained with (its kt_type; the empty set for a run
    without a teacher), None for records written before they said it."""
    if 'kt_type' not in record:
        return set() if 'model_dir' in record and not record.get('teacher') else None
    return {'mmd' if m.strip().lower() == 'nst' else m.strip().lower() for m in str(record['kt_type']).split('+')}


def misnamed_runs(names, runs, prefix):
    """[(run name, kt_type it trained with)] of the runs whose name says other methods than their
    records (a kd+mmd run named exp_kd_s0 would be tabled as KD)."""
    out = []
    for name in names:
        said, recs = _methods_named(RUN_NAME.match(name[len(prefix):]).group('stem')), runs[name]
        ran = _methods_run(recs[-1]) if recs else None
        if said is not None and ran is not None and said != ran:
            out.append((name, recs[-1].get('kt_type') or 'none (no teacher)'))
    return out


def _refuse_other_file(out):
    """UsageError when `out` exists and is not a table of this tool (its first line the header of a
    classification or segmentation table): --out would replace another file, e.g. a README."""
    try:
        with open(out, encoding='utf-8', errors='replace') as f:
            first = f.readline()
    except FileNotFoundError:
        return
    except OSError:
        return                              # (cli.output_path has said what is wrong with the place)
    if first.strip() and not first.startswith('| method |'):
        raise cli.UsageError('--out %s is a file this tool did not write (its first line: %r): give another --out, or '
                             'move that file away first' % (out, first.strip()[:60]))
    manifest = os.path.join(os.path.dirname(out) or '.', 'compare.json')
    if first.strip() and os.path.basename(out) == 'table.md' and os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                wrote = json.load(f)
        except (OSError, ValueError):
            wrote = {}
        wrote = wrote if isinstance(wrote, dict) else {}
        raise cli.UsageError('--out %s is the table tools.compare wrote for its comparison%s (%s): give another --out '
                             '(running that comparison again rebuilds its table)'
                             % (out, ' --name %s --cfg %s' % (wrote.get('name'), wrote.get('cfg')) if wrote else '',
                                manifest))


def fmt(values):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return '%.2f' % values[0]
    return '%.2f ± %.2f' % (values.mean(), values.std(ddof=1))


def make_table(groups, student='', teacher='', teacher_record=None):
    """Markdown: one row per method (in the usual order), errors in percent; without the top-5
    column when the records have no top-5 (runs of 5 classes or fewer, where it says nothing)."""
    with_top5 = any('val_top5' in r for recs in groups.values() for r in recs)
    lines = ['| method | student | teacher | top-1 error (%%)%s | seeds |' % (' | top-5 error (%)' if with_top5 else ''),
             '|---|---|---|---|%s---|' % ('---|' if with_top5 else '')]
    order = [m for m in LABELS if m in groups] + [m for m in groups if m not in LABELS]
    for method in order:
        recs = groups[method]
        top1 = [100 * (1 - r['val_top1']) for r in recs]
        top5 = ' | %s' % fmt([100 * (1 - r['val_top5']) for r in recs]) if with_top5 else ''
        lines.append('| %s | %s | %s | %s%s | %d |' % (cell(LABELS.get(method, method)), cell(student),
                                                       '—' if method == 'student' else cell(teacher),
                                                       fmt(top1), top5, len(recs)))
    if teacher_record is not None:
        lines.append('| teacher | %s | — | %.2f%s | 1 |' % (
            cell(teacher), 100 * (1 - teacher_record['val_top1']),
            ' | %.2f' % (100 * (1 - teacher_record['val_top5'])) if with_top5 else ''))
    return '\n'.join(lines) + '\n'


def segmentation_table(groups, student='', teacher=''):
    """Markdown: one row per method, mIoU and pixel accuracy (%) as mean +- std over seeds."""
    missing = [m for m, recs in groups.items() if any('val_miou' not in r for r in recs)]
    if missing:
        raise cli.UsageError('runs of %s have no val_miou in their records: they are not segmentation runs (leave out '
                             '--task segmentation)' % ', '.join(missing))
    lines = ['| method | network | teacher | mIoU (%) | pixel accuracy (%) | seeds |', '|---|---|---|---|---|---|']
    order = [m for m in LABELS if m in groups] + [m for m in groups if m not in LABELS]
    for method in order:
        recs = groups[method]
        lines.append('| %s | %s | %s | %s | %s | %d |' % (
            cell(LABELS.get(method, method)), cell(student), '—' if method == 'student' else cell(teacher),
            fmt([100 * r['val_miou'] for r in recs]), fmt([100 * r['val_pixel_acc'] for r in recs]), len(recs)))
    return '\n'.join(lines) + '\n'


def _said(groups, key):
    """What the runs' records say of `key` (network, teacher), when they all say the same; else ''."""
    values = {r.get(key) for recs in groups.values() for r in recs if r.get(key)}
    return values.pop() if len(values) == 1 else ''


@cli.command
def main(argv=None):
    """Print (and with --out write) the table; 2 with one error line when no run matches."""
    p = cli.parser('results_table', __doc__)
    p.add_argument('--records', help="folder of the runs' .jsonl records (default results/records)")
    p.add_argument('--prefix', help='runs are named <prefix><method>_s<seed> (default repro_)')
    p.add_argument('--num-epoch', type=cli.positive_int, default=None,
                   help='compare the runs at epoch N (their record whose "epoch" is N-1; runs that did not reach '
                   'it are left out)')
    p.add_argument('--best', action='store_true', help="each run's best epoch (validation top-1 or mIoU) up to the "
                   'epoch compared, instead of that epoch (a detection table always compares best checkpoints)')
    p.add_argument('--student', default='', help="the students' network (default: what their records say)")
    p.add_argument('--teacher', default='', help='the teacher (default: what the records of the distilled runs say)')
    p.add_argument('--out', help='markdown file to write (replaced only when the table is complete)')
    p.add_argument('--task', choices=['classification', 'detection', 'segmentation'], default='classification',
                   help='segmentation: runs found as for classification (--records, --prefix), mIoU and pixel '
                   'accuracy (%%) as mean +- std over seeds')
    p.add_argument('runs', nargs='*', help='detection: the runs (presets or model_dir/RUN) and key=value overrides')
    args = p.parse_intermixed_args(argv)
    if args.out and args.out.endswith('.jsonl'):
        raise cli.UsageError('--out %s: .jsonl names a run\'s records, and tables would read the markdown there as a '
                             'damaged run; give a .md file, e.g. --out table.md' % args.out)
    if args.task == 'detection':
        from tools.detection import table
        given = [o for o, v in (('--records', args.records), ('--prefix', args.prefix), ('--num-epoch', args.num_epoch),
                                ('--student', args.student), ('--teacher', args.teacher)) if v]
        if given:
            raise cli.UsageError('%s: a detection table compares the best checkpoint of each run named (presets or '
                                 'model_dir/RUN), with the network and method its checkpoint records; leave out %s'
                                 % (given[0], ' and '.join(given)))
        names = [r for r in args.runs if '=' not in r]
        if not names:
            raise cli.UsageError('--task detection needs runs: detection presets (e.g. voc_baseline voc_kd_nst) or '
                                 'model_dir/RUN')
        text = table(names, [r for r in args.runs if '=' in r])
        if args.out:
            cli.write_atomic(args.out, text + '\n')
        return 0
    args.records = args.records or 'results/records'
    args.prefix = 'repro_' if args.prefix is None else args.prefix
    if args.runs:
        raise cli.UsageError('%r: runs are named only with --task detection (classification runs are found by '
                             '--records and --prefix)' % args.runs[0])
    if args.out:
        cli.output_path(args.out, example='table.md')
        _refuse_other_file(args.out)
        owner = cli.owned_elsewhere(args.out)
        if owner:
            raise cli.UsageError('--out %s is %s: give another --out' % (args.out, owner))
    found = find_runs(args.records)
    args.prefix = settled_prefix(found, args.prefix, LOG)
    # (the record key each task scores, its name, and how to ask for the other task's table)
    score, word = ('val_miou', 'mIoU') if args.task == 'segmentation' else ('val_top1', 'top-1')
    other_task, other_word, fix = ('classification', 'top-1', 'leave out --task segmentation') \
        if args.task == 'segmentation' else ('segmentation', 'mIoU', 'add --task segmentation')
    # the runs of this task (a record scores mIoU or top-1): the advice names their prefixes only
    runs = OrderedDict((n, recs) for n, recs in found.items() if not recs or any(score in r for r in recs))
    groups = group_runs(runs, args.prefix, args.num_epoch, best=score if args.best else None)
    if not groups:
        if any(n not in runs for n in matching_runs(found, args.prefix)):
            raise cli.UsageError('the runs named %r<method>_s<seed> in %s are %s runs (their records have %s, not %s):'
                                 ' %s' % (args.prefix, args.records, other_task, other_word, word, fix))
        if found and not runs:
            raise cli.UsageError('no %s runs in %s: its %d run record(s) are %s runs; pass the log_dir of the %s runs '
                                 'as --records' % (args.task, args.records, len(found), other_task, args.task))
        raise missing_runs(args.records, runs, args.prefix, args.num_epoch)
    training = still_training(runs, matching_runs(runs, args.prefix))
    if training:
        LOG.warning('%s still training: its last record so far is tabled', ', '.join(training) + (
            ' is' if len(training) == 1 else ' are'))
    others = [n for n in matching_runs(found, args.prefix) if n not in runs]
    if others:
        LOG.warning('left out %s, %s run(s) (their records have %s, not %s): table them with --task %s',
                    ', '.join(others[:5]) + (', ...' if len(others) > 5 else ''), other_task, other_word, word,
                    other_task)
    undefined = ['%s (epoch %d)' % (r.get('model_prefix', '?'), r['epoch'] + 1) for recs in groups.values()
                 for r in recs if not np.isfinite(r.get(score, 0.0))]
    if undefined:
        LOG.warning('%s is not a number in the record of %s (a diverged validation?): the rows of those methods show '
                    'nan; compare at an epoch before it (--num-epoch N) or leave the run out', score,
                    ', '.join(undefined))
    if args.task == 'segmentation':
        table = segmentation_table(groups, args.student or _said(groups, 'network'),
                                   args.teacher or _said(groups, 'teacher'))
    else:
        dense = sorted(m for m, recs in groups.items() if any('val_top1' not in r and 'val_miou' in r for r in recs))
        if dense:
            raise cli.UsageError('runs of %s are segmentation runs (their records have mIoU, not top-1): add --task '
                                 'segmentation' % ', '.join(dense))
        table = make_table(groups, args.student or _said(groups, 'network'), args.teacher or _said(groups, 'teacher'))
    if args.out:
        cli.write_atomic(args.out, table)
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
