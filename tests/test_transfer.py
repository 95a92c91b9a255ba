"""Transfer losses against the numpy definitions, finite differences, and the
original NST code's formulation."""
import numpy as np
import mxnet as mx
import pytest
from mxnet import autograd, nd

from symbols import transfer as T
from tests import numpy_reference as ref

RNG = np.random.RandomState(0)


def arr(*shape):
    return RNG.randn(*shape)


def run(block, *inputs, hybridize=False, dtype='float64'):
    if hybridize:
        block.hybridize()
    xs = [nd.array(x, dtype=dtype) for x in inputs]
    return block(*xs).asnumpy()


def fd_check(block, inputs, wrt=0, eps=1e-6, tol=1e-5, samples=6):
    """Compare autograd's gradient of sum(loss) with central differences."""
    xs = [nd.array(x, dtype='float64') for x in inputs]
    xs[wrt].attach_grad()
    with autograd.record():
        loss = block(*xs).sum()
    loss.backward()
    grad = xs[wrt].grad.asnumpy()
    base = inputs[wrt]
    idx = [tuple(RNG.randint(0, d) for d in base.shape) for _ in range(samples)]
    for i in idx:
        plus, minus = base.copy(), base.copy()
        plus[i] += eps
        minus[i] -= eps
        f = lambda v: block(*[nd.array(v if k == wrt else x, dtype='float64')
                              for k, x in enumerate(inputs)]).asnumpy().sum()
        num = (f(plus) - f(minus)) / (2 * eps)
        assert abs(num - grad[i]) <= tol * max(1.0, abs(num)), (i, num, grad[i])


def test_kd_matches_numpy_and_zero_for_identical():
    s, t = arr(4, 7), arr(4, 7)
    np.testing.assert_allclose(run(T.KDLoss(4.0), s, t), ref.kd(s, t, 4.0), rtol=1e-10)
    np.testing.assert_allclose(run(T.KDLoss(4.0), s, s), np.zeros(4), atol=1e-12)
    np.testing.assert_allclose(run(T.KDLoss(4.0), s, t, hybridize=True), ref.kd(s, t, 4.0), rtol=1e-10)
    fd_check(T.KDLoss(4.0), [s, t])


def test_kd_refuses_what_it_cannot_compute():
    """(trial 28) 1-D logits were MXNet's axis error (and another at interpreter exit); a temperature of 0
    returned NaN without a word."""
    with pytest.raises(T.PairingError, match=r'KD takes student and teacher logits \(B, K\); got shapes \(10,\)'):
        T.KDLoss(4)(nd.ones((10,)), nd.ones((10,)))
    with pytest.raises(T.PairingError, match='batches of one size'):
        T.KDLoss(4)(nd.ones((2, 5)), nd.ones((3, 5)))
    with pytest.raises(ValueError, match='KD temperature must be > 0, got 0'):
        T.KDLoss(0)
    # (their review: DIST and DKD alike; an OFD margin shaped (1, C, 1, 1) is still no batch)
    with pytest.raises(T.PairingError, match=r'DIST takes student and teacher logits \(B, K\)'):
        T.DISTLoss()(nd.ones((10,)), nd.ones((10,)))
    with pytest.raises(T.PairingError, match='batches of one size'):
        T.DISTLoss()(nd.ones((2, 5)), nd.ones((3, 5)))
    for make in (lambda: T.DKDLoss(temperature=0), lambda: T.DISTLoss(tau=0)):
        with pytest.raises(ValueError, match='must be > 0, got 0'):
            make()
    s, t = nd.array(arr(2, 4, 3, 3)), nd.array(arr(2, 4, 3, 3))
    margin = -np.abs(arr(4))
    np.testing.assert_allclose(T.OFDLoss()(s, t, nd.array(margin.reshape(1, 4, 1, 1))).asnumpy(),
                               T.OFDLoss()(s, t, nd.array(margin)).asnumpy())


