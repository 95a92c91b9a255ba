"""Runs: a resume resumes the run it names, a name is never used by two runs (one after the other
or at the same time), and the folders a run writes are checked before it starts."""
import errno
import json
import os
import shlex
import socket
import subprocess
import sys
import time

import pytest

from core import checkpoint, runs
from core.cpu import bfloat16_problem
from tests.helpers import merged

pytestmark = pytest.mark.slow


def snapshot(folder):
    """{relative path: bytes} of every file below `folder`."""
    out = {}
    for d, _, files in os.walk(str(folder)):
        for f in files:
            p = os.path.join(d, f)
            with open(p, 'rb') as fh:
                out[os.path.relpath(p, str(folder))] = fh.read()
    return out


def run_files(root, prefix):
    model = str(root / 'model')
    return {p: open(p, 'rb').read() for p in runs.checkpoint_files(model, prefix) + runs.log_files(str(root / 'log'),
                                                                                                 prefix)}


def test_resume_of_a_run_named_on_the_command_line_resumes_that_run(tmp_path, train_run):
    """A .py config like the original cfgs.py (model_load_prefix = model_prefix): resuming
    model_prefix=X resumes X, not the file's default run, and leaves the default run alone."""
    from tests.helpers import make_cifar
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=32, test=16)
    cfg = tmp_path / 'mycfgs.py'
    cfg.write_text('gpu_list = []\ndataset = "cifar10"\nmodel_prefix = "default_run"\n'
                   'model_load_prefix = model_prefix\nmodel_load_epoch = 0\nretrain = False\n'
                   'network = "cifar_resnet8"\ndata_dir = %r\nbatch_size = 8\nepoch_size = 2\nnum_epoch = 1\n'
                   'progress = False\nkt = False\nmodel_dir = %r\nlog_dir = %r\n'
                   % (str(tmp_path / 'cifar'), str(tmp_path / 'model'), str(tmp_path / 'log')))
    assert train_run(['--cfg', str(cfg)])[0] == 0
    assert train_run(['--cfg', str(cfg), 'model_prefix=X', 'seed=3'])[0] == 0
    default_before = run_files(tmp_path, 'default_run')
    x_epoch1 = open(checkpoint.paths(str(tmp_path / 'model'), 'X', 1)['params'], 'rb').read()
    code, err = train_run(['--cfg', str(cfg), 'model_prefix=X', 'seed=3', 'retrain=true', 'model_load_epoch=-1',
                           'num_epoch=2'])
    assert code == 0, err
    assert "resumed run 'X' from its epoch-1 checkpoint" in err
    assert checkpoint.epochs(str(tmp_path / 'model'), 'X') == [1, 2]
    assert open(checkpoint.paths(str(tmp_path / 'model'), 'X', 1)['params'], 'rb').read() == x_epoch1
    assert run_files(tmp_path, 'default_run') == default_before
    assert checkpoint.epochs(str(tmp_path / 'model'), 'default_run') == [1]
    # (#18's seventeenth trial) model_prefix set in the file after `model_load_prefix = model_prefix`: the
    # refusal's resume command names the run to resume, and it works (it repeated the command refused)
    late = tmp_path / 'late.py'
    late.write_text(cfg.read_text() + 'model_prefix = "mine7"\n')
    assert train_run(['--cfg', str(late)])[0] == 0
    code, err = train_run(['--cfg', str(late), 'retrain=true', 'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 2 and "starting from run 'default_run'" in err, err
    resume = shlex.split(err.split('resume: ', 1)[1].strip())
    assert 'model_load_prefix=mine7' in resume, resume
    code, err = train_run(resume[2:])
    assert code == 0 and "resumed run 'mine7' from its epoch-1 checkpoint" in err, err


def test_a_new_run_under_an_existing_name_is_refused_then_overwrite_moves_it_aside(cifar_setup, train_run):
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=twice']
    assert train_run(argv)[0] == 0
    before = run_files(root, 'twice')
    code, err = train_run(argv + ['seed=5'])
    assert code == 2 and "run 'twice' already exists" in err and 'epochs 1' in err
    assert 'overwrite=true' in err and 'retrain=true model_load_epoch=-1' in err and 'Traceback' not in err
    # (#18's trial 20: the resume offered kept num_epoch=1, at the run's last epoch: it trained nothing)
    assert 'num_epoch=2 retrain=true model_load_epoch=-1' in err, err
    assert run_files(root, 'twice') == before
    # from another run's checkpoint into this name: refused too
    code, err = train_run(argv + ['retrain=true', 'model_load_prefix=teacher', 'model_load_epoch=1', 'num_epoch=2'])
    assert code == 2 and 'already exists' in err and run_files(root, 'twice') == before
    code, err = train_run(argv + ['seed=5', 'overwrite=true'])
    assert code == 0, err
    replaced = [d for d in os.listdir(str(root / 'model' / 'replaced')) if d.startswith('twice-')]
    assert len(replaced) == 1
    kept = snapshot(root / 'model' / 'replaced' / replaced[0])
    assert sorted(kept) == sorted(os.path.basename(p) for p in before)
    assert sorted(kept.values()) == sorted(before.values())          # nothing deleted, bytes intact
    assert checkpoint.epochs(str(root / 'model'), 'twice') == [1]
    assert open(checkpoint.paths(str(root / 'model'), 'twice', 1)['params'], 'rb').read() != \
        before[checkpoint.paths(str(root / 'model'), 'twice', 1)['params']]


def test_resume_from_an_earlier_epoch_keeps_the_later_ones(cifar_setup, train_run):
    root, common, _ = cifar_setup
    model = str(root / 'model')
    argv = common + ['network=cifar_resnet8', 'model_prefix=branchy', 'num_epoch=3']
    assert train_run(argv)[0] == 0
    before = run_files(root, 'branchy')
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=1'])
    assert code == 2 and 'would overwrite its later epochs 2, 3.' in err and 'model_load_epoch=-1' in err
    assert run_files(root, 'branchy') == before
    # branching into a new name is allowed and leaves the run alone
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=branch2', 'num_epoch=3', 'retrain=true',
                                    'model_load_prefix=branchy', 'model_load_epoch=1'])
    assert code == 0, err
    assert checkpoint.epochs(model, 'branch2') == [2, 3] and run_files(root, 'branchy') == before
    # overwrite=true: the later epochs go aside, the best copy is one of the kept epochs again
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=1', 'overwrite=true', 'num_epoch=2'])
    assert code == 0, err
    assert checkpoint.epochs(model, 'branchy') == [1, 2]
    aside = [d for d in os.listdir(os.path.join(model, 'replaced')) if d.startswith('branchy-')]
    moved = snapshot(os.path.join(model, 'replaced', aside[0]))
    assert 'branchy-0003.params' in moved and 'branchy-0002.json' in moved
    assert moved['branchy-0003.params'] == before[checkpoint.paths(model, 'branchy', 3)['params']]
    assert checkpoint.read_meta(model, 'branchy', 'best')['epoch'] in (1, 2)
    from core.records import read_records
    assert [r['epoch'] for r in read_records(str(root / 'log' / 'branchy.jsonl'))] == [0, 1]
    assert [r['epoch'] for r in read_records(os.path.join(model, 'replaced', aside[0], 'branchy.jsonl'))] == [0, 1, 2]


def _fake_lock(path, pid, host=None, start=None):
    with open(path, 'w') as f:
        json.dump({'pid': pid, 'host': host or socket.gethostname(), 'start': start, 'since': 'earlier'}, f)


def test_a_second_run_of_the_same_name_at_the_same_time_is_refused(cifar_setup, train_run):
    root, common, _ = cifar_setup
    model = str(root / 'model')
    argv = common + ['network=cifar_resnet8', 'model_prefix=locked']
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        _fake_lock(os.path.join(model, 'locked.lock'), holder.pid, start=runs._start_ticks(holder.pid))
        code, err = train_run(argv)
        assert code == 2 and 'already being trained by process %d' % holder.pid in err
        assert checkpoint.epochs(model, 'locked') == [] and not os.path.exists(str(root / 'log' / 'locked.log'))
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and is taken over with a warning, and released at the end
    code, err = train_run(argv)
    assert code == 0, err
    assert 'taking over the lock' in err and 'no longer running (process %d' % holder.pid in err
    assert not os.path.exists(os.path.join(model, 'locked.lock'))
    # a lock from another host cannot be checked: refused, naming the host and the file
    _fake_lock(os.path.join(model, 'other.lock'), 1, host='gpu-node-7')
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=other'])
    assert code == 2 and 'on host gpu-node-7' in err and 'other.lock' in err
    os.remove(os.path.join(model, 'other.lock'))


