"""The losses with trainable heads (CC, VID, ReviewKD: RepDistiller's Correlation with its
embeddings, RepDistiller's VIDLoss, mdistiller's ReviewKD) against plain-numpy definitions in
float64 with the same head weights, by finite differences w.r.t. the student input and a head
parameter, hybridized and not; and their registry declaration (`heads=True`) routed by
`tasks.classification.distiller.DistillBlock` into `extras` beside the connectors."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd, nd

import symbols
from tasks.classification.distiller import DistillBlock, plan_taps
from symbols import transfer as T
from tests import numpy_reference as ref

RNG = np.random.RandomState(5)
RTOL = 1e-4


def arr(*shape):
    return RNG.randn(*shape)


def with_heads(block, *shapes, seed=0):
    """Build `block`'s heads for these per-sample shapes, initialise, cast to float64 and set
    every parameter from numpy; returns {structural name: numpy value}."""
    block.build(*shapes)
    block.initialize()
    block.cast('float64')
    rng = np.random.RandomState(seed)
    values = {}
    for name, p in block._collect_params_with_prefix().items():
        shape = p.shape
        if name.endswith('running_mean'):
            v = 0.3 * rng.randn(*shape)
        elif name.endswith('running_var'):
            v = rng.uniform(0.5, 1.5, size=shape)
        elif name.endswith('gamma'):
            v = 1 + 0.3 * rng.randn(*shape)
        elif len(shape) > 1:
            v = rng.randn(*shape) / np.sqrt(np.prod(shape[1:]))
        else:
            v = 0.3 * rng.randn(*shape)
        p.set_data(nd.array(v, dtype='float64'))
        values[name] = v
    return values


def run(block, *inputs, hybridize=False, train=False):
    if hybridize:
        block.hybridize()
    xs = [nd.array(x, dtype='float64') for x in inputs]
    with (autograd.train_mode() if train else autograd.predict_mode()):
        return block(*xs).asnumpy()


def fd_check(block, inputs, wrt=0, train=False, eps=1e-6, tol=1e-5, samples=6, seed=0):
    """autograd's gradient of sum(loss) w.r.t. input `wrt` (an index) or the parameter of that
    structural name, against central differences; values and gradient in the same BatchNorm
    mode (`train`: batch statistics)."""
    rng = np.random.RandomState(seed)
    xs = [nd.array(x, dtype='float64') for x in inputs]
    param = None
    if isinstance(wrt, str):
        param = block._collect_params_with_prefix()[wrt]
        param.zero_grad()
        base = param.data().asnumpy().copy()
    else:
        for x in xs:
            x.attach_grad()
        base = inputs[wrt]
    with autograd.record(train_mode=train):
        loss = block(*xs).sum()
    loss.backward()
    grad = param.grad().asnumpy() if param is not None else xs[wrt].grad.asnumpy()
    if param is None:
        for k in range(len(xs) // 2, len(xs)):                 # teacher inputs (the second half) get none
            assert not xs[k].grad.asnumpy().any(), k

    def f(v):
        if param is not None:
            param.set_data(nd.array(v, dtype='float64'))
            args = xs
        else:
            args = [nd.array(v, dtype='float64') if k == wrt else x for k, x in enumerate(xs)]
        with (autograd.train_mode() if train else autograd.predict_mode()):
            return block(*args).asnumpy().sum()
    try:
        for _ in range(samples):
            i = tuple(rng.randint(0, d) for d in base.shape)
            plus, minus = base.copy(), base.copy()
            plus[i] += eps
            minus[i] -= eps
            num = (f(plus) - f(minus)) / (2 * eps)
            assert abs(num - grad[i]) <= tol * max(1.0, abs(num)), (wrt, i, num, grad[i])
    finally:
        if param is not None:
            param.set_data(nd.array(base, dtype='float64'))
    return grad


# --------------------------------------------------------------------------------- CC
CC_SHAPES = [((7,), (9,)), ((4, 3, 3), (6, 2, 2)), ((5,), (3, 4, 4))]


@pytest.mark.parametrize('normalize', [False, True], ids=['linear_embed', 'embed'])
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', CC_SHAPES)
def test_cc_matches_repdistiller_definition(hybridize, shapes, normalize):
    block = T.CCLoss(feat_dim=5, normalize=normalize)
    w = with_heads(block, *shapes)
    s, t = arr(6, *shapes[0]), arr(6, *shapes[1])
    out = run(block, s, t, hybridize=hybridize)
    assert out.shape == (6,) and out[-1] == 0
    want = ref.cc(s, t, w['embed_s.weight'], w['embed_s.bias'], w['embed_t.weight'], w['embed_t.bias'], normalize)
    np.testing.assert_allclose(out.mean(), want, rtol=RTOL)


def test_cc_any_batch_size_hybridized_and_a_batch_of_one():
    block = T.CCLoss(feat_dim=4)
    w = with_heads(block, (5,), (3,))
    block.hybridize()
    for b in (6, 3, 2):
        s, t = arr(b, 5), arr(b, 3)
        want = ref.cc(s, t, w['embed_s.weight'], w['embed_s.bias'], w['embed_t.weight'], w['embed_t.bias'])
        np.testing.assert_allclose(run(block, s, t).mean(), want, rtol=RTOL)
    np.testing.assert_array_equal(run(block, arr(1, 5), arr(1, 3)), [0.0])     # the peers': NaN


@pytest.mark.parametrize('hybridize', [False, True])
def test_cc_gradients(hybridize):
    block = T.CCLoss(feat_dim=6)
    with_heads(block, (4, 3, 3), (7,))
    if hybridize:
        block.hybridize()
    s, t = arr(5, 4, 3, 3), arr(5, 7)
    fd_check(block, [s, t], wrt=0)
    fd_check(block, [s, t], wrt='embed_s.weight')
    assert np.abs(fd_check(block, [s, t], wrt='embed_t.weight')).sum() > 0   # the teacher head trains
    norm = T.CCLoss(feat_dim=6, normalize=True)
    with_heads(norm, (4, 3, 3), (7,))
    fd_check(norm, [s, t], wrt=0)
    fd_check(norm, [s, t], wrt='embed_t.bias')


# --------------------------------------------------------------------------------- VID
VID_SHAPES = [((4, 8, 8), (6, 4, 4)), ((5, 4, 4), (3, 8, 8)), ((3, 4, 4), (3, 4, 4))]


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', VID_SHAPES)
def test_vid_matches_repdistiller_definition(hybridize, shapes):
    block = T.VIDLoss()
    w = with_heads(block, *shapes)
    s, t = arr(3, *shapes[0]), arr(3, *shapes[1])
    out = run(block, s, t, hybridize=hybridize)
    assert out.shape == (3,)
    want = ref.vid(s, t, w['regressor.0.weight'], w['regressor.2.weight'], w['regressor.4.weight'], w['log_scale'])
    np.testing.assert_allclose(out, want, rtol=RTOL)


def test_vid_heads_as_repdistiller():
    """VIDLoss(s, t, t): mid channels = the teacher's, no biases; the variance starts at
    init_pred_var (softplus(log_scale) + eps = 5)."""
    block = T.METHODS['vid'].make({})
    block.build((4, 8, 8), (6, 8, 8))
    block.initialize(mx.init.Xavier())           # the trainer's default initialiser: the heads' own win
    shapes = {k: p.shape for k, p in block._collect_params_with_prefix().items()}
    assert shapes == {'regressor.0.weight': (6, 4, 1, 1), 'regressor.2.weight': (6, 6, 1, 1),
                      'regressor.4.weight': (6, 6, 1, 1), 'log_scale': (6,)}
    ls = block.log_scale.data().asnumpy().astype(np.float64)
    np.testing.assert_allclose(np.log1p(np.exp(ls)) + 1e-5, 5.0, rtol=1e-6)
    w = block.regressor[0].weight.data().asnumpy()
    assert np.abs(w).max() <= 1 / np.sqrt(4) and w.std() > 0.1       # PyTorch's U(+-1/sqrt(fan_in))


@pytest.mark.parametrize('hybridize', [False, True])
def test_vid_gradients(hybridize):
    block = T.VIDLoss()
    with_heads(block, (4, 8, 8), (6, 4, 4))
    if hybridize:
        block.hybridize()
    s, t = arr(3, 4, 8, 8), arr(3, 6, 4, 4)
    fd_check(block, [s, t], wrt=0)
    fd_check(block, [s, t], wrt='log_scale')
    fd_check(block, [s, t], wrt='regressor.2.weight')


# --------------------------------------------------------------------------------- ReviewKD
def review_maps(b=4, shapes=None):
    shapes = shapes or ([(4, 8, 8), (6, 4, 4), (5,)], [(3, 8, 8), (7, 4, 4), (9,)])
    return [arr(b, *sh) for sh in shapes[0]], [arr(b, *sh) for sh in shapes[1]], shapes[0] + shapes[1]


def abf_params(w, n):
    """The numpy ABF parameters of `ReviewKDLoss` structural names, per stage."""
    out = []
    for i in range(n):
        bn = lambda k: {f: w['abf%d.%s.1.%s' % (i, k, f)] for f in ('gamma', 'beta', 'running_mean', 'running_var')}
        out.append({'conv1_w': w['abf%d.conv1.0.weight' % i], 'bn1': bn('conv1'),
                    'conv2_w': w['abf%d.conv2.0.weight' % i], 'bn2': bn('conv2'),
                    'att_w': w.get('abf%d.att.0.weight' % i), 'att_b': w.get('abf%d.att.0.bias' % i)})
    return out


REVIEW_SHAPES = [
    None,                                                                    # maps and pooled vectors
    ([(4, 8, 8), (6, 4, 4), (5, 2, 2)], [(3, 4, 4), (7, 4, 4), (9, 2, 2)]),  # student 8x8 -> teacher 4x4
    ([(4, 6, 6), (6, 3, 3)], [(3, 4, 4), (7, 2, 2)]),                        # non-integer resizes
]


@pytest.mark.parametrize('train', [True, False], ids=['batch_stats', 'running_stats'])
@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('shapes', REVIEW_SHAPES, ids=['vectors', 'downsample', 'ratio'])
def test_reviewkd_matches_mdistiller_definition(hybridize, train, shapes):
    s, t, all_shapes = review_maps(shapes=shapes)
    block = T.ReviewKDLoss()
    w = with_heads(block, *all_shapes)
    out = run(block, *(s + t), hybridize=hybridize, train=train)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, ref.reviewkd(s, t, abf_params(w, len(s)), train=train), rtol=RTOL)


def test_reviewkd_heads_as_mdistiller():
    """mid = min(512, channels of the deepest student tap); ABF i maps the student's channels
    to the teacher's; the deepest ABF does not fuse; weights as kaiming_uniform_(a=1)."""
    block = T.METHODS['reviewkd'].make({})
    block.build((16, 32, 32), (32, 16, 16), (64, 8, 8), (64,), (16, 32, 32), (32, 16, 16), (64, 8, 8), (64,))
    block.initialize(mx.init.Xavier())
    shapes = {k: p.shape for k, p in block._collect_params_with_prefix().items() if 'running' not in k}
    assert shapes['abf0.conv1.0.weight'] == (64, 16, 1, 1) and shapes['abf0.conv2.0.weight'] == (16, 64, 3, 3)
    assert shapes['abf2.att.0.weight'] == (2, 128, 1, 1) and shapes['abf2.att.0.bias'] == (2,)
    assert 'abf3.att.0.weight' not in shapes and shapes['abf3.conv1.0.weight'] == (64, 64, 1, 1)
    w = block.abf0.conv1[0].weight.data().asnumpy()
    assert np.abs(w).max() <= np.sqrt(3 / 16.) and w.std() > 0.2
    wide = T.ReviewKDLoss().build((8, 4, 4), (600,), (8, 4, 4), (600,))
    assert wide.abf0.conv1[0].weight.shape == (512, 8, 1, 1)                     # min(512, 600)
    assert T.ReviewKDLoss(mid_channels=7).build((8, 4, 4), (6,), (8, 4, 4), (6,)).abf1.conv1[0].weight.shape[0] == 7


