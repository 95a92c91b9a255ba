#!/usr/bin/env python
"""Train what a config names: a classification student, with or without a teacher and transfer
losses (config/cfgs.py, the classification presets), a Faster R-CNN detector on VOC (the voc_*
presets, or any config with task: detection), or a DeepLab segmentation network (the seg_* presets,
or any config with task: segmentation); each distilled from a teacher of its task if kt=true.

    python train.py                                  # config/cfgs.py
    python train.py --cfg config/presets/cifar10_kd_nst.yaml lr=0.05 gpu_list=[0,1]
    python train.py --cfg voc_kd_nst                 # detection (as python -m tools.detection --cfg voc_kd_nst)
    python train.py --keys [WORD]                    # every config key: default, allowed values, meaning

Exit status: 0 on success, 2 for a configuration or data problem (the message
names it), 3 when training stopped on a NaN/Inf loss or parameters, 130 on
Ctrl-C, 143 on SIGTERM, 129 on SIGHUP, 131 on SIGQUIT, 138 on SIGUSR1 (finished
epochs stay checkpointed; resume with retrain=true model_load_epoch=-1). A run
name that already has checkpoints is refused unless the run is resumed or
overwrite=true moves the old run aside.
"""
import argparse
import shlex
import sys

from core.env import configure_threads, end_with_launcher, serve_if_parameter_server

configure_threads()      # before mxnet is imported
end_with_launcher()      # a process of a tools.launch job stops when its launcher is gone
serve_if_parameter_server()      # a server or scheduler of a distributed job serves it here and exits


def python_command():
    """This interpreter as the user should type it: relative when it lives below the current folder
    (.venv/bin/python), else its full path."""
    import os
    exe = sys.executable or 'python'
    rel = os.path.relpath(exe)
    return rel if not rel.startswith('..') else exe


def train_command(args, resume=True, lr=None, replace=(), drop=()):
    """The command line of the run `args` names (its --cfg and overrides); with `resume`, without the
    overrides a resume replaces (and begin_epoch, which a resume derives) and with retrain=true
    model_load_epoch=-1; with `lr`, lr=<lr> in place of the run's; `replace`: more key=value words in
    place of the run's; `drop`: keys left out (their defaults then)."""
    keep = [a for a in args.overrides if a.split('=', 1)[0].strip() not in drop]
    if resume:
        keep = [a for a in keep if a.split('=', 1)[0].strip() not in
                ('retrain', 'model_load_epoch', 'model_load_prefix', 'overwrite', 'begin_epoch')]
    for word in (['lr=%g' % lr] if lr is not None else []) + list(replace):
        keep = [a for a in keep if a.split('=', 1)[0].strip() != word.split('=', 1)[0]] + [word]
    words = (['--cfg', args.cfg] if args.cfg else []) + keep + (['retrain=true', 'model_load_epoch=-1']
                                                                if resume else [])
    command = '%s train.py %s' % (shlex.quote(python_command()), ' '.join(shlex.quote(a) for a in words))
    import os
    launch = os.environ.get('NST_LAUNCH') if os.environ.get('DMLC_ROLE') == 'worker' else \
        (os.environ.get('NST_LAUNCH') or horovodrun_command()) if 'HOROVOD_RANK' in os.environ else None
    return '%s %s' % (launch, command) if launch else command     # (a worker of a job: under its launcher again)


