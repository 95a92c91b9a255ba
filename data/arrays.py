"""An in-memory iterator over uint8 images (CIFAR pickles, idx files).

Augmentation (training): zero-pad `pad` pixels, random crop back to the
original size, random horizontal mirror; then (x - mean) / std. Batches are
float32 NCHW.

Order and augmentation come from RandomState(seed + epoch) and are drawn for
the *global* batch of `batch_size * num_parts` samples; worker `part_index`
takes its contiguous share. So distributed workers together see exactly what
one process splitting the same global batch over its devices sees, and a
resumed run repeats an uninterrupted one. The last partial batch is completed
with samples from the start (its `pad` says how many), as ImageRecordIter's
round_batch does. `DataBatch.index` holds each sample's position in the arrays (0..N-1), the
sample index a memory bank indexed by sample needs (CRD).
"""
import numpy as np
import mxnet as mx


class ArrayIter(mx.io.DataIter):
    def __init__(self, images, labels, batch_size, mean, std, shuffle=False, augment=False, pad=0,
                 seed=0, epoch=0, num_parts=1, part_index=0):
        super(ArrayIter, self).__init__(batch_size)
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[:, :, :, None]
        self.images = images                                       # NHWC uint8
        self.labels = np.asarray(labels, dtype=np.float32)
        c = self.images.shape[3]
        self.mean = np.asarray(mean if len(mean) == c else list(mean) * c, np.float32).reshape(1, c, 1, 1)
        self.std = np.asarray(std if len(std) == c else list(std) * c, np.float32).reshape(1, c, 1, 1)
        self.augment, self.pad = augment, pad
        self.num_parts, self.part_index = num_parts, part_index
        rng = np.random.RandomState((seed + epoch) % 2 ** 32)          # (any whole seed >= 0)
        n = len(self.images)
        order = rng.permutation(n) if shuffle else np.arange(n)
        g = batch_size * num_parts
        extra = (-n) % g
        self.order = np.concatenate([order, np.resize(order, extra)])   # whole global batches (the order
        # repeated as often as needed: a batch larger than the whole set is still filled)
        self.last_pad = extra
        m = len(self.order)
        self.shift = rng.randint(0, 2 * pad + 1, size=(m, 2)) if augment and pad else None
        self.flip = rng.rand(m) < 0.5 if augment else None
        self.cursor = 0
        h, w = self.images.shape[1:3]
        self.provide_data = [mx.io.DataDesc('data', (batch_size, c, h, w))]
        self.provide_label = [mx.io.DataDesc('softmax_label', (batch_size,))]

    @property
    def num_samples(self):
        return len(self.images) // self.num_parts

    def reset(self):
        self.cursor = 0

    def _augment(self, x, pos):
        n, h, w, c = x.shape
        if self.shift is not None:
            p = self.pad
            padded = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=x.dtype)
            padded[:, p:p + h, p:p + w] = x
            x = np.stack([padded[i, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(self.shift[pos])])
        x = x.copy()
        flip = self.flip[pos]
        x[flip] = x[flip, :, ::-1]
        return x

    def next(self):
        g = self.batch_size * self.num_parts
        if self.cursor >= len(self.order):
            raise StopIteration
        start = self.cursor + self.part_index * self.batch_size
        pos = np.arange(start, start + self.batch_size)
        is_last = self.cursor + g >= len(self.order)
        self.cursor += g
        idx = self.order[pos]
        x = self.images[idx]
        if self.augment:
            x = self._augment(x, pos)
        x = (x.transpose(0, 3, 1, 2).astype(np.float32) - self.mean) / self.std
        # padding (repeated samples) sits at the end of the global batch
        pad = 0
        if is_last and self.last_pad:
            first_pad = g - self.last_pad
            pad = int(np.clip(pos[-1] + 1 - (self.cursor - g) - first_pad, 0, self.batch_size))
        return mx.io.DataBatch(data=[mx.nd.array(x)], label=[mx.nd.array(self.labels[idx])], pad=pad, index=idx)
