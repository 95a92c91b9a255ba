"""The batch-relational losses (SP, RKD, PKT: RepDistiller's Similarity, RKDLoss, PKT) and
KDSVD (RepDistiller's KDSVD) against plain-numpy definitions in float64, by finite
differences, hybridized and not. A batch-relational block returns (B,) shares whose mean is
the peers' batch loss."""
import numpy as np
import pytest
from mxnet import autograd, nd

from symbols import transfer as T
from tests import numpy_reference as ref
from tests.test_transfer import fd_check, run

RNG = np.random.RandomState(11)
RTOL = 1e-4


def arr(*shape):
    return RNG.randn(*shape)


# --------------------------------------------------------------------------------- SP
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', [((4, 3, 3), (5, 2, 2)), ((8, 4, 4), (8, 4, 4)), ((7,), (9,))])
def test_sp_matches_repdistiller_definition(hybridize, shapes):
    s, t = arr(6, *shapes[0]), arr(6, *shapes[1])
    out = run(T.SPLoss(), s, t, hybridize=hybridize)
    assert out.shape == (6,)
    np.testing.assert_allclose(out.mean(), ref.sp(s, t), rtol=RTOL)


def test_sp_zero_for_identical_and_gradient():
    s, t = arr(6, 4, 3, 3), arr(6, 5, 2, 2)
    np.testing.assert_allclose(run(T.SPLoss(), s, s), np.zeros(6), atol=1e-12)
    fd_check(T.SPLoss(), [s, t])
    block = T.SPLoss()
    block.hybridize()
    fd_check(block, [s, t])


# --------------------------------------------------------------------------------- RKD
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', [((7,), (9,)), ((4, 3, 3), (6, 2, 2)), ((5,), (3, 4, 4))])
def test_rkd_matches_repdistiller_definition(hybridize, shapes):
    s, t = arr(6, *shapes[0]), arr(6, *shapes[1])
    out = run(T.RKDLoss(), s, t, hybridize=hybridize)
    assert out.shape == (6,)
    np.testing.assert_allclose(out.mean(), ref.rkd(s, t), rtol=RTOL)
    np.testing.assert_allclose(run(T.RKDLoss(3.0, 0.5), s, t).mean(), ref.rkd(s, t, 3.0, 0.5), rtol=RTOL)


def test_rkd_distance_and_angle_parts_and_gradient():
    s, t = arr(6, 7), arr(6, 9)
    np.testing.assert_allclose(run(T.RKDLoss(1.0, 0.0), s, t).mean(), ref.rkd(s, t, 1.0, 0.0), rtol=RTOL)
    np.testing.assert_allclose(run(T.RKDLoss(0.0, 1.0), s, t).mean(), ref.rkd(s, t, 0.0, 1.0), rtol=RTOL)
    # relations are invariant to scaling (distances are normalised by their mean) and translation
    np.testing.assert_allclose(run(T.RKDLoss(), 3 * s + 1, s), np.zeros(6), atol=1e-10)
    fd_check(T.RKDLoss(), [s, t])
    block = T.RKDLoss()
    block.hybridize()
    fd_check(block, [arr(6, 4, 3, 3), arr(6, 5, 2, 2)])


def test_rkd_hybridized_follows_the_batch_size():
    """The B x B identity is built in the graph: one hybridized block serves any batch."""
    block = T.RKDLoss()
    block.hybridize()
    for b in (6, 4, 9):
        s, t = arr(b, 5), arr(b, 7)
        np.testing.assert_allclose(run(block, s, t).mean(), ref.rkd(s, t), rtol=RTOL)


# --------------------------------------------------------------------------------- PKT
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', [((7,), (9,)), ((4, 3, 3), (6, 2, 2))])
def test_pkt_matches_repdistiller_definition(hybridize, shapes):
    s, t = arr(6, *shapes[0]), arr(6, *shapes[1])
    out = run(T.PKTLoss(), s, t, hybridize=hybridize)
    assert out.shape == (6,)
    np.testing.assert_allclose(out.mean(), ref.pkt(s, t), rtol=RTOL)


def test_pkt_zero_for_identical_and_gradient():
    s, t = arr(6, 7), arr(6, 9)
    np.testing.assert_allclose(run(T.PKTLoss(), s, s), np.zeros(6), atol=1e-12)
    fd_check(T.PKTLoss(), [s, t])
    block = T.PKTLoss()
    block.hybridize()
    fd_check(block, [arr(6, 4, 3, 3), arr(6, 5, 2, 2)])


# --------------------------------------------------------------------------------- KDSVD
def svd_maps(b=3):
    s = [arr(b, 4, 4, 4), arr(b, 6, 2, 2), arr(b, 5, 3, 3)]
    t = [arr(b, 4, 3, 3), arr(b, 6, 4, 4), arr(b, 5, 2, 2)]
    return s, t


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('layers', [2, 3])
def test_kdsvd_matches_repdistiller_definition(hybridize, layers):
    s, t = svd_maps()
    s, t = s[:layers], t[:layers]
    out = run(T.KDSVDLoss(), *(s + t), hybridize=hybridize)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, ref.kdsvd(s, t), rtol=RTOL)
    # k = 2 teacher vectors (student 5, at most min(C, H*W))
    np.testing.assert_allclose(run(T.KDSVDLoss(2), *(s + t)), ref.kdsvd(s, t, 2), rtol=RTOL)


