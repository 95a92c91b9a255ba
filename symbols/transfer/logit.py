"""Logit losses: KD (Hinton), DKD (decoupled KD) and DIST.

Inputs are student and teacher logits (B, K) (DKD also the labels (B,));
outputs are per-sample (B,). Teacher logits never receive gradients.
"""
from mxnet import ndarray as nd
from mxnet.gluon import HybridBlock

from .base import PairingError, ShapedLoss, _norm, check_batch


def _check_logits(s, t, what):
    """PairingError unless NDArrays `s` and `t` are logits (B, K) of one batch and one class count."""
    if not isinstance(s, nd.NDArray):
        return                                   # (a Symbol: checked when the graph was built)
    if s.ndim != 2 or not isinstance(t, nd.NDArray) or t.ndim != 2:
        raise PairingError('%s takes student and teacher logits (B, K); got shapes %s and %s'
                           % (what, s.shape, getattr(t, 'shape', type(t).__name__)))
    check_batch(what, (s, t))
    if s.shape[1:] != t.shape[1:]:
        raise PairingError('%s needs student and teacher logits with the same number of classes; got %d and %d'
                           % (what, s.shape[1], t.shape[1]))


def _positive(value, what):
    if not float(value) > 0:
        raise ValueError('%s must be > 0, got %r' % (what, value))
    return float(value)


def _lse(F, x):
    """log sum_c exp(x_c) along axis 1, keepdims (stable)."""
    m = F.max(x, axis=1, keepdims=True)
    return m + F.log(F.sum(F.exp(F.broadcast_sub(x, m)), axis=1, keepdims=True))


def _cosine(F, a, b, axis, eps):
    """sum_axis norm(a) * norm(b), each norm clamped at eps (PyTorch >= 1.12's
    ``cosine_similarity(a, b, dim=axis, eps=eps)``)."""
    a = F.broadcast_div(a, _norm(F, a, axis, eps))
    return F.sum(a * F.broadcast_div(b, _norm(F, b, axis, eps)), axis=axis)


def _pearson(F, a, b, axis, eps):
    """The Pearson correlation of a and b along `axis`: the cosine of the centred vectors."""
    a = F.broadcast_sub(a, F.mean(a, axis=axis, keepdims=True))
    b = F.broadcast_sub(b, F.mean(b, axis=axis, keepdims=True))
    return _cosine(F, a, b, axis, eps)


class KDLoss(HybridBlock):
    """Hinton's KD: KL(softmax(t/T) || softmax(s/T)) per sample.

    Inputs: student and teacher logits (B, K). Output (B,). With weight w its
    gradient w.r.t. s is w/T * (softmax(s/T) - softmax(t/T)), that of the
    original's ``SoftmaxOutput(s/T, label=softmax(t/T), grad_scale=w)``.
    """

    def __init__(self, temperature=4.0, **kwargs):
        super(KDLoss, self).__init__(**kwargs)
        self.temperature = _positive(temperature, 'KD temperature')

    def forward(self, s, t):
        _check_logits(s, t, 'KD')
        return super(KDLoss, self).forward(s, t)

    def hybrid_forward(self, F, s, t):
        t = F.stop_gradient(t) / self.temperature
        log_pt = F.log_softmax(t, axis=1)
        log_ps = F.log_softmax(s / self.temperature, axis=1)
        return F.sum(F.exp(log_pt) * (log_pt - log_ps), axis=1)