@pytest.mark.parametrize('hybridize', [False, True])
def test_reviewkd_gradients(hybridize):
    s, t, shapes = review_maps(b=3)
    block = T.ReviewKDLoss()
    with_heads(block, *shapes)
    if hybridize:
        block.hybridize()
    # in training mode, as it trains (MXNet's BatchNorm backward assumes batch statistics even
    # when a predict-mode forward used the running ones)
    fd_check(block, s + t, wrt=0, train=True)                     # the shallowest student map
    fd_check(block, s + t, wrt=2, train=True)                     # the deepest (a vector), through the fusions
    fd_check(block, s + t, wrt='abf1.att.0.weight', train=True)
    fd_check(block, s + t, wrt='abf2.conv2.1.gamma', train=True)


# --------------------------------------------------------------------------------- shared
def test_heads_are_built_before_use_and_keep_their_channels():
    for block, shapes in ((T.CCLoss(), ((5,), (3,))), (T.VIDLoss(), ((4, 4, 4), (3, 4, 4))),
                          (T.ReviewKDLoss(), ((4, 4, 4), (5,), (3, 4, 4), (6,)))):
        with pytest.raises(T.PairingError, match='build'):
            block(*[nd.ones((2,) + s) for s in shapes])
        block.build(*shapes)
        block.initialize()
        block.build(*shapes)                                                # again: no change
        assert block(*[nd.ones((2,) + s) for s in shapes]).shape == (2,)
        with pytest.raises(T.PairingError, match='built for'):
            block(*[nd.ones((2, s[0] + 1) + s[1:]) for s in shapes])
    vid = T.VIDLoss().build((4, 8, 8), (3, 8, 8))
    vid.initialize()
    assert vid(nd.ones((2, 4, 6, 6)), nd.ones((2, 3, 3, 3))).shape == (2,)   # other sizes: same heads
    with pytest.raises(T.PairingError, match='4-D'):
        T.VIDLoss().build((4,), (3,))
    with pytest.raises(T.PairingError, match='vector'):
        T.CCLoss().build((4, 2), (3,))
    with pytest.raises(T.PairingError, match='ReviewKD takes'):
        T.ReviewKDLoss().build((4, 2, 2), (3, 2, 2), (5, 2, 2))


