"""Single-centre-crop validation: top-1 and top-5 accuracy over a val iterator.

Padded samples of the last batch (`batch.pad`, from round_batch) are left
out, so every validation image counts exactly once. Under a `dist_*` kvstore
each worker evaluates its own part of the validation set; `sum_over_workers`
adds the workers' counts so that every worker reports the whole set.
"""
import mxnet as mx
from mxnet import gluon, nd

from data.device import device_inputs

from .metrics import topk_correct, labels_outside, LabelOutOfRange


def evaluate(net, val_iter, ctx, num_classes, max_batches=None, bar=None):
    """{'top1', 'top5', 'n', 'correct1', 'correct5', 'max_logit'} of `net` (a block whose first output
    is the logits): accuracies as fractions of the `n` images seen, the counts behind them, and the
    largest |logit| (core.health warns of an absurd one). Each batch
    is waited for before the next is sent (MXNet would otherwise queue the whole validation set and
    a Ctrl-C would reach Python only when all of it is done); `bar`, a progress bar, counts them."""
    sums = [nd.zeros((3,), ctx=c) for c in ctx]     # top-1, top-5 correct, labels out of range per device
    peaks = [nd.zeros((1,), ctx=c) for c in ctx]    # the largest |logit| seen, per device
    n = 0
    for i, batch in enumerate(val_iter):
        if max_batches is not None and i >= max_batches:
            break
        keep = batch.data[0].shape[0] - (batch.pad or 0)
        if keep <= 0:                   # a batch of padding only (a dist worker's part ends on a batch)
            if bar is not None:
                bar.update(1)
            continue
        parts = len(ctx) if keep >= len(ctx) else 1
        xs = device_inputs(batch, ctx[:parts], keep)
        ys = gluon.utils.split_and_load(batch.label[0][:keep], ctx[:parts], even_split=False)
        n += keep
        for k, (x, y) in enumerate(zip(xs, ys)):
            out = net(x)
            logits = out[0] if isinstance(out, (list, tuple)) else out
            sums[k] += nd.concat(topk_correct(logits, y, 1).reshape((1,)),
                                 topk_correct(logits, y, 5).reshape((1,)),
                                 labels_outside(y, num_classes), dim=0)
            peaks[k] = nd.maximum(peaks[k], nd.max(nd.abs(logits)).reshape((1,)))
        for s in sums:
            s.wait_to_read()
        if bar is not None:
            bar.update(1)
    total = sum(s.copyto(mx.cpu()) for s in sums).asnumpy()
    if total[2] > 0:
        raise LabelOutOfRange(int(total[2]), num_classes, 'validation')
    return dict(summary(total[0], total[1], n), max_logit=max(float(p.asscalar()) for p in peaks))


def summary(correct1, correct5, n):
    n = int(round(n))
    return {'top1': float(correct1) / max(n, 1), 'top5': float(correct5) / max(n, 1), 'n': n,
            'correct1': int(round(correct1)), 'correct5': int(round(correct5))}


def sum_over_workers(result, reduce):
    """`result` of `evaluate` with its counts summed over the workers by `reduce` (an NDArray of
    (correct1, correct5, n) -> its sum over the workers). Every worker must call this at the same
    point."""
    counts = nd.array([result['correct1'], result['correct5'], result['n']])   # exact below 2**24
    total = reduce(counts).asnumpy()
    return summary(total[0], total[1], total[2])
