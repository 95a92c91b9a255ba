"""AB, FT and CRD through train.py on tiny generated CIFAR data, with a WRN-16-2 teacher (twice
the ResNet-8 student's channels, so AB's connectors, FT's translator and CRD's heads all map
between widths): each alone and with KD + NST, their stages run before epoch 0 (AB's
initialisation, FT's paraphraser), their heads and CRD's memory bank in the checkpoint's
.extra.params (not in the student's .params, so not in the export); all three with KD + NST on
two CPU devices; and a run resumed from epoch 1 with deterministic=true ends bit-identical to an
uninterrupted 2-epoch run (student, heads, memory bank, Z), without running the stages again.
(The refusals are in tests/faults/test_methods.py.)"""
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

# (teacher taps, student taps) as RepDistiller: AB on the stages' pre-ReLU outputs, FT on the last
# stage's output (feat[-2]), CRD on the pooled feature (feat[-1])
TAPS = {'ab': '[stage1_pre, stage2_pre, stage3_pre]', 'ft': 'stage3', 'crd': 'pool'}
FAST = ['ab_init_epochs=1', 'ft_init_epochs=1', 'crd_nce_k=64', 'crd_feat_dim=16']


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('stages')
    return root, cifar_teacher_run(root, 'wrn16_2') + FAST


def method_args(root, methods, combined):
    names = (['kd', 'mmd'] if combined else []) + list(methods)
    taps = dict((m, TAPS[m]) for m in methods)
    if combined:
        taps['mmd'] = 'stage3_pre'
    spec = '{%s}' % ', '.join('%s: %s' % kv for kv in taps.items())
    return ['network=cifar_resnet8', 'kt=true', 'kt_type=%s' % '+'.join(names), 'kt_weight=null',
            'teacher_prefix=%s' % (root / 'model' / 'teacher'), 'teacher_epoch=1', 'teacher_symbol=%s' % spec,
            'student_symbol=%s' % spec], '+'.join(names)


def check_run(root, prefix, kt_type, epoch=1):
    with open(str(root / 'log' / ('%s.jsonl' % prefix))) as f:
        rec = json.loads(f.readlines()[-1])
    for name in T.parse_kt_type(kt_type):
        assert np.isfinite(rec['train_%s' % name]) and rec['train_%s' % name] >= 0, (name, rec)
    model = root / 'model'
    extra = mx.nd.load(str(model / ('%s-%04d.extra.params' % (prefix, epoch))))
    heads = {'ab': 'connector0.conv.weight', 'ft': 'paraphraser.decoder.4.weight', 'crd': 'memory_t'}
    for m in T.parse_kt_type(kt_type):
        if m in heads:
            assert 'loss_%s_0.%s' % (m, heads[m]) in extra, sorted(extra)
    assert not [k for k in mx.nd.load(str(model / ('%s-%04d.params' % (prefix, epoch)))) if 'loss_' in k]
    with open(str(root / 'log' / ('%s.log' % prefix))) as f:
        log = f.read()
    for m, stage in (('ab', 'ab_init'), ('ft', 'ft_init')):
        if m in T.parse_kt_type(kt_type):
            assert 'stage %s epoch 1/1' % stage in log or 'stage %s of %s: done before' % (stage, m) in log, m
    return rec, extra, log


def train_py(args, devices=1):
    env = dict(os.environ, NST_CPU_DEVICES=str(devices))
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + list(args), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr


@pytest.mark.parametrize('combined', [False, True], ids=['alone', 'with_kd_nst'])
@pytest.mark.parametrize('method', sorted(TAPS))
def test_method_trains_through_train_py(tiny, method, combined):
    root, common = tiny
    args, kt_type = method_args(root, [method], combined)
    prefix = '%s_%s' % (method, 'combined' if combined else 'alone')
    assert train.main(common + args + ['model_prefix=%s' % prefix]) == 0
    rec, extra, log = check_run(root, prefix, kt_type)
    if method == 'ab':             # weight 0 in the main training (RepDistiller): its term is logged only
        assert rec['train_ab'] > 0
        assert extra['loss_ab_0.connector2.conv.weight'].shape == (128, 64, 1, 1)
    if method == 'crd':            # the 8 samples of the step got unit-norm memory rows; Z was set
        norms = np.linalg.norm(extra['loss_crd_0.memory_s'].asnumpy(), axis=1)
        assert np.sum(np.abs(norms - 1) < 1e-5) == 8
        assert extra['loss_crd_0.memory_s'].shape == (30, 16)           # a row per training image
        assert (extra['loss_crd_0.z'].asnumpy() > 0).all()


def test_all_three_with_kd_nst_on_two_devices(tiny):
    root, common = tiny
    args, kt_type = method_args(root, ['ab', 'ft', 'crd'], True)
    out = train_py(common + args + ['model_prefix=all_2dev'], devices=2)
    assert 'global batch 16' in out
    _, extra, _ = check_run(root, 'all_2dev', kt_type)
    norms = np.linalg.norm(extra['loss_crd_0.memory_t'].asnumpy(), axis=1)
    assert np.sum(np.abs(norms - 1) < 1e-5) == 16                   # both devices' samples updated the memory


def test_resume_is_exact_and_skips_the_stages(tiny):
    """deterministic=true: epoch 2 resumed from the epoch-1 checkpoint (into a new run name) equals
    epoch 2 of the uninterrupted run, student, heads and memory bank bit for bit."""
    root, common = tiny
    args, kt_type = method_args(root, ['ab', 'ft', 'crd'], False)
    args = merged(common + args + ['epoch_size=2', 'num_epoch=2', 'deterministic=true'])
    train_py(args + ['model_prefix=full'])
    out = train_py(args + ['model_prefix=resumed', 'model_load_prefix=full', 'retrain=true', 'model_load_epoch=1'])
    assert 'from its epoch-1 checkpoint' in out
    assert 'stage ab_init of ab: done before the checkpoint' in out and 'stage ft_init epoch' not in out
    model = root / 'model'
    load = lambda prefix, ext, epoch=2: mx.nd.load(str(model / ('%s-%04d.%s' % (prefix, epoch, ext))))
    check_run(root, 'resumed', kt_type, epoch=2)
    for ext in ('params', 'extra.params'):
        a, b = load('full', ext), load('resumed', ext)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k].asnumpy(), b[k].asnumpy(), err_msg='%s %s' % (ext, k))
    first, second = load('full', 'extra.params', 1), load('full', 'extra.params')
    changed = lambda k: np.abs(first[k].asnumpy() - second[k].asnumpy()).max() > 0
    assert changed('loss_crd_0.memory_s') and changed('loss_ft_0.translator.0.weight')
    assert not changed('loss_ft_0.paraphraser.encoder.0.weight') and not changed('loss_ab_0.connector0.gamma')

