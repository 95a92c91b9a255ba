"""Feature-map losses: FitNet, AT, NST (MMD with linear / poly / Gaussian
kernels), FSP, OFD and KDSVD.

F is one sample's map (C, H, W) read as a C x N matrix with N = H*W. Where
student and teacher maps differ in H x W, the larger one is
adaptive-average-pooled to the smaller first (NST, AT, FitNet, OFD, FSP).
Shape-dependent choices (pooling, the cheaper NST form) are made from the
first NDArray call and remade when the shapes change.
"""
import math

from mxnet import ndarray as nd

from .base import NORM_EPS, PairingError, ShapedLoss, _normalize, _pool_to, _rows, _rows_original, channel_mean, \
    sample_sum


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
        a = channel_mean(F, F.square(x) if self.p == 2 else F.power(F.abs(x), self.p), self.reduce_dtype)  # (B, H*W)
        return F.L2Normalization(a, mode='instance', eps=NORM_EPS ** 2)

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
        return sample_sum(F, F.square(d), mean=True, dtype=self.reduce_dtype)


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
        if isinstance(margin, nd.NDArray):
            margin = margin.reshape((-1,))          # (C,) however it is shaped: it is no batch
        return super(OFDLoss, self).forward(s, t, margin)

    def hybrid_forward(self, F, s, t, margin):
        s = _pool_to(F, s, self._ps)
        t = _pool_to(F, F.stop_gradient(t), self._pt)
        target = F.broadcast_maximum(t, F.reshape(F.stop_gradient(margin), shape=(1, -1, 1, 1)))
        keep = 1 - (s <= target) * (target <= 0)
        return sample_sum(F, F.square(s - target) * keep, dtype=self.reduce_dtype)


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



class KDSVDLoss(ShapedLoss):
    """KD with SVD (Lee et al., ECCV 2018; RepDistiller's ``KDSVD(k=1)``).

    Inputs: student maps S_1..S_n then teacher maps T_1..T_n (n >= 2, each
    (B, C_i, H_i, W_i); student and teacher channels equal layer by layer,
    H x W free). Output (B,).

    Per sample and layer, X = F^T (N x C, N = H*W) and V_m (C,) its right
    singular vectors in order of decreasing singular value s_m: the teacher's
    first k, the student's first k + 3 (at most min(C, N)), each normalised;
    the teacher's k singular values are normalised, s~ = s / ||s||. Each
    teacher vector v_t,j is paired with the student vector of largest
    |cos(v_s, v_t,j)|, sign-flipped to agree with it; both are scaled by
    s~_j. Between consecutive layers i-1 and i, with the RBF
    r(a, b) = exp(-(a_c - b_c')^2 / 8) taken for every component pair
    (c of layer i, c' of layer i-1) and every j:

        loss = sum_{i >= 1} sum_{c, c', j} (r(v_s,i, v_s,i-1) - r(v_t,i, v_t,i-1))^2

    with non-finite terms set to 0 (the peers' ``removenan``); the peers'
    value is its mean over the batch.

    MXNet 1.9.1's ``F.linalg`` has no SVD (``gesvd`` is not in 1.9.1), but
    ``syevd`` with its gradient: the V_m are the eigenvectors of the C x C
    Gram matrix F F^T (``syrk``) and s_m^2 its eigenvalues, the same
    functions of F with the same derivatives. Singular vectors have no
    intrinsic sign and the loss compares a layer's teacher vector with the
    previous layer's, so its value depends on each teacher vector's sign (the
    peers' on whatever sign their LAPACK call returns): here every teacher
    vector is oriented so that its largest-magnitude component is positive.
    The student's sign never matters (it is aligned to the teacher's).
    """

    def __init__(self, k=1, **kwargs):
        super(KDSVDLoss, self).__init__(**kwargs)
        if int(k) != k or k < 1:
            raise ValueError('KDSVD k must be a positive integer, got %r' % (k,))
        self.k = int(k)

    def _configure(self, shapes):
        n = len(shapes) // 2
        if len(shapes) % 2 or n < 2 or any(len(s) != 3 for s in shapes):
            raise PairingError('KDSVD takes two or more 4-D maps (B, C, H, W) per net, student maps first; got '
                               'per-sample shapes %s' % (shapes,))
        s_shapes, t_shapes = shapes[:n], shapes[n:]
        for i, (s, t) in enumerate(zip(s_shapes, t_shapes)):
            if s[0] != t[0]:
                raise PairingError('KDSVD needs equal student and teacher channel counts layer by layer; layer %d '
                                   'has %d and %d: choose taps whose channels agree' % (i, s[0], t[0]))
        # (channels, vectors kept) of every map: at most min(C, H*W) singular vectors exist; consecutive layers
        # compare the teacher's k vectors pairwise, so every teacher map must have k
        most = min(min(t[0], t[1] * t[2]) for t in t_shapes)
        if self.k > most and len({min(self.k, t[0], t[1] * t[2]) for t in t_shapes}) > 1:     # (kept alike: fine)
            raise PairingError('KDSVD keeps %d singular vectors a tap (kdsvd_k=%d), but a teacher tap has only %d (at most '
                               'its channels and its positions; the taps are %s): set kdsvd_k to at most %d'
                               % (self.k, self.k, most, ', '.join('%dx%dx%d' % tuple(t) for t in t_shapes), most))
        self._s_dims = [(s[0], min(self.k + 3, s[0], s[1] * s[2])) for s in s_shapes]
        self._t_dims = [(t[0], min(self.k, t[0], t[1] * t[2])) for t in t_shapes]

    @staticmethod
    def _svd(F, x, channels, keep):
        """(B, C, H, W) -> normalised right singular vectors (B, C, keep) and singular
        values (B, keep), in decreasing order."""
        g = F.linalg.syrk(F.reshape(x, shape=(0, 0, -1)), transpose=False)       # (B, C, C) = F F^T
        u, lam = F.linalg.syevd(g)                     # rows of u: eigenvectors, eigenvalues ascending
        v = F.reverse(F.slice_axis(u, axis=1, begin=channels - keep, end=channels), axis=1)      # (B, keep, C)
        s = F.sqrt(F.relu(F.reverse(F.slice_axis(lam, axis=1, begin=channels - keep, end=channels), axis=1)))
        return _normalize(F, F.transpose(v, axes=(0, 2, 1)), axis=1), s

    @staticmethod
    def _rbf(F, a, b):
        """exp(-(a_c - b_c')^2 / 8): (B, Ca, k), (B, Cb, k) -> (B, Ca, Cb, k)."""
        d = F.broadcast_sub(F.expand_dims(a, axis=2), F.expand_dims(b, axis=1))
        return F.exp(-F.square(d) / 8.0)

    def hybrid_forward(self, F, *maps):
        n = len(maps) // 2
        loss, prev = None, None
        for i in range(n):
            v_t, s_t = self._svd(F, F.stop_gradient(maps[n + i]), *self._t_dims[i])
            v_s, _ = self._svd(F, maps[i], *self._s_dims[i])
            # orient each teacher vector: its largest-magnitude component positive
            top = F.pick(v_t, F.argmax(F.abs(v_t), axis=1), axis=1)                 # (B, k)
            v_t = F.broadcast_mul(v_t, F.expand_dims(F.where(top >= 0, F.ones_like(top), -F.ones_like(top)), 1))
            # align: the student vector of largest |cos| with each teacher vector, signed
            cos = F.batch_dot(v_s, v_t, transpose_a=True)                            # (B, k+3, k)
            best = F.max(F.abs(cos), axis=1, keepdims=True)
            mask = F.stop_gradient(F.broadcast_equal(F.abs(cos), best) * F.sign(cos))
            v_s = F.batch_dot(v_s, mask)                                             # (B, C, k)
            s_t = F.expand_dims(_normalize(F, s_t, axis=1), axis=1)                  # (B, 1, k)
            v_t, v_s = F.broadcast_mul(v_t, s_t), F.broadcast_mul(v_s, s_t)
            if prev is not None:
                d = F.square(self._rbf(F, v_s, prev[0]) - F.stop_gradient(self._rbf(F, v_t, prev[1])))
                d = F.where(F.stop_gradient(d - d == 0), d, F.zeros_like(d))       # finite: d - d == 0
                term = F.sum(d, axis=(1, 2, 3))
                loss = term if loss is None else loss + term
            prev = (v_s, v_t)
        return loss


