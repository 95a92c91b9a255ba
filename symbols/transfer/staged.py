"""Feature losses whose heads are trained in a stage before the main training (the stage is
declared in the registry entry, `base.Stage`, and run by the trainer):

- AB, Activation Boundaries (Heo et al., AAAI 2019; RepDistiller's ``ABLoss`` with its
  ``Connector``): the stage trains the student's layers up to the tapped pre-ReLU maps and the
  connectors on the AB loss alone; RepDistiller then trains with the classification loss only
  (its AB weight in the main training is 0), the connectors frozen;
- FT, Factor Transfer (Kim et al., NeurIPS 2018; RepDistiller's ``FactorTransfer(p1=2, p2=1)``
  with its ``Paraphraser`` and ``Translator``): the stage trains the teacher-side paraphraser
  as an auto-encoder of the teacher map; the main training trains the student-side translator,
  the paraphraser frozen.

Both are `HeadLoss`es: their heads are built from the taps' shapes, saved in the checkpoint's
``.extra.params`` and left out of the export. Initialisation as PyTorch's (Conv2d and
ConvTranspose2d weights and biases uniform in +-1/sqrt(fan_in), BatchNorm gamma 1, beta 0).
"""
import math

from mxnet import init
from mxnet.gluon import nn, HybridBlock

from .base import HeadLoss, PairingError, _normalize, _pool_to, channel_mean, freeze, sample_sum
from .heads import _torch_bn


def _pair(k):
    return tuple(k) if isinstance(k, (tuple, list)) else (k, k)


def _torch_conv(channels, kernel, in_channels, strides=1, padding=0, transpose=False):
    """A Conv2D (or Conv2DTranspose) with bias, initialised as PyTorch's nn.Conv2d
    (nn.ConvTranspose2d, whose fan-in counts the output channels: its weight is (in, out, k, k))."""
    kh, kw = _pair(kernel)
    bound = 1.0 / math.sqrt((channels if transpose else in_channels) * kh * kw)
    layer = nn.Conv2DTranspose if transpose else nn.Conv2D
    return layer(channels, (kh, kw), strides=strides, padding=padding, in_channels=in_channels,
                 weight_initializer=init.Uniform(bound), bias_initializer=init.Uniform(bound))


class _ConvBN(HybridBlock):
    """A convolution and a BatchNorm (PyTorch's defaults: eps 1e-5, momentum 0.1); `frozen` runs
    the BatchNorm on its running statistics (PyTorch's eval mode) whatever the autograd mode."""

    def __init__(self, conv, channels, **kwargs):
        super(_ConvBN, self).__init__(**kwargs)
        self.frozen = False
        with self.name_scope():
            self.conv = conv
            self.gamma = self.params.get('gamma', shape=(channels,), init='ones')
            self.beta = self.params.get('beta', shape=(channels,), init='zeros')
            self.running_mean = self.params.get('running_mean', shape=(channels,), init='zeros', grad_req='null',
                                                differentiable=False)
            self.running_var = self.params.get('running_var', shape=(channels,), init='ones', grad_req='null',
                                               differentiable=False)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        return F.BatchNorm(self.conv(x), gamma, beta, running_mean, running_var, eps=1e-5, momentum=0.9,
                           fix_gamma=False, use_global_stats=self.frozen, name='fwd')


def ab_connector_kind(s_shape, t_shape):
    """How RepDistiller's AB ``Connector`` maps a student map (C, H, W) onto the teacher's: None
    (identity) for equal shapes, else its ``ConvReg`` convolution: 'down' (3x3, stride 2, pad 1)
    for a student twice the teacher's size, 'up' (4x4 transposed, stride 2, pad 1) for half of
    it, 'valid' (kernel 1 + H_s - H_t by 1 + W_s - W_t) for a larger student; a smaller student
    otherwise cannot be mapped (PairingError)."""
    (hs, ws), (ht, wt) = s_shape[1:], t_shape[1:]
    if tuple(s_shape) == tuple(t_shape):
        return None
    if (hs, ws) == (2 * ht, 2 * wt):
        return 'down'
    if (2 * hs, 2 * ws) == (ht, wt):
        return 'up'
    if hs >= ht and ws >= wt:
        return 'valid'
    raise PairingError('AB maps a student map onto the teacher\'s by a convolution; a student map of %dx%d cannot '
                       'become the teacher\'s %dx%d (only twice as large or larger, or half as large): tap other '
                       'layers' % (hs, ws, ht, wt))


