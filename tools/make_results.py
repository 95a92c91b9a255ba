"""Build results/ from the reproduction runs: table.md, curves, t-SNE and heat maps.

    python -m tools.make_results

Reads results/records/ (the per-epoch records of tools.reproduce) and the
seed-0 checkpoints in runs/repro/model; tools.reproduce calls it at the end.
"""
import json
import os
import shutil
import sys

from core.env import configure_threads

configure_threads()

from tools import cli  # noqa: E402  (after the thread defaults, as every import that may reach mxnet)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'results')
RECORDS = os.path.join(RESULTS, 'records')
MODELS = os.path.join(ROOT, 'runs', 'repro', 'model')
TEACHER = os.path.join(ROOT, 'model', 'fmnist_resnet14_teacher')
DATA_DIR = os.path.join(ROOT, 'datasets', 'fashion_mnist')
NUM_EPOCH = 20


@cli.command
def main(argv=None):
    """Rebuild results/; 2 with one error line, and nothing in results/ replaced, when no
    reproduction run has finished. Every file is written whole or not at all."""
    cli.parser('make_results', __doc__).parse_args(argv)
    from tools import results_table, plot_curves
    from tools.records import find_runs, missing_runs, read_records
    runs = find_runs(RECORDS, 'repro_') if os.path.isdir(RECORDS) else {}
    if not runs:
        raise cli.UsageError('no reproduction runs (repro_*.jsonl) in %s: run `python -m tools.reproduce` first'
                             % RECORDS)
    from core import checkpoint
    # runs trained here (their checkpoints in runs/repro/model): the table is of those alone, never
    # of them mixed with the records shipped with the repository (other runs, another teacher)
    local = [n for n in runs if checkpoint.epochs(MODELS, n)]
    if local:
        shipped = [n for n in runs if n not in local]
        if shipped:
            print('note: %d record file(s) in %s are of runs not trained here (%s%s): left out; the table is of the '
                  '%d run(s) in %s' % (len(shipped), RECORDS, ', '.join(shipped[:3]), ', ...' if len(shipped) > 3
                                       else '', len(local), MODELS), file=sys.stderr)
        runs = {n: runs[n] for n in local}
    groups = results_table.group_runs(runs, 'repro_', NUM_EPOCH)
    if not groups:
        raise missing_runs(RECORDS, runs, 'repro_', NUM_EPOCH,
                           epoch_fix='finish them with `python -m tools.reproduce` (it resumes interrupted runs)')
    teacher_log = os.path.join(ROOT, 'log', 'fmnist_resnet14_teacher.jsonl')
    teacher_copy = os.path.join(RECORDS, 'fmnist_resnet14_teacher.jsonl')   # (the run's own name)
    if local and os.path.isfile(teacher_log):      # (the teacher of the runs trained here)
        cli.write_atomic(teacher_copy, lambda tmp: shutil.copyfile(teacher_log, tmp))
    teacher_recs = read_records(teacher_copy) if os.path.isfile(teacher_copy) and (
        not local or os.path.isfile(teacher_log)) else []
    teacher_rec = teacher_recs[-1] if teacher_recs else None
    table = results_table.make_table(groups, 'ResNet-8 (2k labels)', 'ResNet-14 (60k)', teacher_rec)
    cli.write_atomic(os.path.join(RESULTS, 'table.md'), table)
    print(table)
    done = {m: len(v) for m, v in groups.items()}
    for methods, name, title in ((['student', 'kd', 'nst_poly', 'kd_nst'], 'curves.png',
                                  'Fashion-MNIST, ResNet-8 student (2k labels), ResNet-14 teacher'),
                                 (list(results_table.LABELS), 'curves_all.png', 'Fashion-MNIST: every method')):
        methods = [m for m in methods if plot_curves.series(runs, 'repro_', m, warn=False) is not None]
        if methods:
            plot_curves.plot(runs, 'repro_', methods, os.path.join(RESULTS, name), title, RECORDS)
        else:
            print('%s: no runs of its methods yet' % name)
    figures(done)
    cli.write_atomic(os.path.join(RESULTS, 'runs.json'),
                     json.dumps({'finished_seeds': done, 'epochs': NUM_EPOCH}, indent=1, sort_keys=True))
    return 0


def figures(done):
    """t-SNE (student before/after NST) and heat maps, from seed-0 checkpoints that exist."""
    from tools import features, tsne, heatmaps
    have = lambda m: os.path.isfile(os.path.join(MODELS, 'repro_%s_s0-best.json' % m))
    if not (os.path.isfile(TEACHER + '-best.json') and have('student') and have('nst_poly')):
        print('t-SNE / heat maps: waiting for the teacher and the seed-0 student and nst_poly runs')
        return
    views = [('teacher', TEACHER, 'stage3_pre')] + [
        (m, os.path.join(MODELS, 'repro_%s_s0' % m), 'stage3_pre') for m in ('student', 'nst_poly')]
    images, maps = features.view_maps(views, DATA_DIR, 64)
    t_maps, maps = maps[0][1], dict(maps[1:])
    tsne.plot(t_maps, [('student alone (before NST)', maps['student']), ('student with NST (poly)', maps['nst_poly'])],
              os.path.join(RESULTS, 'tsne.png'), 'Neuron selectivity patterns, last pre-ReLU layer (64 test images)')
    heatmaps.plot(images[:4], [('teacher', t_maps), ('NST student', maps['nst_poly'])],
                  os.path.join(RESULTS, 'heatmaps.png'))
    print('wrote results/tsne.png and results/heatmaps.png')


if __name__ == '__main__':
    sys.exit(main())
