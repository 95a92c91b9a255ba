"""CRD (RepDistiller's CRDLoss with its ContrastMemory and ContrastLoss) against a plain-numpy
definition in float64 with the same heads, memory and contrast indices: the value, the state
outputs, the memory update after a step (with several devices' shares), the normalisation
constant Z set on the first step; the uniform sampler of negatives; finite differences
w.r.t. the student input and the heads, hybridized and not; its registry declaration
(`indices`) and its routing through `tasks.classification.distiller.DistillBlock` (the index input, the
state outputs, `after_step`)."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, nd
from mxnet.gluon import HybridBlock

import symbols
from tasks.classification.distiller import DistillBlock, plan_taps
from symbols import transfer as T
from tests import numpy_reference as ref
from tests.test_transfer_heads import with_heads, fd_check

RNG = np.random.RandomState(3)
RTOL = 1e-6
N, K = 20, 6


def arr(*shape):
    return RNG.randn(*shape)


def crd_block(shapes, num_samples=N, **kw):
    """A CRD block built for student/teacher shapes and contrast indices (K+1,), float64, its heads
    and memory from numpy (memory rows L2-normalised, as after their first update)."""
    block = T.CRDLoss(num_samples, feat_dim=5, nce_k=K, **kw)
    w = with_heads(block, shapes[0], shapes[1], (K + 1,))
    for name in ('memory_s', 'memory_t'):
        m = RNG.randn(num_samples, 5)
        w[name] = m / np.linalg.norm(m, axis=1, keepdims=True)
        block._collect_params_with_prefix()[name].set_data(nd.array(w[name], dtype='float64'))
    set_z(block, w, [-1.0, -1.0])
    return block, w


def set_z(block, w, z):
    w['z'] = np.array(z, dtype=np.float64)
    block.z.set_data(nd.array(w['z'], dtype='float64'))


def contrast(b, seed=0):
    rng = np.random.RandomState(seed)
    index = rng.permutation(N)[:b]
    return np.concatenate([index[:, None], rng.randint(0, N, size=(b, K))], axis=1)


@pytest.fixture(params=['whole', 'rows'])
def scoring(request, monkeypatch):
    """Both ways CRD scores the contrast indices: the whole memory, then the entries picked (a memory
    of at most DENSE_ROWS x (K+1) rows), and the rows gathered (a larger one)."""
    from symbols.transfer import contrastive
    monkeypatch.setattr(contrastive, 'DENSE_ROWS', 10 ** 6 if request.param == 'whole' else 0)
    return request.param


def call(block, s, t, index, train=True):
    xs = [nd.array(x, dtype='float64') for x in (s, t, index)]
    with (autograd.train_mode() if train else autograd.predict_mode()):
        return [o.asnumpy() for o in block(*xs)]


def want(w, s, t, cidx):
    return ref.crd(s, t, w['embed_s.weight'], w['embed_s.bias'], w['embed_t.weight'], w['embed_t.bias'],
                   w['memory_s'], w['memory_t'], w['z'], cidx)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', [((7,), (9,)), ((4, 3, 3), (6,))], ids=['vectors', 'pooled_map'])
def test_crd_matches_repdistiller_definition(shapes, hybridize, scoring):
    block, w = crd_block(shapes)
    if hybridize:
        block.hybridize()
    s, t, cidx = arr(5, *shapes[0]), arr(5, *shapes[1]), contrast(5)
    loss, e_s, e_t, est = call(block, s, t, cidx)
    r_loss, r_es, r_et, r_est = want(w, s, t, cidx)
    assert loss.shape == (5,) and e_s.shape == (5, 5) and est.shape == (2,)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL)
    np.testing.assert_allclose(e_s, r_es, rtol=RTOL)
    np.testing.assert_allclose(e_t, r_et, rtol=RTOL)
    np.testing.assert_allclose(est, r_est, rtol=RTOL)
    set_z(block, w, [1.5 * r_est[0], 0.7 * r_est[1]])           # Z known: the estimate is not used
    np.testing.assert_allclose(call(block, s, t, cidx)[0], want(w, s, t, cidx)[0], rtol=RTOL)
    assert np.abs(call(block, s, t, cidx)[0] - r_loss).max() > 1e-3


def test_crd_update_moves_the_samples_rows_and_sets_z_once():
    """update_state with two devices' shares (here both on the CPU) equals RepDistiller's update
    with the whole batch; Z takes the mean of the shares' estimates on the first step only."""
    block, w = crd_block(((7,), (9,)))
    s, t, cidx = arr(6, 7), arr(6, 9), contrast(6, seed=1)
    shares = [call(block, s[:3], t[:3], cidx[:3]), call(block, s[3:], t[3:], cidx[3:])]
    f64 = lambda x: nd.array(x, dtype='float64')
    block.update_state([f64(cidx[:3, 0]), f64(cidx[3:, 0])], [[f64(x) for x in sh[1:]] for sh in shares])
    est = (shares[0][3] + shares[1][3]) / 2
    m_s, m_t, z = ref.crd_update(w['memory_s'], w['memory_t'], w['z'], cidx[:, 0],
                                 np.concatenate([shares[0][1], shares[1][1]]),
                                 np.concatenate([shares[0][2], shares[1][2]]), est)
    np.testing.assert_allclose(block.memory_s.data().asnumpy(), m_s, rtol=RTOL)
    np.testing.assert_allclose(block.memory_t.data().asnumpy(), m_t, rtol=RTOL)
    np.testing.assert_allclose(block.z.data().asnumpy(), z, rtol=RTOL)
    untouched = np.setdiff1d(np.arange(N), cidx[:, 0])
    np.testing.assert_array_equal(block.memory_s.data().asnumpy()[untouched], w['memory_s'][untouched])
    again = call(block, s, t, cidx)
    block.update_state([f64(cidx[:, 0])], [[f64(x) for x in again[1:]]])
    np.testing.assert_allclose(block.z.data().asnumpy(), z, rtol=RTOL)            # kept from then on