class DKDLoss(ShapedLoss):
    """Decoupled KD (Zhao et al., CVPR 2022; mdistiller's ``dkd_loss(s, t, label,
    alpha, beta, temperature)`` per sample).

    Inputs: student logits s (B, K), teacher logits t (B, K), labels y (B,)
    (class indices, any dtype). Output (B,). With p = softmax(z/T), the binary
    b = (p_y, 1 - p_y) and p^ = softmax over the classes other than y (the
    peers' softmax(z/T - 1000 * onehot(y))):

        TCKD = KL(b_t || b_s),   NCKD = KL(p^_t || p^_s),
        loss = T^2 (alpha * TCKD + beta * NCKD)

    whose batch mean is the peers' value. log b and log p^ come from
    log-sum-exps of z/T, not from log(softmax): the same values, without the
    peers' -inf where a probability underflows. mdistiller multiplies the
    loss by the warm-up factor min(epoch / 20, 1) (epochs from 1); that factor
    is the registry entry's ``warmup_epochs``, applied by the trainer
    (`tasks.classification.distiller.DistillBlock.set_epoch`), not here.
    """

    def __init__(self, alpha=1.0, beta=8.0, temperature=4.0, **kwargs):
        super(DKDLoss, self).__init__(**kwargs)
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), _positive(temperature, 'DKD temperature')

    def _configure(self, shapes):
        if len(shapes) != 3 or len(shapes[0]) != 1 or len(shapes[1]) != 1 or len(shapes[2]) > 1 \
                or (len(shapes[2]) == 1 and shapes[2][0] != 1):
            raise PairingError('DKD takes student logits (B, K), teacher logits (B, K) and labels (B,); got '
                               'per-sample shapes %s' % (shapes,))
        if shapes[0] != shapes[1]:
            raise PairingError('DKD needs student and teacher logits with the same number of classes; '
                               'got %d and %d' % (shapes[0][0], shapes[1][0]))
        self._classes = shapes[0][0]

    def hybrid_forward(self, F, s, t, label):
        zs = s / self.temperature
        zt = F.stop_gradient(t) / self.temperature
        hot = F.one_hot(F.reshape(F.stop_gradient(label), shape=(-1,)), depth=self._classes)
        gt = F.stop_gradient(F.where(hot, F.ones_like(zs), F.zeros_like(zs)))
        ls, lt = F.log_softmax(zs, axis=1), F.log_softmax(zt, axis=1)
        ls_gt, lt_gt = F.sum(ls * gt, axis=1), F.sum(lt * gt, axis=1)                   # log p_y
        ls_other = F.reshape(_lse(F, ls - 1000.0 * gt), shape=(-1,))                     # log (1 - p_y)
        lt_other = F.reshape(_lse(F, lt - 1000.0 * gt), shape=(-1,))
        tckd = F.exp(lt_gt) * (lt_gt - ls_gt) + F.exp(lt_other) * (lt_other - ls_other)
        hs = F.log_softmax(zs - 1000.0 * gt, axis=1)
        ht = F.log_softmax(zt - 1000.0 * gt, axis=1)
        nckd = F.sum(F.exp(ht) * (ht - hs), axis=1)
        return (self.alpha * tckd + self.beta * nckd) * (self.temperature ** 2)


class DISTLoss(HybridBlock):
    """DIST (Huang et al., NeurIPS 2022; torchdistill's ``DISTLoss(beta, gamma, tau,
    eps=1e-8)``).

    Inputs: student and teacher logits (B, K). Output (B,). With
    y = softmax(z / tau) and rho the Pearson correlation (the cosine of the
    centred vectors, each norm clamped at eps):

        inter_b = 1 - rho(y_s[b, :], y_t[b, :])           (over the classes)
        intra   = 1 - mean_c rho(y_s[:, c], y_t[:, c])     (over the batch)
        loss_b  = tau^2 (beta * inter_b + gamma * intra)

    The batch mean is the peers' loss. The intra-class term is
    batch-relational: it is one number for the whole batch, added to every
    sample; under several devices each device's share is its own batch, as
    in the peers' DataParallel.
    """

    def __init__(self, beta=1.0, gamma=1.0, tau=1.0, eps=1e-8, **kwargs):
        super(DISTLoss, self).__init__(**kwargs)
        self.beta, self.gamma, self.tau, self.eps = float(beta), float(gamma), _positive(tau, 'DIST tau'), float(eps)

    def forward(self, s, t):
        _check_logits(s, t, 'DIST')
        return super(DISTLoss, self).forward(s, t)

    def hybrid_forward(self, F, s, t):
        ys = F.softmax(s / self.tau, axis=1)
        yt = F.softmax(F.stop_gradient(t) / self.tau, axis=1)
        inter = 1 - _pearson(F, ys, yt, 1, self.eps)                       # (B,)
        intra = 1 - F.mean(_pearson(F, ys, yt, 0, self.eps))               # (1,)
        return F.broadcast_add(self.beta * inter, self.gamma * intra) * (self.tau ** 2)
