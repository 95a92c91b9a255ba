"""What every transfer loss shares: the shape-checking base block, the
pairing error, row normalisation, spatial matching and the student-side
Connector.

Conventions of all losses: inputs are (student ..., teacher ...[, extra]);
the output is the **per-sample** loss, shape (B,), unweighted; teacher inputs
never receive gradients (`F.stop_gradient`). ``norm(v) = v / max(||v||_2, eps)``.
"""
from collections import namedtuple

import numpy as np
from core.errors import NetworkError

from mxnet import ndarray as nd
from mxnet.gluon import nn, HybridBlock

from ..common import batch_norm

NORM_EPS = 1e-12


class PairingError(NetworkError):
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


def _weights(F, x, axis, dtype):
    """Ones shaped as `x` with `axis` reduced to 1, of `dtype`: the vector a reduction multiplies
    by. `dtype` is float32 for a float32, float16 or bfloat16 x (ShapedLoss.reduce_dtype), so that
    AMP's widest-type cast runs the product in float32, as AMP runs `sum` and `mean`."""
    return F.cast(F.ones_like(F.slice_axis(x, axis=axis, begin=0, end=1)), dtype=dtype)


def sample_sum(F, x, mean=False, dtype='float32'):
    """sum (or `mean`) over every axis but the first: (B, ...) -> (B,), as one matrix-vector product.
    MXNet 1.9.1's CPU reduction over many axes (`F.sum(x, axis=(1, 2, 3))`) runs several times
    slower than the BLAS product, forward and backward; the value is the same up to rounding.
    `dtype`: see `_weights`."""
    x = F.reshape(x, shape=(0, -1))                                          # (B, D)
    w = _weights(F, x, 0, dtype)                                             # (1, D)
    if mean:
        w = F.broadcast_div(w, F.sum(w))
    return F.reshape(F.dot(x, w, transpose_b=True), shape=(-1,))


def channel_mean(F, x, dtype='float32'):
    """mean over the channels of a map, (B, C, H, W) -> (B, H*W), as one batched matrix product
    (see `sample_sum`: MXNet's CPU `mean(axis=1)` is several times slower)."""
    x = F.reshape(x, shape=(0, 0, -1))                                       # (B, C, N)
    w = _weights(F, x, 2, dtype)                                             # (B, C, 1)
    w = F.broadcast_div(w, F.sum(w, axis=1, keepdims=True))
    return F.reshape(F.batch_dot(w, x, transpose_a=True), shape=(0, -1))     # (B, N)


def _normalize(F, x, axis, eps=NORM_EPS):
    """x / max(||x||_2 along `axis`, eps): PyTorch's F.normalize(x, dim=axis).

    The norm is taken as sqrt(max(||x||^2, eps^2)) (the same value): a zero x then has a
    zero gradient instead of sqrt's infinite one at 0 times 0."""
    return F.broadcast_div(x, _norm(F, x, axis, eps))


def _norm(F, x, axis, eps):
    """max(||x||_2 along `axis` (keepdims), eps), with a finite gradient at x = 0."""
    return F.sqrt(F.maximum(F.sum(F.square(x), axis=axis, keepdims=True), eps * eps))


def _eye(F, x):
    """The B x B identity matrix for x (B, ...) (x's dtype, no gradient), built from the
    graph so that a hybridized block works for any batch size."""
    r = F.contrib.arange_like(x, axis=0)
    return F.stop_gradient(F.broadcast_equal(F.reshape(r, shape=(-1, 1)), F.reshape(r, shape=(1, -1))))


def _flat(F, x):
    """(B, ...) -> (B, prod(...))."""
    return F.reshape(x, shape=(0, -1))


def check_batch(what, inputs):
    """PairingError unless the NDArray `inputs` of loss `what` with two axes or more (maps, vectors,
    logits; not a per-channel margin or a label vector) are batches of one size (the first axis)."""
    sizes = [a.shape[0] for a in inputs if isinstance(a, nd.NDArray) and a.ndim >= 2]
    if len(set(sizes)) > 1:
        raise PairingError('%s takes its inputs as batches of one size (the first axis); got shapes %s'
                           % (what, ', '.join(str(a.shape) for a in inputs if isinstance(a, nd.NDArray))))


class ShapedLoss(HybridBlock):
    """Base of the losses that check their inputs' shapes.

    `_configure(shapes)` receives the per-sample shapes of the NDArray inputs
    on the first call (and whenever they change); it validates them and sets
    the static attributes `hybrid_forward` relies on. Symbol callers must call
    `prepare(*shapes)` first.
    """

    def __init__(self, **kwargs):
        super(ShapedLoss, self).__init__(**kwargs)
        self._shapes = None
        # the dtype of the reductions `sample_sum` / `channel_mean` run in: float64 for float64
        # inputs (the reference tests), else float32 (under AMP too); set by an NDArray call
        self.reduce_dtype = 'float32'

    def prepare(self, *shapes):
        shapes = tuple(tuple(s) for s in shapes)
        if shapes != self._shapes:
            self._configure(shapes)
            self._shapes = shapes
            self._clear_cached_op()

    def forward(self, x, *args):
        if isinstance(x, nd.NDArray):
            check_batch(type(self).__name__, (x,) + args)
            self.prepare(*[a.shape[1:] for a in (x,) + args if isinstance(a, nd.NDArray)])
            wide = 'float64' if x.dtype == np.float64 else 'float32'
            if wide != self.reduce_dtype:
                self.reduce_dtype = wide
                self._clear_cached_op()
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