def test_crd_draws_uniform_negatives_after_the_sample():
    block, _ = crd_block(((7,), (9,)))
    block._configure(((7,), (9,), ()))                      # indices (B,): the block draws K negatives
    index = nd.array([3, 0, 19, 7])

    def contrast_index():                                   # (B, K+1): the sample's own index, then its K draws
        own, others = block._contrast_index(nd, index)
        return np.concatenate([own.asnumpy()[:, None], others.asnumpy()], axis=1)
    mx.random.seed(5)
    a = contrast_index()
    b = contrast_index()
    mx.random.seed(5)
    np.testing.assert_array_equal(contrast_index(), a)     # reseeded: the same
    assert a.shape == (4, K + 1) and (a[:, 0] == [3, 0, 19, 7]).all() and (a != b).any()
    block._k = 20000
    draws = contrast_index()[:, 1:]
    assert (draws == np.floor(draws)).all() and draws.min() == 0 and draws.max() == N - 1
    counts = np.bincount(draws.astype(int).ravel(), minlength=N)
    assert np.abs(counts / counts.mean() - 1).max() < 0.06           # 4000 expected per value: uniform


def test_crd_with_drawn_negatives_trains_hybridized():
    block, w = crd_block(((7,), (9,)))
    block.hybridize()
    s, t = arr(6, 7), arr(6, 9)
    loss = call(block, s, t, np.arange(6))[0]
    assert loss.shape == (6,) and np.isfinite(loss).all() and (loss > 0).all()


class LossOnly(HybridBlock):
    """CRD's loss output alone (for the finite differences)."""

    def __init__(self, crd, **kwargs):
        super(LossOnly, self).__init__(**kwargs)
        self.crd = crd

    def hybrid_forward(self, F, s, t, index):
        return self.crd(s, t, index)[0]


@pytest.mark.parametrize('hybridize', [False, True])
def test_crd_gradients(hybridize, scoring):
    """With Z known (after the first step) the loss is smooth in the inputs and heads; the first
    step's Z estimate carries no gradient (RepDistiller takes it as a number)."""
    block, w = crd_block(((4, 3, 3), (6,)))
    s, t, cidx = arr(5, 4, 3, 3), arr(5, 6), contrast(5, seed=2)
    set_z(block, w, want(w, s, t, cidx)[3])
    net = LossOnly(block)
    if hybridize:
        net.hybridize()
    fd_check(net, [s, t, cidx], wrt=0)
    fd_check(net, [s, t, cidx], wrt='crd.embed_s.weight')
    assert np.abs(fd_check(net, [s, t, cidx], wrt='crd.embed_t.bias')).sum() > 0          # the teacher head trains
    grad_known = fd_check(net, [s, t, cidx], wrt='crd.embed_s.bias')
    set_z(block, w, [-1.0, -1.0])                       # unset: the estimate (same value) is a constant
    p = block.embed_s.bias
    p.zero_grad()
    with autograd.record():
        net(*[nd.array(x, dtype='float64') for x in (s, t, cidx)]).sum().backward()
    np.testing.assert_allclose(p.grad().asnumpy(), grad_known, rtol=1e-8)


def set_by_a_step(block, w, s, t, cidx):
    """One step's `update_state` (which sets Z and moves the memory rows): afterwards the block
    scores with Z alone (`_z_set`, its graph without the estimate); `w` takes the new memory and Z."""
    f64 = lambda x: nd.array(x, dtype='float64')
    out = call(block, s, t, cidx)
    assert not block._z_set and block.update_state([f64(cidx[:, 0])], [[f64(x) for x in out[1:]]]) is True
    assert block._z_set
    for name in ('memory_s', 'memory_t', 'z'):
        w[name] = block._collect_params_with_prefix()[name].data().asnumpy()
    assert (w['z'] > 0).all()


