"""dist_sync through MXNet's launcher: 2 workers + 1 server on 127.0.0.1 distilling
with KD + NST end with the parameters of one process splitting the same global batch over 2 devices,
and report validation accuracy over the whole validation set."""
import json
import os
import subprocess
import sys

import numpy as np
import mxnet as mx
import pytest

from tests.helpers import make_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def test_two_workers_equal_one_process(tmp_path):
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=96, test=32)
    args = ['train.py', '--cfg', 'cifar10_student', 'data_dir=%s' % (tmp_path / 'cifar'), 'gpu_list=[]',
            'network=cifar_resnet8', 'batch_size=4', 'epoch_size=3', 'num_epoch=2', 'progress=false',
            'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'deterministic=true']
    # a quick teacher, then KD + NST: the teacher forward, both losses and the teacher's
    # validation (before training, on every worker) all take part
    r = subprocess.run([sys.executable] + args + ['model_prefix=teacher', 'num_epoch=1'], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    args += ['kt=true', 'kt_type=kd+mmd', 'kt_weight=[16,50]', 'teacher_prefix=%s' % (tmp_path / 'model' / 'teacher'),
             'teacher_epoch=1', 'teacher_symbol=[null,stage3_pre]', 'student_symbol=[null,stage3_pre]']
    env = dict(os.environ, NST_CPU_DEVICES='2')
    r = subprocess.run([sys.executable] + args + ['model_prefix=single'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}
    env['DMLC_PS_ROOT_URI'] = '127.0.0.1'
    env['DMLC_NODE_HOST'] = '127.0.0.1'
    r = subprocess.run([sys.executable, '-m', 'tools.launch', '-n', '2', '-s', '1', '--launcher', 'local',
                        sys.executable] + args + ['model_prefix=dist', 'kv_store=dist_sync'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert 'global batch 8' in r.stderr
    t_val = [line for line in r.stderr.splitlines() if 'teacher validation' in line]
    assert len(t_val) == 2 and all('(32 images)' in line for line in t_val), t_val    # both workers, whole set
    single = mx.nd.load(str(tmp_path / 'model' / 'single-0002.params'))
    dist = mx.nd.load(str(tmp_path / 'model' / 'dist-0002.params'))
    assert single.keys() == dist.keys()
    trainable = [k for k in single if not k.endswith(('running_mean', 'running_var'))]
    for k in trainable:
        np.testing.assert_allclose(dist[k].asnumpy(), single[k].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=k)

    # validation covers the whole set: the workers' counts are summed through the kvstore
    def records(prefix):
        with open(str(tmp_path / 'log' / ('%s.jsonl' % prefix))) as f:
            return [json.loads(line) for line in f]
    one, two = records('single'), records('dist')
    assert [r['val_n'] for r in two] == [r['val_n'] for r in one] == [32, 32]
    for a, b in zip(one, two):
        assert abs(a['val_top1'] - b['val_top1']) <= 1 / 32. + 1e-9    # at most one borderline image
