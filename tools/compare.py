"""Compare distillation methods on any data: train one student per method and seed from a base
config (resumably), then write the table (mean +- std over seeds), the curves and keep every
run's records.

    python -m tools.compare --cfg own_kd_nst data_dir=datasets/mine --methods student kd nst kd+nst \
        --seeds 0 1 [--epochs N] [--name mine] [--out results/mine]
    python -m tools.compare                 # Fashion-MNIST: config/presets/fashion_mnist_repro.yaml
    python -m tools.compare --cfg seg_voc_r18_deeplabv3plus_cwd voc_root=... --methods student cwd --seeds 0 1 2

A segmentation config (a seg_* preset, task=segmentation) compares segmentation students: mIoU and
pixel accuracy in the table, training cross-entropy and validation mIoU in the curves.

Each METHOD is `student` (no teacher) or a kt_type (`kd`, `nst`, `kd+nst`, `at`, `dkd`, ...), trained
at the registry's default weights on the base config's taps (the first teacher/student tap pair its
own kt_type uses; --teacher-tap / --student-tap to choose). Runs are named NAME_METHOD_sSEED
(`+` written `_`), which `tools.results_table --prefix NAME_` reads; they live in OUT/model, their
records in OUT/records; OUT/table.md and OUT/curves.png are rebuilt at the end (OUT/compare.json says
which comparison wrote them; those another comparison or tool wrote are refused, never replaced). A finished run is
not trained again; a started one resumes from its last checkpoint. Every run's config is checked
before the first one trains.
"""
import json
import os
import sys
import time
from collections import OrderedDict

from tools import cli
from core.errors import UserError
from core.runs import RUN_KEYS


class CompareError(cli.UsageError):
    """A comparison that cannot be set up (a method, the taps, the base config)."""


COMPARED = ('classification', 'segmentation')      # the tasks whose students are compared (table and curves)


def label(method):
    """The run-name part of METHOD: `kd+nst` -> `kd_nst` (the name tools.results_table groups by)."""
    return method.replace('+', '_')


def base_taps(cfg):
    """(teacher tap, student tap) of the base config's first feature pair (of its methods, or, in a
    config without a teacher, of its teacher_symbol / student_symbol), or (None, None)."""
    for entry in cfg.plan:
        for s_tap, t_tap in entry['pairs']:
            if isinstance(s_tap, str) and isinstance(t_tap, str):
                return t_tap, s_tap
    if not cfg.plan:
        as_list = lambda v: v if isinstance(v, (list, tuple)) else [v]
        for t_tap, s_tap in zip(as_list(cfg.get('teacher_symbol')), as_list(cfg.get('student_symbol'))):
            if isinstance(s_tap, str) and isinstance(t_tap, str):
                return t_tap, s_tap
    return None, None


def method_overrides(method, teacher_tap, student_tap, taps_hint=''):
    """train.py overrides of one METHOD (see the module doc); `taps_hint`: the taps the networks offer,
    for the message when the base config names none."""
    from symbols.transfer import parse_kt_type, takes_taps
    if method == 'student':
        return ['kt=false']
    try:
        methods = parse_kt_type(method)
    except ValueError as e:
        raise CompareError('--methods: %r is neither `student` nor a kt_type (%s)' % (method, e))
    out = ['kt=true', 'kt_type=%s' % method, 'kt_weight=null']
    if any(takes_taps(m) for m in methods):
        if teacher_tap is None or student_tap is None:
            raise CompareError('--methods %s needs feature taps, and the base config names none: give '
                               '--teacher-tap and --student-tap%s' % (method, taps_hint or ' (python train.py --keys '
                                                                       'symbol says how taps are named)'))
        out += ['teacher_symbol=%s' % teacher_tap, 'student_symbol=%s' % student_tap]
    return out


def _taps_hint(task_cls, cfg):
    """' (the student's taps: ...)' from the networks the base config builds, or ''."""
    from symbols.taps import tap_names
    try:
        student, _ = task_cls.tap_networks(cfg)
    except UserError:
        return ''
    names = tap_names(student) if student is not None else []
    if not names:
        return ''
    example = 'stage3_pre' if 'stage3_pre' in names else names[-1]
    return ' (the student %s offers: %s; e.g. --teacher-tap %s --student-tap %s, when the teacher has it too)' % (
        cfg.network, ', '.join(names), example, example)


def finished(model_dir, name, num_epoch):
    return os.path.isfile(os.path.join(model_dir, '%s-%04d.json' % (name, num_epoch)))


DEFAULT_CFG = 'fashion_mnist_repro'
MANIFEST = 'compare.json'      # OUT/compare.json: the comparison that wrote OUT's table and curves