class ABLoss(HeadLoss):
    """Activation Boundaries (Heo et al., AAAI 2019; RepDistiller's ``ABLoss(n, margin=1)``).

    Inputs: the student's pre-ReLU maps 1..n then the teacher's 1..n (n >= 1, shallow to deep;
    RepDistiller: the three stage outputs before their last ReLU, ``preact=True``), each
    (B, C, H, W). Output (B,). Heads: per pair, RepDistiller's connector (`ab_connector_kind`:
    identity for equal shapes, else a convolution with bias and a BatchNorm). With c_i the
    connected student map, t_i the teacher's and margin m, summed over C*H*W of one sample:

        AB(c, t) = sum (c + m)^2 [c > -m and t <= 0] + (c - m)^2 [c <= m and t > 0]
        loss_b   = 3/1000 * sum_i 2^(i-n+1) AB(c_i, t_i)          (i = 0..n-1)

    whose batch mean is the sum of RepDistiller's per-layer values (sum / batch / 1000 * 3, the
    layer weights 2^(i-n+1)). The indicators carry no gradient. The registry's stage 'ab_init'
    trains the student's layers up to the taps and the connectors on this loss alone (RepDistiller's
    ``init``: 30 epochs at the run's lr), then `finish_stage` freezes the connectors (their
    BatchNorms on running statistics, as RepDistiller's eval mode). RepDistiller's main training
    then uses the classification loss alone, hence the registry weight 0; a positive weight adds
    this loss with the frozen connectors.
    """

    def __init__(self, margin=1.0, **kwargs):
        super(ABLoss, self).__init__(**kwargs)
        if not margin > 0:
            raise ValueError('AB margin must be positive, got %r' % (margin,))
        self.margin = float(margin)

    def _configure(self, shapes):
        n = len(shapes) // 2
        if len(shapes) % 2 or n < 1 or any(len(s) != 3 for s in shapes):
            raise PairingError('AB takes the student\'s pre-ReLU maps 1..n then the teacher\'s 1..n, each '
                               '(B, C, H, W); got per-sample shapes %s' % (shapes,))
        kinds = [ab_connector_kind(s, t) for s, t in zip(shapes[:n], shapes[n:])]
        # what the connectors depend on: the channels, the kind and a 'valid' kernel, not the map sizes
        # themselves (a detector's images, and so its maps, change size from image to image)
        signature = tuple((s[0], t[0], kind, (1 + s[1] - t[1], 1 + s[2] - t[2]) if kind == 'valid' else None)
                          for s, t, kind in zip(shapes[:n], shapes[n:], kinds))
        self._check_built('AB', signature)
        self._kinds = kinds

    def _build(self, shapes):
        for i, (cs, ct, kind, kernel) in enumerate(self._signature):
            if kind is None:
                continue
            if kind == 'down':
                conv = _torch_conv(ct, 3, cs, strides=2, padding=1)
            elif kind == 'up':
                conv = _torch_conv(ct, 4, cs, strides=2, padding=1, transpose=True)
            else:
                conv = _torch_conv(ct, kernel, cs)
            setattr(self, 'connector%d' % i, _ConvBN(conv, ct, prefix='connector%d_' % i))

    def finish_stage(self, name):
        for i, kind in enumerate(self._kinds):
            if kind is not None:
                connector = getattr(self, 'connector%d' % i)
                freeze(connector).frozen = True
                connector._clear_cached_op()
        self._clear_cached_op()

    def hybrid_forward(self, F, *maps):
        n = len(maps) // 2
        m = self.margin
        loss = None
        for i in range(n):
            c = maps[i] if self._kinds[i] is None else getattr(self, 'connector%d' % i)(maps[i])
            t = F.stop_gradient(maps[n + i])
            below = F.stop_gradient((c > -m) * (t <= 0))          # should be off, is not yet below -m
            above = F.stop_gradient((c <= m) * (t > 0))           # should be on, is not yet above m
            ab = F.sum(F.square(c + m) * below + F.square(c - m) * above, axis=(1, 2, 3))
            term = ab * (3e-3 * 2.0 ** (i - n + 1))
            loss = term if loss is None else loss + term
        return loss


class _LeakyReLU(HybridBlock):
    """max(x, slope x) for 0 < slope < 1: PyTorch's LeakyReLU. (MXNet's LeakyReLU computes the
    negative side of float64 inputs in float32 precision.)"""

    def __init__(self, slope=0.1, **kwargs):
        super(_LeakyReLU, self).__init__(**kwargs)
        self.slope = float(slope)

    def hybrid_forward(self, F, x):
        return F.maximum(x, x * self.slope)


def _leaky(block, *layers):
    """Add each layer to `block` followed by a LeakyReLU(0.1); returns `block`."""
    with block.name_scope():
        for layer in layers:
            block.add(layer, _LeakyReLU(0.1))
    return block