@pytest.mark.parametrize('hybridize', [False, True])
def test_crd_once_z_is_set_skips_the_estimate_with_the_same_values(hybridize, scoring):
    block, w = crd_block(((4, 3, 3), (6,)))
    if hybridize:
        block.hybridize()
    s, t, cidx = arr(5, 4, 3, 3), arr(5, 6), contrast(5, seed=4)
    set_by_a_step(block, w, s, t, cidx)
    loss, e_s, e_t, est = call(block, s, t, cidx)
    r_loss, r_es, r_et, _ = want(w, s, t, cidx)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL)
    np.testing.assert_allclose(e_s, r_es, rtol=RTOL)
    np.testing.assert_allclose(est, w['z'], rtol=RTOL)         # the estimate output is Z
    f64 = lambda x: nd.array(x, dtype='float64')
    assert block.update_state([f64(cidx[:, 0])], [[f64(x) for x in call(block, s, t, cidx)[1:]]]) is False
    np.testing.assert_allclose(block.z.data().asnumpy(), w['z'], rtol=RTOL)


@pytest.mark.parametrize('hybridize', [False, True])
def test_crd_gradients_once_z_is_set(hybridize, scoring):
    block, w = crd_block(((4, 3, 3), (6,)))
    s, t, cidx = arr(5, 4, 3, 3), arr(5, 6), contrast(5, seed=6)
    set_by_a_step(block, w, s, t, cidx)
    net = LossOnly(block)
    if hybridize:
        net.hybridize()
    fd_check(net, [s, t, cidx], wrt=0)
    fd_check(net, [s, t, cidx], wrt='crd.embed_s.weight')
    assert np.abs(fd_check(net, [s, t, cidx], wrt='crd.embed_t.bias')).sum() > 0


def test_a_distill_block_builds_its_graph_again_once_crd_sets_z():
    """DistillBlock.after_step clears its cached graph when a loss's update_state says so (CRD,
    once Z is set), and not on the steps after."""
    rebuilt = []
    block = DistillBlock.__new__(DistillBlock)
    HybridBlock.__init__(block)
    block.plan, block.state_slots = [{'method': 'crd', 'pairs': []}], [(0, 0, 3)]
    answers = iter([True, False])

    class Loss(object):
        def update_state(self, indices, states):
            return next(answers)
    block._loss = lambda m, p: Loss()
    block._clear_cached_op = lambda: rebuilt.append(1)
    outs = [[nd.zeros((1,))] * 7]
    block.after_step(outs, [nd.zeros((1,))])
    assert rebuilt == [1]
    block.after_step(outs, [nd.zeros((1,))])
    assert rebuilt == [1]


def test_crd_needs_the_training_set_size_and_fits_float32_indices():
    with pytest.raises(T.PairingError, match='num_samples'):
        T.METHODS['crd'].make({}).build((7,), (9,), ())
    with pytest.raises(T.PairingError, match='float32'):
        T.CRDLoss(2 ** 24 + 1).build((7,), (9,), ())
    with pytest.raises(T.PairingError, match='indices'):
        T.CRDLoss(N).build((7,), (9,), (2, 3))


def test_registry_declares_crd():
    spec = T.METHODS['crd']
    assert (spec.inputs, spec.weight, spec.heads, spec.indices, spec.relational, spec.stages) == \
        ('vector', 0.8, True, True, True, ())
    block = spec.make({'num_samples': 50000})
    assert (block.num_samples, block.feat_dim, block.nce_k, block.nce_t, block.nce_m) == (50000, 128, 16384, 0.07,
                                                                                           0.5)
    block.build((64,), (256,), ())
    block.initialize(mx.init.Xavier())
    shapes = {k: p.shape for k, p in block._collect_params_with_prefix().items()}
    assert shapes == {'embed_s.weight': (128, 64), 'embed_s.bias': (128,), 'embed_t.weight': (128, 256),
                      'embed_t.bias': (128,), 'memory_s': (50000, 128), 'memory_t': (50000, 128), 'z': (2,)}
    mem = block.memory_s.data().asnumpy()
    bound = 1 / np.sqrt(128 / 3.0)
    assert np.abs(mem).max() <= bound and mem.std() > bound / 2              # RepDistiller's uniform init
    assert (block.z.data().asnumpy() == -1).all()
    assert block.memory_s.grad_req == 'null' and block.embed_s.weight.grad_req == 'write'


