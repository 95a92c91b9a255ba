"""Losses with trainable heads: CC (embedding heads) and VID (regressor and per-channel
variance); the PyTorch-initialised layers the other head losses (review, staged,
contrastive) build theirs from.

Each is a `HeadLoss` (see `base`): its registry entry declares ``heads=True``, and
`tasks.classification.distiller.DistillBlock` then keeps the block in its `Extras` (trained with the student,
saved in the checkpoint's ``.extra.params``, restored on resume, left out of the export) and
builds its heads from the taps' per-sample shapes in `connect`, before the parameters are
initialised. The heads' initialisers are the peers' (PyTorch's): a Linear or Conv2d weight
and bias uniform in +-1/sqrt(fan_in) unless the peer sets another (ReviewKD's
``kaiming_uniform_(a=1)``: +-sqrt(3/fan_in)); they override the trainer's default Xavier.
Teacher inputs never receive gradients; the teacher-side heads (CC's teacher embedding) do.
"""
import math

from mxnet import init
from mxnet.gluon import nn

from .base import HeadLoss, PairingError, _normalize, _pool_to, sample_sum


def _torch_conv(channels, kernel, in_channels, use_bias, padding=0, bound=None):
    """A Conv2D initialised as PyTorch's nn.Conv2d (or with weights uniform in +-bound)."""
    fan_in = in_channels * kernel * kernel
    default = 1.0 / math.sqrt(fan_in)
    return nn.Conv2D(channels, kernel, padding=padding, use_bias=use_bias, in_channels=in_channels,
                     weight_initializer=init.Uniform(bound or default), bias_initializer=init.Uniform(default))


def _torch_dense(units, in_units):
    """A Dense initialised as PyTorch's nn.Linear."""
    bound = 1.0 / math.sqrt(in_units)
    return nn.Dense(units, in_units=in_units, weight_initializer=init.Uniform(bound),
                    bias_initializer=init.Uniform(bound))


def _torch_bn(channels):
    """PyTorch's BatchNorm2d defaults: eps 1e-5, momentum 0.1 (MXNet's 0.9)."""
    return nn.BatchNorm(epsilon=1e-5, momentum=0.9, in_channels=channels)


class CCLoss(HeadLoss):
    """Correlation Congruence (Peng et al., ICCV 2019; RepDistiller's ``Correlation`` with its
    embedding heads).

    Inputs: student and teacher taps (B, D) (a (B, C, H, W) tap is global-average-pooled
    first), typically the pooled features (RepDistiller's ``feat[-1]``). Output (B,). Heads:
    e_s = W_s x_s + b_s and e_t = W_t x_t + b_t (D_s, D_t -> `feat_dim`, default 128), both
    trained with the student (the teacher tap gets no gradient, its head does). RepDistiller's
    CIFAR script builds them as ``LinearEmbed`` (a Linear layer); ``normalize=True`` adds the
    L2 normalisation of its ``Embed`` (e / ||e||). With d_b = |e_s,b - e_t,b| (element-wise):

        loss = mean_{b < B-1} sum_k d_b,k d_b+1,k            (RepDistiller's batch value)
        loss_b = B / (B - 1) * sum_k d_b,k d_b+1,k  for b < B-1,  loss_B-1 = 0

    so the mean of the (B,) output is the peers' batch loss (0 for a batch of one, where
    theirs is NaN). Batch-relational: it pairs consecutive samples of the batch; under
    several devices each device's share is its own batch (as the peers' DataParallel).
    """

    def __init__(self, feat_dim=128, normalize=False, **kwargs):
        super(CCLoss, self).__init__(**kwargs)
        if int(feat_dim) != feat_dim or feat_dim < 1:
            raise ValueError('CC feat_dim must be a positive integer, got %r' % (feat_dim,))
        self.feat_dim, self.normalize = int(feat_dim), bool(normalize)

    def _configure(self, shapes):
        if len(shapes) != 2 or any(len(s) not in (1, 3) for s in shapes):
            raise PairingError('CC takes a student and a teacher tap, each a vector (B, D) or a map (B, C, H, W) '
                               'pooled globally; got per-sample shapes %s' % (shapes,))
        self._pool = [len(s) == 3 for s in shapes]
        self._check_built('CC', (shapes[0][0], shapes[1][0]))

    def _build(self, shapes):
        d_s, d_t = self._signature
        self.embed_s = _torch_dense(self.feat_dim, d_s)
        self.embed_t = _torch_dense(self.feat_dim, d_t)

    def _embed(self, F, dense, x, pool):
        e = dense(F.mean(x, axis=(2, 3)) if pool else x)
        return _normalize(F, e, axis=1) if self.normalize else e

    def hybrid_forward(self, F, s, t):
        d = F.abs(self._embed(F, self.embed_s, s, self._pool[0]) -
                  self._embed(F, self.embed_t, F.stop_gradient(t), self._pool[1]))     # (B, feat_dim)
        r = F.stop_gradient(F.contrib.arange_like(d, axis=0))                          # 0..B-1
        n = F.sum(F.ones_like(r))                                                      # B, shape (1,)
        after = F.take(d, F.broadcast_mod(r + 1, n), axis=0)                          # row b -> d_(b+1) mod B
        keep = F.stop_gradient(F.broadcast_lesser(r, n - 1))                           # drop the wrapped pair
        scale = F.stop_gradient(n / F.maximum(n - 1, F.ones_like(n)))
        return F.broadcast_mul(F.sum(d * after, axis=1) * keep, scale)