class _Paraphraser(HybridBlock):
    """RepDistiller's ``Paraphraser(t_shape, k, use_bn=False)``: encoder 3x3 convolutions
    C -> C -> m -> m and decoder 3x3 transposed convolutions m -> m -> C -> C (stride 1, padding
    1, with biases), each followed by a LeakyReLU(0.1). Its forward is FT's stage loss: per
    sample, the mean over C*H*W of (decoder(encoder(t)) - t)^2 (RepDistiller's ``nn.MSELoss``
    of the reconstruction, whose batch mean it is); the teacher map t gets no gradient."""

    def __init__(self, channels, factors, **kwargs):
        super(_Paraphraser, self).__init__(**kwargs)
        with self.name_scope():
            self.encoder = _leaky(nn.HybridSequential(prefix='encoder_'), _torch_conv(channels, 3, channels, padding=1),
                                  _torch_conv(factors, 3, channels, padding=1),
                                  _torch_conv(factors, 3, factors, padding=1))
            self.decoder = _leaky(nn.HybridSequential(prefix='decoder_'),
                                  _torch_conv(factors, 3, factors, padding=1, transpose=True),
                                  _torch_conv(channels, 3, factors, padding=1, transpose=True),
                                  _torch_conv(channels, 3, channels, padding=1, transpose=True))

    def hybrid_forward(self, F, t):
        t = F.stop_gradient(t)
        return F.mean(F.square(self.decoder(self.encoder(t)) - t), axis=(1, 2, 3))


def _translator(in_channels, factors):
    """RepDistiller's ``Translator(s_shape, t_shape, k, use_bn=True)``: 3x3 convolutions
    C_s -> C_s -> m -> m (with biases), each followed by a BatchNorm and a LeakyReLU(0.1)."""
    block = nn.HybridSequential(prefix='translator_')
    with block.name_scope():
        for cin, cout in ((in_channels, in_channels), (in_channels, factors), (factors, factors)):
            block.add(_torch_conv(cout, 3, cin, padding=1), _torch_bn(cout), _LeakyReLU(0.1))
    return block


class FTLoss(HeadLoss):
    """Factor Transfer (Kim et al., NeurIPS 2018; RepDistiller's ``FactorTransfer(p1, p2)`` with its
    ``Translator`` and ``Paraphraser``, rate k).

    Inputs: student map (B, C_s, H, W), teacher map (B, C_t, H', W') (RepDistiller: the last
    stage's outputs, ``feat[-2]``). Output (B,). Heads: the student's translator (C_s -> m,
    BatchNorms) and the teacher's paraphraser (C_t -> m -> C_t, no BatchNorm), m = int(k C_t),
    k = `rate` (0.5). With the factors f_s = translator(s) and f_t = encoder(t) (the larger
    H x W adaptive-average-pooled to the smaller, as RepDistiller pools the factors) and

        factor(f) = v / ||v||_2,   v = mean over channels of f^p1, flattened over H*W
        loss_b    = mean over H*W of |factor(f_s) - factor(f_t)|^p2     (p1 2, p2 1)

    whose batch mean is RepDistiller's factor loss (for p2 != 1 it takes the power of the
    signed difference, as RepDistiller). The registry's stage 'ft_init' first trains
    the paraphraser alone as an auto-encoder of the teacher map (`_Paraphraser`; RepDistiller:
    30 epochs at lr 0.01); `finish_stage` then freezes it, and the main training trains the
    translator (the paraphraser gets no gradient, as RepDistiller's, whose paraphraser is out
    of the optimizer).
    """

    def __init__(self, p1=2.0, p2=1.0, rate=0.5, **kwargs):
        super(FTLoss, self).__init__(**kwargs)
        if not p1 > 0 or not p2 > 0:
            raise ValueError('FT p1 and p2 must be positive, got %r and %r' % (p1, p2))
        if not 0 < rate <= 1:
            raise ValueError('FT rate (factor channels / teacher channels) must lie in (0, 1], got %r' % (rate,))
        self.p1, self.p2, self.rate = float(p1), float(p2), float(rate)

    def _configure(self, shapes):
        if len(shapes) != 2:
            raise PairingError('FT takes a student and a teacher feature map')
        self._match_spatial(shapes[0], shapes[1], 'FT')
        self._check_built('FT', (shapes[0][0], shapes[1][0]))

    def _build(self, shapes):
        c_s, c_t = self._signature
        factors = int(c_t * self.rate)
        if factors < 1:
            raise PairingError('FT factors: int(%g x %d teacher channels) = 0; raise ft_rate' % (self.rate, c_t))
        self.translator = _translator(c_s, factors)
        self.paraphraser = _Paraphraser(c_t, factors, prefix='paraphraser_')

    def finish_stage(self, name):
        freeze(self.paraphraser)
        self._clear_cached_op()

    def _factor(self, F, f):
        """(B, H*W): the channel mean of f^p1 (a batched matrix product, `channel_mean`), L2-normalised."""
        return _normalize(F, channel_mean(F, F.square(f) if self.p1 == 2 else f ** self.p1, self.reduce_dtype), axis=1)

    def hybrid_forward(self, F, s, t):
        f_s = _pool_to(F, self.translator(s), self._ps)
        f_t = _pool_to(F, F.stop_gradient(self.paraphraser.encoder(F.stop_gradient(t))), self._pt)
        d = self._factor(F, f_s) - self._factor(F, f_t)
        return sample_sum(F, F.abs(d) if self.p2 == 1 else d ** self.p2, mean=True, dtype=self.reduce_dtype)