def _one_method(name):
    """The method a --methods name trains, for telling aliases apart from methods: 'nst' and 'mmd' are one
    ('kd+nst' and 'kd+mmd' too); an unknown name is itself (refused later, by name)."""
    from symbols.transfer import canonical_method
    try:
        return name if name == 'student' else '+'.join(canonical_method(x) for x in name.split('+'))
    except ValueError:
        return name


def _refuse_others_outputs(out, name, cfg, methods, seeds):
    """CompareError when OUT holds a table.md or curves.png that another comparison (another --name or
    --cfg: its OUT/compare.json) or another tool wrote (no compare.json, and no records of runs
    NAME_*), or this comparison with methods or seeds this call leaves out: rebuilding them would
    replace that work."""
    import glob
    there = [f for f in ('table.md', 'curves.png') if os.path.isfile(os.path.join(out, f))]
    if not there:
        return
    try:
        with open(os.path.join(out, MANIFEST)) as f:
            wrote = json.load(f)
    except (OSError, ValueError):
        wrote = None
    if isinstance(wrote, dict):
        if wrote.get('name') == name and wrote.get('cfg') == cfg:
            lost = [m for m in wrote.get('methods') or [] if m not in methods] + \
                ['seed %s' % k for k in wrote.get('seeds') or [] if k not in seeds]
            if lost:                   # (the same comparison called for fewer: its table would lose rows)
                raise CompareError('%s holds the table of this comparison with %s too, which this call leaves out: '
                                   'its table would lose them; name them again (--methods %s --seeds %s), or give '
                                   'another --out' % (out, ', '.join(lost), ' '.join(
                                       list(methods) + [m for m in wrote.get('methods') or [] if m not in methods]),
                                       ' '.join(str(k) for k in sorted(set(seeds) | set(wrote.get('seeds') or [])))))
            return
        who = 'the comparison --name %s --cfg %s' % (wrote.get('name'), wrote.get('cfg'))
    elif glob.glob(os.path.join(glob.escape(out), 'records', glob.escape(name) + '_*.jsonl')):
        return                         # (this comparison's own runs, from before compare.json was written)
    else:
        who = 'another comparison or tool'
    raise CompareError('%s holds %s that %s wrote, which this comparison would replace: give another --out (or '
                       '--name), or move them away first' % (out, ' and '.join(there), who))


