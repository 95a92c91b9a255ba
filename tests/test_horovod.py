"""kv_store=horovod: 2 processes started by horovodrun (Gloo, 127.0.0.1) distilling
with KD + NST end with the parameters of one process splitting the same global
batch over 2 devices, and report validation over the whole validation set.

Horovod is built from source by `bash init.sh --deps`; where that build was not
possible (no C++ compiler) this test is skipped, and says why."""
import importlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import mxnet as mx
import pytest

from tests.helpers import make_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow
try:
    importlib.import_module('horovod.mxnet')
    HOROVOD = None
except ImportError as e:
    HOROVOD = 'horovod.mxnet is not built here (%s); `NST_HOROVOD=1 bash init.sh --deps` builds it' % e


def horovodrun():
    path = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    return path if os.path.isfile(path) else shutil.which('horovodrun')


@pytest.mark.skipif(HOROVOD is not None, reason=HOROVOD or '')
def test_two_horovod_workers_equal_one_process(tmp_path):
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=96, test=32)
    args = ['train.py', '--cfg', 'cifar10_student', 'data_dir=%s' % (tmp_path / 'cifar'), 'gpu_list=[]',
            'network=cifar_resnet8', 'batch_size=4', 'epoch_size=3', 'num_epoch=2', 'progress=false',
            'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'deterministic=true']
    r = subprocess.run([sys.executable] + args + ['model_prefix=teacher', 'num_epoch=1'], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    args += ['kt=true', 'kt_type=kd+mmd', 'kt_weight=[16,50]', 'teacher_prefix=%s' % (tmp_path / 'model' / 'teacher'),
             'teacher_epoch=1', 'teacher_symbol=[null,stage3_pre]', 'student_symbol=[null,stage3_pre]']
    r = subprocess.run([sys.executable] + args + ['model_prefix=single'], cwd=ROOT,
                       env=dict(os.environ, NST_CPU_DEVICES='2'), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    r = subprocess.run([horovodrun(), '-np', '2', '-H', 'localhost:2', '--gloo', sys.executable] + args +
                       ['model_prefix=hvd', 'kv_store=horovod'], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    out = r.stdout + r.stderr
    assert 'global batch 8' in out
    assert out.count('(32 images)') == 2, out[-3000:]        # the teacher's validation on both workers

    single = mx.nd.load(str(tmp_path / 'model' / 'single-0002.params'))
    hvd = mx.nd.load(str(tmp_path / 'model' / 'hvd-0002.params'))
    assert single.keys() == hvd.keys()
    for k in single:
        if not k.endswith(('running_mean', 'running_var')):
            np.testing.assert_allclose(hvd[k].asnumpy(), single[k].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=k)

    def records(prefix):
        with open(str(tmp_path / 'log' / ('%s.jsonl' % prefix))) as f:
            return [json.loads(line) for line in f]
    one, two = records('single'), records('hvd')
    assert [r_['val_n'] for r_ in two] == [r_['val_n'] for r_ in one] == [32, 32]
    for a, b in zip(one, two):
        assert abs(a['val_top1'] - b['val_top1']) <= 1 / 32. + 1e-9


def test_horovod_needs_its_launcher():
    from config import load_config, ConfigError
    env = {k: v for k, v in os.environ.items() if not k.startswith(('HOROVOD_', 'OMPI_'))}
    with pytest.raises(ConfigError, match='horovod'):
        old = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(env)
            load_config(None, ['kv_store=horovod'], check_data=False)
        finally:
            os.environ.clear()
            os.environ.update(old)