def horovodrun_command():
    """The horovodrun command line that started this Horovod rank, up to the command it runs (e.g.
    `.venv/bin/horovodrun -np 2 -H localhost:2 --gloo`), read from the ancestor processes; None
    where none of them is horovodrun."""
    import os
    pid = os.getppid()
    for _ in range(8):
        from core.env import proc_stat
        stat = proc_stat(pid)
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                argv = [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
            parent = int(stat[1])
        except (OSError, ValueError, IndexError, TypeError):
            return None
        at = [i for i, a in enumerate(argv[:2]) if os.path.basename(a) == 'horovodrun']
        if at:
            from tools.horovodrun import interpreter_at
            words = argv[at[0]:]
            end = interpreter_at(words)             # (up to the interpreter that runs train.py)
            exe = os.path.relpath(words[0]) if not os.path.relpath(words[0]).startswith('..') else words[0]
            return ' '.join(shlex.quote(a) for a in [exe] + words[1:end])
        if pid <= 1:
            return None
        pid = parent
    return None


def resume_command(args, cfg=None):
    """The command that resumes the run `args` names; with its configuration `cfg`, one that names
    the run resumed when the config file sets another model_load_prefix (a copy of config/cfgs.py whose
    `model_load_prefix = model_prefix` comes before the model_prefix the user set)."""
    other = cfg is not None and cfg.get('model_load_prefix') not in (None, cfg.model_prefix)
    replace = ['model_load_prefix=%s' % cfg.model_prefix] if other else []
    if cfg is not None:                 # (num_epoch at or below the run's last epoch: the resume would train none)
        from core import checkpoint
        have = checkpoint.epochs(cfg.model_dir, cfg.model_prefix)
        if have and have[-1] >= cfg.num_epoch:
            replace.append('num_epoch=%d' % (have[-1] + 1))
    return train_command(args, resume=True, replace=replace)


def finished_note(args, cfg):
    """For a run that already reached its num_epoch under a schedule tied to num_epoch (cosine, poly):
    that resuming it for more epochs restarts the lr, and the command that trains on from its weights
    as a new run instead; else ''."""
    from core import checkpoint
    have = checkpoint.epochs(cfg.model_dir, cfg.model_prefix)
    if not have or have[-1] < cfg.num_epoch or cfg.get('lr_mode') not in ('cosine', 'poly'):
        return ''
    import os
    return ('\n  (run %r is finished: epochs 1..%d of num_epoch=%d. That resume stretches its %s lr schedule, so the lr '
            'rises again from about 0; to train its weights on without that, start a new run from them:\n  %s)'
            % (cfg.model_prefix, have[-1], cfg.num_epoch, cfg.lr_mode, train_command(
                args, resume=False, drop=['retrain', 'model_load_epoch', 'model_load_prefix', 'overwrite'],
                replace=['pretrained=%s' % os.path.join(cfg.model_dir, cfg.model_prefix),
                         'model_prefix=%s_more' % cfg.model_prefix])))


def lower_lr(lr):
    """The lr to suggest after a divergence at `lr`: a tenth of it, but at most 0.1 (SGD's usual scale
    here: an absurd lr gets a working one at once, not one tenth at a time)."""
    return min(lr / 10, 0.1) if lr > 0.1 else lr / 10


def outsized_weights(cfg, factor=100.0):
    """'kt_weight 1e+30 of kd is 6.2e+28 times its default (16)' for the transfer terms of the run's
    plan weighted `factor` times their registry default or more (a lower lr does not cure those), else ''."""
    if not cfg.get('kt') or not cfg.get('plan'):
        return ''
    from symbols.transfer import default_weight
    said = []
    for entry in cfg.plan:
        default = default_weight(entry['method'], cfg)
        if default > 0 and abs(entry['weight']) >= factor * default:
            said.append('kt_weight %g of %s is %.2g times its default (%g)' % (entry['weight'], entry['method'],
                                                                                abs(entry['weight']) / default, default))
    return '; '.join(said)


def say_stopped(args, cfg, e):
    """Say on stderr that the run `cfg` stopped (KeyboardInterrupt `e`: Ctrl-C, SIGTERM, ...), what was
    kept and the command that goes on."""
    from core.interrupt import stop_words
    what = stop_words(e)
    if has_checkpoint(cfg):
        print('\n%s. Every finished epoch is checkpointed in %s; continue with\n  %s'
              % (what, cfg.model_dir, resume_command(args)), file=sys.stderr)
    else:
        print('\n%s before the first epoch of run %r finished: nothing was checkpointed. Start it '
              'again with\n  %s' % (what, cfg.model_prefix, train_command(args, resume=False)), file=sys.stderr)


def in_a_job_of_workers():
    """Whether this process is a worker of a distributed job: a parameter-server job's (DMLC_ROLE) or
    a Horovod rank (core.env.job_role)."""
    from core.env import job_role
    return job_role() in ('worker', 'rank')


def changed_options(cfg, given):
    """[(option, value, default)] of the options of the run's methods that the command line (keys `given`)
    sets away from their registry defaults (a divergence there is seldom cured by a lower lr; a preset's
    own choices, e.g. mmd_kernel=gaussian, are not these)."""
    if not cfg.get('kt') or not cfg.get('plan'):
        return []
    from symbols.transfer import METHODS
    return [(o.name, cfg.get(o.name, o.default), o.default) for method in dict.fromkeys(e['method'] for e in cfg.plan)
            for o in METHODS[method].options if o.name in given and cfg.get(o.name, o.default) != o.default]


def has_checkpoint(cfg):
    from core import checkpoint
    return bool(checkpoint.epochs(cfg.model_dir, cfg.model_prefix))


class ArgumentParser(argparse.ArgumentParser):
    """argparse, whose errors are one line that says what to write instead (train.py takes
    key=value overrides, not --key value options)."""

    def error(self, message):
        import re
        option = re.search(r'unrecognized arguments: -+([A-Za-z][\w-]*)', message)
        hint = ('; settings are key=value overrides, not options: write %s=VALUE (e.g. lr=0.05)'
                % option.group(1).replace('-', '_') if option else '')
        if re.search(r'unrecognized arguments: -?[\d.]*[\]}]', message):    # the rest of `k={a: [1, -1]}` unquoted
            hint = ('; a value with spaces is split by the shell: quote it, e.g. "kt_layer_weight={at: [1, -1]}", or '
                    'write it without spaces')
        self.exit(2, 'error: %s%s (python train.py --help lists the options)\n' % (message, hint))


def build_parser(add_help=True):
    """train.py's command line: --cfg, key=value overrides, --print-config, --keys [WORD]."""
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, add_help=add_help)
    p.add_argument('--cfg', help='config file (.py or .yaml) or preset name; default config/cfgs.py')
    p.add_argument('overrides', nargs='*', help='key=value overrides, e.g. lr=0.05 kt_type=kd+mmd')
    p.add_argument('--print-config', action='store_true', help='print the validated config and exit')
    p.add_argument('--keys', nargs='?', const='', metavar='WORD', help='list every config key (default, allowed '
                   'values, meaning) by group, or only those about WORD (e.g. --keys teacher), and exit')
    return p