def test_a_real_second_process_is_refused_while_the_first_trains(cifar_setup, tmp_path):
    """Two train.py processes with one name: the first holds the lock until it ends."""
    root, common, _ = cifar_setup
    argv = [sys.executable, 'train.py'] + merged(common + ['network=cifar_resnet8', 'model_prefix=concurrent',
                                                           'num_epoch=500'])
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    first = subprocess.Popen(argv, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lock = str(root / 'model' / 'concurrent.lock')
    try:
        import time
        deadline = time.time() + 120
        while not os.path.exists(lock) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert os.path.exists(lock)
        second = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and 'already being trained by process %d' % first.pid in second.stderr
        assert 'Traceback' not in second.stderr
    finally:
        first.kill()
        first.wait()


def test_log_dir_that_is_not_a_writable_folder(cifar_setup, tmp_path, train_run):
    _, common, _ = cifar_setup
    blocker = tmp_path / 'afile'
    blocker.write_text('x')
    for log_dir in (blocker, blocker / 'sub'):
        code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=logs', 'log_dir=%s' % log_dir])
        assert code == 2 and 'log_dir %s is not a writable folder' % log_dir in err and 'Traceback' not in err
    model_dir = blocker / 'sub'
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=s6', 'model_dir=%s' % model_dir])
    assert code == 2 and 'model_dir %s is not a writable folder' % model_dir in err
    loop, nowhere = tmp_path / 'loop', tmp_path / 'nowhere'      # symbolic links: said what they are (trial 10)
    os.symlink(str(loop), str(loop))
    os.symlink(str(tmp_path / 'gone'), str(nowhere))
    for link, why in ((loop, 'a symbolic link that loops back on itself'),
                      (nowhere, 'a symbolic link to %s, which does not exist' % (tmp_path / 'gone'))):
        code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=s7', 'log_dir=%s' % link])
        assert code == 2 and why in err and 'File exists' not in err, err


def test_a_full_disk_while_logging_keeps_the_checkpoint(cifar_setup, train_run, monkeypatch):
    """The epoch record cannot be written (ENOSPC): a warning, and the checkpoint is still written."""
    import core.engine
    root, common, _ = cifar_setup

    def full(path, record):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(core.engine, 'append_record', full)
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=fulllog'])
    assert code == 0, err
    assert 'could not write the record of epoch 1' in err and 'No space left' in err
    assert checkpoint.epochs(str(root / 'model'), 'fulllog') == [1]


def test_a_log_file_that_fails_says_so_once_without_a_traceback(tmp_path, capsys):
    import logging
    from core.runlog import LogFileHandler

    class FullDisk(object):
        def write(self, text):
            raise OSError(errno.ENOSPC, 'No space left on device')

        def flush(self):
            pass
    handler = LogFileHandler(str(tmp_path / 'x.log'))
    handler.stream = FullDisk()
    log = logging.getLogger('test-full-disk')
    log.addHandler(handler)
    try:
        for i in range(3):
            log.warning('line %d', i)
    finally:
        log.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count('cannot write the log file') == 1 and 'No space left' in err
    assert 'Traceback' not in err and 'Logging error' not in err


def test_ctrl_c_keeps_finished_epochs_and_says_how_to_resume(cifar_setup, train_run, monkeypatch):
    root, common, _ = cifar_setup
    from core.engine import Engine
    real = Engine.train_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)
    argv = common + ['network=cifar_resnet8', 'model_prefix=ctrlc', 'num_epoch=3']
    monkeypatch.setattr(Engine, 'train_epoch', interrupted)
    code, err = train_run(argv)
    assert code == 130 and 'interrupted' in err and 'retrain=true model_load_epoch=-1' in err
    assert checkpoint.epochs(str(root / 'model'), 'ctrlc') == [1]
    assert not os.path.exists(str(root / 'model' / 'ctrlc.lock'))           # released
    monkeypatch.setattr(Engine, 'train_epoch', real)
    resume = shlex.split(err.split('continue with\n')[1].strip())      # as a shell reads it
    assert resume[0].endswith('python') and resume[1] == 'train.py'     # the interpreter used
    code, err = train_run(resume[2:])                          # the printed command, as printed
    assert code == 0 and "resumed run 'ctrlc' from its epoch-1 checkpoint" in err, err
    assert checkpoint.epochs(str(root / 'model'), 'ctrlc') == [1, 2, 3]
    code, err = train_run(resume[2:])                          # already finished
    assert code == 0 and 'nothing to train' in err and 'num_epoch=3' in err
    # (found by a new user: a teacher no epoch would use was looked for first, and refused)
    code, err = train_run(resume[2:] + ['kt=true', 'kt_type=kd', 'teacher_prefix=%s' % (root / 'nowhere' / 't')])
    assert code == 0 and 'nothing to train' in err and 'teacher' not in err, err


@pytest.mark.parametrize('signame, status, said', [
    ('SIGTERM', 143, 'terminated (SIGTERM)'),
    # (#18's eleventh trial: a closed terminal or a dropped ssh session ended a run silently, its lock left)
    ('SIGHUP', 129, 'hung up (SIGHUP: the terminal or session closed)'),
    # (#18's twelfth trial: Ctrl-\ ended a run silently, its lock left)
    ('SIGQUIT', 131, 'quit (SIGQUIT, Ctrl-\\)'),
    # (#18's thirteenth trial: SLURM's --signal=USR1@60 ended a run silently, its lock left)
    ('SIGUSR1', 138, "stopped by SIGUSR1 (a job scheduler's notice before its time limit)")])
def test_sigterm_and_sighup_are_handled_as_ctrl_c(cifar_setup, train_run, monkeypatch, signame, status, said):
    """A scheduler's or `kill`'s SIGTERM during training, or a SIGHUP: the finished epochs are kept, the
    lock is released and the resume command printed, exit status 128 + the signal (it used to end
    silently, lock left)."""
    import signal
    root, common, _ = cifar_setup
    from core.engine import Engine
    real = Engine.train_epoch
    signum = getattr(signal, signame)

    def stopped(self, epoch):
        if epoch == 1:
            os.kill(os.getpid(), signum)
            time.sleep(5)                                        # the handler raises before this ends
        return real(self, epoch)
    monkeypatch.setattr(Engine, 'train_epoch', stopped)
    before = signal.getsignal(signum)
    prefix = 'term' + signame.lower()
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=%s' % prefix, 'num_epoch=3'])
    assert code == status and '%s. Every finished epoch is checkpointed' % said in err, err
    assert 'retrain=true model_load_epoch=-1' in err and 'Traceback' not in err
    assert checkpoint.epochs(str(root / 'model'), prefix) == [1]
    assert not os.path.exists(str(root / 'model' / (prefix + '.lock')))
    assert signal.getsignal(signum) == before                        # train.main leaves no handler behind


@pytest.mark.parametrize('signame', ['SIGTERM', 'SIGINT'])
def test_a_signal_just_after_validation_keeps_the_validated_epoch(cifar_setup, train_run, monkeypatch, signame):
    """Found by a new user: a SIGTERM between an epoch's validation and its checkpoint dropped the
    epoch (its record written, its checkpoint not) and said no epoch had finished. The record and
    the checkpoint of a validated epoch are written whole; the signal acts right after."""
    import signal
    root, common, _ = cifar_setup
    from tasks.classification.task import ClassificationTask
    real = ClassificationTask.epoch_line

    def line_then_signal(self, epoch, stats, val):
        if epoch == 1:
            os.kill(os.getpid(), getattr(signal, signame))
            time.sleep(0.5)                                  # (an unheld signal would act here)
        return real(self, epoch, stats, val)
    monkeypatch.setattr(ClassificationTask, 'epoch_line', line_then_signal)
    prefix = 'late' + signame.lower()
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=%s' % prefix, 'num_epoch=3'])
    assert code == (143 if signame == 'SIGTERM' else 130), err
    assert checkpoint.epochs(str(root / 'model'), prefix) == [1]
    assert 'before the first epoch' not in err and 'retrain=true model_load_epoch=-1' in err, err
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