class VIDLoss(HeadLoss):
    """Variational Information Distillation (Ahn et al., CVPR 2019; RepDistiller's ``VIDLoss``,
    mdistiller's ``vid_loss``).

    Inputs: student map (B, Cs, H, W), teacher map (B, Ct, H', W'); the larger H x W is
    adaptive-average-pooled to the smaller first (the peers pool the student before the
    regressor, or the teacher). Output (B,). Heads, per layer pair as the peers' (one
    `VIDLoss` block per pair): the regressor mu = conv1x1(Ct) . ReLU . conv1x1(mid) . ReLU .
    conv1x1(mid) (no biases; mid = Ct as the peers' ``VIDLoss(s, t, t)`` unless
    `mid_channels`), and a per-channel log_scale (Ct,) initialised so that the variance
    starts at `init_pred_var` (log(exp(init_pred_var - eps) - 1)):

        var_c = softplus(log_scale_c) + eps
        loss_b = mean over C*H*W of 0.5 * (log var_c + (t - mu(s))^2 / var_c)

    whose batch mean is the peers' ``torch.mean(neg_log_prob)``. The peers apply it to
    several layer pairs (RepDistiller: the three stage outputs ``feat[1:-1]``) with weight 1
    each: their sum (``kt_layer_weight`` 1 per pair, or kt_weight = number of pairs with the
    default equal layer weights).
    """

    def __init__(self, init_pred_var=5.0, eps=1e-5, mid_channels=None, **kwargs):
        super(VIDLoss, self).__init__(**kwargs)
        if init_pred_var <= eps:
            raise PairingError('vid_init_pred_var (%r) must exceed vid_eps (%g): raise vid_init_pred_var or lower '
                               'vid_eps' % (init_pred_var, eps))
        self.init_pred_var, self.eps = float(init_pred_var), float(eps)
        self.mid_channels = None if mid_channels is None else int(mid_channels)

    def _configure(self, shapes):
        if len(shapes) != 2:
            raise PairingError('VID takes a student and a teacher feature map')
        self._match_spatial(shapes[0], shapes[1], 'VID')
        self._check_built('VID', (shapes[0][0], shapes[1][0]))

    def _build(self, shapes):
        c_s, c_t = self._signature
        mid = self.mid_channels or c_t
        self.regressor = nn.HybridSequential()
        with self.regressor.name_scope():
            self.regressor.add(_torch_conv(mid, 1, c_s, False), nn.Activation('relu'),
                               _torch_conv(mid, 1, mid, False), nn.Activation('relu'),
                               _torch_conv(c_t, 1, mid, False))
        self.log_scale = self.params.get(
            'log_scale', shape=(c_t,), init=init.Constant(math.log(math.expm1(self.init_pred_var - self.eps))))

    def hybrid_forward(self, F, s, t, log_scale):
        mu = self.regressor(_pool_to(F, s, self._ps))
        t = _pool_to(F, F.stop_gradient(t), self._pt)
        var = F.Activation(log_scale, act_type='softrelu') + self.eps                  # (C,)
        # mean over C*H*W of 0.5 (log var_c + d^2 / var_c) = 0.5 (mean_c log var_c + mean d^2 / var_c)
        scaled = F.broadcast_mul(mu - t, F.reshape(F.rsqrt(var), shape=(1, -1, 1, 1)))
        return 0.5 * F.broadcast_add(sample_sum(F, F.square(scaled), mean=True, dtype=self.reduce_dtype),
                                     F.mean(F.log(var), keepdims=True))