def main(argv=None):
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a == '--cfg' or a.startswith('--cfg=')]
    if len(given) > 1:                 # (argparse keeps the last without a word)
        print('error: --cfg is given %d times: a run reads one config file (a YAML file can start from another with '
              '`base: FILE`); give it once' % len(given), file=sys.stderr)
        return 2
    args = build_parser().parse_intermixed_args(argv)      # key=value before and after the options
    if args.keys is not None:
        from config.keys import listing
        text = listing(args.keys)
        if text is None:
            from config.keys import close_keys
            close = close_keys(args.keys)
            print('error: no config key is about %r%s; python train.py --keys lists them all'
                  % (args.keys, ' (did you mean %s?)' % ' or '.join(close) if close else ''), file=sys.stderr)
            return 2
        try:
            print(text)
            print('\n(the schemas\' defaults; --cfg and key=value are not applied here: python train.py --print-config '
                  '[--cfg FILE] [key=value ...] shows a configuration\'s values)')
        except BrokenPipeError:               # (piped into `head`)
            from core.env import quiet_stdout
            quiet_stdout()
        return 0

    from config import task_of
    from core.errors import ConfigError, Diverged, RunError, UserError
    import importlib.util
    missing = [m for m in ('numpy', 'mxnet') if importlib.util.find_spec(m) is None]
    if missing:                               # (a bare `python` without the project's packages, e.g. in a launch)
        print('error: %s not installed for %s: run train.py with the project\'s interpreter, e.g. '
              '.venv/bin/python train.py (bash init.sh makes it)' % (' and '.join(missing) + (' are' if len(missing) > 1
                                                                                          else ' is'), sys.executable),
              file=sys.stderr)
        return 2
    import tasks
    try:
        task = task_of(args.cfg, args.overrides)      # classification, or detection for the voc_* presets
        # (--print-config shows a preset before its data is in place)
        cfg = tasks.get(task).load_config(args.cfg, args.overrides, check_data=not args.print_config)
    except ConfigError as e:
        print('config error: %s' % e, file=sys.stderr)
        return 2
    if args.print_config:
        for k, v in cfg.items():
            print('%s = %r' % (k, v))
        return 0
    from core.interrupt import StuckStopGuard, sigterm_as_interrupt, stop_status
    stop = sigterm_as_interrupt().__enter__()             # (a scheduler's or `kill`'s stop: as Ctrl-C)
    # a worker of a job, stopped while it waits for a worker or server that is gone, still says how to
    # resume and gives its lock back
    said = []
    guard = StuckStopGuard(lambda e: say_stopped(args, cfg, e), said=lambda: bool(said),
                           grace=3.0 if in_a_job_of_workers() else None).__enter__()
    try:
        record = tasks.run(cfg, task)
    except RunError as e:
        print('error: %s%s%s' % (e, '\n  resume: %s' % resume_command(args, cfg) if e.resume else '',
                                 finished_note(args, cfg) if e.resume else ''), file=sys.stderr)
        return 2
    except Diverged as e:
        print('error: %s' % e, file=sys.stderr)
        heavy, saved = outsized_weights(cfg), has_checkpoint(cfg)
        changed = changed_options(cfg, [a.split('=', 1)[0].strip() for a in args.overrides])
        if changed:        # (a resume would change the method partway, or not fit its saved heads: a new run)
            print('  %sthe command line sets method options away from their defaults, a likely cause: %s; %s with '
                  'the defaults, e.g.\n  %s' % (
                      heavy + '; ' if heavy else '', ', '.join('%s=%s (default %s)' % (n, v, 'null' if d is None else d)
                                                                for n, v, d in changed),
                      'train a new run' if saved else 'start again',
                      train_command(args, resume=False, drop=[n for n, _, d in changed if d is None],
                                    replace=['%s=%s' % (n, d) for n, _, d in changed if d is not None]
                                    + (['kt_weight=null'] if heavy else [])
                                    + (['model_prefix=%s_defaults' % cfg.model_prefix] if saved else []))),
                  file=sys.stderr)
        elif heavy:
            print('  %s: %s with the default weights (kt_weight=null), e.g.\n  %s' % (
                heavy, 'resume' if saved else 'start again', train_command(
                    args, resume=saved, replace=['kt_weight=null'])), file=sys.stderr)
        elif not saved:
            print('  no epoch of run %r was saved yet, so there is nothing to resume: start again with a lower lr, '
                  'e.g.\n  %s' % (cfg.model_prefix, train_command(args, resume=False, lr=lower_lr(cfg.lr))),
                  file=sys.stderr)
        else:
            print('  resume from the last good checkpoint with a lower lr, e.g.\n  %s'
                  % train_command(args, resume=True, lr=lower_lr(cfg.lr)), file=sys.stderr)
        return 3
    except UserError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        said.append(True)
        say_stopped(args, cfg, e)
        from core.interrupt import RECEIVED
        del RECEIVED[:]                     # (handled: a later error of a caller in this process is its own)
        return stop_status(e)
    finally:
        guard.__exit__()
        stop.__exit__()
    if record is None:
        pass                    # (another worker of a distributed job: rank 0 reports for the job)
    elif not record:
        print('nothing to train: the run starts at or after num_epoch=%d; raise num_epoch to train further'
              % cfg.num_epoch, file=sys.stderr)
    else:
        print('\n'.join(tasks.get(task).final_lines(record, cfg)))
    return 0