@pytest.mark.skipif(bfloat16_problem() is not None, reason='bfloat16 AMP cannot run on this CPU: %s'
                    % bfloat16_problem())
def test_bfloat16_amp_distillation(cifar_setup):
    """dtype=bfloat16 (CPU AMP) through KD + NST; a subprocess, since amp.init patches MXNet for good."""
    import numpy as np
    import mxnet as mx
    root, _, student = cifar_setup
    argv = student + ['kt_type=kd+mmd', 'teacher_symbol=[null, stage3_pre]', 'student_symbol=[null, stage3_pre]',
                      'dtype=bfloat16', 'model_prefix=bf16']
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, 'train.py'] + argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(str(root / 'log' / 'bf16.jsonl')) as f:
        rec = json.loads(f.readlines()[-1])
    assert np.isfinite(rec['train_kd']) and np.isfinite(rec['train_mmd']) and rec['train_mmd'] > 0
    params = mx.nd.load(checkpoint.paths(str(root / 'model'), 'bf16', 1)['params'])
    assert {v.dtype for v in params.values()} == {np.float32}        # float32 master weights are saved


def test_bfloat16_on_a_cpu_without_avx512_is_one_error(cifar_setup):
    """On a CPU without AVX-512 oneDNN has no bfloat16 kernels (a MXNetError traceback in the first
    step): refused before anything is written, naming what is missing and dtype=float32. An
    AVX2-only CPU is what DNNL_MAX_CPU_ISA=AVX2 makes of this one for oneDNN (without the check the
    run fails with "could not create a primitive descriptor iterator")."""
    root, _, student = cifar_setup
    before = snapshot(root)
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, 'train.py'] + student + ['kt_type=kd', 'teacher_symbol=null',
                                                                 'student_symbol=null', 'dtype=bfloat16',
                                                                 'model_prefix=bf16_avx2'],
                       cwd=cwd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, DNNL_MAX_CPU_ISA='AVX2'))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [l for l in r.stderr.splitlines() if 'error' in l]
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'dtype=bfloat16' in lines[0] and 'AVX512_CORE' in lines[0] and 'use dtype=float32' in lines[0]
    assert snapshot(root) == before


def test_bfloat16_support_is_read_from_the_cpu_flags():
    """oneDNN's avx512_core (F, BW, VL, DQ) is what bfloat16 needs; an AVX2-only CPU (an AMD EPYC of
    the Zen 2/3 kind) lacks all four; DNNL_MAX_CPU_ISA caps it by its exact names only."""
    epyc_zen3 = set('fpu sse4_1 sse4_2 avx avx2 fma bmi2 sha_ni vaes'.split())
    avx512 = epyc_zen3 | {'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512cd'}
    problem = bfloat16_problem(epyc_zen3, {})
    assert 'avx512f avx512bw avx512vl avx512dq missing' in problem
    assert bfloat16_problem(avx512 - {'avx512vl'}, {}).startswith('this CPU has no AVX-512 (avx512vl missing)')
    assert bfloat16_problem(avx512, {}) is None
    assert 'DNNL_MAX_CPU_ISA=AVX2' in bfloat16_problem(avx512, {'DNNL_MAX_CPU_ISA': 'AVX2'})
    for ignored in ('avx2', 'ALL', 'AVX512_CORE_BF16', 'bogus'):      # oneDNN does not cap on these
        assert bfloat16_problem(avx512, {'DNNL_MAX_CPU_ISA': ignored}) is None, ignored


def test_doctor_reports_bfloat16_support():
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, '-m', 'tools.doctor'], cwd=cwd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, DNNL_MAX_CPU_ISA='AVX2'))
    assert r.returncode == 0, r.stderr             # the CPU build is usable; only bfloat16 is not
    assert 'bfloat16    NO: DNNL_MAX_CPU_ISA=AVX2 caps oneDNN' in r.stdout and 'dtype=float32' in r.stdout


def test_a_teacher_used_at_another_image_size_is_reported(tmp_path, train_run):
    """A teacher trained at 16x16 distilling at 24x24: a warning with the teacher's own figure."""
    from data import pack
    from tests.helpers import make_jpeg_tree
    make_jpeg_tree(str(tmp_path / 'imgs' / 'train'), classes=2, per_class=6, size=(28, 28), seed=1)
    make_jpeg_tree(str(tmp_path / 'imgs' / 'val'), classes=2, per_class=3, size=(28, 28), seed=2)
    pack.build_packs(str(tmp_path / 'imgs' / 'train'), str(tmp_path / 'packs'), str(tmp_path / 'imgs' / 'val'),
                     progress=False)
    common = ['dataset=imagenet', 'data_dir=%s' % (tmp_path / 'packs'), 'num_classes=2', 'network=cifar_resnet8',
              'gpu_list=[]', 'batch_size=4', 'progress=false', 'num_epoch=1', 'model_dir=%s' % (tmp_path / 'model'),
              'log_dir=%s' % (tmp_path / 'log')]
    assert train_run(common + ['image_size=16', 'resize=16', 'model_prefix=t16', 'kt=false'])[0] == 0
    code, err = train_run(common + ['image_size=24', 'resize=24', 'model_prefix=s24', 'kt=true', 'kt_type=kd', 'kt_weight=null',
                                    'teacher_symbol=null', 'student_symbol=null',
                                    'teacher_prefix=%s' % (tmp_path / 'model' / 't16')])
    assert code == 0, err
    assert 'the teacher was trained on 16x16 images (its validation top-1 then' in err
    assert 'image_size=24 here' in err and 'Use image_size=16' in err


def test_gluoncv_teacher_from_a_local_params_file(cifar_setup, tmp_path, train_run):
    """teacher_source=gluoncv with a local file: gluoncv's ResNetV2 (preact_resnet18) weights."""
    import mxnet as mx
    import symbols
    root, _, student = cifar_setup
    net = symbols.get_network('preact_resnet18', 10)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path / 'resnet18_v2.params')
    net.save_parameters(path)
    code, err = train_run(student + ['teacher_source=gluoncv', 'teacher_network=preact_resnet18',
                               'teacher_prefix=%s' % path, 'kt_type=kd+mmd', 'teacher_symbol=[null, stage1_pre]',
                               'student_symbol=[null, stage3_pre]', 'model_prefix=gcv'])
    assert code == 0, err
    assert 'teacher: preact_resnet18 from %s' % path in err


def test_hints_after_a_stop_before_the_first_checkpoint_do_not_point_at_a_resume(cifar_setup, train_run,
                                                                                 monkeypatch):
    """Ctrl-C or divergence in epoch 0: nothing to resume, so the hint is the command itself."""
    from core.engine import Engine
    _, common, _ = cifar_setup

    def interrupted(self, epoch):
        raise KeyboardInterrupt
    monkeypatch.setattr(Engine, 'train_epoch', interrupted)
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=early'])
    assert code == 130 and 'before the first epoch' in err and 'retrain=true' not in err
    monkeypatch.undo()
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=early', 'lr=1e38'])
    assert code == 3 and 'nothing to resume' in err and 'train.py' in err
    # (found by a new user: the command offered "with a lower lr" repeated lr=1e38; then, #18's ninth
    # trial, a tenth of an absurd lr at a time: at most 0.1 now)
    assert 'lr=0.1' in err and 'lr=1e38' not in err.split('start again with a lower lr')[1], err



