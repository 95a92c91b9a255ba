"""The methods with trainable heads (cc, vid, reviewkd) through train.py on tiny generated
CIFAR data: alone and with KD + NST, on one and on two CPU devices; their heads live in the
checkpoint's .extra.params (not in the student's .params, so not in the export), and a run
resumed from epoch 1 with deterministic=true ends with the parameters, student and heads, of
an uninterrupted 2-epoch run."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import train
from symbols import transfer as T
from tests.helpers import cifar_teacher_run, merged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow

# (teacher taps, student taps) as the peers: CC on the pooled features (RepDistiller's feat[-1]),
# VID on the three stage outputs (feat[1:-1]), ReviewKD on the student's stage outputs and pooled
# feature and the teacher's pre-ReLU stage outputs and pooled feature (mdistiller)
TAPS = {'cc': ('pool', 'pool'),
        'vid': ('[stage1, stage2, stage3]', '[stage1, stage2, stage3]'),
        'reviewkd': ('[stage1_pre, stage2_pre, stage3_pre, pool]', '[stage1, stage2, stage3, pool]')}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('heads')
    return root, cifar_teacher_run(root)


def method_args(root, method, combined):
    t_taps, s_taps = TAPS[method]
    kt_type = 'kd+mmd+%s' % method if combined else method
    if combined:
        t_taps, s_taps = '[null, stage3_pre, %s]' % t_taps, '[null, stage3_pre, %s]' % s_taps
    return ['network=cifar_resnet8', 'kt=true', 'kt_type=%s' % kt_type, 'kt_weight=null',
            'teacher_prefix=%s' % (root / 'model' / 'teacher'), 'teacher_epoch=1',
            'teacher_symbol=%s' % t_taps, 'student_symbol=%s' % s_taps], kt_type


def last_record(root, prefix):
    with open(str(root / 'log' / ('%s.jsonl' % prefix))) as f:
        return json.loads(f.readlines()[-1])


def check_run(root, prefix, method, kt_type, epoch=1):
    rec = last_record(root, prefix)
    for name in T.parse_kt_type(kt_type):
        assert np.isfinite(rec['train_%s' % name]) and rec['train_%s' % name] >= 0, (name, rec)
    assert rec['train_%s' % method] > 0
    model = root / 'model'
    extra = mx.nd.load(str(model / ('%s-%04d.extra.params' % (prefix, epoch))))
    assert [k for k in extra if k.startswith('loss_%s_0.' % method)], sorted(extra)
    assert not [k for k in mx.nd.load(str(model / ('%s-%04d.params' % (prefix, epoch)))) if 'loss_' in k]
    return extra


def train_py(args, devices=1):
    env = dict(os.environ, NST_CPU_DEVICES=str(devices))
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + merged(args), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr


@pytest.mark.parametrize('combined', [False, True], ids=['alone', 'with_kd_nst'])
@pytest.mark.parametrize('method', sorted(TAPS))
def test_head_method_trains_through_train_py(tiny, method, combined):
    root, common = tiny
    args, kt_type = method_args(root, method, combined)
    prefix = '%s_%s' % (method, 'combined' if combined else 'alone')
    assert train.main(common + args + ['model_prefix=%s' % prefix]) == 0
    extra = check_run(root, prefix, method, kt_type)
    if method == 'vid':                   # three layer pairs, three VID blocks; the variances trained
        assert {k.split('.')[0] for k in extra} == {'loss_vid_0', 'loss_vid_1', 'loss_vid_2'}
        start = np.log(np.expm1(5.0 - 1e-5))
        assert np.abs(extra['loss_vid_0.log_scale'].asnumpy() - start).max() > 1e-5


@pytest.mark.parametrize('combined', [False, True], ids=['alone', 'with_kd_nst'])
@pytest.mark.parametrize('method', sorted(TAPS))
def test_head_method_trains_on_two_devices(tiny, method, combined):
    root, common = tiny
    args, kt_type = method_args(root, method, combined)
    prefix = '%s_%s_2dev' % (method, 'combined' if combined else 'alone')
    out = train_py(common + args + ['model_prefix=%s' % prefix], devices=2)
    assert 'global batch 16' in out
    check_run(root, prefix, method, kt_type)


@pytest.mark.parametrize('method', sorted(TAPS))
def test_head_method_resume_is_exact(tiny, method):
    """deterministic=true: epoch 2 resumed from the epoch-1 checkpoint (into a new run name)
    equals epoch 2 of the uninterrupted run, student and heads bit for bit."""
    root, common = tiny
    args, kt_type = method_args(root, method, False)
    args = common + args + ['epoch_size=2', 'num_epoch=2', 'deterministic=true']
    full, resumed = '%s_full' % method, '%s_resumed' % method
    train_py(args + ['model_prefix=%s' % full])
    out = train_py(args + ['model_prefix=%s' % resumed, 'model_load_prefix=%s' % full, 'retrain=true',
                           'model_load_epoch=1'])
    assert 'from its epoch-1 checkpoint' in out
    model = root / 'model'
    load = lambda prefix, ext, epoch=2: mx.nd.load(str(model / ('%s-%04d.%s' % (prefix, epoch, ext))))
    check_run(root, resumed, method, kt_type, epoch=2)
    for ext in ('params', 'extra.params'):
        a, b = load(full, ext), load(resumed, ext)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k].asnumpy(), b[k].asnumpy(), err_msg='%s %s' % (ext, k))
    # the heads trained during epoch 2 (the resumed run restored them and kept training them)
    first, second = load(full, 'extra.params', 1), load(full, 'extra.params')
    assert any(np.abs(first[k].asnumpy() - second[k].asnumpy()).max() > 0 for k in first if 'running' not in k)
