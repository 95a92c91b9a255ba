"""The new methods inside the training step: `tasks.classification.distiller.DistillBlock` routes each loss's
inputs from its registry declaration (logits, labels, pooled vectors, maps, layer sequences,
warm-up), and every new method trains through `train.main` alone and combined with KD + NST
on tiny generated CIFAR data."""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

import symbols
import train
from config import load_config, ConfigError
from tasks.classification.distiller import DistillBlock, plan_taps
from symbols import transfer as T
from tests.helpers import cifar_teacher_run


def entry(method, pairs=(), layer_weights=None, weight=None):
    pairs = list(pairs)
    return {'method': method, 'weight': T.default_weight(method) if weight is None else weight, 'pairs': pairs,
            'layer_weights': layer_weights or [1.0 / max(1, len(pairs))] * max(1, len(pairs))}


PLAN = [entry('dkd'), entry('dist'), entry('sp', [('stage3', 'stage3')]),
        entry('rkd', [('pool', 'pool'), ('stage2', 'stage3_pre')]), entry('pkt', [('pool', 'pool')]),
        entry('kdsvd', [('stage1', 'stage1'), ('stage2', 'stage2'), ('stage3', 'stage3')],
              layer_weights=[0.5, 0.5, 0.5])]


def build(plan, connect=True):
    """A DistillBlock on a CIFAR ResNet-8 student, random teacher taps, run once on NDArrays
    (as the trainer's pairing check does, which configures the shape-checking losses)."""
    mx.random.seed(0)
    student = symbols.get_network('cifar_resnet8', 10, prefix='student_')
    s_taps, t_taps = plan_taps(plan)
    block = DistillBlock(student, plan, {}, t_taps, prefix='distill_')
    student.initialize(mx.init.Xavier())
    x = nd.random.normal(shape=(6, 3, 32, 32))
    y = nd.array([0, 3, 9, 3, 1, 7])
    s_out = block.student(x)
    t_shapes = dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]]))
    t_shapes.update({'stage3_pre': t_shapes.get('stage3', (64, 8, 8))})
    t_feats = [nd.random.normal(shape=(6,) + t_shapes[t]) for t in t_taps]
    t_logits = nd.random.normal(shape=(6, 10)) * 3
    inputs = (x, y, t_logits) + tuple(t_feats)
    if connect:
        block.connect(dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]])), {t: t_shapes[t] for t in t_taps})
        block(*inputs)
    return block, inputs, s_out, t_taps


@pytest.mark.parametrize('hybridize', [False, True])
def test_distill_block_routes_inputs_from_the_declarations(hybridize):
    block, inputs, s_out, t_taps = build(PLAN)
    x, y, t_logits = inputs[:3]
    t_of = dict(zip(t_taps, inputs[3:]))
    s_taps = plan_taps(PLAN)[0]
    s_of = dict(zip(s_taps, s_out[1:]))
    logits = s_out[0]
    if hybridize:
        block.hybridize()
    total, out_logits, ce, *terms = block(*inputs)
    expect = [T.DKDLoss()(logits, t_logits, y),                             # labels appended
              T.DISTLoss()(logits, t_logits),
              T.SPLoss()(s_of['stage3'], t_of['stage3']),
              0.5 * T.RKDLoss()(s_of['pool'], t_of['pool'])
              + 0.5 * T.RKDLoss()(s_of['stage2'], t_of['stage3_pre']),
              T.PKTLoss()(s_of['pool'], t_of['pool']),
              1.5 * T.KDSVDLoss()(s_of['stage1'], s_of['stage2'], s_of['stage3'],    # once, all pairs,
                                  t_of['stage1'], t_of['stage2'], t_of['stage3'])]   # x sum of layer weights
    for e, term, want in zip(PLAN, terms, expect):
        np.testing.assert_allclose(term.asnumpy(), want.asnumpy(), rtol=2e-4, atol=1e-6, err_msg=e['method'])
    want_total = ce.asnumpy() + sum(e['weight'] * term.asnumpy() for e, term in zip(PLAN, terms))
    np.testing.assert_allclose(total.asnumpy(), want_total, rtol=1e-4)


