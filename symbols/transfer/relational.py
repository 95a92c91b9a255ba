"""Batch-relational losses: SP, RKD and PKT.

Each compares how the samples of a batch relate to one another (B x B
similarity, distance or angle structures), so a sample's loss depends on the
whole batch. Every block returns a (B,) vector whose **mean** is the peers'
batch loss (a row of the B x B structure per sample); under several devices
each device's share is its own batch, as in the peers' DataParallel.
"""
from .base import NORM_EPS, PairingError, ShapedLoss, _eye, _flat, _norm, _normalize


class SPLoss(ShapedLoss):
    """Similarity-Preserving KD (Tung & Mori, ICCV 2019; RepDistiller's ``Similarity``).

    Inputs: student and teacher taps (B, ...), typically the last stage's maps
    (B, C, H, W); shapes may differ. Output (B,). With f (B, N) the flattened
    inputs, G = norm_rows(f f^T) (B x B, rows L2-normalised, eps 1e-12):

        loss_b = sum_j (G_s[b, j] - G_t[b, j])^2 / B

    whose batch mean is the peers' ||G_s - G_t||_F^2 / B^2.
    Batch-relational: under several devices each device's share is its own batch (as the
    peers' DataParallel).
    """

    def _configure(self, shapes):
        if len(shapes) != 2:
            raise PairingError('SP takes a student and a teacher tap')

    @staticmethod
    def _gram(F, x):
        x = _flat(F, x)
        return _normalize(F, F.dot(x, x, transpose_b=True), axis=1)

    def hybrid_forward(self, F, s, t):
        return F.mean(F.square(self._gram(F, F.stop_gradient(t)) - self._gram(F, s)), axis=1)


class _VectorLoss(ShapedLoss):
    """A loss on pooled vectors: a (B, D) tap is used as it is, a (B, C, H, W)
    tap is global-average-pooled to (B, C) first."""

    what = 'this method'

    def _configure(self, shapes):
        if len(shapes) != 2 or any(len(s) not in (1, 3) for s in shapes):
            raise PairingError('%s takes a student and a teacher tap, each a vector (B, D) or a map (B, C, H, W) '
                               'pooled globally; got per-sample shapes %s' % (self.what, shapes))
        self._pool = [len(s) == 3 for s in shapes]

    @staticmethod
    def _vector(F, x, pool):
        return F.mean(x, axis=(2, 3)) if pool else x


class RKDLoss(_VectorLoss):
    """Relational KD (Park et al., CVPR 2019; RepDistiller's ``RKDLoss(w_d=25, w_a=50)``).

    Inputs: student and teacher pooled features e (B, D) (a (B, C, H, W) tap
    is global-average-pooled first); D may differ. Output (B,).

    Distance: d_ij = sqrt(max(||e_i||^2 + ||e_j||^2 - 2 e_i.e_j, 1e-12)) for
    i != j, d_ii = 0, divided by its mean over the entries > 0 (all i != j).
    Angle: n_ij = norm(e_j - e_i) (eps 1e-12), a_ijk = n_ij . n_ik. With
    h the smooth-L1 (Huber, beta 1):

        loss_b = w_d * mean_j h(d_s,bj - d_t,bj) + w_a * mean_{j,k} h(a_s,bjk - a_t,bjk)

    whose batch mean is the peers' w_d * mean over B^2 + w_a * mean over B^3.
    The student's mean distance is a batch statistic and carries gradient.
    Batch-relational: under several devices each device's share is its own batch (as the
    peers' DataParallel).
    """

    what = 'RKD'

    def __init__(self, distance_weight=25.0, angle_weight=50.0, eps=1e-12, **kwargs):
        super(RKDLoss, self).__init__(**kwargs)
        self.distance_weight, self.angle_weight, self.eps = float(distance_weight), float(angle_weight), float(eps)

    def _distances(self, F, e, off):
        sq = F.sum(F.square(e), axis=1)
        d2 = F.broadcast_add(F.reshape(sq, shape=(-1, 1)), F.reshape(sq, shape=(1, -1))) \
            - 2 * F.dot(e, e, transpose_b=True)
        d = F.sqrt(F.maximum(d2, self.eps)) * off
        return F.broadcast_div(d, F.sum(d) / F.sum(d > 0))

    @staticmethod
    def _angles(F, e):
        diff = F.broadcast_sub(F.expand_dims(e, axis=0), F.expand_dims(e, axis=1))    # [i, j] = e_j - e_i
        n = _normalize(F, diff, axis=2, eps=NORM_EPS)
        return F.batch_dot(n, n, transpose_b=True)                                     # (B, B, B)

    def hybrid_forward(self, F, s, t):
        es = self._vector(F, s, self._pool[0])
        et = self._vector(F, F.stop_gradient(t), self._pool[1])
        off = 1 - _eye(F, es)
        loss_d = F.mean(F.smooth_l1(self._distances(F, es, off) - self._distances(F, et, off), scalar=1.0), axis=1)
        loss_a = F.mean(F.smooth_l1(self._angles(F, es) - self._angles(F, et), scalar=1.0), axis=(1, 2))
        return self.distance_weight * loss_d + self.angle_weight * loss_a


class PKTLoss(_VectorLoss):
    """Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018; RepDistiller's ``PKT``).

    Inputs: student and teacher pooled features (B, D) (a (B, C, H, W) tap is
    global-average-pooled first); D may differ. Output (B,). With
    x^ = x / (||x|| + eps), K = (x^ x^^T + 1) / 2 (cosines mapped to [0, 1]) and
    P = K / row sums (conditional probabilities), eps = 1e-7 (||x|| is taken as
    max(||x||, 1e-12), so that an all-zero feature has a zero gradient, not the
    peers' NaN):

        loss_b = mean_j P_t[b, j] * log((P_t[b, j] + eps) / (P_s[b, j] + eps))

    whose batch mean is the peers' mean over the B x B entries.
    Batch-relational: under several devices each device's share is its own batch (as the
    peers' DataParallel).
    """

    what = 'PKT'

    def __init__(self, eps=1e-7, **kwargs):
        super(PKTLoss, self).__init__(**kwargs)
        self.eps = float(eps)

    def _probabilities(self, F, x):
        # ||x|| as max(||x||, 1e-12): the same value but for x ~ 0, where the gradient stays finite
        x = F.broadcast_div(x, _norm(F, x, 1, NORM_EPS) + self.eps)
        k = (F.dot(x, x, transpose_b=True) + 1.0) / 2.0
        return F.broadcast_div(k, F.sum(k, axis=1, keepdims=True))

    def hybrid_forward(self, F, s, t):
        ps = self._probabilities(F, self._vector(F, s, self._pool[0]))
        pt = self._probabilities(F, self._vector(F, F.stop_gradient(t), self._pool[1]))
        return F.mean(pt * F.log((pt + self.eps) / (ps + self.eps)), axis=1)