def worker_exit(code):
    """End a worker of a parameter-server job that stops early (status `code`) at once. Python's own
    exit would shut ps-lite down, which waits at a barrier for the other workers while they wait for
    this one (the job hung), or, matched with a barrier they were at, lets them pull keys this worker
    never initialised (the server aborted); tools.launch stops the rest of the job once this process
    has ended."""
    from core.interrupt import end_now
    end_now(code)


def run_process(main, *args):
    """`main(*args)`'s exit status as a process's (its output flushed, tools.cli.output_written); a
    worker of a parameter-server job (DMLC_ROLE=worker) or a Horovod rank that stops early ends through
    `worker_exit`: an error, a signal, argparse's own exit, or a bug (its traceback first). (A Horovod
    rank's own exit would run Horovod's atexit hook, which fails with a traceback once another rank
    has shut the job down.)"""
    import os
    from tools.cli import output_written
    if not in_a_job_of_workers():
        return output_written(main, *args)
    try:
        status = output_written(main, *args)
    except SystemExit as e:                     # (argparse: --help, a malformed option)
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt as e:              # (a stop before train.py's own handling is in place)
        from core.interrupt import stop_status
        status = stop_status(e)
    except BaseException:                       # (a bug: its traceback, then the same early end)
        import traceback
        try:
            traceback.print_exc()
        except Exception:                       # (stderr gone: the early end all the same)
            pass
        status = 1
    if status:
        worker_exit(status)
    return status


if __name__ == '__main__':
    sys.exit(run_process(main))
