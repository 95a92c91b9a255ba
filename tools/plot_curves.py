"""Training curves: train and test error against epoch for several runs on one
figure (the NST paper's Figures 3 and 4), from per-epoch records; for segmentation
runs (--task segmentation) the training cross-entropy and the validation mIoU.

    python -m tools.plot_curves --records results/records --prefix repro_ \\
        [--methods student kd nst_poly kd_nst] --out curves.png

Seeds of one method are averaged (the band is +- one std).
"""
import logging
import sys

import numpy as np

from . import cli
from .plotting import figure_path
from .records import find_runs, methods_of, matching_runs, missing_runs, settled_prefix
from .results_table import LABELS


# task -> the two panels: (axis label, value of one epoch's record)
# (a record without the value, e.g. one written by hand: NaN, a gap in the curve)
PANELS = {'classification': (('training error (%)', lambda e: 100 * (1 - e.get('train_top1', np.nan))),
                             ('test error (%)', lambda e: 100 * (1 - e.get('val_top1', np.nan)))),
          'segmentation': (('training cross-entropy', lambda e: e.get('train_ce', np.nan)),
                           ('validation mIoU (%)', lambda e: 100 * e.get('val_miou', np.nan)))}


def series(runs, prefix, method, task='classification', warn=True):
    """(epochs, left panel's values (seeds x epochs), right panel's) of one method's finished seeds
    (`PANELS`: train and test error % for classification); `warn`: name the seeds left out (stopped
    short) on stderr."""
    import re
    from .records import reached_num_epoch, training_now
    named = [(name, recs) for name, recs in runs.items()
             if recs and name.startswith(prefix) and re.match(r'^%s_s\d+$' % re.escape(method), name[len(prefix):])]
    if not named:
        return None
    # a run still training is drawn only when every seed of the method is (its curve so far, said)
    training = training_now(runs, [name for name, _ in named])
    if training and warn:
        print('warning: %s: %s still training: %s' % (method, ', '.join(training), 'left out' if len(training) <
                                                      len(named) else 'drawn as far as it is'), file=sys.stderr)
    if len(training) < len(named):
        named = [(name, recs) for name, recs in named if name not in training]
    else:
        warn = False                # (all still training: said above; none has stopped)
    n = max(len(recs) for _, recs in named)
    done = ['%s (num_epoch %d)' % (name, recs[-1]['num_epoch']) for name, recs in named if len(recs) < n and
            reached_num_epoch(recs)]
    short = ['%s (last epoch %d)' % (name, recs[-1]['epoch'] + 1) for name, recs in named if len(recs) < n and
             not reached_num_epoch(recs)]
    if done and warn:           # as results_table: runs of another length are another curve
        print('warning: %s: left out %d run(s) that finished at their num_epoch, before epoch %d: %s' % (
            method, len(done), n, ', '.join(done)), file=sys.stderr)
    if short and warn:          # as results_table: a seed that stopped short would bend the mean curve
        print('warning: %s: left out %d run(s) that stopped before epoch %d: %s' % (
            method, len(short), n, ', '.join(short)), file=sys.stderr)
    rows = [recs for _, recs in named if len(recs) == n]
    epochs = np.array([r['epoch'] for r in rows[0][:n]]) + 1
    (_, left), (_, right) = PANELS[task]
    return (epochs, np.array([[left(e) for e in r[:n]] for r in rows]),
            np.array([[right(e) for e in r[:n]] for r in rows]))


def plot(runs, prefix, methods, out, title='', folder='the records folder', task='classification'):
    """Write the PNG (whole or not at all); return the number of methods drawn. When no method has
    a run named <prefix><method>_s<seed> in `runs` (read from `folder`), raise UsageError naming
    what was searched and what is there, and write nothing."""
    from .plotting import pyplot, save
    found = [(m, series(runs, prefix, m, task)) for m in methods]
    found = [(m, s) for m, s in found if s is not None]
    if not found:
        if not matching_runs(runs, prefix):
            raise missing_runs(folder, runs, prefix)
        raise cli.UsageError('none of the methods %s has runs named %r<method>_s<seed> in %s; methods there: %s: '
                             'pass some of them to --methods' % (', '.join(methods), prefix, folder,
                                                                  ', '.join(methods_of(runs, prefix))))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = 0
    for method, s in found:
        epochs, train, test = s
        for ax, values in zip(axes, (train, test)):
            mean = values.mean(axis=0)
            label = '%s (%d seed%s)' % (LABELS.get(method, method), len(values), '' if len(values) == 1 else 's')
            line, = ax.plot(epochs, mean, label=label)
            if len(values) > 1:
                sd = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
        drawn += 1
    for ax, (what, _) in zip(axes, PANELS[task]):
        ax.set_xlabel('epoch')
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    save(fig, out, title)
    return drawn


@cli.command
def main(argv=None):
    """Write the curves; 2 with one error line when no run of the methods is found."""
    p = cli.parser('plot_curves', __doc__)
    p.add_argument('--records', default='results/records', help="folder of the runs' .jsonl records")
    p.add_argument('--prefix', default='repro_', help='runs are named <prefix><method>_s<seed>')
    p.add_argument('--methods', nargs='+', help='the methods to draw (default: every method with runs under --prefix)')
    p.add_argument('--title', default='')
    p.add_argument('--task', choices=sorted(PANELS), default='classification',
                   help='segmentation: training cross-entropy and validation mIoU')
    p.add_argument('--out', required=True, help='PNG to write')
    args = p.parse_args(argv)
    if args.methods is not None:
        args.methods = list(dict.fromkeys(args.methods))          # each method once (as tools.compare)
    figure_path(args.out, example='curves.png')
    runs = find_runs(args.records)
    args.prefix = settled_prefix(runs, args.prefix, logging.getLogger('plot_curves'))
    owner = cli.owned_elsewhere(args.out, args.prefix)
    if owner:
        raise cli.UsageError('--out %s is %s: give another --out' % (args.out, owner))
    kinds = {'val_top1': 'classification', 'val_miou': 'segmentation', 'val_map': 'detection'}
    for name, recs in sorted(runs.items()):
        kind = next((k for m, k in kinds.items() if recs and m in recs[0]), args.task)
        if name.startswith(args.prefix) and kind != args.task:
            raise cli.UsageError('run %s is a %s run: %s' % (name, kind, 'add --task segmentation' if kind ==
                                                             'segmentation' else 'choose runs of one task with --prefix'
                                                             + (' and --task %s' % kind if kind in PANELS else '')))
    if args.methods is None:              # every method there, in the results table's order
        there = methods_of(runs, args.prefix)
        args.methods = [m for m in LABELS if m in there] + [m for m in there if m not in LABELS]
    n = plot(runs, args.prefix, args.methods, args.out, args.title, args.records, args.task)
    missing = [m for m in args.methods if series(runs, args.prefix, m, args.task, warn=False) is None]
    if missing:
        print('warning: no runs named %s<method>_s<seed> in %s for %s; methods there: %s' % (
            args.prefix, args.records, ', '.join(missing), ', '.join(methods_of(runs, args.prefix))), file=sys.stderr)
    print('%s: %d method%s drawn%s' % (args.out, n, '' if n == 1 else 's',
                                       '; no runs for: %s' % ', '.join(missing) if missing else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
