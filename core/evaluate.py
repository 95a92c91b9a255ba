"""Single-centre-crop validation: top-1 and top-5 accuracy over a val iterator.

Padded samples of the last batch (`batch.pad`, from round_batch) are left
out, so every validation image counts exactly once.
"""
import mxnet as mx
from mxnet import gluon, nd

from .metrics import topk_correct


def check_labels(label, num_classes):
    """Raise if a batch carries a label outside [0, num_classes) (checked on the host copy)."""
    lab = label.asnumpy()
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes or (lab != lab.astype(int)).any()):
        from data import DataError
        raise DataError('a batch has label %g outside 0..%d: the data does not match num_classes=%d; fix '
                         'num_classes or the packs' % (lab.max() if lab.max() >= num_classes else lab.min(),
                                                       num_classes - 1, num_classes))


def evaluate(net, val_iter, ctx, num_classes, max_batches=None):
    """{'top1', 'top5', 'n'} of `net` (a block whose first output is the logits)."""
    sums = [nd.zeros((2,), ctx=c) for c in ctx]     # top-1, top-5 correct per device
    n = 0
    for i, batch in enumerate(val_iter):
        if max_batches is not None and i >= max_batches:
            break
        check_labels(batch.label[0], num_classes)
        keep = batch.data[0].shape[0] - (batch.pad or 0)
        data, label = batch.data[0][:keep], batch.label[0][:keep]
        parts = len(ctx) if keep >= len(ctx) else 1
        xs = gluon.utils.split_and_load(data, ctx[:parts], even_split=False)
        ys = gluon.utils.split_and_load(label, ctx[:parts], even_split=False)
        n += keep
        for k, (x, y) in enumerate(zip(xs, ys)):
            out = net(x)
            logits = out[0] if isinstance(out, (list, tuple)) else out
            sums[k] += nd.concat(topk_correct(logits, y, 1).reshape((1,)),
                                 topk_correct(logits, y, 5).reshape((1,)), dim=0)
    total = sum(s.copyto(mx.cpu()) for s in sums).asnumpy()
    return {'top1': float(total[0] / max(n, 1)), 'top5': float(total[1] / max(n, 1)), 'n': n}