@cli.command
def main(argv=None):
    """Train what is missing, then write OUT/table.md and OUT/curves.png; 2 with one error line for
    a wrong argument, a config that does not load for some method, or a failed run (its log named)."""
    from core import checkpoint
    from tools.reproduce import ROOT, python
    p = cli.parser('compare', __doc__)
    p.add_argument('--cfg', default=DEFAULT_CFG, help='the base config (a preset or a '
                   'file); default: the Fashion-MNIST protocol of tools.reproduce')
    p.add_argument('--methods', nargs='+', default=['student', 'kd', 'nst', 'kd+nst'], metavar='METHOD')
    p.add_argument('--seeds', type=cli.nonnegative_int, nargs='+', default=[0])
    p.add_argument('--epochs', type=cli.positive_int, help="epochs of every run (default: the config's num_epoch)")
    p.add_argument('--name', default='compare', help='runs are named NAME_METHOD_sSEED (default compare)')
    p.add_argument('--out', help='folder of the runs, records, table and curves (default results/NAME)')
    p.add_argument('--teacher-tap', help="the teacher's tap for feature methods (default: the base config's)")
    p.add_argument('--student-tap', help="the student's tap for feature methods (default: the base config's)")
    p.add_argument('overrides', nargs='*', help='key=value for every run, e.g. data_dir=datasets/mine')
    args = p.parse_args(argv)
    args.overrides = [m for m in args.methods if '=' in m] + args.overrides   # (key=value after --methods A B)
    args.methods = list(OrderedDict.fromkeys(m for m in args.methods if '=' not in m))   # each method and seed once
    args.seeds = list(OrderedDict.fromkeys(args.seeds))
    if not args.methods:
        raise CompareError('--methods names no method (key=value settings go after the methods): give student, kd, '
                           'nst, ...')
    given = {o.split('=', 1)[0].strip() for o in args.overrides}
    for key in ('kt', 'kt_type', 'kt_weight'):
        if key in given:
            raise CompareError('%s=... : tools.compare sets %s itself for each method (--methods: student trains '
                               'without a teacher, each kt_type with one, at its default weight); leave it out'
                               % (key, key))
    for key, option in (('teacher_symbol', '--teacher-tap'), ('student_symbol', '--student-tap')):
        if key in given:
            raise CompareError('%s=... : tools.compare sets %s for each method (a feature method on the base config\'s '
                               'taps); give the tap with %s TAP instead' % (key, key, option))
    for key, instead in (('seed', '--seeds'), ('model_prefix', '--name (runs are NAME_METHOD_sSEED)'),
                         ('model_load_prefix', '--name'), ('model_dir', '--out (runs live in OUT/model)'),
                         ('log_dir', '--out (records live in OUT/records)')):
        if key in given:
            raise CompareError('%s=... : tools.compare sets %s itself for each run; use %s instead' % (key, key, instead))
    import tasks
    from config import task_of
    task = task_of(args.cfg, args.overrides)
    if task not in COMPARED:
        raise CompareError('--cfg %s is a %s config: tools.compare compares classification and segmentation students; '
                           'train %s runs with train.py and table them with python -m tools.results_table --task %s'
                           % (args.cfg, task, task, task))
    load_config = tasks.get(task).load_config
    if not args.name.replace('_', '').isalnum() or not args.name[0].isalpha():
        raise CompareError('--name %r: use letters, digits and _ (it starts every run name)' % args.name)
    out = args.out or os.path.join('results', args.name)
    cli.output_path(os.path.join(out, 'table.md'), '--out')
    # (an alias and its method, nst and mmd, are one method: trained and tabled once, under the name this
    # comparison's table already uses)
    try:
        with open(os.path.join(out, MANIFEST)) as f:
            before = json.load(f)
    except (OSError, ValueError):
        before = {}
    before = (before.get('methods') or []) if isinstance(before, dict) and before.get('name') == args.name else []
    same = OrderedDict()
    for m in args.methods:
        same.setdefault(_one_method(m), []).append(m)
    spelled = {_one_method(m): m for m in before}
    merged = [spelled.get(key, names[0]) for key, names in same.items()]
    for key, names in same.items():
        chosen = spelled.get(key, names[0])
        if len(names) > 1:
            print('warning: %s name one method: it is trained once, as %s' % (' and '.join(names), chosen),
                  file=sys.stderr)
        elif chosen != names[0]:
            print('warning: %s is %s, as this comparison\'s table names it: trained as %s' % (names[0], chosen, chosen),
                  file=sys.stderr)
    args.methods = merged
    if args.epochs and 'num_epoch' in given:
        raise CompareError('--epochs %d and num_epoch= both say how long to train: keep one' % args.epochs)
    defaults = ['model_dir=%s' % os.path.join(out, 'model'), 'log_dir=%s' % os.path.join(out, 'records'),
                'progress=false'] + (['num_epoch=%d' % args.epochs] if args.epochs else [])
    common = [d for d in defaults if d.split('=', 1)[0] not in given] + list(args.overrides)
    base = load_config(args.cfg, common)
    teacher_tap, student_tap = base_taps(base)
    teacher_tap, student_tap = args.teacher_tap or teacher_tap, args.student_tap or student_tap
    hint = _taps_hint(tasks.get(task), base)
    runs = []
    for seed in args.seeds:
        for method in args.methods:
            name = '%s_%s_s%d' % (args.name, label(method), seed)
            argv_run = ['--cfg', args.cfg] + common + method_overrides(method, teacher_tap, student_tap, hint) + [
                'model_prefix=%s' % name, 'seed=%d' % seed]
            cfg = load_config(argv_run[1], argv_run[2:])          # every run's config, before any training
            runs.append((name, argv_run, cfg))
    _refuse_others_outputs(out, args.name, args.cfg, args.methods, args.seeds)   # (after the methods are checked)
    located = set()
    for name, _, cfg in runs:                      # every teacher found before any run trains
        if cfg.kt and (cfg.teacher_source, cfg.teacher_prefix, cfg.teacher_network) not in located:
            try:
                tasks.get(task).locate_teacher(cfg)
            except UserError as e:
                raise CompareError('run %s: %s' % (name, e))
            located.add((cfg.teacher_source, cfg.teacher_prefix, cfg.teacher_network))
    tapped = next((cfg for _, _, cfg in runs if cfg.kt and any(isinstance(t, str) for e in cfg.plan
                                                                for pair in e['pairs'] for t in pair)), None)
    if tapped is not None:                         # the taps named, before any run trains
        from symbols.taps import TapError, resolve_tap
        try:
            nets = tasks.get(task).tap_networks(tapped)
        except UserError as e:
            raise CompareError('run %s: %s' % (tapped.model_prefix, e))
        for net, tap, option in zip(nets, (student_tap, teacher_tap), ('--student-tap', '--teacher-tap')):
            if net is not None and tap is not None:
                try:
                    resolve_tap(net, tap)
                except TapError as e:
                    raise CompareError('%s %s (%s): %s' % (option, tap, 'given' if getattr(
                        args, option[2:].replace('-', '_')) else "the base config's", e))
    from core.runs import RunLock
    os.makedirs(out, exist_ok=True)
    # (two comparisons into one --out would train the same runs, or write the same table, at once)
    with RunLock(out, '.compare', subject='tools.compare into --out %s' % out, doing='run',
                 instead='another --out'):
        _refuse_others_outputs(out, args.name, args.cfg, args.methods, args.seeds)   # (again: one may have ended)
        return _train_and_table(args, task, out, runs, checkpoint, ROOT, python)