def test_a_run_that_cannot_start_leaves_no_log_file_and_a_run_logs_its_config(cifar_setup, train_run):
    """A wrong tap (found while the run is set up) left an empty log/<prefix>.log behind, which the
    next run of that name then moved aside with a warning. A run that starts logs where its
    configuration came from and the config warnings, in the log file too."""
    root, common, student = cifar_setup
    code, err = train_run(student + ['kt_type=mmd', 'teacher_symbol=nope', 'student_symbol=stage3_pre',
                                     'model_prefix=nolog'])
    assert code == 2 and "unknown tap 'nope'" in err
    assert not os.path.exists(str(root / 'log' / 'nolog.log'))
    fresh = root / 'fresh'                               # folders the run would have created: not left behind
    code, err = train_run(student + ['kt_type=mmd', 'teacher_symbol=nope', 'student_symbol=stage3_pre',
                                     'model_prefix=nolog', 'model_dir=%s' % (fresh / 'model'),
                                     'log_dir=%s' % (fresh / 'log')])
    assert code == 2 and "unknown tap 'nope'" in err and not fresh.exists()
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=warm', 'warmup_epochs=3'])
    assert code == 0 and 'warmup_epochs=3 is longer than the run (num_epoch=1)' in err, err
    log = (root / 'log' / 'warm.log').read_text()
    assert 'config: %s' % os.path.join('config', 'presets', 'cifar10_student.yaml') in log
    assert 'warmup_epochs=3 is longer than the run' in log and 'Epoch[1]' in log


def test_overwrite_moves_the_old_run_aside_only_once_the_new_one_can_start(cifar_setup, train_run):
    """overwrite=true with a mistake found while the run is set up (a wrong tap) moved the old run
    to replaced/ and then stopped: the old run stays where it was until the new one can start."""
    root, common, student = cifar_setup
    argv = student + ['kt_type=kd', 'model_prefix=keepme']
    assert train_run(argv)[0] == 0
    before = run_files(root, 'keepme')
    code, err = train_run(student + ['kt_type=mmd', 'teacher_symbol=nope', 'student_symbol=stage3_pre',
                                     'model_prefix=keepme', 'overwrite=true'])
    assert code == 2 and "unknown tap 'nope'" in err and 'moved' not in err
    assert run_files(root, 'keepme') == before


def test_starting_from_a_run_that_is_not_there_lists_the_runs(cifar_setup, train_run):
    root, common, _ = cifar_setup
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=frm', 'retrain=true',
                                    'model_load_prefix=nosuchrun', 'model_load_epoch=-1'])
    assert code == 2 and 'model_load_prefix=nosuchrun' in err and 'runs there: ' in err and 'teacher' in err, err


def test_ctrl_c_while_a_command_starts_is_one_line(tmp_path):
    """Found by a new user: Ctrl-C in the first second of train.py or python -m data.pack (still
    importing) printed a KeyboardInterrupt traceback."""
    script = tmp_path / 'train.py'
    script.write_text('import core\nraise KeyboardInterrupt\n')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=root))
    assert r.returncode == 130 and r.stderr.strip() == 'interrupted', (r.returncode, r.stderr)
    other = tmp_path / 'mine.py'                       # not one of the project's commands: Python's own way
    other.write_text('import core\nraise KeyboardInterrupt\n')
    r = subprocess.run([sys.executable, str(other)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=root))
    assert 'Traceback' in r.stderr and 'KeyboardInterrupt' in r.stderr


LOST_IN_FINALIZER = r'''
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)   # as at a terminal (a background job inherits it ignored)
sys.unraisablehook = lambda u: sys.stderr.write('dropped %s\n' % u.exc_type.__name__)   # (as pytest's)
if sys.argv[1] == 'core':
    import core                                     # (what every project program imports)


class Array(object):                                # a finalizer that runs Python code, as NDArray.__del__
    def __del__(self):
        if not getattr(signal, 'sent', False):      # Ctrl-C's KeyboardInterrupt raised while a finalizer runs
            signal.sent = True                      # (where Python's SIGINT handler raises it when the signal
            raise KeyboardInterrupt                 # arrives during one)


tic = time.time()
while time.time() - tic < 5:                        # a loop freeing objects, as a training loop does
    Array()
print('went on')
'''


@pytest.mark.parametrize('imports', ['core', 'nothing'])
def test_ctrl_c_landing_in_a_finalizer_is_not_lost(tmp_path, imports):
    """Python drops a KeyboardInterrupt raised inside a finalizer, which is where Ctrl-C's handler
    raises it when the signal arrives during one (MXNet's NDArray.__del__ runs for every freed
    array): the program went on as if Ctrl-C had not been pressed. With the project's
    core imported, the interrupt is raised again at once; without it (the control; a program's
    own unraisable hook, as pytest's, stands for Python's, which drops it on 3.12) the loop goes on
    to its end."""
    script = tmp_path / 'loop.py'
    script.write_text(LOST_IN_FINALIZER)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tic = time.time()
    r = subprocess.run([sys.executable, str(script), imports], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=root))
    if imports == 'core':
        assert r.returncode != 0 and 'KeyboardInterrupt' in r.stderr and 'went on' not in r.stdout, r.stderr
        assert 'dropped' not in r.stderr and time.time() - tic < 4.5
    else:
        assert r.returncode == 0 and 'went on' in r.stdout and 'dropped KeyboardInterrupt' in r.stderr


def test_num_examples_larger_than_the_training_set_is_refused(cifar_setup, train_run):
    """It was accepted: the log named 1,000 images, the epoch ended with the data's 8 batches, and a cosine
    schedule ended a 1-epoch run at lr 0.097 instead of near 0."""
    root, common, _ = cifar_setup
    before = snapshot(root)
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=toomany', 'num_examples=1000',
                                    'lr_mode=cosine'])
    assert code == 2 and 'Traceback' not in err, err
    assert 'num_examples=1000 but the training set of %s has 60 images: leave num_examples unset (it is counted) ' \
           'or give at most 60' % (root / 'cifar') in err
    assert snapshot(root) == before
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=fewer', 'num_examples=32'])[0] == 0


def test_files_left_by_a_killed_process_are_cleared_by_the_next_run(cifar_setup, train_run):
    """#18.10: SIGKILL mid-checkpoint left a hidden 0-byte `.RUN-NNNN.tmp-PID.params`, and one in a
    folder probe an empty `.write-test-PID`, for good; the run's next start removes them (another
    run's temporaries, which its own process may be writing, and a fresh probe are kept)."""
    root, common, _ = cifar_setup
    model, log = root / 'model', root / 'log'
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=killed'])[0] == 0
    left = [model / '.killed-0002.tmp-99999.params', model / '.killed-0002.extra.tmp-99999.params',
            model / '.killed-best.tmp-99999.json', model / '.write-test-99998', log / '.write-test-99997']
    kept = [model / '.other-0001.tmp-99999.params', log / '.write-test-99996']
    for p in left + kept:
        p.write_bytes(b'')
    old = time.time() - 3600
    for p in left[3:] + kept[:1]:
        os.utime(str(p), (old, old))
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=killed', 'retrain=true',
                                    'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 0, err
    assert not [p for p in left if p.exists()] and all(p.exists() for p in kept)
    assert 'removed 5 file(s) left by an interrupted process' in err, err
    assert checkpoint.epochs(str(model), 'killed') == [1, 2]



def test_a_resume_with_another_global_batch_is_said(cifar_setup, train_run):
    """Found by a new user: a resume with fewer devices (NST_CPU_DEVICES) halved the global batch silently."""
    _, common, _ = cifar_setup
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=gb'])[0] == 0
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=gb', 'batch_size=4', 'retrain=true',
                                    'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 0 and 'resuming epoch 1 with a global batch of 4' in err and 'trained with 8' in err, err


def test_a_resume_with_other_training_settings_is_said(cifar_setup, train_run):
    """Found by a new user: a segmentation run resumed with another lr and crop_size said nothing (the
    teacher and the global batch were said); the engine says every such change, for every task."""
    _, common, _ = cifar_setup
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=ch'])[0] == 0
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=ch', 'retrain=true', 'model_load_epoch=-1',
                                    'num_epoch=2'])
    assert code == 0 and 'train otherwise' not in err, err              # the same settings, a longer run
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=ch', 'retrain=true', 'model_load_epoch=-1',
                                    'num_epoch=3', 'lr=0.037', 'wd=0.0003'])
    lines = [line for line in err.splitlines() if 'train otherwise' in line]
    assert code == 0 and len(lines) == 1, err
    assert 'resuming epoch 2 with lr=0.037, wd=0.0003; epoch 2 was trained with lr=0.2, wd=0.0001' in lines[0], lines


