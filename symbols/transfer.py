"""Transfer losses: KD, FitNet, AT, NST (MMD with linear / poly / Gaussian
kernels), FSP and OFD, plus the connectors that FitNet and OFD train.

Every loss is a parameter-free HybridBlock that returns the **per-sample**
loss, shape (B,), unweighted; the trainer adds ``weight * loss`` to each
sample's cross-entropy and averages over the batch (as the original's
MakeLoss / SoftmaxOutput with ``grad_scale=weight`` and an optimizer that
rescales by 1/batch). Teacher inputs never receive gradients.

Notation: a feature map of one sample is F (C, H, W), read as a C x N matrix
with N = H*W; ``norm(v) = v / max(||v||_2, 1e-12)``. Where student and
teacher maps differ in H x W, the larger one is adaptive-average-pooled to the
smaller first (NST, AT, FitNet, OFD, FSP). Shape-dependent choices (pooling,
the cheaper NST form) are made from the first NDArray call and remade when
the shapes change.

Adding a method: write one loss block and add one `METHODS` entry.
"""
import math
from collections import OrderedDict, namedtuple

from mxnet import ndarray as nd
from mxnet.gluon import nn, HybridBlock

from .common import batch_norm

NORM_EPS = 1e-12


class PairingError(ValueError):
    """Student and teacher outputs that a loss cannot pair."""


def _rows(F, x):
    """(B, C, H, W) -> (B, C, H*W) with each row L2-normalised.

    MXNet's fused L2Normalization on the (B*C, H*W) matrix ('instance' mode:
    measured 1.7x faster forward + backward than its 'spatial' mode on the
    same rows) computes v / sqrt(||v||^2 + 1e-24): the definition's
    v / max(||v||, 1e-12) for every row but those with a norm below 1e-10
    (a zero row stays zero).
    """
    x = F.reshape(x, shape=(0, 0, -1))
    rows = F.L2Normalization(F.reshape(x, shape=(-3, -1)), mode='instance', eps=NORM_EPS ** 2)
    return F.reshape_like(rows, x)


def _rows_original(F, x):
    """The original NST code's normalisation: L2Normalization(mode='spatial', eps=1e-10)."""
    return F.reshape(F.L2Normalization(x, mode='spatial', eps=1e-10), shape=(0, 0, -1))


def _pool_to(F, x, size):
    return x if size is None else F.contrib.AdaptiveAvgPooling2D(x, output_size=size)


class ShapedLoss(HybridBlock):
    """Base of the feature losses: shape checks and spatial matching.

    `_configure(shapes)` receives the per-sample shapes of the NDArray inputs
    on the first call (and whenever they change); it validates them and sets
    the static attributes `hybrid_forward` relies on. Symbol callers must call
    `prepare(*shapes)` first.
    """

    def __init__(self, **kwargs):
        super(ShapedLoss, self).__init__(**kwargs)
        self._shapes = None

    def prepare(self, *shapes):
        shapes = tuple(tuple(s) for s in shapes)
        if shapes != self._shapes:
            self._configure(shapes)
            self._shapes = shapes
            self._clear_cached_op()

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):
            self.prepare(*[a.shape[1:] for a in (x,) + args if isinstance(a, nd.NDArray)])
        return super(ShapedLoss, self).forward(x, *args)

    def _configure(self, shapes):
        raise NotImplementedError

    def _match_spatial(self, s_shape, t_shape, what):
        """Set self._ps / self._pt: the size each side is pooled to (or None)."""
        if len(s_shape) != 3 or len(t_shape) != 3:
            raise PairingError('%s needs 4-D feature maps (B, C, H, W); got per-sample shapes %s and %s'
                               % (what, s_shape, t_shape))
        size = (min(s_shape[1], t_shape[1]), min(s_shape[2], t_shape[2]))
        self._ps = size if tuple(s_shape[1:]) != size else None
        self._pt = size if tuple(t_shape[1:]) != size else None
        return size


