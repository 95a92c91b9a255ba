"""The losses whose heads train in a stage before the main training (AB and FT: RepDistiller's
ABLoss with its Connector, FactorTransfer(p1=2, p2=1) with its Paraphraser and Translator)
against plain-numpy definitions in float64 with the same head weights, by finite differences
w.r.t. the student input and the heads, hybridized and not; their stage blocks (FT's
paraphraser reconstruction, AB's own loss) and what `finish_stage` freezes; their registry
declarations (`stages`)."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, nd

from symbols import transfer as T
from tests import numpy_reference as ref
from tests.test_transfer_heads import with_heads, run, fd_check

RNG = np.random.RandomState(7)
RTOL = 1e-4


def arr(*shape):
    return RNG.randn(*shape)


# --------------------------------------------------------------------------------- AB
def ab_connectors(w, kinds):
    """The numpy parameters of `ABLoss`'s connectors (structural names), per pair (None: identity)."""
    out = []
    for i, kind in enumerate(kinds):
        p = 'connector%d.' % i
        out.append(None if kind is None else {'weight': w[p + 'conv.weight'], 'bias': w[p + 'conv.bias'],
                                              **{k: w[p + k] for k in ('gamma', 'beta', 'running_mean',
                                                                       'running_var')}})
    return out


AB_SHAPES = {
    'identity': [((4, 6, 6), (4, 6, 6))],
    'down_up_identity': [((4, 8, 8), (4, 8, 8)), ((4, 8, 8), (6, 4, 4)), ((5, 4, 4), (3, 8, 8))],
    'valid': [((4, 6, 5), (5, 4, 4)), ((3, 4, 4), (3, 4, 4))],
}


@pytest.mark.parametrize('train', [True, False], ids=['batch_stats', 'running_stats'])
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('case', sorted(AB_SHAPES))
def test_ab_matches_repdistiller_definition(case, hybridize, train):
    pairs = AB_SHAPES[case]
    shapes = [s for s, _ in pairs] + [t for _, t in pairs]
    block = T.ABLoss()
    w = with_heads(block, *shapes)
    s, t = [arr(3, *sh) for sh, _ in pairs], [arr(3, *sh) for _, sh in pairs]
    out = run(block, *(s + t), hybridize=hybridize, train=train)
    assert out.shape == (3,)
    want = ref.ab(s, t, ab_connectors(w, block._kinds), block._kinds, train=train)
    np.testing.assert_allclose(out, want, rtol=RTOL)


def test_ab_margin_and_zero_where_the_boundaries_agree():
    s, t = arr(4, 3, 5, 5), arr(4, 3, 5, 5)
    block = T.ABLoss(0.5).build((3, 5, 5), (3, 5, 5))             # identity: no parameters
    np.testing.assert_allclose(run(block, s, t), ref.ab([s], [t], margin=0.5), rtol=RTOL)
    agree = np.where(t > 0, 0.5 + np.abs(s), -0.5 - np.abs(s))      # beyond the margin on the teacher's side
    np.testing.assert_array_equal(run(block, agree, t), np.zeros(4))


def test_ab_connectors_as_repdistiller():
    """Identity for equal shapes, else ConvReg's convolution (with bias) + BatchNorm: 3x3 stride 2
    for a student twice the teacher's size, 4x4 transposed stride 2 for half, (1 + dH) x (1 + dW)
    for a larger student; a smaller student of another ratio cannot be mapped."""
    block = T.ABLoss().build((4, 8, 8), (4, 8, 8), (5, 4, 4), (4, 6, 5), (4, 8, 8), (6, 4, 4), (3, 8, 8), (5, 4, 4))
    block.initialize(mx.init.Xavier())
    assert block._kinds == [None, 'down', 'up', 'valid']
    shapes = {k: p.shape for k, p in block._collect_params_with_prefix().items()}
    assert shapes['connector1.conv.weight'] == (6, 4, 3, 3) and shapes['connector1.conv.bias'] == (6,)
    assert shapes['connector2.conv.weight'] == (5, 3, 4, 4)            # transposed: (in, out, k, k)
    assert shapes['connector3.conv.weight'] == (5, 4, 3, 2)
    assert not [k for k in shapes if k.startswith('connector0')]
    bound = 1 / np.sqrt(4 * 9)
    wt = block.connector1.conv.weight.data().asnumpy()
    assert np.abs(wt).max() <= bound and wt.std() > bound / 3                # PyTorch's U(+-1/sqrt(fan_in))
    assert (block.connector1.gamma.data().asnumpy() == 1).all()
    with pytest.raises(T.PairingError, match='cannot become'):
        T.ABLoss().build((4, 3, 3), (4, 8, 8))
    with pytest.raises(T.PairingError, match='pre-ReLU maps'):
        T.ABLoss().build((4,), (4,))