def test_a_run_resumed_without_its_records_says_so(cifar_setup, train_run, tmp_path):
    """Found by a new user: a run folder copied without its log_dir resumed silently, its records then
    starting at the resumed epoch."""
    import shutil
    root, common, _ = cifar_setup
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=norec', 'num_epoch=2'])[0] == 0
    copy = tmp_path / 'copied'
    copy.mkdir()
    for f in os.listdir(str(root / 'model')):
        if f.startswith('norec-'):
            shutil.copy(str(root / 'model' / f), str(copy / f))
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=norec', 'num_epoch=3', 'retrain=true',
                                    'model_load_epoch=-1', 'model_dir=%s' % copy, 'log_dir=%s' % (tmp_path / 'log')])
    assert code == 0 and 'the records of epoch(s) 1, 2 of run' in err and 'copy the run' in err, err
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=norec', 'num_epoch=3', 'retrain=true',
                                    'model_load_epoch=-1'])
    assert code == 0 and 'the records of epoch' not in err, err


@pytest.mark.parametrize('signame', ['SIGTERM', 'SIGINT'])
def test_a_signal_to_the_process_group_stops_a_run_with_loader_workers(tmp_path, signame):
    """Found by a new user: a segmentation run with num_workers=2 hung for good when `timeout` (or a
    terminal's Ctrl-C, or a scheduler) signalled the whole process group: the workers died, gluon's
    pool forked replacements beside MXNet's engine and deadlocked. The workers now ignore the signal,
    the main process stops the run (130 / 143, the usual message), and no process is left."""
    import signal
    from tests.seg_synth import make_voc_segmentation
    voc = make_voc_segmentation(str(tmp_path / 'VOCdevkit'), classes=3, train=16, val=4, size=(48, 48))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [sys.executable, 'train.py', '--cfg', 'seg_voc_r18_deeplabv3plus', 'voc_root=%s' % voc, 'sbd_root=null',
            'classes=[background,rect,disc]', 'gpu_list=[]', 'pretrained=null', 'batch_size=2', 'crop_size=32',
            'num_workers=2', 'aspp_channels=16', 'progress=false', 'frequent=1', 'model_dir=%s' % (tmp_path / 'model'),
            'log_dir=%s' % (tmp_path / 'log'), 'model_prefix=w', 'num_epoch=50', 'epoch_size=40']
    run = subprocess.Popen(argv, cwd=root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                           start_new_session=True)
    try:
        log = tmp_path / 'log' / 'w.log'
        deadline = time.time() + 240
        while time.time() < deadline and run.poll() is None and 'Batch [2]' not in (
                log.read_text() if log.exists() else ''):
            time.sleep(0.2)
        assert run.poll() is None, run.stderr.read()
        os.killpg(run.pid, getattr(signal, signame))          # the process and its loader's workers
        _, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == {'SIGTERM': 143, 'SIGINT': 130}[signame], err
    assert ('terminated (SIGTERM)' if signame == 'SIGTERM' else 'interrupted') in err and 'Traceback' not in err, err
    time.sleep(1)
    left = subprocess.run(['pgrep', '-g', str(run.pid)], capture_output=True, text=True).stdout.split()
    assert not left, left                                      # every worker stopped with it
    assert not (tmp_path / 'model' / 'w.lock').exists()


def test_a_copied_checkpoint_gets_branch_advice_that_works_and_copied_records_are_set_aside(cifar_setup, train_run):
    """#18's tenth trial: a checkpoint copied under another run's name and epoch was warned of with
    advice that did not work (the copy's epoch number, the existing name, no retrain=true); another
    run's records copied as a run's own were kept and appended to on resume."""
    import shutil
    root, common, _ = cifar_setup
    model, log = root / 'model', root / 'log'
    argv = common + ['network=cifar_resnet8', 'num_epoch=1']
    assert train_run(argv + ['model_prefix=src10'])[0] == 0
    for kind in ('json', 'params', 'states'):
        shutil.copy(str(model / ('src10-0001.' + kind)), str(model / ('cp10-0003.' + kind)))
    # (#18's trial 23: resumed as epoch 3, the schedule restarted at a point the weights were not at; now
    # refused, with the same advice)
    code, err = train_run(argv + ['model_prefix=cp10', 'retrain=true', 'model_load_epoch=-1', 'num_epoch=4'])
    assert code == 2 and "is epoch 3 by its file names but epoch 1 of run 'src10' by its metadata" in err, err
    advice = err.split('Branch from that run without copying: ')[1].split()[:4]
    assert advice == ['model_prefix=NEW', 'retrain=true', 'model_load_prefix=src10', 'model_load_epoch=1'], advice
    code, err = train_run(argv + [a.replace('NEW', 'br10') for a in advice] + ['num_epoch=2'])
    assert code == 0 and "run 'br10' starts from epoch 1 of run 'src10'" in err, err
    assert train_run(argv + ['model_prefix=own10'])[0] == 0
    shutil.copy(str(log / 'src10.jsonl'), str(log / 'own10.jsonl'))
    code, err = train_run(argv + ['model_prefix=own10', 'retrain=true', 'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 0 and "records of run 'src10' found as those of 'own10'" in err, err
    recs = [json.loads(l) for l in open(str(log / 'own10.jsonl')) if l.strip()]
    assert [(r['model_prefix'], r['epoch']) for r in recs] == [('own10', 1)], recs


def test_a_folder_where_the_records_go_is_refused_before_training(cifar_setup, train_run):
    """#18's tenth trial: `mkdir log/X.jsonl` was found after a whole epoch (a warning, no record)."""
    root, common, _ = cifar_setup
    (root / 'log' / 'dir10.jsonl').mkdir(parents=True)
    code, err = train_run(common + ['network=cifar_resnet8', 'num_epoch=1', 'model_prefix=dir10'])
    assert code == 2 and 'dir10.jsonl is a folder, where run' in err and 'Epoch[1]' not in err, err
    assert not checkpoint.epochs(str(root / 'model'), 'dir10')


def test_an_epoch_size_beyond_one_pass_is_one_pass_and_the_schedule_follows(cifar_setup, train_run):
    """Found in review (a careless epoch_size=99999999): the epoch stopped after one pass of the data
    while the cosine schedule was spread over 99999999 steps, so the lr hardly decayed, silently."""
    root, common, _ = cifar_setup
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=pass10', 'epoch_size=100000',
                                    'lr_mode=cosine', 'lr=0.1'])
    assert code == 0 and 'epoch_size=100000 is more than the 8 steps of one pass over the 60 training images' in err, err
    rec = json.loads(open(str(root / 'log' / 'pass10.jsonl')).read().splitlines()[-1])
    assert rec['steps'] == 8 and rec['lr'] < 0.01, rec                 # the cosine ran out over the 8 steps