def test_registry_declares_the_head_methods():
    expect = {'cc': ('vector', 0.02, T.CCLoss, True, 0), 'vid': ('feature', 1.0, T.VIDLoss, False, 0),
              'reviewkd': ('layers', 1.0, T.ReviewKDLoss, False, 20)}
    for name, (inputs, weight, cls, relational, warmup) in expect.items():
        spec = T.METHODS[name]
        assert spec.heads and (spec.inputs, spec.weight, spec.relational, spec.warmup_epochs) == \
            (inputs, weight, relational, warmup), name
        assert not spec.labels and not spec.connector and not spec.margin
        assert isinstance(spec.make({}), cls) and T.default_weight(name) == weight and T.takes_taps(name)
    staged_or_indexed = ('ab', 'ft', 'crd')          # tests/test_transfer_staged.py, test_transfer_contrastive.py
    assert not [m for m, spec in T.METHODS.items() if spec.heads and m not in tuple(expect) + staged_or_indexed]
    cc = T.METHODS['cc'].make({})
    assert (cc.feat_dim, cc.normalize) == (128, False)
    vid = T.METHODS['vid'].make({})
    assert (vid.init_pred_var, vid.eps, vid.mid_channels) == (5.0, 1e-5, None)
    review = T.METHODS['reviewkd'].make({})
    assert (review.mid_channels, review.max_mid_channels, review.levels) == (None, 512, (4, 2, 1))
    assert T.warmup_factor('reviewkd', 0) == 0.05 and T.warmup_factor('reviewkd', 19) == 1.0
    assert T.parse_kt_type('kd+mmd+vid') == ['kd', 'mmd', 'vid']


