"""ReviewKD (Chen et al., CVPR 2021): the student's stages fused from the deepest up by
attention-based fusion (ABF) modules, compared with the teacher's stages by the hierarchical
context loss.

A `HeadLoss` (see `base`): its registry entry declares ``heads=True``, so the ABF modules live
in `tasks.classification.distiller.DistillBlock`'s `Extras` (trained with the student, saved in the
checkpoint's ``.extra.params``, left out of the export) and are built from the taps' shapes in
`connect`. Initialisers as the peer's (PyTorch's; the ABF convolutions' ``kaiming_uniform_(a=1)``).
"""
import math

from mxnet.gluon import nn

from .base import HeadLoss, PairingError, sample_sum
from .heads import _torch_conv, _torch_bn


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


def _spread(F, z, channels):
    """(B, 2, H, W) -> (B, 2 channels, H, W): channel 0 copied to the first `channels`, channel 1 to
    the others, as a 1x1 convolution with constant 0/1 weights. The same values as broadcasting z's
    channels in a product, but its backward is a matrix product: the backward of `broadcast_mul`
    reduces over the channels, which MXNet 1.9.1 does several times slower on CPU."""
    one = F.tile(F.ones_like(F.slice(z, begin=(0, 0, 0, 0), end=(1, 1, 1, 1))), reps=(channels, 1, 1, 1))  # z's dtype
    zero = F.zeros_like(one)
    weight = F.stop_gradient(F.concat(F.concat(one, zero, dim=1), F.concat(zero, one, dim=1), dim=0))
    return F.Convolution(z, weight, kernel=(1, 1), num_filter=2 * channels, no_bias=True)


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
        self._mid = mid
        for i in range(n):
            setattr(self, 'abf%d' % i, _ABF(s_channels[i], mid, t_channels[i], fuse=i < n - 1, prefix='abf%d_' % i))

    def _hcl(self, F, out, t, levels, size):
        """The hierarchical context loss of one stage, its maps of H x W `size`. A level l pools the
        previous level's m x m maps instead of the full maps when that is the same average (m divides
        H and W, and l divides m): three poolings of small maps instead of three of the full ones."""
        loss = sample_sum(F, F.square(out - t), mean=True, dtype=self.reduce_dtype)
        cnt, tot = 1.0, 1.0
        prev = None                          # (the last level when its blocks were equal, else None)
        for l in levels:
            cnt /= 2.0
            if prev is not None and prev % l == 0:
                out_l = F.contrib.AdaptiveAvgPooling2D(out_l, output_size=(l, l))
                t_l = F.contrib.AdaptiveAvgPooling2D(t_l, output_size=(l, l))
            else:
                out_l = F.contrib.AdaptiveAvgPooling2D(out, output_size=(l, l))
                t_l = F.contrib.AdaptiveAvgPooling2D(t, output_size=(l, l))
            prev = l if size[0] % l == 0 and size[1] % l == 0 else None
            loss = loss + cnt * F.mean(F.square(out_l - t_l), axis=(1, 2, 3))
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
                z = _spread(F, abf.att(F.concat(x, y, dim=1)), self._mid)       # (B, 2 mid, H, W)
                x = x * F.slice_axis(z, axis=1, begin=0, end=self._mid) + \
                    y * F.slice_axis(z, axis=1, begin=self._mid, end=2 * self._mid)
            residual = _nearest(F, x, self._s_size[i], self._t_size[i])
            out = abf.conv2(residual)
            term = self._hcl(F, out, F.stop_gradient(maps[n + i]), self._levels[i], self._t_size[i])
            loss = term if loss is None else loss + term
        return loss