# ------------------------------------------------------------------ inside the DistillBlock
def crd_distill_block(ctx):
    plan = [{'method': 'kd', 'weight': 16.0, 'pairs': [], 'layer_weights': [1.0]},
            {'method': 'crd', 'weight': 0.8, 'pairs': [('pool', 'pool')], 'layer_weights': [1.0]}]
    mx.random.seed(0)
    student = symbols.get_network('cifar_resnet8', 10, prefix='student_')
    s_taps, t_taps = plan_taps(plan)
    block = DistillBlock(student, plan, {'num_samples': N, 'crd_nce_k': K, 'crd_feat_dim': 8}, t_taps,
                         prefix='distill_')
    student.initialize(mx.init.Xavier(), ctx=ctx)
    block.connect({'pool': (64,)}, {'pool': (32,)})
    block.extras.initialize(mx.init.Xavier(), ctx=ctx)
    return block


@pytest.mark.parametrize('hybridize', [False, True])
def test_distill_block_routes_indices_and_updates_the_memory_on_every_device(hybridize):
    ctx = [mx.cpu(0), mx.cpu(1)]
    block = crd_distill_block(ctx)
    assert block.takes_indices and block.state_slots == [(1, 0, 3)]
    crd = block.extras._children['loss_crd_0']
    if hybridize:
        block.hybridize(static_alloc=True, static_shape=True)
    x = nd.random.normal(shape=(8, 3, 32, 32))
    y, t_logits, t_pool = nd.array([1, 2, 3, 4, 5, 6, 7, 8]), nd.random.normal(shape=(8, 10)), \
        nd.random.normal(shape=(8, 32))
    index = nd.array([4, 9, 0, 13, 2, 17, 11, 5])
    before = crd.memory_t.data(ctx[0]).asnumpy()
    outs, idxs = [], []
    with autograd.record():
        for k, c in enumerate(ctx):
            part = slice(4 * k, 4 * k + 4)
            idxs.append(index[part].as_in_context(c))
            outs.append(block(x[part].as_in_context(c), y[part].as_in_context(c), t_logits[part].as_in_context(c),
                              t_pool[part].as_in_context(c), idxs[-1]))
    assert len(outs[0]) == 3 + 2 + 3                       # total, logits, ce, kd, crd, then e_s, e_t, Z estimates
    autograd.backward([o[0] for o in outs])
    assert np.abs(crd.embed_t.weight.grad(ctx[0]).asnumpy()).sum() > 0
    block.after_step(outs, idxs)
    a, b = crd.memory_t.data(ctx[0]).asnumpy(), crd.memory_t.data(ctx[1]).asnumpy()
    np.testing.assert_array_equal(a, b)                    # the copies stay equal
    moved = np.where(np.abs(a - before).max(axis=1) > 0)[0]
    np.testing.assert_array_equal(moved, np.sort(index.asnumpy().astype(int)))
    e_t = np.concatenate([o[6].asnumpy() for o in outs])
    rows = before[index.asnumpy().astype(int)] * 0.5 + e_t * 0.5
    np.testing.assert_allclose(a[index.asnumpy().astype(int)], rows / np.linalg.norm(rows, axis=1, keepdims=True),
                               rtol=1e-5)
    z = crd.z.data(ctx[1]).asnumpy()
    np.testing.assert_allclose(z, (outs[0][7].asnumpy() + outs[1][7].asnumpy()) / 2, rtol=1e-6)


def test_more_negatives_than_samples_is_warned_of(caplog):
    """#18's sixteenth trial: crd_nce_k=100000 on 300 training samples trained without a word."""
    import logging
    with caplog.at_level(logging.WARNING):
        block = T.CRDLoss(300, feat_dim=5, nce_k=100000)
        block.build((8,), (8,), ())
    assert 'crd_nce_k=100000 negatives a sample, but the training set has 300 samples' in caplog.text, caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        T.CRDLoss(300, feat_dim=5, nce_k=100).build((8,), (8,), ())
    assert not caplog.text


def test_crd_sets_z_on_devices_other_than_cpu0():
    """Review: update_state read Z with `z.data()`, which looks on the current context (cpu(0)) and
    fails for a memory on two GPUs; here two CPU devices other than cpu(0) stand for them."""
    ctx = [mx.cpu(1), mx.cpu(2)]
    block = T.CRDLoss(N, feat_dim=5, nce_k=K)
    block.build((7,), (9,), ())
    block.initialize(mx.init.Xavier(), ctx=ctx)
    states = [[nd.ones((2, 5), ctx=c) * 0.1, nd.ones((2, 5), ctx=c) * 0.2, nd.array([3.0, 4.0], ctx=c)] for c in ctx]
    assert block.update_state([nd.array([0, 1], ctx=ctx[0]), nd.array([2, 3], ctx=ctx[1])], states) is True
    assert block._z_set and all((z.asnumpy() == [3.0, 4.0]).all() for z in block.z.list_data())
