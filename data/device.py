"""The last step of the input pipeline, on the device that trains: a batch's network input.

The ImageNet-pack iterator (`data.decode.DecodeIter`) delivers each batch as two arrays:
  images  (B, 3, S, S) uint8: RGB planes, cropped, resized and mirrored by the decoding workers;
  colour  (B, 3, 4) float32: per image the affine map [A | c] of its colour jitter, PCA lighting
          and normalisation (training, `data.augment.colour_affine`) or of the normalisation
          alone (validation, `data.augment.normalise_affine`).
`colour_apply` computes the network's float32 input from them on the device, as GPU input
pipelines do (a quarter of the bytes copied to a GPU, no float work per pixel on the decoding
cores). The other iterators (Fashion-MNIST and CIFAR) deliver the float32 input itself, one
array. `device_inputs` takes either kind: the trainer, validation and the stages call it and
never look at which.
"""
from mxnet import gluon, nd


def colour_apply(images, colour):
    """(B, C, H, W) float32 on the arrays' device: out[b, k] = sum_j A[b, k, j] images[b, j] + c[b, k]
    for `colour` = [A | c] (B, C, C + 1), `images` (B, C, H, W) uint8. One grouped 1 x 1
    convolution (B groups of C -> C channels, weights A, bias c)."""
    b, c, h, w = images.shape
    x = images.astype('float32').reshape((1, b * c, h, w))
    weight = nd.slice_axis(colour, axis=2, begin=0, end=c).reshape((b * c, c, 1, 1))
    bias = nd.slice_axis(colour, axis=2, begin=c, end=c + 1).reshape((b * c,))
    out = nd.Convolution(x, weight, bias, kernel=(1, 1), num_filter=b * c, num_group=b)
    return out.reshape((b, c, h, w))


def device_inputs(batch, ctx, keep=None):
    """The network inputs of `batch` (an mx.io.DataBatch), one per device of `ctx` (its share, as
    gluon.utils.split_and_load splits; `keep`: only the first `keep` samples, split unevenly where
    they do not divide, as validation does): the float32 array itself, or `colour_apply` of
    (images, colour) computed on each device."""
    arrays = batch.data if keep is None else [a[:keep] for a in batch.data]
    parts = [gluon.utils.split_and_load(a, ctx, even_split=keep is None) for a in arrays]
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 2:
        raise ValueError('a batch carries 1 array (the input) or 2 (uint8 images, colour maps), not %d'
                         % len(parts))
    return [colour_apply(images, colour) for images, colour in zip(*parts)]


def on_gpu(ctx):
    """Whether the devices `ctx` (a list of mx.Context) include a GPU: then the colour step runs there."""
    return any(c.device_type == 'gpu' for c in ctx)