def test_an_epoch_trained_again_after_a_kill_before_its_checkpoint_has_one_record(cifar_setup, train_run):
    """Found by a new user: a run killed between an epoch's record and its checkpoint trains the epoch
    again on resume, and its records file held the epoch twice (tables read the last one; the file
    itself misled). The file now holds each epoch once; the file as it was is kept aside."""
    root, common, _ = cifar_setup
    model, jsonl = str(root / 'model'), str(root / 'log' / 'recrun.jsonl')
    argv = common + ['network=cifar_resnet8', 'model_prefix=recrun', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    for f in runs.epoch_files(model, 'recrun', [2]):       # epoch 2 recorded, its checkpoint never written
        os.remove(f)
    with open(jsonl) as f:
        assert [json.loads(l)['epoch'] for l in f if l.strip()] == [0, 1]
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1'])
    assert code == 0 and 'record(s) of epoch(s) 2 of run' in err, err
    with open(jsonl) as f:
        assert [json.loads(l)['epoch'] for l in f if l.strip()] == [0, 1]
    aside = [d for d in os.listdir(os.path.join(model, 'replaced')) if d.startswith('recrun-')]
    with open(os.path.join(model, 'replaced', aside[0], 'recrun.jsonl')) as f:
        assert [json.loads(l)['epoch'] for l in f if l.strip()] == [0, 1]
    assert checkpoint.epochs(model, 'recrun') == [1, 2]


def test_a_teacher_without_its_best_parameters_falls_back_to_its_best_recorded_epoch(cifar_setup, train_run):
    """Found by a new user (#18's eleventh trial): a teacher run whose -best.params was deleted was
    refused ('does not exist', no fix), while tools.evaluate fell back to the best recorded epoch."""
    import shutil
    root, _, student = cifar_setup
    copy = root / 'nobest'
    copy.mkdir()
    for f in os.listdir(str(root / 'model')):
        if f.startswith('teacher-') and f != 'teacher-best.params':
            shutil.copy(str(root / 'model' / f), str(copy / f))
    code, err = train_run(student + ['kt_type=kd', 'teacher_prefix=%s' % (copy / 'teacher'), 'model_prefix=nb',
                                     'kt_weight=null', 'teacher_symbol=null', 'student_symbol=null'])
    assert code == 0 and "run 'teacher' has no best copy (teacher-best.params is missing): using epoch" in err, err


def test_overwrite_with_a_file_where_runs_are_set_aside_names_it(cifar_setup, train_run, tmp_path):
    """Found by a new user (#18's twelfth trial): with a file named `replaced` in model_dir, overwrite=true
    said to free disk space or fix the permissions."""
    _, common, _ = cifar_setup
    model = tmp_path / 'mdl'
    argv = common + ['network=cifar_resnet8', 'model_prefix=w', 'model_dir=%s' % model, 'log_dir=%s' % (tmp_path / 'l')]
    assert train_run(argv)[0] == 0
    (model / 'replaced').write_text('in the way')
    code, err = train_run(argv + ['overwrite=true'])
    assert code == 2 and '%s is a file, where runs set aside go' % (model / 'replaced') in err, err
    assert 'Free disk space' not in err and checkpoint.epochs(str(model), 'w') == [1]


def test_a_run_renamed_with_its_records_and_a_pid_file_lock(cifar_setup, train_run):
    """Found by a new user (#18's thirteenth trial): a run renamed with its records (`mv r1-* r2-*`,
    `mv r1.jsonl r2.jsonl`) had its records set aside as another run's and was then told to copy them
    back; a lock file holding only a process id (a pid-file script's) was an AttributeError traceback;
    a teacher retrained under the same name was taken on resume without a word."""
    import glob
    import shutil
    from core.records import read_records
    root, common, _ = cifar_setup
    model, log = root / 'model', root / 'log'
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=rn1', 'num_epoch=2'])[0] == 0
    for f in glob.glob(str(model / 'rn1-*')):
        shutil.move(f, f.replace('rn1-', 'rn2-'))
    shutil.move(str(log / 'rn1.jsonl'), str(log / 'rn2.jsonl'))
    (model / 'rn2.lock').write_text('999999\n')
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=rn2', 'num_epoch=3', 'retrain=true',
                                    'model_load_epoch=-1'])
    assert code == 0 and "the run was renamed 'rn2', and its records go on under that name" in err, err
    assert 'are not in' not in err and 'taking over the lock' in err and 'Traceback' not in err
    recs = read_records(str(log / 'rn2.jsonl'))
    assert [r['epoch'] for r in recs] == [0, 1, 2] and {r['model_prefix'] for r in recs} == {'rn2'}
    # a teacher retrained under its name: the resume says so
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=tch'])[0] == 0
    student = common + ['network=cifar_resnet8', 'kt=true', 'kt_type=kd', 'kt_weight=null', 'teacher_symbol=null',
                        'student_symbol=null', 'teacher_prefix=%s' % (model / 'tch'), 'model_prefix=stu']
    assert train_run(student)[0] == 0
    assert [r.get('kt_type') for r in read_records(str(log / 'stu.jsonl'))] == ['kd']   # (what results_table reads)
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=tch', 'lr=0.3', 'overwrite=true'])[0] == 0
    code, err = train_run(student + ['num_epoch=2', 'retrain=true', 'model_load_epoch=-1'])
    assert code == 0 and 'is not the one epochs 1..1 of run \'stu\' were distilled from' in err, err
    # (#18's sixteenth trial) another teacher named on resume: said as that, not as a teacher retrained
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=tch2', 'lr=0.2'])[0] == 0
    code, err = train_run(student + ['num_epoch=3', 'retrain=true', 'model_load_epoch=-1',
                                     'teacher_prefix=%s' % (model / 'tch2')])
    assert code == 0 and 'with teacher_prefix=%s' % (model / 'tch2') in err and 'retrained or replaced' not in err, err


def test_a_pid_file_lock_of_a_process_that_runs_no_python_is_taken_over(tmp_path, caplog):
    """#18's eleventh trial: a lock holding only a process id (no start time, no host) naming a live
    process that is no training run (init, a shell's sleep) was refused as held for good; one naming a
    live Python process still is."""
    import logging
    sleeper = subprocess.Popen(['sleep', '60'])
    python = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        (tmp_path / 'r.lock').write_text('%d\n' % sleeper.pid)
        with caplog.at_level(logging.WARNING):
            lock = runs.RunLock(str(tmp_path), 'r').acquire()
        assert 'the process it names (%d) runs no Python program' % sleeper.pid in caplog.text, caplog.text
        lock.release()
        (tmp_path / 'r.lock').write_text('%d\n' % python.pid)
        with pytest.raises(runs.RunError, match='already being trained by process %d' % python.pid):
            runs.RunLock(str(tmp_path), 'r').acquire()
    finally:
        sleeper.kill()
        python.kill()


def test_a_resume_from_another_folder_names_the_relative_model_dir(cifar_setup, train_run, tmp_path, monkeypatch):
    """#18's fourteenth trial: resuming with a relative model_dir from another folder than the
    project's said the run had no checkpoint; it names the folder now, as for data_dir."""
    import core.project
    root, common, _ = cifar_setup
    monkeypatch.setattr(core.project, 'PROJECT', str(root))
    monkeypatch.chdir(str(tmp_path))
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=teacher', 'model_dir=model', 'num_epoch=2',
                                    'retrain=true', 'model_load_epoch=-1'])
    assert code == 2 and "model_dir='model' is relative to the folder you run from (%s)" % tmp_path in err, err
    assert 'model_dir=%s' % (root / 'model') in err and not (tmp_path / 'model').exists()


def test_a_resume_that_stretches_a_cosine_schedule_says_so(cifar_setup, train_run):
    """#18's eighteenth trial: resuming a 1-epoch cosine run with num_epoch=2 raised the lr again from
    ~0.005 to ~0.025 without a word (tools.compare refuses that change)."""
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=cos', 'lr_mode=cosine', 'num_epoch=1']
    assert train_run(argv)[0] == 0
    code, err = train_run(argv + ['num_epoch=2', 'retrain=true', 'model_load_epoch=-1'])
    assert code == 0 and 'resuming with num_epoch=2; epochs 1..1 followed a cosine lr schedule set for num_epoch=1' \
        in err and 'the lr rises again' in err, err
    # #18's trial 21: a run stopped early (set for num_epoch=5) and resumed with a shorter schedule was told the
    # lr "rises again" while it fell, and how to "extend" it
    meta_path = str(root / 'model' / 'cos-0001.json')
    meta = json.load(open(meta_path))
    meta['config']['num_epoch'] = 5
    json.dump(meta, open(meta_path, 'w'))
    code, err = train_run(argv + ['model_prefix=cos', 'num_epoch=2', 'retrain=true', 'model_load_epoch=1',
                                  'overwrite=true'])
    assert code == 0 and 'set for num_epoch=5: the schedule is shrunk to the new length, so the lr drops at ' \
        'once' in err and 'to shorten a run without that' in err, err
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=stp', 'num_epoch=1'])
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=stp', 'num_epoch=2', 'retrain=true',
                                    'model_load_epoch=-1'])
    assert code == 0 and 'lr schedule set for' not in err, err