# ------------------------------------------------------------------ inside the DistillBlock
def entry(method, pairs=(), weight=None):
    pairs = list(pairs)
    return {'method': method, 'weight': T.default_weight(method) if weight is None else weight, 'pairs': pairs,
            'layer_weights': [1.0 / max(1, len(pairs))] * max(1, len(pairs))}


REVIEW = [('stage1', 'stage1_pre'), ('stage2', 'stage2_pre'), ('stage3', 'stage3_pre'), ('pool', 'pool')]
PLAN = [entry('kd'), entry('fitnet', [('stage2', 'stage2_pre')]), entry('cc', [('pool', 'pool')]),
        entry('vid', [('stage2', 'stage2'), ('stage3', 'stage3_pre')]), entry('reviewkd', REVIEW)]


def distill_block(plan):
    """A DistillBlock on a CIFAR ResNet-8 student with random teacher taps (a wider teacher:
    twice the student's channels), connected and initialised as `ClassificationTask._check_pairs` does."""
    mx.random.seed(0)
    student = symbols.get_network('cifar_resnet8', 10, prefix='student_')
    s_taps, t_taps = plan_taps(plan)
    block = DistillBlock(student, plan, {}, t_taps, prefix='distill_')
    student.initialize(mx.init.Xavier())
    x = nd.random.normal(shape=(6, 3, 32, 32))
    s_out = block.student(x)
    s_shapes = dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]]))
    shape_of = {t: s_shapes.get(t, s_shapes.get(t.replace('_pre', ''))) for t in t_taps}
    t_shapes = {t: (2 * sh[0],) + tuple(sh[1:]) for t, sh in shape_of.items()}
    t_feats = [nd.random.normal(shape=(6,) + t_shapes[t]) for t in t_taps]
    inputs = (x, nd.array([0, 3, 9, 3, 1, 7]), nd.random.normal(shape=(6, 10))) + tuple(t_feats)
    block.connect(s_shapes, t_shapes)
    block.extras.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2))
    with autograd.pause():
        block(*inputs)                        # configures the shape-checking losses
    return block, inputs, dict(zip(s_taps, s_out[1:])), dict(zip(t_taps, t_feats))