def test_ab_gradients():
    """Hybridized (the value tests cover both modes), through each connector kind."""
    pairs = AB_SHAPES['down_up_identity']
    shapes = [s for s, _ in pairs] + [t for _, t in pairs]
    block = T.ABLoss()
    with_heads(block, *shapes)
    block.hybridize()
    inputs = [arr(3, *sh) for sh in shapes]
    for wrt in (0, 1, 2, 'connector1.conv.weight', 'connector2.gamma'):
        fd_check(block, inputs, wrt=wrt, train=True, samples=3)


def test_ab_stage_is_the_loss_and_finish_freezes_the_connectors():
    """The stage 'ab_init' trains with the AB loss itself; afterwards the connectors do not train
    and their BatchNorms use the running statistics, also in training mode (PyTorch's eval)."""
    spec = T.METHODS['ab']
    (stage,) = spec.stages
    assert (stage.name, stage.trains, stage.epochs, stage.lr) == ('ab_init', 'student', 30, None)
    pairs = AB_SHAPES['down_up_identity']
    shapes = [s for s, _ in pairs] + [t for _, t in pairs]
    block = spec.make({})
    w = with_heads(block, *shapes)
    assert stage.block(block) is block
    s, t = [arr(3, *sh) for sh, _ in pairs], [arr(3, *sh) for _, sh in pairs]

    def step():                      # MXNet's BatchNorm moves its running statistics in the backward pass
        xs = [nd.array(x, dtype='float64') for x in s + t]
        xs[0].attach_grad()
        with autograd.record():
            loss = block(*xs)
        loss.backward()
    mean_before = w['connector1.running_mean'].copy()
    step()
    assert np.abs(block.connector1.running_mean.data().asnumpy() - mean_before).max() > 0
    block.finish_stage('ab_init')
    assert all(p.grad_req == 'null' for p in block.collect_params().values())
    w = {k: p.data().asnumpy() for k, p in block._collect_params_with_prefix().items()}
    frozen = run(block, *(s + t), train=True)
    np.testing.assert_allclose(frozen, ref.ab(s, t, ab_connectors(w, block._kinds), block._kinds, train=False),
                               rtol=RTOL)
    step()
    np.testing.assert_array_equal(block.connector1.running_mean.data().asnumpy(), w['connector1.running_mean'])


# --------------------------------------------------------------------------------- FT
def ft_layers(w, prefix, indices, bn=None):
    layers = []
    for i, j in zip(indices, bn or [None] * len(indices)):
        p = {'weight': w['%s.%d.weight' % (prefix, i)], 'bias': w['%s.%d.bias' % (prefix, i)]}
        if j is not None:
            p.update({k: w['%s.%d.%s' % (prefix, j, k)] for k in ('gamma', 'beta', 'running_mean', 'running_var')})
        layers.append(p)
    return layers


def ft_params(w):
    """(translator, encoder, decoder) numpy layers of `FTLoss`'s structural names."""
    return (ft_layers(w, 'translator', (0, 3, 6), (1, 4, 7)), ft_layers(w, 'paraphraser.encoder', (0, 2, 4)),
            ft_layers(w, 'paraphraser.decoder', (0, 2, 4)))


FT_SHAPES = [((4, 8, 8), (6, 8, 8)), ((4, 8, 8), (6, 4, 4)), ((3, 4, 4), (8, 6, 6))]


@pytest.mark.parametrize('train', [True, False], ids=['batch_stats', 'running_stats'])
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', FT_SHAPES, ids=['same_size', 'pool_student', 'pool_teacher'])
def test_ft_matches_repdistiller_definition(shapes, hybridize, train):
    block = T.FTLoss()
    w = with_heads(block, *shapes)
    s, t = arr(3, *shapes[0]), arr(3, *shapes[1])
    out = run(block, s, t, hybridize=hybridize, train=train)
    assert out.shape == (3,)
    translator, encoder, _ = ft_params(w)
    np.testing.assert_allclose(out, ref.ft(s, t, translator, encoder, train=train), rtol=RTOL)


def test_ft_powers_and_rate():
    shapes = FT_SHAPES[0]
    block = T.FTLoss(p1=3.0, p2=2.0, rate=0.25)
    w = with_heads(block, *shapes)
    assert block.translator[6].weight.shape == (1, 1, 3, 3)             # int(6 x 0.25) factor channels
    s, t = arr(3, *shapes[0]), arr(3, *shapes[1])
    translator, encoder, _ = ft_params(w)
    got, want = run(block, s, t, train=True), ref.ft(s, t, translator, encoder, 3.0, 2.0, train=True)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=RTOL)
    with pytest.raises(T.PairingError, match='raise ft_rate'):
        T.FTLoss(rate=0.1).build((4, 2, 2), (6, 2, 2))