class KDLoss(HybridBlock):
    """Hinton's KD: KL(softmax(t/T) || softmax(s/T)) per sample.

    Inputs: student and teacher logits (B, K). Output (B,). With weight w its
    gradient w.r.t. s is w/T * (softmax(s/T) - softmax(t/T)), that of the
    original's ``SoftmaxOutput(s/T, label=softmax(t/T), grad_scale=w)``.
    """

    def __init__(self, temperature=4.0, **kwargs):
        super(KDLoss, self).__init__(**kwargs)
        self.temperature = float(temperature)

    def forward(self, s, t):
        if isinstance(s, nd.NDArray) and s.shape[1:] != t.shape[1:]:
            raise PairingError('KD needs student and teacher logits with the same number of classes; '
                               'got %d and %d' % (s.shape[1], t.shape[1]))
        return super(KDLoss, self).forward(s, t)

    def hybrid_forward(self, F, s, t):
        t = F.stop_gradient(t) / self.temperature
        log_pt = F.log_softmax(t, axis=1)
        log_ps = F.log_softmax(s / self.temperature, axis=1)
        return F.sum(F.exp(log_pt) * (log_pt - log_ps), axis=1)


class NSTLoss(ShapedLoss):
    """Neuron Selectivity Transfer: MMD^2 between the normalised channel rows.

    With s_j (j < Cs) and t_i (i < Ct) the L2-normalised rows of the student
    and teacher maps (eq. 4 of the paper, all three terms):

        MMD^2 = mean_{i,i'} k(t_i, t_i') + mean_{j,j'} k(s_j, s_j')
                - 2 mean_{i,j} k(t_i, s_j)

    Kernels: 'linear' x.y; 'poly' (x.y + c)^d; 'gaussian'
    exp(-||x-y||^2 / (2 sigma^2)), sigma^2 the mean squared distance over all
    pairs a != b of the pooled teacher and student rows (no gradient), or
    the fixed `sigma2` when one is given.

    Speed: for 'poly' with d = 2 the sums of squared dot products come from
    whichever Gram matrices are smaller: sum_{i,j} (t_i.s_j)^2 = <T^T T,
    S^T S>_F with N x N matrices when N < Cs + Ct (then the whole d = 2 term
    is ||T^T T / Ct - S^T S / Cs||_F^2), else from the C x C ones; the c
    terms use channel sums. No B x C x C x N tensor is ever built.
    """

    KERNELS = ('linear', 'poly', 'gaussian')

    def __init__(self, kernel='poly', degree=2, c=0.0, sigma2=None, **kwargs):
        super(NSTLoss, self).__init__(**kwargs)
        self.sigma2 = None if sigma2 is None else float(sigma2)  # fixed bandwidth (Gaussian)
        if kernel not in self.KERNELS:
            raise ValueError('NST kernel must be one of %s, got %r' % (self.KERNELS, kernel))
        if int(degree) != degree or degree < 1:
            raise ValueError('NST poly degree must be a positive integer, got %r' % (degree,))
        self.kernel, self.degree, self.c = kernel, int(degree), float(c)
        self.form = None

    def _configure(self, shapes):
        if len(shapes) != 2:
            raise PairingError('NST takes a student and a teacher feature map')
        s_shape, t_shape = shapes
        size = self._match_spatial(s_shape, t_shape, 'NST')
        self._cs, self._ct = s_shape[0], t_shape[0]
        n = size[0] * size[1]
        if self.kernel == 'poly' and self.degree == 2:
            self.form = 'gram' if n < self._cs + self._ct else 'channel'
        else:
            self.form = 'channel'

    def hybrid_forward(self, F, s, t):
        S = _rows(F, _pool_to(F, s, self._ps))
        T = _rows(F, _pool_to(F, F.stop_gradient(t), self._pt))
        cs, ct = float(self._cs), float(self._ct)
        if self.kernel == 'linear':
            # mean_{i,j} t_i.s_j = mean_i t_i . mean_j s_j: MMD^2 = ||mean t - mean s||^2
            diff = F.mean(T, axis=1) - F.mean(S, axis=1)
            return F.sum(F.square(diff), axis=1)
        if self.kernel == 'poly' and self.degree == 2:
            if self.form == 'gram':
                # ptt/ct^2 + pss/cs^2 - 2 pts/(cs ct) = ||T^T T / ct - S^T S / cs||_F^2 (N x N)
                gs = F.batch_dot(S, S, transpose_a=True) / cs
                gt = F.batch_dot(T, T, transpose_a=True) / ct
                loss = F.sum(F.square(gt - gs), axis=(1, 2))
            else:
                pss = F.sum(F.square(F.batch_dot(S, S, transpose_b=True)), axis=(1, 2))
                ptt = F.sum(F.square(F.batch_dot(T, T, transpose_b=True)), axis=(1, 2))
                pts = F.sum(F.square(F.batch_dot(T, S, transpose_b=True)), axis=(1, 2))
                loss = ptt / (ct * ct) + pss / (cs * cs) - 2 * pts / (cs * ct)
            if self.c != 0:
                ss, st = F.sum(S, axis=1), F.sum(T, axis=1)
                qss = F.sum(F.square(ss), axis=1)
                qtt = F.sum(F.square(st), axis=1)
                qts = F.sum(ss * st, axis=1)
                loss = loss + 2 * self.c * (qtt / (ct * ct) + qss / (cs * cs) - 2 * qts / (cs * ct))
            return loss
        kss = F.batch_dot(S, S, transpose_b=True)
        ktt = F.batch_dot(T, T, transpose_b=True)
        kts = F.batch_dot(T, S, transpose_b=True)
        if self.kernel == 'poly':
            kss, ktt, kts = [F.power(k + self.c, self.degree) for k in (kss, ktt, kts)]
        else:
            ns = F.sum(F.square(S), axis=2)          # (B, Cs) squared row norms
            nt = F.sum(F.square(T), axis=2)          # (B, Ct)
            dss = F.broadcast_add(F.expand_dims(ns, 2), F.expand_dims(ns, 1)) - 2 * kss
            dtt = F.broadcast_add(F.expand_dims(nt, 2), F.expand_dims(nt, 1)) - 2 * ktt
            dts = F.broadcast_add(F.expand_dims(nt, 2), F.expand_dims(ns, 1)) - 2 * kts
            m = cs + ct
            total = F.sum(dss, axis=(1, 2)) + F.sum(dtt, axis=(1, 2)) + 2 * F.sum(dts, axis=(1, 2))
            sigma2 = F.stop_gradient(F.maximum(total / (m * (m - 1)), NORM_EPS))
            if self.sigma2 is not None:
                sigma2 = F.ones_like(sigma2) * self.sigma2
            scale = F.reshape(-0.5 / sigma2, shape=(-1, 1, 1))
            kss, ktt, kts = [F.exp(F.broadcast_mul(d, scale)) for d in (dss, dtt, dts)]
        return (F.mean(ktt, axis=(1, 2)) + F.mean(kss, axis=(1, 2))
                - 2 * F.mean(kts, axis=(1, 2)))