@pytest.mark.parametrize('hybridize', [False, True])
def test_distill_block_keeps_heads_in_extras(hybridize, tmp_path):
    block, inputs, s_of, t_of = distill_block(PLAN)
    extras = block.extras._children
    assert list(extras) == ['loss_cc_0', 'loss_vid_0', 'loss_vid_1', 'loss_reviewkd_0', 'fitnet_0']
    assert not [n for n in block._children if n.startswith(('loss_cc', 'loss_vid', 'loss_reviewkd'))]
    assert 'loss_kd_0' in block._children
    # built from the taps' shapes: the teacher's channels are twice the student's
    assert extras['loss_vid_1'].regressor[4].weight.shape == (128, 128, 1, 1)
    assert extras['loss_cc_0'].embed_t.weight.shape == (128, 128)
    assert extras['loss_reviewkd_0'].abf3.conv1[0].weight.shape == (64, 64, 1, 1)      # mid = min(512, 64)
    if hybridize:
        block.hybridize()
    block.set_epoch(1)
    total, _, ce, kd, fitnet, cc, vid, review = [o.asnumpy() for o in block(*inputs)]
    v = lambda k: {n: q.data().asnumpy().astype(np.float64) for n, q in extras[k]._collect_params_with_prefix().items()}
    f64 = lambda x: x.asnumpy().astype(np.float64)
    w = v('loss_cc_0')
    np.testing.assert_allclose(cc.mean(), ref.cc(f64(s_of['pool']), f64(t_of['pool']), w['embed_s.weight'],
                                                 w['embed_s.bias'], w['embed_t.weight'], w['embed_t.bias']),
                               rtol=1e-3)
    want = 0
    for p, (s, t) in enumerate(PLAN[3]['pairs']):
        w = v('loss_vid_%d' % p)
        want = want + 0.5 * ref.vid(f64(s_of[s]), f64(t_of[t]), w['regressor.0.weight'], w['regressor.2.weight'],
                                    w['regressor.4.weight'], w['log_scale'])
    np.testing.assert_allclose(vid, want, rtol=1e-3)
    want = ref.reviewkd([f64(s_of[s]) for s, _ in REVIEW], [f64(t_of[t]) for _, t in REVIEW],
                        abf_params(v('loss_reviewkd_0'), 4), train=False)
    np.testing.assert_allclose(review, want, rtol=1e-3)
    factors = [1, 1, 1, 1, 0.1]                                    # reviewkd's warm-up at epoch 1: 2/20
    want_total = ce + sum(f * e['weight'] * term for f, e, term in zip(factors, PLAN, (kd, fitnet, cc, vid, review)))
    np.testing.assert_allclose(total, want_total, rtol=1e-4)
    # saved beside the connectors, whose names stay as they were
    path = str(tmp_path / 'x.extra.params')
    block.extras.save_parameters(path)
    names = set(nd.load(path))
    assert {'fitnet_0.conv.weight', 'fitnet_0.bn.gamma', 'loss_cc_0.embed_s.weight', 'loss_vid_1.log_scale',
            'loss_reviewkd_0.abf0.att.0.weight', 'loss_reviewkd_0.abf3.conv2.1.running_var'} <= names
    assert not [n for n in block.student.collect_params() if 'loss' in n or 'extras' in n]


def test_distill_block_heads_train_from_the_total():
    """Gradients of the total reach every head parameter (the trainer's optimizer holds the
    student's and `extras`' parameters)."""
    block, inputs, _, _ = distill_block(PLAN)
    block.hybridize()
    with autograd.record():
        total = block(*inputs)[0]
    total.backward()
    for name, p in block.extras.collect_params().items():
        if p.grad_req != 'null':
            assert np.abs(p.grad().asnumpy()).sum() > 0, name


def test_connect_refuses_taps_the_head_losses_cannot_take():
    block = DistillBlock(symbols.get_network('cifar_resnet8', 10, prefix='student_'),
                         [entry('vid', [('pool', 'pool')])], {}, ['pool'], prefix='distill_')
    with pytest.raises(T.PairingError, match='feature maps'):
        block.connect({'pool': (64,)}, {'pool': (64,)})
    block = DistillBlock(symbols.get_network('cifar_resnet8', 10, prefix='student_'),
                         [entry('reviewkd', [('stage3', 'stage3'), ('pool', 'pool')])], {}, ['stage3', 'pool'],
                         prefix='distill_')
    with pytest.raises(T.PairingError, match='vectors'):
        block.connect({'stage3': (64, 8, 8), 'pool': (64, 1)}, {'stage3': (64, 8, 8), 'pool': (64,)})
