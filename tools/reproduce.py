"""The reproduction protocol on Fashion-MNIST (real data, not CIFAR or ImageNet).

    python -m tools.reproduce [--seeds 0 1 2] [--methods kd nst_poly ...]

1. the teacher: the default CIFAR-style ResNet-14 of init.sh, trained on all
   60,000 training images (trained here if missing);
2. students: CIFAR-style ResNet-8 trained on a balanced 2,000-image labelled
   subset (200 a class), plain and with each method below, for every seed
   (config/presets/fashion_mnist_repro.yaml: 20 epochs, NAG, cosine lr 0.1,
   wd 5e-4, batch 64), all evaluated on the official 10,000-image test split;
3. results/: the markdown table (mean +- std over seeds), the training curves,
   t-SNE of neuron-selectivity patterns and activation heat maps.

Finished runs are not run again; an interrupted run resumes from its last
checkpoint. Progress is printed as runs start and finish.
"""
import os
import signal
import subprocess
import sys
import time

from core.interrupt import STOPS
from tools import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = 'config/presets/fashion_mnist_repro.yaml'
TEACHER = 'model/fmnist_resnet14_teacher'
PREFIX = 'repro'

T3 = "[stage3_pre]"
METHODS = [
    ('student', []),
    ('kd', ['kt_type=kd', 'kt_weight=16']),
    ('fitnet', ['kt_type=fitnet', 'kt_weight=100', 'teacher_symbol=stage3_pre', 'student_symbol=stage3_pre']),
    ('at', ['kt_type=at', 'kt_weight=1000', 'teacher_symbol=[stage1, stage2, stage3]',
            'student_symbol=[stage1, stage2, stage3]']),
    ('nst_linear', ['kt_type=mmd', 'mmd_kernel=linear', 'kt_weight=50', 'teacher_symbol=stage3_pre',
                    'student_symbol=stage3_pre']),
    ('nst_poly', ['kt_type=mmd', 'mmd_kernel=poly', 'kt_weight=50', 'teacher_symbol=stage3_pre',
                  'student_symbol=stage3_pre']),
    ('nst_gaussian', ['kt_type=mmd', 'mmd_kernel=gaussian', 'kt_weight=100', 'teacher_symbol=stage3_pre',
                      'student_symbol=stage3_pre']),
    ('fsp', ['kt_type=fsp', 'kt_weight=1', 'teacher_symbol=[[stem, stage1], [stage1, stage2], [stage2, stage3]]',
             'student_symbol=[[stem, stage1], [stage1, stage2], [stage2, stage3]]']),
    ('ofd', ['kt_type=ofd', 'kt_weight=0.001', 'teacher_symbol=stage3_pre', 'student_symbol=stage3_pre']),
    ('kd_nst', ['kt_type=kd+mmd', 'kt_weight=[16, 50]', 'teacher_symbol=[null, stage3_pre]',
                'student_symbol=[null, stage3_pre]']),
    ('kd_fitnet', ['kt_type=kd+fitnet', 'kt_weight=[16, 100]', 'teacher_symbol=[null, stage3_pre]',
                   'student_symbol=[null, stage3_pre]']),
    ('kd_fitnet_nst', ['kt_type=kd+fitnet+mmd', 'kt_weight=[16, 100, 50]',
                       'teacher_symbol=[null, stage3_pre, stage3_pre]',
                       'student_symbol=[null, stage3_pre, stage3_pre]']),
]


def _peer(method, teacher_taps='null', student_taps=None, *extra):
    """A method of the PyTorch benchmark suites at its registry defaults (the peers' CIFAR-100 weight and
    hyper-parameters), on the taps the peers use."""
    return (method, ['kt_type=%s' % method, 'kt_weight=null', 'teacher_symbol=%s' % teacher_taps,
                     'student_symbol=%s' % (student_taps or teacher_taps)] + list(extra))


# DKD's and ReviewKD's weights warm up over 20 of the peers' 240 epochs: 2 of these 20
WARMUP = 'kt_warmup_epochs=2'


STAGES = '[stage1, stage2, stage3]'
METHODS += [
    _peer('sp', 'stage3'), _peer('rkd', 'pool'), _peer('pkt', 'pool'), _peer('kdsvd', STAGES),
    _peer('dkd', 'null', None, WARMUP), _peer('dist'), _peer('cc', 'pool'), _peer('vid', STAGES),
    _peer('reviewkd', '[stage1_pre, stage2_pre, stage3_pre, pool]', '[stage1, stage2, stage3, pool]', WARMUP),
    _peer('ab', '[stage1_pre, stage2_pre, stage3_pre]'), _peer('ft', 'stage3'), _peer('crd', 'pool'),
    _peer('cwd', 'stage3_pre'),            # (the paper's feature setting would use cwd_tau=4; the registry's is 1)
]


def run_name(method, seed):
    return '%s_%s_s%d' % (PREFIX, method, seed)


def finished(name, num_epoch=20):
    return os.path.isfile(os.path.join(ROOT, 'runs', 'repro', 'model', '%s-%04d.json' % (name, num_epoch)))


def started(name):
    from core import checkpoint
    return bool(checkpoint.epochs(os.path.join(ROOT, 'runs', 'repro', 'model'), name))


def train_args(method, overrides, seed):
    """train.py's arguments for one student run of the protocol."""
    return ['--cfg', PRESET, 'model_prefix=%s' % run_name(method, seed), 'seed=%d' % seed,
            'kt=%s' % ('false' if method == 'student' else 'true')] + overrides


class StepFailed(cli.ToolError):
    """A step (packing, training) that exited with a non-zero status; `code` is that status."""

    def __init__(self, message, code):
        super(StepFailed, self).__init__(message)
        self.code = code


