"""Load a checkpointed network with taps and read its feature maps on images."""
import itertools

import numpy as np

_COUNTER = itertools.count()


def load_tapped(prefix_path, taps, tag='best'):
    """(x -> (logits, taps...) block, checkpoint metadata) of a run of this project."""
    import mxnet as mx
    import symbols
    from core import checkpoint
    net, meta = checkpoint.load_network(prefix_path, tag, mx.cpu(), prefix='view%d_' % next(_COUNTER))
    return symbols.with_taps(net, taps), meta


def pack_images(prefix, count, channels, size):
    """The first `count` images (uint8 N x C x H x W) and labels of a RecordIO pack, unnormalised."""
    import mxnet as mx
    it = mx.io.ImageRecordIter(path_imgrec=prefix + '.rec', path_imgidx=prefix + '.idx',
                               data_shape=(channels, size, size), batch_size=count, shuffle=False)
    batch = it.next()
    return batch.data[0].asnumpy().astype(np.uint8), batch.label[0].asnumpy().astype(int)


def tap_outputs(block, images, mean, std):
    """Numpy outputs [logits, tap_1, ...] of `block` on uint8 images (N, C, H, W)."""
    import mxnet as mx
    c = images.shape[1]
    m = np.asarray(mean if len(mean) == c else list(mean) * c, np.float32).reshape(1, c, 1, 1)
    s = np.asarray(std if len(std) == c else list(std) * c, np.float32).reshape(1, c, 1, 1)
    out = block(mx.nd.array((images.astype(np.float32) - m) / s))
    out = out if isinstance(out, (list, tuple)) else [out]
    return [o.asnumpy() for o in out]
