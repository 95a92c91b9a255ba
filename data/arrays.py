"""An in-memory iterator over uint8 images (CIFAR pickles, idx files).

Augmentation (training): zero-pad `pad` pixels, random crop back to the
original size, random horizontal mirror; then (x - mean) / std. Batches are
float32 NCHW. Each epoch's order and augmentation come from
RandomState(seed + epoch), so a resumed run repeats an uninterrupted one.
The last partial batch is completed with samples from the start (its `pad`
says how many), as ImageRecordIter's round_batch does.
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
        self.images = images[part_index::num_parts]             # NHWC uint8
        self.labels = np.asarray(labels, dtype=np.float32)[part_index::num_parts]
        c = self.images.shape[3]
        self.mean = np.asarray(mean if len(mean) == c else list(mean) * c, np.float32).reshape(1, c, 1, 1)
        self.std = np.asarray(std if len(std) == c else list(std) * c, np.float32).reshape(1, c, 1, 1)
        self.shuffle, self.augment, self.pad = shuffle, augment, pad
        self.rng = np.random.RandomState(seed + epoch)
        n = len(self.images)
        self.order = self.rng.permutation(n) if shuffle else np.arange(n)
        self.cursor = 0
        h, w = self.images.shape[1:3]
        self.provide_data = [mx.io.DataDesc('data', (batch_size, c, h, w))]
        self.provide_label = [mx.io.DataDesc('softmax_label', (batch_size,))]

    @property
    def num_samples(self):
        return len(self.images)

    def reset(self):
        self.cursor = 0

    def _augment(self, x):
        n, h, w, c = x.shape
        if self.pad:
            p = self.pad
            padded = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=x.dtype)
            padded[:, p:p + h, p:p + w] = x
            dy = self.rng.randint(0, 2 * p + 1, size=n)
            dx = self.rng.randint(0, 2 * p + 1, size=n)
            x = np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
        flip = self.rng.rand(n) < 0.5
        x = x.copy()
        x[flip] = x[flip, :, ::-1]
        return x

    def next(self):
        n = len(self.order)
        if self.cursor >= n:
            raise StopIteration
        idx = self.order[self.cursor:self.cursor + self.batch_size]
        pad = self.batch_size - len(idx)
        if pad:
            idx = np.concatenate([idx, self.order[:pad]])
        self.cursor += self.batch_size
        x = self.images[idx]
        if self.augment:
            x = self._augment(x)
        x = (x.transpose(0, 3, 1, 2).astype(np.float32) - self.mean) / self.std
        return mx.io.DataBatch(data=[mx.nd.array(x)], label=[mx.nd.array(self.labels[idx])], pad=pad)