STUCK = r'''
import ctypes, os, sys, time
from core.interrupt import AT_FORCED_EXIT, StuckStopGuard, deferred, sigterm_as_interrupt
lock = sys.argv[1]
open(lock, 'w').close()
AT_FORCED_EXIT.append(lambda: os.remove(lock))
said = []
try:
    with sigterm_as_interrupt(), StuckStopGuard(lambda e: print('said', type(e).__name__, file=sys.stderr),
                                                said=lambda: bool(said), grace=0.5):
        import multiprocessing.util
        print('waiting', multiprocessing.util.get_temp_dir(), flush=True)   # (a DataLoader's pool makes one)
        if sys.argv[2] == 'stuck':   # (as in a kvstore pull: a C call that signals do not interrupt)
            mutex = ctypes.create_string_buffer(64)      # (zeros: a default pthread mutex)
            ctypes.CDLL(None).pthread_mutex_lock(mutex)
            ctypes.CDLL(None).pthread_mutex_lock(mutex)  # (locked again by its owner: waits for good)
        elif sys.argv[2] == 'deferred':                  # (a checkpoint written for longer than the grace)
            with deferred():
                time.sleep(1.5)
                print('saved', file=sys.stderr, flush=True)
        else:
            time.sleep(60)
except KeyboardInterrupt as e:
    said.append(True)
    print('handled', type(e).__name__, file=sys.stderr, flush=True)
time.sleep(1.5)                      # (past the guard's grace: it must not act once it is left)
print('ended', file=sys.stderr)
'''


@pytest.mark.parametrize('how', ['stuck', 'in_python', 'deferred'])
def test_a_stop_reaches_a_process_stuck_in_a_c_call(tmp_path, how):
    """#18's trial 20: a worker of a dist job waiting in the kvstore for a worker (or server) that was
    stopped never returned to Python; its launcher SIGKILLed it, which left the run's lock behind and
    said no resume command. `StuckStopGuard` says it and releases the lock `grace` seconds after the
    signal; a process whose own handler ran is left to it."""
    import signal
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lock = tmp_path / 'run.lock'
    p = subprocess.Popen([sys.executable, '-c', STUCK, str(lock), how], cwd=root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        said, temporary = p.stdout.readline().split()
        assert said == 'waiting' and os.path.isdir(temporary)
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        sent = time.time()
        _, err = p.communicate(timeout=20)
        took = time.time() - sent
    finally:
        if p.poll() is None:
            p.kill()
    if how == 'stuck':
        assert p.returncode == 143 and 0.4 < took < 5, (p.returncode, took, err)
        assert err.split() == ['said', 'Terminated'] and not lock.exists(), err
        assert not os.path.exists(temporary)       # (os._exit skips multiprocessing's own clean-up)
    elif how == 'deferred':         # (the section finishes, then the stop acts; the guard waited for it)
        assert p.returncode == 0 and err.split() == ['saved', 'handled', 'Terminated', 'ended'] and lock.exists(), err
        assert 'BrokenPipeError' not in err
    else:
        assert p.returncode == 0 and err.split() == ['handled', 'Terminated', 'ended'] and lock.exists(), err


def test_a_copy_of_a_run_in_another_model_dir_never_takes_over_the_original_s_records(cifar_setup, train_run,
                                                                                        tmp_path):
    """#18's trial 21: a run's epoch copied to another model_dir and resumed there with the same log_dir
    rewound the original run's records ('which has no checkpoint of them') and moved them into the
    copy's folder; two runs of one name in two model_dirs started at once with one log_dir wrote one
    records file, interleaved."""
    import shutil
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=origin21', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    records = (root / 'log' / 'origin21.jsonl').read_bytes()
    other = tmp_path / 'other'
    other.mkdir()
    for f in os.listdir(str(root / 'model')):
        if f.startswith('origin21-0001.'):
            shutil.copy(str(root / 'model' / f), str(other / f))
    code, err = train_run(argv + ['model_dir=%s' % other, 'retrain=true', 'model_load_epoch=1'])
    said = 'holds the records of run \'origin21\' in %s, which has checkpoints' % (root / 'model')
    assert code == 2 and said in err, err
    assert 'log_dir of its own' in err, err
    assert (root / 'log' / 'origin21.jsonl').read_bytes() == records and not (other / 'replaced').exists()
    code, err = train_run(argv + ['model_dir=%s' % other, 'retrain=true', 'model_load_epoch=1',
                                  'log_dir=%s' % (other / 'log')])
    assert code == 0, err
    # the log_dir's lock: a run of that name in another model_dir is training now
    with runs.RunLock(str(root / 'log'), 'twin21'):
        code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=twin21', 'model_dir=%s' % other])
    assert code == 2 and "run 'twin21' is already being trained by process %d" % os.getpid() in err, err
    assert str(root / 'log' / 'twin21.lock') in err
    # (a review: the same folder spelled through a link, and a copied tree with its own log_dir, resume)
    tree = tmp_path / 'tree'
    (tree / 'model').mkdir(parents=True)
    (tree / 'log').mkdir()
    for f in os.listdir(str(root / 'model')):
        if f.startswith('origin21-'):
            shutil.copy(str(root / 'model' / f), str(tree / 'model' / f))
    shutil.copy(str(root / 'log' / 'origin21.jsonl'), str(tree / 'log' / 'origin21.jsonl'))
    code, err = train_run(argv + ['model_dir=%s' % (tree / 'model'), 'log_dir=%s' % (tree / 'log'), 'num_epoch=3',
                                  'retrain=true', 'model_load_epoch=-1'])
    assert code == 0 and 'holds the records' not in err, err
    os.symlink(str(root / 'model'), str(tmp_path / 'link'))
    code, err = train_run(argv + ['model_dir=%s' % (tmp_path / 'link'), 'num_epoch=3', 'retrain=true',
                                  'model_load_epoch=-1'])
    assert code == 0 and 'holds the records' not in err, err


def test_closed_output_streams_are_not_a_failure(cifar_setup):
    """`cmd >&-` or `cmd 2>&-` (Python then has None for the stream; tqdm's progress bar and the
    tools' final flush failed with an AttributeError, or the run ended silently with status 1): the
    stream writes to /dev/null, the run trains and checkpoints, its log file gets everything."""
    root, common, _ = cifar_setup
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run(argv, redirect):
        command = ' '.join(shlex.quote(a) for a in [sys.executable] + argv) + ' ' + redirect
        return subprocess.run(['bash', '-c', command], cwd=cwd, capture_output=True, text=True, timeout=300)
    for redirect, name in (('>&-', 'closed_stdout'), ('2>&-', 'closed_stderr')):
        r = run(['train.py'] + merged(common + ['network=cifar_resnet8', 'kt=false', 'progress=true',
                                                 'model_prefix=%s' % name]), redirect)
        assert r.returncode == 0 and 'Traceback' not in r.stderr + r.stdout, (redirect, r.stderr)
        assert checkpoint.epochs(str(root / 'model'), name) == [1]
        assert 'Epoch[1]' in open(str(root / 'log' / (name + '.log'))).read()
    r = run(['-m', 'tools.evaluate', '--prefix', str(root / 'model' / 'closed_stdout')], '>&-')
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr


def test_a_run_name_that_reads_as_another_s_is_refused(cifar_setup, train_run):
    """#18's trial 23: model_prefix=café typed in NFC, then in NFD (another system's keyboard, or a
    name copied from another program), made two runs that every listing showed as 'café, café'."""
    root, common, _ = cifar_setup
    nfc, nfd = 'caf\u00e9', 'cafe\u0301'
    assert train_run(common + ['network=cifar_resnet8', 'kt=false', 'model_prefix=%s' % nfc])[0] == 0
    for extra in ([], ['retrain=true', 'model_load_epoch=-1']):
        code, err = train_run(common + ['network=cifar_resnet8', 'kt=false', 'model_prefix=%s' % nfd] + extra)
        errors = [l for l in err.splitlines() if l.startswith('error:')]
        assert code == 2 and len(errors) == 1 and 'is written with other Unicode characters' in errors[0], err
        assert "'cafe\\u0301' against 'caf\\xe9'" in errors[0]
    assert checkpoint.epochs(str(root / 'model'), nfd) == [] and checkpoint.epochs(str(root / 'model'), nfc) == [1]


def test_a_resume_from_another_folder_with_a_relative_log_dir_is_refused(cifar_setup, train_run, monkeypatch,
                                                                         tmp_path):
    """#18's trial 24: a resume run from log/ with an absolute model_dir and the default log_dir=log
    wrote epoch 5's record into log/log/s3.jsonl, the run's records split over two files (a relative
    model_dir is refused there already)."""
    import core.project
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'kt=false', 'model_prefix=split24']
    assert train_run(argv)[0] == 0
    monkeypatch.setattr(core.project, 'PROJECT', str(root))          # (the project folder holds log/)
    monkeypatch.chdir(str(tmp_path))
    code, err = train_run(argv + ['log_dir=log', 'retrain=true', 'model_load_epoch=-1', 'num_epoch=2'])
    errors = [l for l in err.splitlines() if l.startswith('error:')]
    assert code == 2 and len(errors) == 1, err
    assert "log_dir='log' is relative to the folder you run from (%s), and the records file of run 'split24' is in the " \
           "project folder: run from %s, or give log_dir=%s" % (tmp_path, root, root / 'log') in errors[0], errors[0]
    assert not (tmp_path / 'log').exists() and checkpoint.epochs(str(root / 'model'), 'split24') == [1]


