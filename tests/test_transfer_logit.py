"""The logit losses added for the PyTorch benchmark suites' methods: DKD (mdistiller's
dkd_loss) and DIST (torchdistill's DISTLoss), against plain-numpy definitions in float64,
by finite differences, hybridized and not."""
import numpy as np
import pytest
from mxnet import autograd, nd

from symbols import transfer as T
from tests import numpy_reference as ref
from tests.test_transfer import fd_check, run

RNG = np.random.RandomState(7)
RTOL = 1e-4


def logits(b=6, k=10, scale=3.0):
    return RNG.randn(b, k) * scale


def labels(b=6, k=10):
    return RNG.randint(0, k, size=b).astype(np.float64)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('alpha,beta,temperature', [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_matches_mdistiller_definition(hybridize, alpha, beta, temperature):
    s, t, y = logits(), logits(), labels()
    out = run(T.DKDLoss(alpha, beta, temperature), s, t, y, hybridize=hybridize)
    assert out.shape == (6,)
    np.testing.assert_allclose(out, ref.dkd(s, t, y, alpha, beta, temperature), rtol=RTOL)
    # mdistiller's value is the batch mean of the per-sample losses
    np.testing.assert_allclose(out.mean(), ref.dkd(s, t, y, alpha, beta, temperature).mean(), rtol=RTOL)


def test_dkd_zero_for_identical_logits_and_gradient():
    s, y = logits(), labels()
    np.testing.assert_allclose(run(T.DKDLoss(), s, s, y), np.zeros(6), atol=1e-10)
    t = logits()
    fd_check(T.DKDLoss(), [s, t, y])
    block = T.DKDLoss()
    block.hybridize()
    fd_check(block, [s, t, y])


def test_dkd_labels_of_any_dtype_and_saturated_logits():
    """float32 labels with float64 logits (the data iterator's labels), and a teacher so sure of
    the true class that 1 - p_y underflows in the peers' log(sum p): still finite here."""
    s, t, y = logits(), logits(), labels()
    xs = [nd.array(s, dtype='float64'), nd.array(t, dtype='float64'), nd.array(y, dtype='float32')]
    np.testing.assert_allclose(T.DKDLoss()(*xs).asnumpy(), ref.dkd(s, t, y), rtol=RTOL)
    t_sure = t.copy()
    t_sure[np.arange(6), y.astype(int)] = 400.0
    x = nd.array(s, dtype='float32')
    x.attach_grad()
    with autograd.record():
        out = T.DKDLoss()(x, nd.array(t_sure, dtype='float32'), nd.array(y, dtype='float32'))
    out.backward()
    assert np.isfinite(out.asnumpy()).all() and np.isfinite(x.grad.asnumpy()).all()


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('beta,gamma,tau', [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)])
def test_dist_matches_torchdistill_definition(hybridize, beta, gamma, tau):
    s, t = logits(8, 12), logits(8, 12)
    out = run(T.DISTLoss(beta, gamma, tau), s, t, hybridize=hybridize)
    assert out.shape == (8,)
    np.testing.assert_allclose(out.mean(), ref.dist(s, t, beta, gamma, tau), rtol=RTOL)
    # the inter-class term is per sample, the intra-class term one number for the batch
    inter = run(T.DISTLoss(1.0, 0.0, tau), s, t)
    intra = run(T.DISTLoss(0.0, 1.0, tau), s, t)
    np.testing.assert_allclose(intra, np.full(8, intra[0]), rtol=1e-12)
    np.testing.assert_allclose(inter.mean(), ref.dist(s, t, 1.0, 0.0, tau), rtol=RTOL)
    np.testing.assert_allclose(intra[0], ref.dist(s, t, 0.0, 1.0, tau), rtol=RTOL)


def test_dist_zero_for_identical_logits_and_gradient():
    s = logits(8, 12)
    np.testing.assert_allclose(run(T.DISTLoss(), s, s), np.zeros(8), atol=1e-10)
    t = logits(8, 12)
    fd_check(T.DISTLoss(), [s, t])
    fd_check(T.DISTLoss(2.0, 1.0, 4.0), [s, t])
    block = T.DISTLoss()
    block.hybridize()
    fd_check(block, [s, t])


def test_logit_losses_refuse_unpairable_inputs():
    with pytest.raises(T.PairingError, match='same number of classes'):
        T.DKDLoss()(nd.ones((2, 10)), nd.ones((2, 100)), nd.zeros((2,)))
    with pytest.raises(T.PairingError, match='labels'):
        T.DKDLoss()(nd.ones((2, 10)), nd.ones((2, 10)), nd.zeros((2, 10)))
    with pytest.raises(T.PairingError, match='same number of classes'):
        T.DISTLoss()(nd.ones((2, 10)), nd.ones((2, 100)))


def test_registry_declares_logit_methods():
    dkd, dist = T.METHODS['dkd'], T.METHODS['dist']
    assert dkd.inputs == 'logits' and dkd.labels and dkd.warmup_epochs == 20 and not dkd.relational
    assert dist.inputs == 'logits' and not dist.labels and dist.warmup_epochs == 0 and dist.relational
    block = dkd.make({})
    assert isinstance(block, T.DKDLoss) and (block.alpha, block.beta, block.temperature) == (1.0, 8.0, 4.0)
    block = dist.make({})
    assert isinstance(block, T.DISTLoss)
    assert (block.beta, block.gamma, block.tau, block.eps) == (1.0, 1.0, 1.0, 1e-8)
    assert T.default_weight('dkd') == 1.0 and T.default_weight('dist') == 2.0
    assert [T.warmup_factor('dkd', e) for e in (0, 9, 18, 19, 20, 200)] == [0.05, 0.5, 0.95, 1.0, 1.0, 1.0]
    assert T.warmup_factor('kd', 0) == 1.0 and T.warmup_factor('dist', 0) == 1.0
    # config key kt_warmup_epochs replaces a declared warm-up, and gives none to a method without one
    assert [T.warmup_factor('dkd', e, 2) for e in (0, 1, 5)] == [0.5, 1.0, 1.0]
    assert T.warmup_factor('dkd', 0, 0) == 1.0 and T.warmup_factor('kd', 0, 2) == 1.0
    assert not T.takes_taps('dkd') and not T.takes_taps('dist') and not T.takes_taps('kd')
    assert T.parse_kt_type('dkd+nst') == ['dkd', 'mmd'] and T.parse_kt_type('kd+dist') == ['kd', 'dist']


def test_distill_block_applies_kt_warmup_epochs():
    """DistillBlock.set_epoch scales DKD's weight over kt_warmup_epochs (from the loss options) when
    given, else over the method's declared 20 epochs; KD is never scaled."""
    from tasks.classification.distiller import DistillBlock
    import symbols
    plan = [{'method': 'kd', 'weight': 1.0, 'pairs': [], 'layer_weights': []},
            {'method': 'dkd', 'weight': 1.0, 'pairs': [], 'layer_weights': []}]
    for options, want in (({}, [[1.0, 0.05], [1.0, 0.1]]), ({'kt_warmup_epochs': 2}, [[1.0, 0.5], [1.0, 1.0]])):
        student = symbols.get_network('cifar_resnet8', 10, prefix='student_')
        block = DistillBlock(student, plan, options, [], prefix='distill_')
        assert [block.set_epoch(e) for e in (0, 1)] == want