class HeadLoss(ShapedLoss):
    """Base of the losses that own trainable heads (parameters): CC's embeddings, VID's
    regressor and variances, ReviewKD's fusion modules.

    The heads' shapes follow from the inputs' shapes, so they are made once by
    `build(*shapes)` with the per-sample shapes of the loss's inputs in call order
    (`_configure` checks them, `_build` creates the child blocks and parameters);
    `initialize()` follows. A registry entry declares such a loss with ``heads=True``:
    `tasks.classification.distiller.DistillBlock` then registers the block in its `Extras` (trained with the
    student, saved in the checkpoint's ``.extra.params``, left out of the export) and builds
    it from the taps' shapes in `connect`. Later calls may bring other spatial sizes
    (`_configure` runs again) but must keep the channel counts the heads were built for.
    """

    def __init__(self, **kwargs):
        super(HeadLoss, self).__init__(**kwargs)
        self._built = None

    @property
    def built(self):
        return self._built is not None

    def build(self, *shapes):
        """Create the heads for inputs of these per-sample shapes (once); returns self."""
        shapes = tuple(tuple(s) for s in shapes)
        if self._built is None:
            self._configure(shapes)
            with self.name_scope():
                self._build(shapes)
            self._built = shapes
            self._shapes = shapes
            self._clear_cached_op()
        else:
            self.prepare(*shapes)
        return self

    def _build(self, shapes):
        raise NotImplementedError

    def _check_built(self, what, signature):
        """In `_configure`: refuse inputs whose `signature` (channel counts) differs from the
        one the heads were built for; remember it before the build."""
        if self._built is not None and signature != self._signature:
            raise PairingError('%s heads were built for inputs with channels %s; got %s' % (what, self._signature,
                                                                                           signature))
        self._signature = signature

    def forward(self, x, *args):
        if self._built is None:
            raise PairingError('%s owns trainable heads shaped by its inputs: call build(*per-sample shapes) and '
                               'initialize() first (tasks.classification.distiller.DistillBlock.connect builds it from the taps)'
                               % type(self).__name__)
        return super(HeadLoss, self).forward(x, *args)

    # ---- what a loss with a stage or a memory adds (see `Stage` and `n_states`) ----
    #: number of state outputs after the loss: `hybrid_forward` then returns (loss, state_1, ...,
    #: state_n), values computed in the step (no gradient) that `update_state` folds into
    #: non-trained parameters after the optimizer step (CRD's memory bank)
    n_states = 0

    def update_state(self, indices, states):
        """After an optimizer step: fold the step's state outputs into the loss's non-trained
        parameters. `indices`: per device, the sample indices the loss was called with (or
        None); `states`: per device, the list of its `n_states` state outputs. Every device's
        copy of a parameter receives the updates of all devices, so the copies stay equal. Returns
        True when the loss's graph is to be built again (its `hybrid_forward` reads the new state),
        else False."""
        raise NotImplementedError('%s declares %d state outputs but no update_state' % (type(self).__name__,
                                                                                      self.n_states))

    def finish_stage(self, name):
        """Called once the stage `name` of the loss's method has run (or, on resume, was run
        before the checkpoint): freeze what the stage trained and the main training must not
        change (FT's paraphraser, AB's connectors). Default: nothing."""


def freeze(block):
    """Stop training every parameter of `block` (grad_req 'null': the optimizer skips it and no
    gradient is computed for it); returns the block."""
    for p in block.collect_params().values():
        p.grad_req = 'null'
    return block


#: A training stage a method declares (`Method.stages`), run by the trainer before epoch 0, in
#: plan order, and skipped on resume (its result is in the checkpoint: the student and the
#: loss's parameters in `.extra.params`):
#:   name: the stage's name ('ab_init', 'ft_init'); the config keys `<name>_epochs` and
#:           `<name>_lr` (in the loss options) override its epochs and learning rate;
#:   trains: 'student': the stage block is called like the loss (student taps, then teacher
#:           taps) and trains with the student's parameters its taps depend on (the classifier
#:           and layers past the taps do not train); 'heads': the stage block is called with
#:           the teacher taps alone, the student does not run, and only the block trains;
#:   epochs: its default number of epochs (0 skips it);
#:   lr: its default constant learning rate, or None for the run's `lr`;
#:   block(loss) -> HybridBlock: the stage's per-sample loss (B,), usually a child of the loss
#:           block (whose parameters it trains), or the loss block itself.
#: The optimizer is the run's (`optimizer`, `momentum`, `wd`); the loss is the stage block's
#: per-sample loss, averaged over the batch; afterwards `HeadLoss.finish_stage(name)` runs.
Stage = namedtuple('Stage', 'name trains epochs lr block')
STAGE_TRAINS = ('student', 'heads')


def stage_settings(stage, options):
    """(epochs, lr) of `stage` under the loss options: `<name>_epochs` and `<name>_lr` when
    given (not None), else the stage's defaults (lr None: the run's)."""
    epochs = options.get(stage.name + '_epochs')
    lr = options.get(stage.name + '_lr')
    return int(stage.epochs if epochs is None else epochs), stage.lr if lr is None else float(lr)