class OriginalNSTPolyLoss(ShapedLoss):
    """The original NST code's poly-kernel loss, kept as a reference.

    mean_{j,j'} (s_j.s_j' + c)^2 - 2 mean_{i,j} (s_j.t_i + c)^2, built from
    the C x C matrices with ``batch_dot`` and without the teacher-teacher term
    (a constant): the same gradient as `NSTLoss('poly', 2, c)`, slower.
    """

    def __init__(self, c=0.0, **kwargs):
        super(OriginalNSTPolyLoss, self).__init__(**kwargs)
        self.c = float(c)

    def _configure(self, shapes):
        self._match_spatial(shapes[0], shapes[1], 'NST')

    def hybrid_forward(self, F, s, t):
        S = _rows_original(F, _pool_to(F, s, self._ps))
        T = _rows_original(F, _pool_to(F, F.stop_gradient(t), self._pt))
        ss = F.mean(F.square(F.batch_dot(S, S, transpose_b=True) + self.c), axis=(1, 2))
        ts = F.mean(F.square(F.batch_dot(S, T, transpose_b=True) + self.c), axis=(1, 2))
        return ss - 2 * ts


class ATLoss(ShapedLoss):
    """Attention transfer: mean over N of (a_s - a_t)^2, a(F) = norm(mean_c |F|^p)."""

    def __init__(self, p=2, **kwargs):
        super(ATLoss, self).__init__(**kwargs)
        self.p = float(p)

    def _configure(self, shapes):
        self._match_spatial(shapes[0], shapes[1], 'AT')

    def _attention(self, F, x):
        a = F.mean(F.power(F.abs(x), self.p), axis=1)          # (B, H, W)
        return F.L2Normalization(F.reshape(a, shape=(0, -1)), mode='instance', eps=NORM_EPS ** 2)

    def hybrid_forward(self, F, s, t):
        a_s = self._attention(F, _pool_to(F, s, self._ps))
        a_t = self._attention(F, _pool_to(F, F.stop_gradient(t), self._pt))
        return F.mean(F.square(a_s - a_t), axis=1)


