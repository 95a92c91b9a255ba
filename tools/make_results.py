"""Build results/ from the reproduction runs: table.md, curves, t-SNE and heat maps.

    python -m tools.make_results

Reads results/records/ (the per-epoch records of tools.reproduce) and the
seed-0 checkpoints in runs/repro/model; tools.reproduce calls it at the end.
"""
import argparse
import json
import os
import shutil

from core.env import configure_threads

configure_threads()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'results')
RECORDS = os.path.join(RESULTS, 'records')
MODELS = os.path.join(ROOT, 'runs', 'repro', 'model')
TEACHER = os.path.join(ROOT, 'model', 'fmnist_resnet14_teacher')
DATA_DIR = os.path.join(ROOT, 'datasets', 'fashion_mnist')
NUM_EPOCH = 20


def main(argv=None):
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
                            ).parse_args(argv)
    from tools import results_table, plot_curves
    from tools.records import find_runs, read_records
    runs = find_runs(RECORDS, 'repro_')
    teacher_log = os.path.join(ROOT, 'log', 'fmnist_resnet14_teacher.jsonl')
    if os.path.isfile(teacher_log):
        shutil.copy(teacher_log, os.path.join(RECORDS, 'teacher_fmnist_resnet14.jsonl'))
    teacher_rec = None
    if os.path.isfile(os.path.join(RECORDS, 'teacher_fmnist_resnet14.jsonl')):
        teacher_rec = read_records(os.path.join(RECORDS, 'teacher_fmnist_resnet14.jsonl'))[-1]
    groups = results_table.group_runs(runs, 'repro_', NUM_EPOCH)
    table = results_table.make_table(groups, 'ResNet-8 (2k labels)', 'ResNet-14 (60k)', teacher_rec)
    with open(os.path.join(RESULTS, 'table.md'), 'w') as f:
        f.write(table)
    print(table)
    done = {m: len(v) for m, v in groups.items()}
    plot_curves.plot(runs, 'repro_', ['student', 'kd', 'nst_poly', 'kd_nst'], os.path.join(RESULTS, 'curves.png'),
                     'Fashion-MNIST, ResNet-8 student (2k labels), ResNet-14 teacher')
    plot_curves.plot(runs, 'repro_', list(results_table.LABELS), os.path.join(RESULTS, 'curves_all.png'),
                     'Fashion-MNIST: every method')
    figures(done)
    with open(os.path.join(RESULTS, 'runs.json'), 'w') as f:
        json.dump({'finished_seeds': done, 'epochs': NUM_EPOCH}, f, indent=1, sort_keys=True)


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
    main()
