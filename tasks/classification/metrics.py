"""Metrics accumulated on the devices, read only every `frequent` batches.

`Running` keeps, per device, a vector of sums [top1, top5, labels outside
0..K-1, term_1..k] and a short list of per-step term sums since the last
read, so a NaN/Inf is traced to its term and step, and a label out of range
is caught, without a per-batch `asnumpy`.
"""
import numpy as np
import mxnet as mx
from mxnet import nd
from core.errors import DataError, NonFiniteLoss  # noqa: F401  (NonFiniteLoss: Running.read raises it)


def labels_outside(label, num_classes):
    """Number of labels outside 0..num_classes-1 or not whole (a float32 NDArray of shape (1,))."""
    bad = (label < 0) + (label >= num_classes) + (label != nd.floor(label))
    return nd.sum(bad > 0).reshape((1,)).astype('float32')


class LabelOutOfRange(DataError, ValueError):
    def __init__(self, count, num_classes, split='training'):
        self.count = count
        super(LabelOutOfRange, self).__init__(
            '%d %s label(s) lie outside 0..%d: the data does not match num_classes=%d; fix num_classes or the '
            'data' % (count, split, num_classes - 1, num_classes))


def topk_correct(logits, label, k):
    """Number of samples whose label is among the top-k logits (an NDArray scalar)."""
    k = min(k, logits.shape[1])
    top = nd.topk(logits, axis=1, k=k, ret_typ='indices')
    return nd.sum(top == label.reshape((-1, 1)).astype(top.dtype))


class Running(object):
    def __init__(self, names, num_classes):
        self.names = list(names)          # loss-term names (per-sample means are reported)
        self.num_classes = num_classes
        self.reset()

    def reset(self):
        self.n = 0                        # samples seen (known on the host)
        self.sums = {}                    # device index -> NDArray [top1, top5, term_1..k]
        self.pending = []                 # [(step, NDArray of term sums)]

    def update(self, ctx_index, step, logits, label, terms):
        """Add one device's batch: logits (B, K), label (B,), terms: per-sample values (B,) each."""
        self.n += label.shape[0]
        term_sums = nd.concat(*[nd.sum(t).reshape((1,)) for t in terms], dim=0)
        vec = nd.concat(topk_correct(logits, label, 1).reshape((1,)),
                        topk_correct(logits, label, 5).reshape((1,)),
                        labels_outside(label, self.num_classes), term_sums, dim=0)
        self.sums[ctx_index] = vec if ctx_index not in self.sums else self.sums[ctx_index] + vec
        self.pending.append((step, term_sums))

    def read(self):
        """{'n', 'top1', 'top5', <term>: mean} after checking the labels and that pending steps are finite."""
        total = sum(v.copyto(mx.cpu()) for v in self.sums.values()).asnumpy() if self.sums else None
        if total is not None and total[2] > 0:
            raise LabelOutOfRange(int(total[2]), self.num_classes)
        for step, sums in self.pending:
            vals = sums.asnumpy()
            bad = np.where(~np.isfinite(vals))[0]
            if len(bad):
                raise NonFiniteLoss(self.names[bad[0]], step)
        self.pending = []
        if total is None:
            return {}
        n = float(max(self.n, 1))
        out = {'n': self.n, 'top1': float(total[0] / n), 'top5': float(total[1] / n)}
        for name, v in zip(self.names, total[3:]):
            out[name] = float(v / n)
        return out


TOP5_FROM = 6           # top-5 is printed for 6 classes or more (below, it is 100 % or nearly, and says nothing)


def accuracy_text(top1, top5, classes):
    """'top-1 A%  top-5 B%  (error a% / b%)', without top-5 for fewer than TOP5_FROM classes."""
    if classes is not None and classes < TOP5_FROM:
        return 'top-1 %.2f%%  (error %.2f%%)' % (100 * top1, 100 * (1 - top1))
    return 'top-1 %.2f%%  top-5 %.2f%%  (error %.2f%% / %.2f%%)' % (100 * top1, 100 * top5, 100 * (1 - top1),
                                                                  100 * (1 - top5))
