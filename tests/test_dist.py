"""Several workers on 127.0.0.1 distilling with KD + NST end with the parameters of
one process splitting the same global batch over 2 devices, and report validation
over the whole validation set:
- dist_sync through MXNet's launcher (2 workers + 1 server);
- Horovod through horovodrun with Gloo (2 workers). Horovod is built from source
  by `bash init.sh --deps`; where that was not possible the test is skipped and
  says why."""
import json
import os
import shutil
import subprocess
import sys

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
    for k in single:
        if not k.endswith(('running_mean', 'running_var')):
            np.testing.assert_allclose(multi[k].asnumpy(), single[k].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=k)
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