def _last_message(path):
    """The step's last `error: ...` line in its log file, else its last non-empty line."""
    try:
        with open(path, errors='replace') as f:
            lines = [l.strip() for l in f.readlines()[-200:] if l.strip()]
    except OSError:
        return ''
    errors = [l for l in lines if l.startswith('error:')]
    return (errors or lines or [''])[-1]


def python(args, log=None, cwd=ROOT):
    """Run `python ARGS` in folder `cwd`, the repository by default (output to the open file `log`
    if given); StepFailed, naming the command, its exit status, its log file and its last message,
    if it fails."""
    cmd = [sys.executable] + args
    # (NST_LAUNCHER_PID: a train.py step stops as on SIGTERM if this process is killed with SIGKILL,
    # core.env.end_with_launcher, instead of training on, orphaned, with the run's lock)
    r = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT if log else None,
                         env=dict(os.environ, NST_LAUNCHER_PID=str(os.getpid())))

    def stop(signum, frame):                # SIGTERM (kill, timeout, a scheduler), SIGHUP: the step stops too
        r.terminate()
        r.wait()
        name = os.path.basename(sys.argv[0]) if sys.argv else ''
        tool = name[:-3] if name.endswith('.py') else 'reproduce'         # tools.compare runs its steps here too
        print('tools.%s: %s during `python %s`; run it again to resume' % (
            tool, STOPS[signum].words, ' '.join(args)), file=sys.stderr, flush=True)
        sys.exit(128 + signum)
    previous = {sig: signal.signal(sig, stop) for sig in STOPS}
    try:
        while r.poll() is None:             # (a wait with a timeout: a signal that lands in another thread,
            try:                            # e.g. one of MXNet's, does not interrupt a plain wait)
                r.wait(0.5)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        try:
            r.wait(30)                      # the step had the Ctrl-C too (one process group): it stops as it does
        except subprocess.TimeoutExpired:
            r.send_signal(signal.SIGINT)    # (the Ctrl-C was sent to this process alone)
            r.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if r.returncode != 0:
        where = 'its messages are above'
        if log is not None:
            log.flush()
            last = _last_message(log.name)
            where = 'its output is in %s%s' % (log.name, ' (last line: %s)' % last if last else '')
        raise StepFailed('`python %s` failed with exit status %d; %s' % (' '.join(args), r.returncode, where),
                         r.returncode)


def ensure_data_and_teacher():
    from data.fashion_mnist import is_packed
    if not is_packed(os.path.join(ROOT, 'datasets', 'fashion_mnist')):
        print('packing Fashion-MNIST (all 60,000 training images)', flush=True)
        python(['-m', 'data.fashion_mnist', '--out', 'datasets/fashion_mnist'])
    if not is_packed(os.path.join(ROOT, 'datasets', 'fmnist_2k')):
        print('packing the 2,000-image labelled subset', flush=True)
        python(['-m', 'data.fashion_mnist', '--out', 'datasets/fmnist_2k', '--per-class', '200'])
    if not os.path.isfile(os.path.join(ROOT, TEACHER + '-0002.json')):
        print('training the teacher (config/presets/fashion_mnist_teacher.yaml)', flush=True)
        extra = ['retrain=true', 'model_load_epoch=-1'] if os.path.isfile(os.path.join(ROOT, TEACHER + '-0001.json')) else []
        python(['train.py', '--cfg', 'config/presets/fashion_mnist_teacher.yaml'] + extra)


@cli.command
def main(argv=None):
    """Train what is missing, then rebuild results/ (tools.make_results, in this process); 2 with
    one error line on a wrong argument or a failed step (whose log file the message names)."""
    p = cli.parser('reproduce', __doc__)
    p.add_argument('--seeds', type=cli.nonnegative_int, nargs='+')
    p.add_argument('--methods', nargs='+', choices=[m for m, _ in METHODS],
                   metavar='METHOD', help='any of: %s (default: all)' % ', '.join(m for m, _ in METHODS))
    p.add_argument('--figures-only', action='store_true', help='only rebuild results/ from finished runs (of every '
                   'method and seed there)')
    args = p.parse_args(argv)
    if args.figures_only and (args.methods or args.seeds):
        raise cli.UsageError('--figures-only rebuilds results/ from every finished run there, and %s choose%s what to '
                             'train: leave %s out' % (' and '.join(o for o, v in (('--methods', args.methods),
                                                                                  ('--seeds', args.seeds)) if v),
                                                      '' if args.methods and args.seeds else 's',
                                                      'them' if args.methods and args.seeds else 'it'))
    args.seeds = args.seeds or [0, 1, 2]
    args.methods = args.methods or [m for m, _ in METHODS]
    os.makedirs(os.path.join(ROOT, 'results', 'records'), exist_ok=True)
    if not args.figures_only:
        os.makedirs(os.path.join(ROOT, 'runs', 'repro'), exist_ok=True)
        ensure_data_and_teacher()
        todo = [(m, o, s) for s in args.seeds for m, o in METHODS if m in args.methods]
        for k, (method, overrides, seed) in enumerate(todo, 1):
            name = run_name(method, seed)
            if finished(name):
                print('[%d/%d] %s: done' % (k, len(todo), name), flush=True)
                continue
            resume = ['retrain=true', 'model_load_epoch=-1'] if started(name) else []
            print('[%d/%d] %s: %s' % (k, len(todo), name, 'resuming' if resume else 'training'), flush=True)
            tic = time.time()
            with open(os.path.join(ROOT, 'runs', 'repro', name + '.out'), 'a') as log:
                python(['train.py'] + train_args(method, overrides, seed) + resume, log)
            print('    finished in %.0fs' % (time.time() - tic), flush=True)
    from tools import make_results
    return make_results.main([])


if __name__ == '__main__':
    sys.exit(main())