def test_kdsvd_independent_of_the_student_maps_sign_and_gradient():
    s, t = svd_maps()
    np.testing.assert_allclose(run(T.KDSVDLoss(), *(s + t)), run(T.KDSVDLoss(), *([-x for x in s] + t)),
                               rtol=1e-10)
    for wrt in (0, 1, 2):
        fd_check(T.KDSVDLoss(), s + t, wrt=wrt)
    block = T.KDSVDLoss()
    block.hybridize()
    fd_check(block, s + t, wrt=1)


def test_kdsvd_float32_rank_deficient_maps_stay_finite():
    """Post-ReLU maps with dead channels and fewer positions than channels (zero and repeated
    eigenvalues of the Gram matrix): finite values and gradients, close to float64."""
    rng = np.random.RandomState(3)
    s = [np.maximum(rng.randn(4, 8, 4, 4), 0), np.maximum(rng.randn(4, 16, 2, 2), 0)]
    t = [np.maximum(rng.randn(4, 8, 4, 4), 0), np.maximum(rng.randn(4, 16, 2, 2), 0)]
    s[0][:, :3] = 0
    xs = [nd.array(x, dtype='float32') for x in s + t]
    for x in xs[:2]:
        x.attach_grad()
    with autograd.record():
        out = T.KDSVDLoss()(*xs)
    out.backward()
    assert all(np.isfinite(x.grad.asnumpy()).all() for x in xs[:2])
    np.testing.assert_allclose(out.asnumpy(), ref.kdsvd(s, t), rtol=1e-3)


# --------------------------------------------------------------------------------- shared
def test_relational_losses_refuse_unpairable_inputs():
    with pytest.raises(T.PairingError, match='vector'):
        T.RKDLoss()(nd.ones((4, 3, 5)), nd.ones((4, 3)))
    with pytest.raises(T.PairingError, match='vector'):
        T.PKTLoss()(nd.ones((4, 3)), nd.ones((4, 3, 2)))
    with pytest.raises(T.PairingError, match='channel counts'):
        T.KDSVDLoss()(nd.ones((2, 4, 3, 3)), nd.ones((2, 6, 3, 3)), nd.ones((2, 4, 3, 3)), nd.ones((2, 5, 3, 3)))
    with pytest.raises(T.PairingError, match='two or more'):
        T.KDSVDLoss()(nd.ones((2, 4, 3, 3)), nd.ones((2, 4, 3, 3)))
    # (trial 27) k beyond a teacher tap's vectors broke the broadcast between layers: a PairingError now
    with pytest.raises(T.PairingError, match=r'keeps 5 singular vectors a tap \(kdsvd_k=5\).*has only 4.*set kdsvd_k '
                                             r'to at most 4'):
        T.KDSVDLoss(5)(nd.ones((2, 4, 3, 3)), nd.ones((2, 6, 3, 3)), nd.ones((2, 4, 3, 3)), nd.ones((2, 6, 3, 3)))
    # (trial 28) inputs of two batch sizes: a PairingError, not MXNet's broadcast error
    with pytest.raises(T.PairingError, match='takes its inputs as batches of one size'):
        T.NSTLoss('poly', 2, 0)(nd.ones((2, 4, 3, 3)), nd.ones((3, 4, 3, 3)))
    # (k beyond every tap alike keeps the same number of vectors at each: as before, a loss)
    assert T.KDSVDLoss(5)(*[nd.array(RNG.randn(2, 4, 3, 3)) for _ in range(4)]).shape == (2,)


def test_registry_declares_relational_and_kdsvd_methods():
    expect = {'sp': ('tensor', 3000.0, T.SPLoss, True), 'rkd': ('vector', 1.0, T.RKDLoss, True),
              'pkt': ('vector', 30000.0, T.PKTLoss, True), 'kdsvd': ('layers', 1.0, T.KDSVDLoss, False)}
    for name, (inputs, weight, cls, relational) in expect.items():
        spec = T.METHODS[name]
        assert (spec.inputs, spec.weight, spec.relational) == (inputs, weight, relational), name
        assert not spec.labels and not spec.connector and not spec.margin and spec.warmup_epochs == 0
        assert isinstance(spec.make({}), cls) and T.default_weight(name) == weight and T.takes_taps(name)
    rkd = T.METHODS['rkd'].make({})
    assert (rkd.distance_weight, rkd.angle_weight) == (25.0, 50.0)
    assert T.METHODS['kdsvd'].make({}).k == 1
    assert T.parse_kt_type('kd+mmd+rkd') == ['kd', 'mmd', 'rkd']
    assert set(T.INPUTS) >= {spec.inputs for spec in T.METHODS.values()}