@pytest.mark.parametrize('hybridize', [False, True])
def test_ft_paraphraser_stage_matches_its_reconstruction_loss(hybridize):
    block = T.METHODS['ft'].make({})
    (stage,) = T.METHODS['ft'].stages
    assert (stage.name, stage.trains, stage.epochs, stage.lr) == ('ft_init', 'heads', 30, 0.01)
    w = with_heads(block, (4, 8, 8), (6, 4, 4))
    para = stage.block(block)
    assert para is block.paraphraser
    assert block.paraphraser.encoder[4].weight.shape == (3, 3, 3, 3)       # m = int(0.5 x 6)
    assert block.paraphraser.decoder[0].weight.shape == (3, 3, 3, 3)       # transposed: (in, out, k, k)
    assert block.paraphraser.decoder[4].weight.shape == (6, 6, 3, 3)
    t = arr(3, 6, 4, 4)
    if hybridize:
        para.hybridize()
    out = para(nd.array(t, dtype='float64')).asnumpy()
    _, encoder, decoder = ft_params(w)
    np.testing.assert_allclose(out, ref.ft_paraphraser_loss(t, encoder, decoder), rtol=RTOL)
    if hybridize:
        for wrt in ('decoder.2.weight', 'encoder.0.bias'):
            fd_check(para, [t], wrt=wrt, samples=3)


def test_ft_gradients_reach_the_translator_not_the_paraphraser():
    block = T.FTLoss()
    with_heads(block, (4, 8, 8), (6, 4, 4))
    block.hybridize()
    s, t = arr(3, 4, 8, 8), arr(3, 6, 4, 4)
    for wrt in (0, 'translator.3.weight', 'translator.4.gamma'):
        fd_check(block, [s, t], wrt=wrt, train=True, samples=3)
    para = block.paraphraser.encoder[2].weight
    para.zero_grad()
    with autograd.record():
        block(nd.array(s, dtype='float64'), nd.array(t, dtype='float64')).sum().backward()
    assert not para.grad().asnumpy().any()         # not trained in the main training (RepDistiller: eval, frozen)
    assert np.abs(block.translator[0].weight.grad().asnumpy()).sum() > 0
    block.finish_stage('ft_init')
    assert all(p.grad_req == 'null' for p in block.paraphraser.collect_params().values())
    assert all(p.grad_req != 'null' for n, p in block.translator.collect_params().items() if 'running' not in n)


def test_registry_declares_the_staged_methods():
    for name, inputs, weight, cls in (('ab', 'layers', 0.0, T.ABLoss), ('ft', 'feature', 200.0, T.FTLoss)):
        spec = T.METHODS[name]
        assert (spec.inputs, spec.weight, spec.heads, spec.indices, spec.relational) == (inputs, weight, True,
                                                                                          False, False)
        assert not spec.connector and not spec.margin and not spec.labels and len(spec.stages) == 1
        assert isinstance(spec.make({}), cls) and T.default_weight(name) == weight
    ab, ft = T.METHODS['ab'].make({}), T.METHODS['ft'].make({})
    assert ab.margin == 1.0 and (ft.p1, ft.p2, ft.rate) == (2.0, 1.0, 0.5)
    stage = T.METHODS['ft'].stages[0]
    assert T.stage_settings(stage, {}) == (30, 0.01)
    assert T.stage_settings(stage, {'ft_init_epochs': 2, 'ft_init_lr': None}) == (2, 0.01)
    assert T.stage_settings(T.METHODS['ab'].stages[0], {'ab_init_lr': 0.2}) == (30, 0.2)
    assert T.parse_kt_type('ab+mmd') == ['ab', 'mmd'] and T.parse_kt_type('kd+ft') == ['kd', 'ft']


def test_ab_heads_take_maps_of_any_size_once_built():
    """A detector's maps change size with each image (its aspect ratio): AB's connectors depend on
    the channels and their kind (identity, down, up, a 1x1 'valid' between equal sizes), not on the
    sizes; only a 'valid' kernel from other sizes fixes them. (Found by the review of #20's AB in
    detection: heads built on a square image refused the first non-square one.)"""
    loss = T.ABLoss()
    loss.build((8, 12, 12), (16, 6, 6), (4, 6, 6), (8, 6, 6))         # down; 'valid' 1x1 (other channels)
    loss.initialize()
    out = loss(nd.random.normal(shape=(2, 8, 12, 16)), nd.random.normal(shape=(2, 16, 6, 8)),     # the student's,
               nd.random.normal(shape=(2, 4, 6, 8)), nd.random.normal(shape=(2, 8, 6, 8)))       # the teacher's
    assert out.shape == (2,) and np.isfinite(out.asnumpy()).all()
    with pytest.raises(T.PairingError, match='AB heads were built for inputs with channels'):      # (other channels)
        loss(nd.zeros((2, 8, 12, 12)), nd.zeros((2, 16, 6, 6)), nd.zeros((2, 4, 6, 6)), nd.zeros((2, 6, 6, 6)))
