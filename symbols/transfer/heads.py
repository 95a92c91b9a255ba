"""Losses with trainable heads: CC (embedding heads), VID (regressor and per-channel
variance) and ReviewKD (attention-based fusion modules).

Each is a `HeadLoss` (see `base`): its registry entry declares ``heads=True``, and
`core.distiller.DistillBlock` then keeps the block in its `Extras` (trained with the student,
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

from .base import HeadLoss, PairingError, _normalize, _pool_to


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
            raise ValueError('VID init_pred_var must exceed eps (%g), got %r' % (eps, init_pred_var))
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
        var = F.reshape(F.Activation(log_scale, act_type='softrelu') + self.eps, shape=(1, -1, 1, 1))
        nlp = 0.5 * F.broadcast_add(F.broadcast_div(F.square(mu - t), var), F.log(var))
        return F.mean(nlp, axis=(1, 2, 3))


def _nearest(F, x, src, dst):
    """PyTorch's ``F.interpolate(x, dst, mode='nearest')`` for static sizes src -> dst (H, W):
    output index j reads input floor(j * src / dst), per axis; built from ``repeat`` (by
    dst / g) and a strided slice (step src / g), g = gcd(src, dst)."""
    for axis, (a, b) in zip((2, 3), zip(src, dst)):
        if a == b:
            continue
        g = math.gcd(a, b)
        if b // g > 1:
            x = F.repeat(x, repeats=b // g, axis=axis)
        if a // g > 1:
            step = [1, 1, 1, 1]
            step[axis] = a // g
            x = F.slice(x, begin=(None,) * 4, end=(None,) * 4, step=tuple(step))
    return x


class _ABF(nn.HybridBlock):
    """ReviewKD's attention-based fusion module (its children only; `ReviewKDLoss` runs it):
    conv1 = 1x1 conv + BN to `mid`; att = 1x1 conv (2 outputs, with bias) + sigmoid when it
    fuses a deeper residual; conv2 = 3x3 conv + BN to the teacher's channels."""

    def __init__(self, in_channels, mid_channels, out_channels, fuse, **kwargs):
        super(_ABF, self).__init__(**kwargs)
        kaiming_a1 = lambda fan_in: math.sqrt(3.0 / fan_in)           # kaiming_uniform_(a=1)
        with self.name_scope():
            self.conv1 = nn.HybridSequential()
            with self.conv1.name_scope():
                self.conv1.add(_torch_conv(mid_channels, 1, in_channels, False, bound=kaiming_a1(in_channels)),
                               _torch_bn(mid_channels))
            self.conv2 = nn.HybridSequential()
            with self.conv2.name_scope():
                self.conv2.add(_torch_conv(out_channels, 3, mid_channels, False, padding=1,
                                           bound=kaiming_a1(9 * mid_channels)),
                               _torch_bn(out_channels))
            self.att = None
            if fuse:
                self.att = nn.HybridSequential()
                with self.att.name_scope():
                    self.att.add(_torch_conv(2, 1, 2 * mid_channels, True), nn.Activation('sigmoid'))

    def hybrid_forward(self, F, x):
        raise NotImplementedError('ReviewKDLoss runs the ABF modules step by step')