def test_kd_gradient_equals_original_softmax_output():
    """16 * KL gradient == SoftmaxOutput(s/T, softmax(t/T), grad_scale=16) gradient."""
    s, t = arr(5, 10), arr(5, 10)
    x = nd.array(s)
    x.attach_grad()
    with autograd.record():
        loss = 16 * T.KDLoss(4.0)(x, nd.array(t))
    loss.backward()
    ours = x.grad.asnumpy()
    data, label = mx.sym.var('data'), mx.sym.var('label')
    out = mx.sym.SoftmaxOutput(data / 4.0, label=label, grad_scale=16)
    exe = out.simple_bind(mx.cpu(), data=s.shape, label=s.shape)
    exe.arg_dict['data'][:] = s
    exe.arg_dict['label'][:] = nd.softmax(nd.array(t) / 4.0)
    exe.forward(is_train=True)
    exe.backward()
    np.testing.assert_allclose(ours, exe.grad_dict['data'].asnumpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('kernel,degree,c', [('linear', 1, 0.0), ('poly', 2, 0.0), ('poly', 2, 0.5),
                                             ('poly', 3, 0.1), ('gaussian', 2, 0.0)])
@pytest.mark.parametrize('shapes', [((3, 4, 4), (5, 4, 4)),       # gram form (N < Cs + Ct)
                                    ((2, 6, 6), (3, 6, 6)),       # channel form
                                    ((3, 8, 8), (4, 4, 4))])      # spatial pooling
def test_nst_matches_numpy(kernel, degree, c, shapes):
    s, t = arr(2, *shapes[0]), arr(2, *shapes[1])
    loss = T.NSTLoss(kernel, degree, c)
    expected = ref.nst(s, t, kernel, degree, c)
    np.testing.assert_allclose(run(loss, s, t), expected, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(run(T.NSTLoss(kernel, degree, c), s, t, hybridize=True), expected,
                               rtol=1e-8, atol=1e-12)
    if kernel != 'gaussian':
        fd_check(T.NSTLoss(kernel, degree, c), [s, t])
        return
    # sigma^2 carries no gradient: finite differences must hold it fixed.
    for k in range(len(s)):
        a, b = ref.match(s[k], t[k])
        Z = np.concatenate([ref.norm_rows(b.reshape(len(b), -1)), ref.norm_rows(a.reshape(len(a), -1))])
        sigma2 = np.mean([((Z[i] - Z[j]) ** 2).sum() for i in range(len(Z)) for j in range(len(Z)) if i != j])
        fixed = T.NSTLoss('gaussian', sigma2=sigma2)
        fd_check(fixed, [s[k:k + 1], t[k:k + 1]])
        g = []
        for block in (fixed, T.NSTLoss('gaussian')):
            x = nd.array(s[k:k + 1], dtype='float64')
            x.attach_grad()
            with autograd.record():
                out = block(x, nd.array(t[k:k + 1], dtype='float64'))
            out.backward()
            g.append(x.grad.asnumpy())
        np.testing.assert_allclose(g[0], g[1], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize('kernel', ['linear', 'poly', 'gaussian'])
def test_nst_zero_for_identical_sets(kernel):
    s = arr(2, 4, 3, 3)
    np.testing.assert_allclose(run(T.NSTLoss(kernel), s, s), np.zeros(2), atol=1e-10)


def test_nst_picks_cheaper_form():
    loss = T.NSTLoss('poly')
    loss(nd.ones((1, 64, 7, 7)), nd.ones((1, 128, 7, 7)))
    assert loss.form == 'gram'
    loss(nd.ones((1, 16, 32, 32)), nd.ones((1, 16, 32, 32)))
    assert loss.form == 'channel'


@pytest.mark.parametrize('c', [0.0, 0.3])
def test_nst_gradient_equals_original(c):
    """The student gradient of the full MMD^2 equals the original code's; values differ by
    the teacher-teacher term only."""
    s, t = arr(3, 6, 3, 3), arr(3, 8, 3, 3)
    grads = []
    for block in (T.NSTLoss('poly', 2, c), T.OriginalNSTPolyLoss(c)):
        x = nd.array(s, dtype='float64')
        x.attach_grad()
        with autograd.record():
            out = block(x, nd.array(t, dtype='float64'))
        out.backward()
        grads.append((out.asnumpy(), x.grad.asnumpy()))
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads[1][0], ref.original_nst_poly(s, t, c), rtol=1e-9)
    tt = np.array([((ref.norm_rows(b.reshape(8, -1)) @ ref.norm_rows(b.reshape(8, -1)).T + c) ** 2).mean()
                   for b in t])
    np.testing.assert_allclose(grads[0][0], grads[1][0] + tt, rtol=1e-9)


@pytest.mark.parametrize('shapes', [((3, 4, 4), (5, 4, 4)), ((3, 8, 8), (6, 4, 4))])
def test_at_matches_numpy(shapes):
    s, t = arr(2, *shapes[0]), arr(2, *shapes[1])
    np.testing.assert_allclose(run(T.ATLoss(), s, t), ref.at(s, t), rtol=1e-8)
    np.testing.assert_allclose(run(T.ATLoss(), s, t, hybridize=True), ref.at(s, t), rtol=1e-8)
    np.testing.assert_allclose(run(T.ATLoss(), s, s), np.zeros(2), atol=1e-12)
    fd_check(T.ATLoss(), [s, t])


@pytest.mark.parametrize('shapes', [((4, 4, 4), (4, 4, 4)), ((4, 8, 8), (4, 4, 4))])
def test_fitnet_matches_numpy(shapes):
    s, t = arr(2, *shapes[0]), arr(2, *shapes[1])
    np.testing.assert_allclose(run(T.FitNetLoss(), s, t), ref.fitnet(s, t), rtol=1e-10)
    np.testing.assert_allclose(run(T.FitNetLoss(), s, t, hybridize=True), ref.fitnet(s, t), rtol=1e-10)
    fd_check(T.FitNetLoss(), [s, t])


def test_fsp_matches_numpy():
    sa, sb, ta, tb = arr(2, 3, 8, 8), arr(2, 5, 4, 4), arr(2, 3, 8, 8), arr(2, 5, 4, 4)
    np.testing.assert_allclose(run(T.FSPLoss(), sa, sb, ta, tb), ref.fsp(sa, sb, ta, tb), rtol=1e-10)
    np.testing.assert_allclose(run(T.FSPLoss(), sa, sb, ta, tb, hybridize=True),
                               ref.fsp(sa, sb, ta, tb), rtol=1e-10)
    np.testing.assert_allclose(run(T.FSPLoss(), sa, sb, sa, sb), np.zeros(2), atol=1e-12)
    fd_check(T.FSPLoss(), [sa, sb, ta, tb], wrt=0)
    fd_check(T.FSPLoss(), [sa, sb, ta, tb], wrt=1)


@pytest.mark.parametrize('shapes', [((4, 3, 3), (4, 3, 3)), ((4, 6, 6), (4, 3, 3))])
def test_ofd_matches_numpy(shapes):
    s, t = arr(2, *shapes[0]), arr(2, *shapes[1])
    margin = -np.abs(arr(shapes[1][0]))
    np.testing.assert_allclose(run(T.OFDLoss(), s, t, margin), ref.ofd(s, t, margin), rtol=1e-10)
    np.testing.assert_allclose(run(T.OFDLoss(), s, t, margin, hybridize=True), ref.ofd(s, t, margin),
                               rtol=1e-10)
    fd_check(T.OFDLoss(), [s, t, margin])
    same = np.maximum(t, margin.reshape(1, -1, 1, 1))
    if shapes[0] == shapes[1]:
        np.testing.assert_allclose(run(T.OFDLoss(), same, t, margin), np.zeros(2), atol=1e-12)


def test_ofd_margin_matches_numpy():
    gamma, beta = arr(50), arr(50) * 2
    beta[:3] = [-10.0, 10.0, 0.0]
    np.testing.assert_allclose(T.ofd_margin(gamma, beta), ref.ofd_margin(gamma, beta), rtol=1e-5, atol=1e-6)
    assert (T.ofd_margin(gamma, beta) <= 0).all()


def test_unpairable_shapes_raise_clear_errors():
    with pytest.raises(T.PairingError, match='same number of classes'):
        T.KDLoss()(nd.ones((2, 10)), nd.ones((2, 100)))
    with pytest.raises(T.PairingError, match='connector'):
        T.FitNetLoss()(nd.ones((2, 4, 3, 3)), nd.ones((2, 8, 3, 3)))
    with pytest.raises(T.PairingError, match='channel counts'):
        T.FSPLoss()(nd.ones((2, 4, 3, 3)), nd.ones((2, 4, 3, 3)), nd.ones((2, 8, 3, 3)), nd.ones((2, 4, 3, 3)))
    with pytest.raises(T.PairingError, match='4-D'):
        T.NSTLoss()(nd.ones((2, 4)), nd.ones((2, 4)))
    with pytest.raises(T.PairingError, match='margin'):
        T.OFDLoss()(nd.ones((2, 4, 3, 3)), nd.ones((2, 4, 3, 3)), nd.ones((3,)))


def test_registry_and_kt_type_parsing():
    assert T.parse_kt_type('kd+nst') == ['kd', 'mmd']
    assert T.parse_kt_type('kd+fitnet+mmd') == ['kd', 'fitnet', 'mmd']
    with pytest.raises(ValueError, match='unknown transfer method'):
        T.parse_kt_type('kd+foo')
    with pytest.raises(ValueError, match='twice'):
        T.parse_kt_type('mmd+nst')
    assert T.default_weight('kd') == 16 and T.default_weight('fitnet') == 100
    assert T.default_weight('at') == 1000 and T.default_weight('nst', {'mmd_kernel': 'linear'}) == 50
    assert T.default_weight('mmd', {'mmd_kernel': 'gaussian'}) == 100


@pytest.mark.parametrize('shapes,tau', [(((5, 4, 4), (5, 4, 4)), 1.0), (((3, 8, 8), (3, 4, 4)), 4.0)])
def test_cwd_matches_numpy_and_finite_differences(shapes, tau):
    """CWD (#20): per-channel spatial softmax, KL(teacher || student) x tau^2, mean over channels."""
    s, t = arr(2, *shapes[0]), arr(2, *shapes[1])
    want = ref.cwd(s, t, tau)
    np.testing.assert_allclose(run(T.CWDLoss(tau), s, t), want, rtol=1e-10)
    np.testing.assert_allclose(run(T.CWDLoss(tau), s, t, hybridize=True), want, rtol=1e-10)
    np.testing.assert_allclose(run(T.CWDLoss(tau), s, s), np.zeros(2), atol=1e-12)
    assert (want > 0).all()
    fd_check(T.CWDLoss(tau), [s, t])
    with pytest.raises(T.PairingError, match='same channels'):
        run(T.CWDLoss(tau), arr(2, 4, 4, 4), arr(2, 5, 4, 4))