def ofd_teacher_margin(teacher, tap, ctx):
    """OFD's teacher hook: the margin (C,) of teacher tap `tap`, from the BatchNorm that produces
    it (the tap itself, or the BatchNorm the network's TAP_BN names for it), read on device `ctx`.
    PairingError when the tap is not a BatchNorm output (a pre-ReLU *_pre tap is)."""
    from ..taps import resolve_tap, TapError
    base = getattr(teacher, 'base', teacher)
    bn_path = getattr(base, 'TAP_BN', {}).get(tap)
    try:
        bn, _ = resolve_tap(base, bn_path or tap)
    except TapError:
        bn = None
    params = {} if bn is None else {n.rsplit('_', 1)[-1]: p for n, p in bn.params.items()}
    if 'gamma' not in params or 'beta' not in params:
        raise PairingError('ofd needs a teacher tap that is a BatchNorm output (pre-ReLU); %r is not. Use a *_pre '
                           'tap' % tap)
    return ofd_margin(params['gamma'].data(ctx).asnumpy(), params['beta'].data(ctx).asnumpy())


class CWDLoss(ShapedLoss):
    """Channel-wise distillation (Shu et al., ICCV 2021; mmrazor's ChannelWiseDivergence):
    per sample, (tau^2 / C) * sum_c KL(p_t,c || p_s,c), where p_x,c = softmax over the H*W
    positions of channel c of map x / tau. Student and teacher maps (B, C, H, W) have the same C
    (logits of a dense task, or taps of equal width); a larger map is average-pooled to the
    smaller H x W first."""

    def __init__(self, tau=1.0, **kwargs):
        super(CWDLoss, self).__init__(**kwargs)
        self.tau = float(tau)

    def _configure(self, shapes):
        s_shape, t_shape = shapes
        self._match_spatial(s_shape, t_shape, 'CWD')
        if s_shape[0] != t_shape[0]:
            raise PairingError('CWD compares channel by channel, so the student and the teacher tap need the same '
                               'channels; got %d and %d: pair the logits (per-pixel class scores) or taps of equal '
                               'width' % (s_shape[0], t_shape[0]))

    def hybrid_forward(self, F, s, t):
        s = F.reshape(_pool_to(F, s, self._ps), shape=(0, 0, -1)) / self.tau          # (B, C, H*W)
        t = F.reshape(_pool_to(F, F.stop_gradient(t), self._pt), shape=(0, 0, -1)) / self.tau
        log_ps = F.log_softmax(s, axis=2)
        log_pt = F.log_softmax(t, axis=2)
        kl = F.sum(F.exp(log_pt) * (log_pt - log_ps), axis=2)                         # (B, C)
        return F.mean(kl, axis=1) * (self.tau ** 2)
