"""Small building blocks shared by the project's networks.

Every network is built from Gluon layers with named children, so that
`symbols.taps` can find any intermediate output by its child path.
"""
import math

from mxnet.gluon import nn, HybridBlock

# BatchNorm settings of the original MXNet models (tornadomeet's ResNets and
# the NST repo's Inception-BN): eps 2e-5, momentum 0.9.
BN_EPS = 2e-5
BN_MOM = 0.9


class Tap(HybridBlock):
    """Identity marker: its output is a named point of the graph.

    A network places a `Tap` where an intermediate output that is not the
    output of another child (for instance the sum before a ReLU) should be
    readable by name. It adds no operator to the graph.
    """

    def hybrid_forward(self, F, x):
        return x


def batch_norm(norm_layer=None, **kwargs):
    """A BatchNorm with the original models' eps/momentum unless overridden."""
    layer = norm_layer or nn.BatchNorm
    kwargs.setdefault('epsilon', BN_EPS)
    kwargs.setdefault('momentum', BN_MOM)
    return layer(**kwargs)


def keep_statistics_running(net):
    """Let every BatchNorm of `net` without trainable parameters update its running statistics on CPU.

    MXNet's CPU BatchNorm updates its running mean and variance in the backward pass only, and runs
    no backward for a BatchNorm none of whose inputs needs a gradient: gluoncv's ResNetV2 input
    BatchNorm (scale=False, center=False) reads the image, so its statistics stayed at 0 and 1 while
    training normalised each batch by its own, and evaluation saw another network (cuDNN updates
    them in the forward pass, so GPUs never showed it). Such a BatchNorm's beta (kept at 0 by
    center=False) is given a gradient, which makes its backward run; the trainer leaves it out
    (`core.engine.optimized`), so it stays 0 and the optimizer state keeps its parameters. A frozen
    BatchNorm (use_global_stats) is left as it is. Returns the number of BatchNorms changed."""
    changed = 0
    stack = [net]
    while stack:
        block = stack.pop()
        stack.extend(block._children.values())
        if not isinstance(block, nn.BatchNorm) or block._kwargs.get('use_global_stats'):
            continue
        gamma, beta = block.gamma, block.beta
        if gamma.grad_req == 'null' and beta.grad_req == 'null' and not beta._differentiable:
            beta._differentiable = True
            beta.grad_req = 'write'
            beta.lr_mult = beta.wd_mult = 0.0
            beta.for_statistics_only = True
            changed += 1
    return changed


def add_preact_head(block, num_classes, in_units, norm_layer=None):
    """Give a pre-activation network its head: bn1 -> relu1 -> pool -> flatten -> output
    (call inside the network's name scope)."""
    block.bn1 = batch_norm(norm_layer)
    block.relu1 = nn.Activation('relu')
    block.pool = nn.GlobalAvgPool2D()
    block.flatten = nn.Flatten()
    block.output = nn.Dense(num_classes, in_units=in_units)


def conv3x3(channels, strides=1, in_channels=0, use_bias=False):
    return nn.Conv2D(channels, 3, strides, 1, use_bias=use_bias, in_channels=in_channels)


def conv1x1(channels, strides=1, in_channels=0, use_bias=False):
    return nn.Conv2D(channels, 1, strides, 0, use_bias=use_bias, in_channels=in_channels)


def zero_pad_channels(F, x, extra, in_channels):
    """Append `extra` all-zero channels to `x` (B, C, H, W) with C = in_channels."""
    if extra <= 0:
        return x
    zeros = F.zeros_like(x)
    copies = int(math.ceil(extra / float(in_channels)))
    if copies > 1:
        zeros = F.concat(*([zeros] * copies), dim=1)
    zeros = F.slice_axis(zeros, axis=1, begin=0, end=extra)
    return F.concat(x, zeros, dim=1)


def count_parameters(net, in_channels=3, image_size=32):
    """Number of learnable-parameter scalars of `net`.

    Counts every parameter except BatchNorm running statistics (so a fixed
    BatchNorm gamma counts, as in MXNet's own `arg_params`). Parameters with
    unknown shapes are inferred by one symbolic shape inference on an input
    of shape (1, in_channels, image_size, image_size).
    """
    import mxnet as mx
    params = net.collect_params()
    if any(0 in p.shape or p.shape is None for p in params.values() if p.shape is not None) or \
            any(p.shape is None for p in params.values()):
        data = mx.sym.var('data')
        out = net(data)
        if isinstance(out, (list, tuple)):
            out = mx.sym.Group(list(out))
        arg_shapes, _, aux_shapes = out.infer_shape(data=(1, in_channels, image_size, image_size))
        shapes = dict(zip(out.list_arguments(), arg_shapes))
        shapes.update(zip(out.list_auxiliary_states(), aux_shapes))
    else:
        shapes = {name: p.shape for name, p in params.items()}
    total = 0
    for name, p in params.items():
        if name.endswith('running_mean') or name.endswith('running_var'):
            continue
        shape = shapes.get(name, p.shape)
        n = 1
        for d in shape:
            n *= d
        total += n
    return total
