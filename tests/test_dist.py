"""Several workers on 127.0.0.1 distilling with KD + NST end with the parameters of
one process splitting the same global batch over 2 devices, and report validation
over the whole validation set:
- dist_sync through MXNet's launcher (2 workers + 1 server);
- Horovod through horovodrun with Gloo (2 workers). Horovod is built from source
  by `bash init.sh --deps`; where that was not possible the test is skipped and
  says why."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import mxnet as mx
import pytest

from config import load_config, ConfigError
from tests.helpers import make_cifar, merged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow
# Asked in a child process: importing horovod.mxnet loads libmxnet.so with RTLD_GLOBAL, whose bundled libjpeg
# symbols then break PIL's JPEG encoder in this process ('broken data stream when writing image file'), and the
# tests share one process.
_probe = subprocess.run([sys.executable, '-c', 'import horovod.mxnet'], capture_output=True, text=True, timeout=300)
NO_HOROVOD = None if _probe.returncode == 0 else (
    'horovod.mxnet is not built here (%s); `NST_HOROVOD=1 bash init.sh --deps` builds it'
    % ((_probe.stderr.strip().splitlines() or ['?'])[-1]))


def run(cmd, **kw):
    r = subprocess.run(merged(cmd), cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout + r.stderr


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """(root, train.py arguments) after a quick teacher and the one-process, two-device KD + NST run."""
    root = tmp_path_factory.mktemp('dist')
    make_cifar(str(root / 'cifar'), 'cifar10', train=96, test=32)
    args = ['train.py', '--cfg', 'cifar10_student', 'data_dir=%s' % (root / 'cifar'), 'gpu_list=[]',
            'network=cifar_resnet8', 'batch_size=4', 'epoch_size=3', 'num_epoch=2', 'progress=false',
            'model_dir=%s' % (root / 'model'), 'log_dir=%s' % (root / 'log'), 'deterministic=true']
    run([sys.executable] + args + ['model_prefix=teacher', 'num_epoch=1'])
    # the teacher forward, both losses and the teacher's validation (before training, on every
    # worker) all take part
    args += ['kt=true', 'kt_type=kd+mmd', 'kt_weight=[16,50]', 'teacher_prefix=%s' % (root / 'model' / 'teacher'),
             'teacher_epoch=1', 'teacher_symbol=[null,stage3_pre]', 'student_symbol=[null,stage3_pre]']
    run([sys.executable] + args + ['model_prefix=single'], env=dict(os.environ, NST_CPU_DEVICES='2'))
    return root, args


def records(root, prefix):
    with open(str(root / 'log' / ('%s.jsonl' % prefix))) as f:
        return [json.loads(line) for line in f]


def assert_matches_single(root, prefix, output):
    assert 'global batch 8' in output
    t_val = [line for line in output.splitlines() if 'teacher validation' in line]
    assert len(t_val) == 2 and all('(32 images)' in line for line in t_val), t_val    # both workers, whole set
    single = mx.nd.load(str(root / 'model' / 'single-0002.params'))
    multi = mx.nd.load(str(root / 'model' / ('%s-0002.params' % prefix)))
    assert single.keys() == multi.keys()
    # the BatchNorm running statistics too: averaged over the devices (one process) or the workers at the
    # end of every epoch, before validation (they were each worker's own, so the logged validation was
    # not the saved checkpoint's)
    for k in single:
        np.testing.assert_allclose(multi[k].asnumpy(), single[k].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    # one report for the job: the epoch lines (the workers' training figures together) and the final line
    assert output.count('final: ') == 1, output[-3000:]
    epoch_lines = [line for line in output.splitlines() if 'Validation-top1' in line]
    epochs = [line.split('Epoch[')[1].split(']')[0] for line in epoch_lines]
    assert epochs and len(set(epochs)) == len(epochs) and all('[worker 0]' in line for line in epoch_lines), \
        epoch_lines
    one, two = records(root, 'single'), records(root, prefix)
    assert [r['val_n'] for r in two] == [r['val_n'] for r in one] == [32, 32]
    for a, b in zip(one, two):
        assert abs(a['val_top1'] - b['val_top1']) <= 1 / 32. + 1e-9    # at most one borderline image


def test_dist_sync_workers_equal_one_process(reference):
    root, args = reference
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    env.update(DMLC_PS_ROOT_URI='127.0.0.1', DMLC_NODE_HOST='127.0.0.1')
    out = run([sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local', sys.executable] +
              args + ['model_prefix=dist', 'kv_store=dist_sync'], env=env)
    assert_matches_single(root, 'dist', out)


@pytest.mark.skipif(NO_HOROVOD is not None, reason=NO_HOROVOD or '')
def test_horovod_workers_equal_one_process(reference):
    root, args = reference
    horovodrun = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    horovodrun = horovodrun if os.path.isfile(horovodrun) else shutil.which('horovodrun')
    out = run([horovodrun, '-np', '2', '-H', 'localhost:2', '--gloo', sys.executable] + args +
              ['model_prefix=hvd', 'kv_store=horovod'])
    # (the running statistics too: Horovod's rank 1 differed, for it alone kept its first batch's; Gluon's
    # trainer overwrote the one process's second device's and dist_sync's rank 1's with the first's)
    assert_matches_single(root, 'hvd', out)


def test_distributed_stores_need_their_launchers(monkeypatch):
    for key in list(os.environ):
        if key.startswith(('HOROVOD_', 'OMPI_', 'DMLC_')):
            monkeypatch.delenv(key)
    with pytest.raises(ConfigError, match='kv_store=.dist_sync.*tools/launch.py'):
        load_config(None, ['kv_store=dist_sync'], check_data=False)
    if NO_HOROVOD is None:
        with pytest.raises(ConfigError, match='kv_store=horovod.*horovodrun'):
            load_config(None, ['kv_store=horovod'], check_data=False)


@pytest.fixture(scope='module')
def uneven(tmp_path_factory):
    """(root, train.py arguments) on generated CIFAR-10 whose 50 validation images split unevenly
    over 2 workers (a worker's part ends on a batch of padding only), with MXNet's default
    threaded engine and oneDNN, as users run it (not deterministic=true)."""
    root = tmp_path_factory.mktemp('uneven')
    make_cifar(str(root / 'cifar'), 'cifar10', train=64, test=50)
    return root, ['train.py', '--cfg', 'cifar10_student', 'data_dir=%s' % (root / 'cifar'), 'gpu_list=[]',
                  'network=cifar_resnet8', 'batch_size=8', 'epoch_size=3', 'num_epoch=2', 'progress=false',
                  'model_dir=%s' % (root / 'model'), 'log_dir=%s' % (root / 'log')]


def test_dist_sync_and_horovod_validate_an_uneven_set_on_the_default_engine(uneven):
    """Both launchers train and validate the whole set (it used to crash a worker at validation,
    'Cannot find attribute forward_mem_plan', on a batch of padding only; Horovod's ranks aborted in
    the first step under oneDNN and the threaded engine)."""
    root, args = uneven
    env = {k: v for k, v in os.environ.items() if not k.startswith(('DMLC_', 'MXNET_ENGINE'))}
    run([sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local', sys.executable] + args +
        ['model_prefix=dist_uneven', 'kv_store=dist_sync'], env=env)
    assert [r['val_n'] for r in records(root, 'dist_uneven')] == [50, 50]
    # (#18's trial 19: on the threaded engine a worker's pull of a parameter's initial value raced with the
    # first step's gradient push, so the workers' copies of a layer differed, or all started from gradients;
    # the logged validation then was not the checkpoint's)
    for record in records(root, 'dist_uneven'):
        out = run([sys.executable, '-m', 'tools.evaluate', '--prefix', str(root / 'model' / 'dist_uneven'),
                   '--epoch', str(record['epoch'] + 1)], env=env)
        assert 'top-1 %.2f%%' % (100 * record['val_top1']) in out, (record, out[-1500:])
    if NO_HOROVOD is None:
        horovodrun = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
        run([horovodrun, '-np', '2', '-H', 'localhost:2', '--gloo', sys.executable] + args +
            ['model_prefix=hvd_uneven', 'kv_store=horovod'], env=env)
        assert [r['val_n'] for r in records(root, 'hvd_uneven')] == [50, 50]


def test_dist_sync_and_horovod_train_on_an_imagenet_layout_pack(tmp_path):
    """Packs decoded by the worker processes (data/decode.py) under both launchers, default engine:
    each worker reads its part of the pack, validation counts the whole set (11 images: uneven)."""
    from data import pack
    from tests.helpers import make_jpeg_tree
    make_jpeg_tree(str(tmp_path / 'train'), classes=3, per_class=6, size=(20, 20), seed=1)
    make_jpeg_tree(str(tmp_path / 'val'), classes=3, per_class=4, size=(20, 20), seed=2)
    os.remove(str(tmp_path / 'val' / 'class_a' / '000.jpg'))
    assert pack.main(['--train', str(tmp_path / 'train'), '--val', str(tmp_path / 'val'),
                      '--out', str(tmp_path / 'pack')]) == 0
    args = ['train.py', 'dataset=imagenet', 'data_dir=%s' % (tmp_path / 'pack'), 'num_classes=3', 'image_size=16',
            'resize=16', 'gpu_list=[]', 'network=cifar_resnet8', 'batch_size=2', 'epoch_size=2', 'num_epoch=1',
            'progress=false', 'data_threads=1', 'kt=false', 'model_dir=%s' % (tmp_path / 'model'),
            'log_dir=%s' % (tmp_path / 'log')]
    env = {k: v for k, v in os.environ.items() if not k.startswith(('DMLC_', 'MXNET_ENGINE'))}
    run([sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local', sys.executable] + args +
        ['model_prefix=dist_pack', 'kv_store=dist_sync'], env=env)
    assert [r['val_n'] for r in records(tmp_path, 'dist_pack')] == [11]
    if NO_HOROVOD is None:
        horovodrun = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
        run([horovodrun, '-np', '2', '-H', 'localhost:2', '--gloo', sys.executable] + args +
            ['model_prefix=hvd_pack', 'kv_store=horovod'], env=env)
        assert [r['val_n'] for r in records(tmp_path, 'hvd_pack')] == [11]


def _processes_with(marker):
    """Pids of the processes whose command line holds `marker`."""
    found = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except (OSError, ValueError):
            pass
    return found


def _role(pid):
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            env = dict(kv.split(b'=', 1) for kv in f.read().split(b'\0') if b'=' in kv)
        return env.get(b'DMLC_ROLE', b'').decode(), env.get(b'DMLC_TASK_ID', b'').decode()
    except OSError:
        return None, None


def _signal_during_training(command, log, pick, sig, env=None, after='Epoch[2] Batch'):
    """Start job `command`, wait until its log `log` holds `after` (training under way), send `sig` to
    the process `pick(pids)` chooses among those whose command line names the log's run, and wait for
    the job to end: (pid signalled, stdout, stderr, seconds from the signal to the job's end, its exit
    status)."""
    marker = 'model_prefix=' + os.path.basename(str(log))[:-len('.log')]
    job = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and after in log.read_text()):
            assert job.poll() is None, job.communicate()
            time.sleep(0.2)
        pid = pick(_processes_with(marker))
        os.kill(pid, sig)
        sent = time.time()
        out, err = job.communicate(timeout=60)
        return pid, out, err, time.time() - sent, job.returncode
    finally:
        if job.poll() is None:
            job.kill()


def test_a_worker_that_dies_stops_the_whole_job(uneven):
    """SIGKILL to one worker mid-epoch: the launcher names it, stops the other worker (waiting in the
    kvstore, it ends through its stuck-stop guard, else SIGKILL after the grace period), the server
    and the scheduler, and exits non-zero within 30 s, leaving no process behind."""
    import signal
    root, args = uneven
    marker = 'model_prefix=dies_%d' % os.getpid()
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    worker, out, err, took, status = _signal_during_training(
        [sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local', sys.executable] +
        merged(args + [marker, 'kv_store=dist_sync', 'num_epoch=1000', 'frequent=1']),
        root / 'log' / (marker.split('=')[1] + '.log'),
        lambda pids: [p for p in pids if _role(p) == ('worker', '1')][0], signal.SIGKILL, env=env,
        after='Epoch[1] Batch')
    assert status != 0 and took < 30, (took, err[-2000:])
    assert 'error: worker 1 of 2 (pid %d) was killed by signal 9' % worker in err, err[-2000:]
    time.sleep(0.5)
    assert _processes_with(marker) == []


@pytest.mark.parametrize('role', [('worker', '1'), ('server', '0')])
def test_a_stopped_worker_or_server_leaves_the_run_resumable(uneven, role):
    """#18's trial 20: SIGTERM to one worker (not rank 0) or to the server left rank 0 waiting in the
    kvstore, where no Python handler runs: the launcher SIGKILLed it after its grace period, the run's
    lock stayed behind and no worker said how to resume. Now every worker stops as on Ctrl-C: the job
    ends within the grace period, prints the resume command under the launcher, leaves no lock and
    no process behind."""
    import signal
    root, args = uneven
    prefix = 'stop_%s_%d' % (role[0], os.getpid())
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    _, out, err, took, status = _signal_during_training(
        [sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local', sys.executable] +
        merged(args + ['model_prefix=' + prefix, 'kv_store=dist_sync', 'num_epoch=1000', 'frequent=1']),
        root / 'log' / (prefix + '.log'), lambda pids: [p for p in pids if _role(p) == role][0], signal.SIGTERM,
        env=env)
    assert status == 143 and took < 20, (status, took, err[-3000:])
    resume = [l for l in err.splitlines() if l.startswith('  ') and 'model_load_epoch=-1' in l]
    assert len(resume) == 1 and '-m tools.launch -n 2 -s 1' in resume[0], err[-3000:]
    assert 'killed by signal 9' not in err and 'Traceback' not in err, err[-3000:]
    assert not (root / 'model' / (prefix + '.lock')).exists() and not (root / 'log' / (prefix + '.lock')).exists()
    time.sleep(0.5)
    assert _processes_with('model_prefix=' + prefix) == []


@pytest.mark.skipif(NO_HOROVOD is not None, reason=NO_HOROVOD or '')
def test_a_horovod_rank_stopped_leaves_the_others_an_error_and_the_resume_command(uneven):
    """Found this session: SIGTERM to Horovod's rank 1 made rank 0 end with an MXNetError traceback
    ('Horovod has been shut down'), and the resume commands left horovodrun out."""
    import signal
    root, args = uneven
    prefix = 'hvd_stop_%d' % os.getpid()
    horovodrun = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    _, out, err, _, _ = _signal_during_training(
        [horovodrun, '-np', '2', '-H', 'localhost:2', '--gloo', sys.executable] +
        merged(args + ['model_prefix=' + prefix, 'kv_store=horovod', 'num_epoch=1000', 'frequent=1']),
        root / 'log' / (prefix + '.log'), lambda pids: [p for p in pids if _horovod_rank(p) == '1'][0],
        signal.SIGTERM)
    ours = [l.split(':', 1)[1] for l in (out + err).splitlines() if l.startswith(('[0]<', '[1]<'))]
    assert not any('Traceback' in l for l in ours), '\n'.join(ours[-40:])
    # rank 0 meets the shut-down job in a collective (an error), or horovodrun's SIGTERM first (a stop)
    rank0 = [l.split(':', 1)[1] for l in (out + err).splitlines() if l.startswith('[0]<')]
    assert any(l.startswith('error: the Horovod job was shut down while this rank (0 of 2)') or
               l.startswith('terminated (SIGTERM)') for l in rank0), rank0[-20:]
    resumes = [l for l in ours if 'retrain=true model_load_epoch=-1' in l]
    assert len(resumes) == 2 and all(re.search(r'horovodrun -np 2 -H localhost:2 --gloo \S*python train\.py ', l)
                                     for l in resumes), resumes
    assert not (root / 'model' / (prefix + '.lock')).exists() and not (root / 'log' / (prefix + '.lock')).exists()


@pytest.mark.skipif(NO_HOROVOD is not None, reason=NO_HOROVOD or '')
def test_tools_horovodrun_says_which_rank_ended_the_job_in_one_line(tmp_path):
    """#18's trial 21: horovodrun ends a job whose rank failed with a RuntimeError traceback of its own (and
    Ctrl-C with another, status 1); tools.horovodrun runs it and says which rank, with that rank's status."""
    r = subprocess.run([sys.executable, '-m', 'tools.horovodrun', '-np', '2', '-H', 'localhost:2', '--gloo',
                        sys.executable, 'train.py', 'kv_store=horovod', 'kt_type=kd++mmd',
                        'model_dir=%s' % tmp_path], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'Traceback' not in r.stdout + r.stderr, (r.stdout[-2000:], r.stderr[-2000:])
    assert re.search(r'^error: rank [01] of the Horovod job exited with status 2 and horovodrun stopped the others',
                     r.stderr, re.M), r.stderr[-2000:]
    assert 'kd++mmd' in r.stdout + r.stderr


def _horovod_rank(pid):
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            env = dict(kv.split(b'=', 1) for kv in f.read().split(b'\0') if b'=' in kv)
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            if b'horovodrun' in f.read():
                return None
        return env.get(b'HOROVOD_RANK', b'').decode() or None
    except OSError:
        return None


def test_a_stopped_worker_is_named_and_the_job_ends_with_its_launcher(uneven, tmp_path):
    """#18's trial 21: SIGSTOP to one worker left the launcher waiting without a word; SIGKILL to the
    launcher left its scheduler, server and workers training on, holding the run's lock, with nobody
    reading their output. The launcher names a stopped process; its processes stop once it is gone."""
    import signal
    root, args = uneven
    prefix = 'orphan_%d' % os.getpid()
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    err_path = tmp_path / 'launch.err'
    with open(str(err_path), 'w') as err_file:
        launcher = subprocess.Popen([sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local',
                                     sys.executable] + merged(args + ['model_prefix=' + prefix, 'kv_store=dist_sync',
                                                                      'num_epoch=1000', 'frequent=1']),
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        log = root / 'log' / (prefix + '.log')
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and 'Epoch[2] Batch' in log.read_text()):
            assert launcher.poll() is None, err_path.read_text()[-3000:]
            time.sleep(0.2)
        worker, = [p for p in _processes_with('model_prefix=' + prefix) if _role(p) == ('worker', '1')]
        os.kill(worker, signal.SIGSTOP)
        deadline = time.time() + 30
        while time.time() < deadline and 'is stopped (SIGSTOP' not in err_path.read_text():
            time.sleep(0.5)
        said = err_path.read_text()
        assert 'launch: worker 1 of 2 (pid %d) is stopped (SIGSTOP or Ctrl-Z), and the job waits for it: continue it ' \
               'with kill -CONT %d' % (worker, worker) in said, said[-3000:]
        os.kill(worker, signal.SIGCONT)
        launcher.kill()
        launcher.wait()
        deadline = time.time() + 30
        while time.time() < deadline and _processes_with('model_prefix=' + prefix):
            time.sleep(0.5)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for p in _processes_with('model_prefix=' + prefix):
            os.kill(p, signal.SIGKILL)
    assert _processes_with('model_prefix=' + prefix) == []
    assert not (root / 'model' / (prefix + '.lock')).exists() and not (root / 'log' / (prefix + '.lock')).exists()


def test_a_dist_sync_run_resumes_where_it_stopped(reference):
    """#18's eighteenth trial: resuming a dist_sync run aborted its parameter server ('init 4 first',
    SIGABRT): the optimizer state's load pushed convolution weights still in oneDNN's inference layout
    (from the task's shape check), which the push cannot read. Stopped after epoch 1 and resumed, the
    job ends with the parameters of the one-process run, as the uninterrupted job does."""
    root, args = reference
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    env.update(DMLC_PS_ROOT_URI='127.0.0.1', DMLC_NODE_HOST='127.0.0.1')
    launch = [sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local', sys.executable]
    job = args + ['model_prefix=dist_resumed', 'kv_store=dist_sync']
    run(launch + job + ['num_epoch=1'], env=env)
    out = run(launch + job + ['retrain=true', 'model_load_epoch=-1'], env=env)
    assert 'resum' in out.lower() and 'epoch 1' in out, out[-3000:]
    assert_matches_single(root, 'dist_resumed', out)
    # #18's trial 19: refusals of rank 0 alone (the run exists; a resume would overwrite later epochs) hung
    # the job (its kvstore's shutdown waited for the other worker, which waited for it), or aborted the
    # server ('init 0 first'): one error, the job stopped, nothing else running
    for extra, said in (([], "run 'dist_resumed' already exists"),
                        (['retrain=true', 'model_load_epoch=1'], 'would overwrite its later epochs 2.')):
        took = time.time()
        r = subprocess.run(merged(launch + job + extra), cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=env)
        took = time.time() - took
        assert r.returncode == 2 and took < 120, (r.returncode, took, r.stderr[-3000:])
        assert said in r.stderr and 'error: worker' in r.stderr, r.stderr[-3000:]
        assert 'init 0 first' not in r.stderr and 'signal' not in r.stderr, r.stderr[-3000:]
        if not extra:       # the resume command it offers runs under the launcher again
            assert re.search(r'-m tools\.launch -n 2 -s 1 --launcher local \S*python train\.py .*kv_store=dist_sync.* '
                             r'retrain=true model_load_epoch=-1', r.stderr), r.stderr[-3000:]
        assert _processes_with('model_prefix=dist_resumed') == []


def test_the_launcher_says_an_error_every_worker_gives_once(tmp_path):
    """#18's trials 19 and 20: an error every worker gives (a config error, how to resume) was printed by
    each worker and again by the launcher: N + 1 times."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    env.update(DMLC_PS_ROOT_URI='127.0.0.1', DMLC_NODE_HOST='127.0.0.1')
    r = subprocess.run(merged([sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local',
                               sys.executable, 'train.py', 'kv_store=dist_sync', 'kt_type=kd++mmd',
                               'model_dir=%s' % tmp_path]), cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=env)
    errors = [line for line in r.stderr.splitlines() if 'kd++mmd' in line]
    assert r.returncode == 2 and len(errors) == 2, r.stderr[-3000:]
    assert errors[1].startswith('error: worker ') and 'kd++mmd' in errors[1]
