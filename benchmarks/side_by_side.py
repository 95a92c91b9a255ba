"""This tree against another commit, side by side in one run: the same measurement in both trees,
alternating (the order reversed every other round), so that a change of the machine's load hits
both alike; the median of each and their ratio are printed.

    python -m benchmarks.side_by_side --against 60c36d6 [--rounds 5] step [train_step options]
    python -m benchmarks.side_by_side --against 60c36d6 [--rounds 5] train
    python -m benchmarks.side_by_side --against 60c36d6 [--rounds 5] pipeline
    python -m benchmarks.side_by_side --against 60c36d6 [--rounds 1] [--methods at,vid] methods [train_step options]

step   `python -m benchmarks.train_step` in each tree (default: KD + NST, ResNet-20 teacher,
       ResNet-8 student, batch 64): the distillation step's seconds (kt_step_s);
train  `train.py` in each tree on the same generated CIFAR-10 (512 training images, batch 64,
       2 epochs of 8 steps, KD + NST from a teacher trained once per tree, validation on 256):
       the whole loop as users run it (data, teacher, step, metrics, validation, records,
       checkpoints), measured as its last epoch's training images/s (the record's `speed`)
       and the run's wall time.
pipeline  `python -m benchmarks.input_pipeline` in each tree (ImageNet and Fashion-MNIST training
       paths, 3 rounds of 1 s, on data built once for both): each path's project images/s and
       its ratio to the decode bound measured in the same run.
methods  `python -m benchmarks.train_step --kt M` for every registered method M (default ResNet-56 ->
       ResNet-20, batch 128, 100 classes: the issue's benchmark), the two trees alternating per method:
       a markdown table of each method's overhead = distillation step / (student step + teacher
       forward) in both trees and the ratio of their distillation steps.
The other commit is checked out with `git worktree` into a temporary folder (removed at the end);
both trees run with this environment's Python.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_DEFAULTS = ['--teacher', 'cifar_resnet20', '--student', 'cifar_resnet8', '--batch', '64', '--classes', '10',
                 '--kt', 'kd+mmd', '--steps', '10']


def _step(tree, extra, keys=('kt_step_s',)):
    r = subprocess.run([sys.executable, '-m', 'benchmarks.train_step'] + (extra or STEP_DEFAULTS), cwd=tree,
                       capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise SystemExit('error: benchmarks.train_step failed in %s:\n%s' % (tree, r.stderr[-2000:]))
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {k: res[k] for k in keys}


METHOD_KEYS = ('student_step_s', 'teacher_fwd_s', 'kt_step_s', 'overhead')


def _methods(trees, names, rounds, extra, against):
    """Each method in both trees, alternating (the order reversed every other measurement); a
    markdown table of the medians."""
    lines = ['| method | overhead (%s) | overhead (this) | distillation step (s) (%s) | (this) | this / %s |'
             % (against, against, against), '|---|---|---|---|---|---|']
    table = {}
    k = 0
    for name in names:
        got = {tree: [] for tree in trees}
        for _ in range(rounds):
            for tree in (list(trees) if k % 2 == 0 else list(trees)[::-1]):
                got[tree].append(_step(trees[tree], list(extra) + ['--kt', name], METHOD_KEYS))
            k += 1
        med = {tree: {key: statistics.median(r[key] for r in got[tree]) for key in METHOD_KEYS} for tree in trees}
        table[name] = med
        lines.append('| %s | %.3f | %.3f | %.3f | %.3f | %.3f |' % (
            name, med['other']['overhead'], med['this']['overhead'], med['other']['kt_step_s'],
            med['this']['kt_step_s'], med['this']['kt_step_s'] / med['other']['kt_step_s']))
        print(lines[-1] + '   (load %.2f)' % os.getloadavg()[0], flush=True)
    print('\n'.join(lines))
    print(json.dumps({'against': against, 'what': 'methods', 'rounds': rounds, 'median': table}))


def _train_args(tree, work):
    return ['train.py', '--cfg', 'cifar10_student', 'data_dir=%s' % os.path.join(work, 'cifar'), 'gpu_list=[]',
            'batch_size=64', 'progress=false', 'frequent=4',
            'model_dir=%s' % os.path.join(work, 'model', os.path.basename(tree)),
            'log_dir=%s' % os.path.join(work, 'log', os.path.basename(tree))]


def _train(tree, work, round_):
    args = _train_args(tree, work)
    teacher = os.path.join(work, 'model', os.path.basename(tree), 'teacher')
    if not os.path.exists(teacher + '-0001.json'):
        r = subprocess.run([sys.executable] + args + ['model_prefix=teacher', 'network=cifar_resnet14', 'num_epoch=1',
                                                      'epoch_size=4'], cwd=tree, capture_output=True, text=True,
                           timeout=1800)
        if r.returncode:
            raise SystemExit('error: the teacher run failed in %s:\n%s' % (tree, r.stderr[-2000:]))
    prefix = 'student%d' % round_
    tic = time.time()
    r = subprocess.run([sys.executable] + args + [
        'model_prefix=%s' % prefix, 'network=cifar_resnet8', 'num_epoch=2', 'epoch_size=8', 'kt=true', 'kt_type=kd+mmd',
        'teacher_prefix=%s' % teacher, 'teacher_symbol=[null, stage3_pre]', 'student_symbol=[null, stage3_pre]'],
        cwd=tree, capture_output=True, text=True, timeout=1800)
    wall = time.time() - tic
    if r.returncode:
        raise SystemExit('error: train.py failed in %s:\n%s' % (tree, r.stderr[-2000:]))
    with open(os.path.join(work, 'log', os.path.basename(tree), prefix + '.jsonl')) as f:
        last = json.loads(f.readlines()[-1])
    return {'images_per_s': last['speed'], 'wall_s': wall}


def _pipeline(tree, work):
    r = subprocess.run([sys.executable, '-m', 'benchmarks.input_pipeline', '--paths', 'imagenet_train,fashion_train',
                        '--rounds', '3', '--seconds', '1', '--keep', os.path.join(work, 'pipeline_data')], cwd=tree,
                       capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise SystemExit('error: benchmarks.input_pipeline failed in %s:\n%s' % (tree, r.stderr[-2000:]))
    res = json.loads(r.stdout.strip().splitlines()[-1])['paths']
    out = {}
    for path, got in res.items():
        out[path + '_img_s'] = got['img_s']['project']
        out[path + '_of_bound'] = got['ratio']
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--against', required=True, help='the other commit (e.g. the one before a change)')
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--methods', help='methods: the methods to time, comma-separated (default: every registered one)')
    p.add_argument('what', choices=['step', 'train', 'pipeline', 'methods'])
    p.add_argument('extra', nargs=argparse.REMAINDER, help='train_step options (step)')
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix='side_by_side_')
    other = os.path.join(work, 'other')
    r = subprocess.run(['git', 'worktree', 'add', '--detach', other, args.against], cwd=ROOT, capture_output=True,
                       text=True)
    if r.returncode:
        print('error: --against %s: git cannot check it out (%s); give a commit of this repository, e.g. HEAD~1'
              % (args.against, (r.stderr.strip().splitlines() or ['?'])[-1]), file=sys.stderr)
        return 2
    trees = {'this': ROOT, 'other': other}
    try:
        if args.what == 'methods':
            sys.path.insert(0, ROOT)
            from symbols.transfer import METHODS
            _methods(trees, args.methods.split(',') if args.methods else list(METHODS), args.rounds, args.extra,
                     args.against)
            return 0
        if args.what == 'train':
            sys.path.insert(0, ROOT)
            from tests.helpers import make_cifar
            make_cifar(os.path.join(work, 'cifar'), 'cifar10', train=512, test=256)
        got = {name: [] for name in trees}
        for k in range(args.rounds):
            order = list(trees) if k % 2 == 0 else list(trees)[::-1]
            for name in order:
                res = _step(trees[name], args.extra) if args.what == 'step' else \
                    _pipeline(trees[name], work) if args.what == 'pipeline' else _train(trees[name], work, k)
                got[name].append(res)
            print('round %d: %s   (load %.2f)' % (k + 1, '   '.join(
                '%s %s' % (name, ' '.join('%s=%.4g' % kv for kv in got[name][-1].items())) for name in trees),
                os.getloadavg()[0]), flush=True)
        keys = list(got['this'][0])
        summary = {}
        for key in keys:
            med = {name: statistics.median(r[key] for r in got[name]) for name in trees}
            summary[key] = dict(med, ratio=med['this'] / med['other'])
            print('median %s: this %.4g, %s %.4g, this/other %.3f' % (key, med['this'], args.against, med['other'],
                                                                     med['this'] / med['other']))
        print(json.dumps({'against': args.against, 'what': args.what, 'rounds': args.rounds, 'median': summary}))
    finally:
        subprocess.run(['git', 'worktree', 'remove', '--force', other], cwd=ROOT, capture_output=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