def test_set_epoch_applies_the_declared_warmup():
    plan = [entry('dkd'), entry('pkt', [('pool', 'pool')])]
    block, inputs, _, _ = build(plan)
    block.hybridize()
    for epoch, dkd_factor in ((None, 1.0), (0, 0.05), (9, 0.5), (19, 1.0), (30, 1.0)):
        if epoch is not None:
            assert block.set_epoch(epoch) == [dkd_factor, 1.0]
        total, _, ce, dkd, pkt = block(*inputs)
        want = ce.asnumpy() + dkd_factor * 1.0 * dkd.asnumpy() + 30000.0 * pkt.asnumpy()
        np.testing.assert_allclose(total.asnumpy(), want, rtol=1e-5, err_msg=str(epoch))


def test_connect_checks_the_declared_inputs():
    block, _, _, _ = build([entry('kdsvd', [('stage3', 'stage3')])], connect=False)
    with pytest.raises(T.PairingError, match='two or more'):
        block.connect({'stage3': (64, 8, 8)}, {'stage3': (64, 8, 8)})
    block, _, _, _ = build([entry('rkd', [('pool', 'pool')])], connect=False)
    with pytest.raises(T.PairingError, match='vectors'):
        block.connect({'pool': (64, 2)}, {'pool': (64,)})


# ----------------------------------------------------------------------- through train.py
def logit_methods_configurable():
    """Whether config.resolve_plan accepts a logit method other than kd (it asks for taps
    of every method but 'kd' until config asks the registry, `transfer.takes_taps`)."""
    try:
        load_config(None, ['kt_type=dkd+mmd', 'teacher_symbol=[null, stage3_pre]',
                           'student_symbol=[null, stage3_pre]', 'kt_weight=null'], check_data=False)
    except ConfigError as e:
        if 'gives no taps' in str(e):
            return False
        raise
    return True


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('methods')
    return root, cifar_teacher_run(root)


TAPS = {'sp': 'stage3', 'rkd': 'pool', 'pkt': 'pool', 'kdsvd': '[stage1, stage2, stage3]',   # as the peers
        'dkd': None, 'dist': None}


@pytest.mark.slow
@pytest.mark.parametrize('combined', [False, True], ids=['alone', 'with_kd_nst'])
@pytest.mark.parametrize('method', sorted(TAPS))
def test_new_method_trains_through_train_py(tiny, method, combined):
    if not T.takes_taps(method) and not logit_methods_configurable():
        pytest.skip('config/__init__.py routes only kd as a logit method (see transfer.takes_taps)')
    root, common = tiny
    taps = TAPS[method]
    if combined:
        kt_type = 'kd+mmd+%s' % method
        spec = '[null, stage3_pre, %s]' % ('null' if taps is None else taps)
    else:
        kt_type, spec = method, taps or 'null'
    prefix = '%s_%s' % (method, 'combined' if combined else 'alone')
    assert train.main(common + ['network=cifar_resnet8', 'model_prefix=%s' % prefix, 'kt=true',
                                'kt_type=%s' % kt_type, 'kt_weight=null',
                                'teacher_prefix=%s' % (root / 'model' / 'teacher'), 'teacher_epoch=1',
                                'teacher_symbol=%s' % spec, 'student_symbol=%s' % spec]) == 0
    with open(str(root / 'log' / ('%s.jsonl' % prefix))) as f:
        rec = json.loads(f.readlines()[-1])
    for name in T.parse_kt_type(kt_type):
        assert np.isfinite(rec['train_%s' % name]) and rec['train_%s' % name] >= 0, (name, rec)
    assert rec['train_%s' % method] > 0