class FitNetLoss(ShapedLoss):
    """FitNet hint loss: mean over C*H*W of (regressed student - teacher)^2."""

    def _configure(self, shapes):
        s_shape, t_shape = shapes
        self._match_spatial(s_shape, t_shape, 'FitNet')
        if s_shape[0] != t_shape[0]:
            raise PairingError('FitNet needs the regressed student map to have the teacher\'s %d channels, '
                               'got %d: put a connector (conv + BN) on the student side'
                               % (t_shape[0], s_shape[0]))

    def hybrid_forward(self, F, s, t):
        d = _pool_to(F, s, self._ps) - _pool_to(F, F.stop_gradient(t), self._pt)
        return F.mean(F.square(d), axis=(1, 2, 3))


class FSPLoss(ShapedLoss):
    """Flow of Solution Procedure: mean of (G_s - G_t)^2, G(X, Y) = X Y^T / N.

    Inputs: student maps a, b and teacher maps a, b (B, C, H, W); the four are
    pooled to the smallest H x W among them. G is Ca x Cb; student and teacher
    channel counts must agree layer by layer.
    """

    def _configure(self, shapes):
        if len(shapes) != 4 or any(len(s) != 3 for s in shapes):
            raise PairingError('FSP takes four 4-D maps: student a, student b, teacher a, teacher b')
        sa, sb, ta, tb = shapes
        if sa[0] != ta[0] or sb[0] != tb[0]:
            raise PairingError('FSP needs equal student and teacher channel counts per layer; got student '
                               '(%d, %d) and teacher (%d, %d): choose taps whose channels agree'
                               % (sa[0], sb[0], ta[0], tb[0]))
        size = (min(s[1] for s in shapes), min(s[2] for s in shapes))
        self._pools = [size if tuple(s[1:]) != size else None for s in shapes]
        self._n = float(size[0] * size[1])

    def _gram(self, F, a, b):
        a = F.reshape(a, shape=(0, 0, -1))
        b = F.reshape(b, shape=(0, 0, -1))
        return F.batch_dot(a, b, transpose_b=True) / self._n

    def hybrid_forward(self, F, sa, sb, ta, tb):
        sa, sb = _pool_to(F, sa, self._pools[0]), _pool_to(F, sb, self._pools[1])
        ta = _pool_to(F, F.stop_gradient(ta), self._pools[2])
        tb = _pool_to(F, F.stop_gradient(tb), self._pools[3])
        return F.mean(F.square(self._gram(F, sa, sb) - self._gram(F, ta, tb)), axis=(1, 2))


class OFDLoss(ShapedLoss):
    """Overhaul of Feature Distillation: partial L2 to a margin-clipped teacher.

    target = max(t, m_c); loss = sum over C*H*W of (s - target)^2 where not
    (s <= target and target <= 0). Inputs: connected student map (B, C, H, W),
    teacher pre-ReLU map (B, C, H', W'), margin (C,).
    """

    def _configure(self, shapes):
        s_shape, t_shape = shapes[0], shapes[1]
        self._match_spatial(s_shape, t_shape, 'OFD')
        if s_shape[0] != t_shape[0]:
            raise PairingError('OFD needs the connected student map to have the teacher\'s %d channels, '
                               'got %d' % (t_shape[0], s_shape[0]))

    def forward(self, s, t, margin):
        if isinstance(margin, nd.NDArray) and isinstance(t, nd.NDArray) and margin.size != t.shape[1]:
            raise PairingError('OFD margin has %d values for a teacher map of %d channels'
                               % (margin.size, t.shape[1]))
        return super(OFDLoss, self).forward(s, t, margin)

    def hybrid_forward(self, F, s, t, margin):
        s = _pool_to(F, s, self._ps)
        t = _pool_to(F, F.stop_gradient(t), self._pt)
        target = F.broadcast_maximum(t, F.reshape(F.stop_gradient(margin), shape=(1, -1, 1, 1)))
        keep = 1 - (s <= target) * (target <= 0)
        return F.sum(F.square(s - target) * keep, axis=(1, 2, 3))