def _train_and_table(args, task, out, runs, checkpoint, ROOT, python):
    """Train (or resume) each run not finished yet, then write OUT/table.md and OUT/curves.png (under
    the comparison's lock, `main`)."""
    for name, _, cfg in runs:                      # a run started otherwise would be tabled as this one
        have = checkpoint.epochs(cfg.model_dir, name)
        if have:
            saved = checkpoint.read_meta(cfg.model_dir, name, have[-1]).get('config') or {}
            started = saved.get('num_epoch')
            if started is not None and started != cfg.num_epoch:
                raise CompareError('run %s was started with num_epoch=%d (%d epoch(s) done), its schedule set for that '
                                   'length: finish it with --epochs %d, or compare under another --name'
                                   % (name, started, have[-1], started))
            differ = ['%s=%s (now %s)' % (k, saved[k], cfg[k]) for k in sorted(saved)
                      if k in cfg and k not in RUN_KEYS and saved[k] != cfg[k]]
            if differ:
                raise CompareError('run %s was trained with %s: compare under another --name, or give the settings it '
                                   'was trained with' % (name, ', '.join(differ[:4])))
    for k, (name, argv_run, cfg) in enumerate(runs, 1):
        if finished(cfg.model_dir, name, cfg.num_epoch):
            print('[%d/%d] %s: done' % (k, len(runs), name), flush=True)
            continue
        resume = ['retrain=true', 'model_load_epoch=-1'] if checkpoint.epochs(cfg.model_dir, name) else []
        print('[%d/%d] %s: %s' % (k, len(runs), name, 'resuming' if resume else 'training'), flush=True)
        tic = time.time()
        os.makedirs(cfg.log_dir, exist_ok=True)
        with open(os.path.join(cfg.log_dir, name + '.out'), 'a') as log:
            python([os.path.join(ROOT, 'train.py')] + argv_run + resume, log, cwd=os.getcwd())
        print('    finished in %.0fs' % (time.time() - tic), flush=True)
    from tools import plot_curves, results_table
    from core.records import read_records
    num_epoch, records = runs[0][2].num_epoch, runs[0][2].log_dir
    mine = OrderedDict()
    for name, _, _ in runs:                        # the runs asked for, nothing else in the folder
        path = os.path.join(records, name + '.jsonl')
        if not os.path.isfile(path):
            raise CompareError('run %s is trained but its records file %s is missing (moved or deleted?): put it back, '
                               'or move the run\'s checkpoints (%s/%s-*) aside to train it again'
                               % (name, path, runs[0][2].model_dir, name))
        recs = read_records(path)
        foreign = sorted({r.get('model_prefix') for r in recs if r.get('model_prefix') not in (None, name)})
        if foreign:
            raise CompareError('records file %s holds records of run %s (copied or renamed?), not of run %s: put '
                               'run %s\'s own records file there, or move the run\'s checkpoints (%s/%s-*) and this '
                               'file aside to train it again' % (os.path.join(records, name + '.jsonl'), foreign[0],
                                                                  name, name, runs[0][2].model_dir, name))
        if not any(r['epoch'] == num_epoch - 1 for r in recs):
            last = max((r['epoch'] + 1 for r in recs), default=None)
            raise CompareError('records file %s has no record of epoch %d, the last epoch of run %s (%s): it was cut '
                               'short or edited; put back a whole copy (model_dir/replaced/ may hold one), or move '
                               'the run\'s checkpoints (%s/%s-*) and this file aside to train it again'
                               % (path, num_epoch, name, 'it ends at epoch %d' % last if last else 'it holds none',
                                  runs[0][2].model_dir, name))
        mine[name] = recs
    groups = results_table.group_runs(mine, args.name + '_', num_epoch)
    make_table = results_table.segmentation_table if task == 'segmentation' else results_table.make_table
    table = make_table(groups, runs[0][2].network, os.path.basename(runs[0][2].teacher_prefix or ''))
    cli.write_atomic(os.path.join(out, 'table.md'), table)
    cli.write_atomic(os.path.join(out, MANIFEST), json.dumps({'name': args.name, 'cfg': args.cfg,
                                                               'methods': list(args.methods),
                                                               'seeds': list(args.seeds)}) + '\n')
    print(table)
    code = plot_curves.main(['--records', records, '--prefix', args.name + '_', '--task', task, '--methods']
                            + [label(m) for m in args.methods] + ['--out', os.path.join(out, 'curves.png')])
    if code:
        return code
    print('table: %s; curves: %s; records: %s' % (os.path.join(out, 'table.md'), os.path.join(out, 'curves.png'),
                                                  records))
    return 0


if __name__ == '__main__':
    sys.exit(main())