class ReviewKDLoss(HeadLoss):
    """Knowledge Review (Chen et al., CVPR 2021; mdistiller's ``ReviewKD`` with ``hcl_loss``).

    Inputs: student taps 1..n then teacher taps 1..n (n >= 1), listed from the shallowest to
    the deepest stage, each a map (B, C, H, W) or a vector (B, D), taken as a (B, D, 1, 1)
    map (mdistiller: the student's post-ReLU stage outputs and pooled feature, the teacher's
    pre-ReLU stage outputs and pooled feature, e.g. [stage1, stage2, stage3, pool] and
    [stage1_pre, stage2_pre, stage3_pre, pool]). Output (B,).

    Heads: one ABF per stage i (in_channels: the student's C_i, out_channels: the teacher's
    C_i, mid = min(512, C of the deepest student tap) as mdistiller's unless `mid_channels`).
    From the deepest stage to the shallowest:

        x = BN(conv1x1(s_i))                                          (mid channels)
        if i is not the deepest: y = nearest-resize(residual, s_i's H x W)
                                 z = sigmoid(conv1x1([x, y]))          (2 maps)
                                 x = x * z_0 + y * z_1
        x = nearest-resize(x, t_i's H x W);  residual = x;  out_i = BN(conv3x3(x))

    and the hierarchical context loss per stage, with P_l adaptive average pooling to l x l
    and MSE the mean over C*H*W of one sample, for the levels l in (4, 2, 1) with l < H:

        hcl_i = (MSE(out_i, t_i) + sum_k 2^-k MSE(P_lk(out_i), P_lk(t_i))) / (1 + sum_k 2^-k)
        loss_b = sum_i hcl_i                     (k = 1, 2, ... over the levels used)

    whose batch mean is mdistiller's ``hcl_loss`` (an 8 x 8 stage: weights 1, 1/2, 1/4, 1/8
    over 1.875; a 1 x 1 stage: the MSE alone). The ABFs' BatchNorms use batch statistics
    while training, so a sample's value then depends on its device's batch. mdistiller's
    weight (``REVIEWKD_WEIGHT`` 1, CIFAR ResNet-32x4 -> 8x4: 5) and its warm-up
    min(epoch / 20, 1) are the registry entry's weight and ``warmup_epochs``.
    """

    def __init__(self, mid_channels=None, max_mid_channels=512, levels=(4, 2, 1), **kwargs):
        super(ReviewKDLoss, self).__init__(**kwargs)
        self.mid_channels = None if mid_channels is None else int(mid_channels)
        self.max_mid_channels = int(max_mid_channels)
        self.levels = tuple(int(l) for l in levels)

    def _configure(self, shapes):
        n = len(shapes) // 2
        if len(shapes) % 2 or n < 1 or any(len(s) not in (1, 3) for s in shapes):
            raise PairingError('ReviewKD takes student taps 1..n then teacher taps 1..n, each a map (B, C, H, W) or '
                               'a vector (B, D); got per-sample shapes %s' % (shapes,))
        maps = [tuple(s) if len(s) == 3 else (s[0], 1, 1) for s in shapes]
        self._vector = [len(s) == 1 for s in shapes]
        s_maps, t_maps = maps[:n], maps[n:]
        self._check_built('ReviewKD', (tuple(s[0] for s in s_maps), tuple(t[0] for t in t_maps)))
        self._s_size = [s[1:] for s in s_maps]
        self._t_size = [t[1:] for t in t_maps]
        self._levels = [[l for l in self.levels if l < t[1]] for t in t_maps]

    def _build(self, shapes):
        s_channels, t_channels = self._signature
        n = len(s_channels)
        mid = self.mid_channels or min(self.max_mid_channels, s_channels[-1])
        for i in range(n):
            setattr(self, 'abf%d' % i, _ABF(s_channels[i], mid, t_channels[i], fuse=i < n - 1, prefix='abf%d_' % i))

    def _hcl(self, F, out, t, levels):
        loss = F.mean(F.square(out - t), axis=(1, 2, 3))
        cnt, tot = 1.0, 1.0
        for l in levels:
            cnt /= 2.0
            d = F.contrib.AdaptiveAvgPooling2D(out, output_size=(l, l)) - \
                F.contrib.AdaptiveAvgPooling2D(t, output_size=(l, l))
            loss = loss + cnt * F.mean(F.square(d), axis=(1, 2, 3))
            tot += cnt
        return loss / tot

    def hybrid_forward(self, F, *maps):
        n = len(maps) // 2
        maps = [F.reshape(x, shape=(0, 0, 1, 1)) if vec else x for x, vec in zip(maps, self._vector)]
        loss, residual = None, None
        for i in reversed(range(n)):
            abf = getattr(self, 'abf%d' % i)
            x = abf.conv1(maps[i])
            if abf.att is not None:
                y = _nearest(F, residual, self._t_size[i + 1], self._s_size[i])
                z = abf.att(F.concat(x, y, dim=1))
                x = F.broadcast_mul(x, F.slice_axis(z, axis=1, begin=0, end=1)) + \
                    F.broadcast_mul(y, F.slice_axis(z, axis=1, begin=1, end=2))
            residual = _nearest(F, x, self._s_size[i], self._t_size[i])
            out = abf.conv2(residual)
            term = self._hcl(F, out, F.stop_gradient(maps[n + i]), self._levels[i])
            loss = term if loss is None else loss + term
        return loss