def test_the_same_folders_written_otherwise_are_no_change_on_resume(cifar_setup, train_run, monkeypatch):
    """#18's trial 24: a resume with data_dir (or teacher_prefix) given as the absolute path of the same
    folder warned that the later epochs train otherwise; another folder still does."""
    import shutil
    root, common, _ = cifar_setup
    monkeypatch.chdir(str(root))
    argv = common + ['network=cifar_resnet8', 'kt=false', 'model_prefix=samepath', 'data_dir=cifar']
    assert train_run(argv)[0] == 0
    code, err = train_run(argv + ['data_dir=%s' % (root / 'cifar'), 'retrain=true', 'model_load_epoch=-1',
                                  'num_epoch=2'])
    assert code == 0 and 'train otherwise' not in err, err
    shutil.copytree(str(root / 'cifar'), str(root / 'cifar_copy'))
    code, err = train_run(argv + ['data_dir=cifar_copy', 'retrain=true', 'model_load_epoch=-1', 'num_epoch=3'])
    assert code == 0 and 'data_dir=cifar_copy; epoch 2 was trained with data_dir=%s' % (root / 'cifar') in err, err


def test_a_symbolic_link_that_loops_or_points_nowhere_is_named(cifar_setup, train_run, tmp_path, capsys):
    """#18's trial 24: `ln -s loopd loopd` as data_dir was 'cannot be read ([Errno 40] ...): pack the data
    again', and as the folder of --prefix 'folder loopd does not exist'."""
    from tools import evaluate
    from tests.helpers import run_tool, one_error
    root, common, _ = cifar_setup
    os.symlink('loopd', str(tmp_path / 'loopd'))
    os.symlink(str(tmp_path / 'gone'), str(tmp_path / 'dangling'))
    code, err = train_run(common + ['network=cifar_resnet8', 'kt=false', 'model_prefix=loop24', 'dataset=imagenet',
                                    'data_dir=%s' % (tmp_path / 'loopd')])
    assert code == 2 and '%s is a symbolic link that loops' % (tmp_path / 'loopd') in err, err
    assert 'pack the data again' not in err
    for link, said in (('loopd', 'is a symbolic link that loops'),
                       ('dangling', 'is a symbolic link to %s, which does not exist' % (tmp_path / 'gone'))):
        code, _, err = run_tool(evaluate.main, ['--prefix', str(tmp_path / link / 'run')], capsys)
        one_error(code, err, '%s %s' % (tmp_path / link, said))


def test_a_run_whose_data_was_packed_again_with_other_classes_is_told_so(tmp_path, train_run, capsys):
    """#18's trial 24: after `data.pack --overwrite` with a 4th class, evaluating a 3-class run blamed its
    metadata, and its resume advised num_classes=3, which the config then refused for the 4-class data
    ("set num_classes=4"): a circle. Both now say the data was packed again and keep its earlier pack."""
    from data import pack
    from tools import evaluate
    from tests.helpers import make_jpeg_tree, run_tool, one_error
    for classes in (3, 4):
        make_jpeg_tree(str(tmp_path / ('train%d' % classes)), classes=classes, per_class=4, size=(20, 20), seed=1)
        make_jpeg_tree(str(tmp_path / ('val%d' % classes)), classes=classes, per_class=2, size=(20, 20), seed=2)
    assert pack.main(['--train', str(tmp_path / 'train3'), '--val', str(tmp_path / 'val3'),
                      '--out', str(tmp_path / 'pack')]) == 0
    argv = ['dataset=imagenet', 'data_dir=%s' % (tmp_path / 'pack'), 'image_size=16', 'network=cifar_resnet8',
            'kt=false', 'gpu_list=[]', 'batch_size=4', 'progress=false', 'data_threads=1', 'num_epoch=1',
            'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'model_prefix=repacked']
    assert train_run(argv)[0] == 0
    assert pack.main(['--train', str(tmp_path / 'train4'), '--val', str(tmp_path / 'val4'),
                      '--out', str(tmp_path / 'pack'), '--overwrite']) == 0
    capsys.readouterr()
    code, _, err = run_tool(evaluate.main, ['--prefix', str(tmp_path / 'model' / 'repacked')], capsys)
    one_error(code, err, 'predicts 3 classes', 'has 4', 'the data was packed again since')
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1', 'num_epoch=2'])
    errors = [l for l in err.splitlines() if 'error:' in l]
    assert code == 2 and len(errors) == 1 and 'packed again since?' in errors[0], err
    assert 'resume with its values' not in errors[0]


def test_a_model_dir_too_deep_for_the_checkpoint_names_is_refused_before_training(cifar_setup, train_run, tmp_path):
    """#18's trial 25: a model_dir of 4,071 characters passed the folder check, trained an epoch, then
    failed its checkpoint with 'free disk space'."""
    root, common, _ = cifar_setup
    deep = str(tmp_path)
    while len(deep) + 201 < 4071:
        deep = os.path.join(deep, 'c' * 200)
    deep = os.path.join(deep, 'c' * (4071 - len(deep) - 1))           # 4,071 characters, as the trial's
    os.makedirs(deep)
    code, err = train_run(common + ['network=cifar_resnet8', 'kt=false', 'model_prefix=deep25', 'model_dir=%s' % deep])
    assert code == 2 and 'is too deep for the files a run writes there' in err and 'Epoch[1]' not in err, err


def test_a_working_folder_deleted_while_the_run_trains(cifar_setup, tmp_path):
    """#18's trial 25: the folder train.py ran from, deleted while it trained, stopped the next
    checkpoint with a FileNotFoundError traceback (its metadata records the working folder); the epoch
    was in the records without its checkpoint. The metadata now records none then."""
    import time
    root, common, _ = cifar_setup
    gone = tmp_path / 'cwd'
    gone.mkdir()
    ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [sys.executable, os.path.join(ROOT, 'train.py')] + merged(
        common + ['network=cifar_resnet8', 'kt=false', 'model_prefix=nocwd', 'num_epoch=2'])
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.Popen(argv, cwd=str(gone), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = root / 'model' / 'nocwd.lock'
    deadline = time.time() + 120
    while not lock.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    gone.rmdir()
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 0 and 'Traceback' not in err, err
    assert checkpoint.epochs(str(root / 'model'), 'nocwd') == [1, 2]
    assert checkpoint.read_meta(str(root / 'model'), 'nocwd', 2)['cwd'] is None


def test_folders_set_aside_sort_in_the_order_they_were_made_in_any_time_zone(monkeypatch):
    """#18's trial 25: a run set aside under TZ=Etc/GMT-14, then another under TZ=Etc/GMT+12, got
    names that sorted the later one first (local time)."""
    import time
    from core.atomic import aside_stamp
    stamps = []
    for zone in ('Etc/GMT-14', 'Etc/GMT+12'):
        monkeypatch.setenv('TZ', zone)
        time.tzset()
        stamps.append(aside_stamp())
    monkeypatch.delenv('TZ')
    time.tzset()
    assert stamps == sorted(stamps) and all(s.endswith('Z') for s in stamps), stamps