def ofd_margin(gamma, beta):
    """Per-channel OFD margin from a teacher BatchNorm's gamma and beta.

    m = beta - |gamma| phi(beta/|gamma|) / Phi(-beta/|gamma|) where
    Phi(-beta/|gamma|) > 0.001, else -3 |gamma| (phi, Phi: standard normal
    density and distribution): the expectation of the pre-ReLU response given
    that it is negative. Inputs and output: 1-D numpy arrays.
    """
    import numpy as np
    gamma = np.abs(np.asarray(gamma, dtype=np.float64))
    beta = np.asarray(beta, dtype=np.float64)
    out = np.empty_like(beta)
    for i, (s, m) in enumerate(zip(gamma, beta)):
        s = max(s, 1e-12)
        tail = 0.5 * math.erfc((m / s) / math.sqrt(2.0))          # Phi(-m/s)
        if tail > 0.001:
            out[i] = m - s * math.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi) / tail
        else:
            out[i] = -3 * s
    return out.astype(np.float32)


class Connector(HybridBlock):
    """Student-side regressor to the teacher's channels: 1x1 conv + BN.

    Trained with the student, saved in its training checkpoints, left out of
    the exported student.
    """

    def __init__(self, out_channels, in_channels=0, **kwargs):
        super(Connector, self).__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(out_channels, 1, use_bias=False, in_channels=in_channels)
            self.bn = batch_norm()

    def hybrid_forward(self, F, x):
        return self.bn(self.conv(x))


# ---------------------------------------------------------------------------
# Registry: one entry a method.
#   inputs: 'logits' (student, teacher logits), 'feature' (one student and one
#           teacher map per pair), 'fsp' (two maps per net per pair);
#   connector: the student map goes through a Connector to the teacher's
#           channels first; margin: the loss also takes the OFD margin;
#   weight: the paper's weight; make(cfg): the loss block from the config.
Method = namedtuple('Method', 'name inputs connector margin weight make')

METHODS = OrderedDict()
METHODS['kd'] = Method('kd', 'logits', False, False, 16.0, lambda c: KDLoss(c.get('kd_t', 4.0)))
METHODS['fitnet'] = Method('fitnet', 'feature', True, False, 100.0, lambda c: FitNetLoss())
METHODS['at'] = Method('at', 'feature', False, False, 1000.0, lambda c: ATLoss(c.get('at_p', 2)))
METHODS['mmd'] = Method('mmd', 'feature', False, False, 50.0,
                        lambda c: NSTLoss(c.get('mmd_kernel', 'poly'), c.get('mmd_degree', 2),
                                          c.get('mmd_c', 0.0)))
METHODS['fsp'] = Method('fsp', 'fsp', False, False, 1.0, lambda c: FSPLoss())
METHODS['ofd'] = Method('ofd', 'feature', True, True, 1e-3, lambda c: OFDLoss())
ALIASES = {'nst': 'mmd'}


def canonical_method(name):
    """'nst' -> 'mmd'; unknown names raise ValueError listing the methods."""
    name = ALIASES.get(name, name)
    if name not in METHODS:
        raise ValueError('unknown transfer method %r; available: %s (nst is an alias of mmd)'
                         % (name, ', '.join(METHODS)))
    return name


def parse_kt_type(kt_type):
    """'kd+mmd' -> ['kd', 'mmd'] (aliases resolved, duplicates rejected)."""
    names = [canonical_method(p.strip()) for p in str(kt_type).split('+') if p.strip()]
    if not names:
        raise ValueError('kt_type is empty; use e.g. "kd", "mmd" or "kd+mmd"')
    if len(set(names)) != len(names):
        raise ValueError('kt_type %r names a method twice' % kt_type)
    return names


def default_weight(method, kernel='poly'):
    """The paper's weight for `method` (NST: 50 for linear/poly, 100 for Gaussian)."""
    method = canonical_method(method)
    if method == 'mmd' and kernel == 'gaussian':
        return 100.0
    return METHODS[method].weight
