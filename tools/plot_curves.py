"""Training curves: train and test error against epoch for several runs on one
figure (the NST paper's Figures 3 and 4), from per-epoch records.

    python -m tools.plot_curves --records results/records --prefix repro_ \\
        --methods student kd nst_poly kd_nst --out results/curves.png

Seeds of one method are averaged (the band is +- one std).
"""
import argparse

import numpy as np

from .records import find_runs
from .results_table import LABELS


def series(runs, prefix, method):
    """(epochs, train error % (seeds x epochs), test error %) of one method's finished seeds."""
    import re
    rows = []
    for name, recs in runs.items():
        if name.startswith(prefix) and re.match(r'^%s_s\d+$' % re.escape(method), name[len(prefix):]):
            rows.append(recs)
    if not rows:
        return None
    n = min(len(r) for r in rows)
    epochs = np.array([r['epoch'] for r in rows[0][:n]]) + 1
    train = np.array([[100 * (1 - e['train_top1']) for e in r[:n]] for r in rows])
    test = np.array([[100 * (1 - e['val_top1']) for e in r[:n]] for r in rows])
    return epochs, train, test


def plot(runs, prefix, methods, out, title=''):
    """Write the PNG; return the number of methods drawn."""
    from .plotting import pyplot, save
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = 0
    for method in methods:
        s = series(runs, prefix, method)
        if s is None:
            continue
        epochs, train, test = s
        for ax, values in zip(axes, (train, test)):
            mean = values.mean(axis=0)
            label = '%s (%d seed%s)' % (LABELS.get(method, method), len(values), '' if len(values) == 1 else 's')
            line, = ax.plot(epochs, mean, label=label)
            if len(values) > 1:
                sd = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
        drawn += 1
    for ax, what in zip(axes, ('training error (%)', 'test error (%)')):
        ax.set_xlabel('epoch')
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    save(fig, out, title)
    return drawn


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--records', default='results/records')
    p.add_argument('--prefix', default='repro_')
    p.add_argument('--methods', nargs='+', default=['student', 'kd', 'nst_poly', 'kd_nst'])
    p.add_argument('--title', default='')
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    n = plot(find_runs(args.records), args.prefix, args.methods, args.out, args.title)
    print('%s: %d runs' % (args.out, n))


if __name__ == '__main__':
    main()
