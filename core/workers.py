"""What the devices and workers of one run share besides gradients: sums over the workers (the
validation's counts, an epoch's training figures) and the BatchNorm running statistics.

Under a parameter-server kvstore (`dist_*`) each sum goes through a kvstore key of its own, far above
the parameter indices `gluon.Trainer` uses (0..P-1): every worker pushes its vector and, with no
optimizer on the servers (the trainer keeps updates on the workers), the servers store the sum of
one round of pushes, which the pull returns. A key must be registered by every worker, before
training, in the same order (a key the servers first see once training has started aborts them).
Under Horovod each sum is an allreduce of its own name.
"""
import numpy as np
from mxnet import nd

# the kvstore keys of the sums, by name, in the order every worker registers them
FIRST_KEY = 1 << 30
# the length of the validation's count vectors (`Engine.worker_sum`)
SUM_LENGTH = 3
# an epoch's training figures summed over the workers: the images seen, then up to this many
# figures weighted by them
TRAIN_FIGURES = 31
# the parameters that hold BatchNorm running statistics (gluon: running_*, gluoncv's SyncBN: moving_*)
STATISTICS = ('running_mean', 'running_var', 'moving_mean', 'moving_var')


class WorkerSums(object):
    """Named sums over the workers of a run: `register(name, length)` on every worker before
    training, then `sum(name, vector)` (a (length,) NDArray -> its sum over the workers) at the same
    points on every worker. With one worker, `sum` returns its vector."""

    def __init__(self, kv=None, hvd=None):
        self.kv, self.hvd = kv, hvd
        self.keys, self.lengths = {}, {}

    @property
    def distributed(self):
        return self.kv is not None or self.hvd is not None

    def register(self, name, length):
        if name in self.lengths:
            return
        self.lengths[name] = length
        if self.kv is not None:
            self.keys[name] = FIRST_KEY + len(self.keys)
            self.kv.init(self.keys[name], nd.zeros((length,)))

    def sum(self, name, vector):
        if vector.shape != (self.lengths[name],):
            raise ValueError('the %s sum adds up vectors of %d values, not shape %s'
                             % (name, self.lengths[name], vector.shape))
        if self.kv is not None:
            self.kv.push(self.keys[name], vector)
            self.kv.pull(self.keys[name], out=vector)
            return vector
        if self.hvd is not None:
            return self.hvd.allreduce(vector, average=False, name='sum_' + name)
        return vector


def statistics_of(blocks):
    """[Parameter] of the BatchNorm running statistics among `blocks` (None entries skipped)."""
    found = []
    for block in blocks:
        if block is not None:
            found += [p for name, p in block.collect_params().items() if name.endswith(STATISTICS)]
    return found


def statistics_length(params):
    """How many values `params` hold; None while a shape is not known yet (deferred initialisation)."""
    shapes = [p.shape for p in params]
    if any(s is None or 0 in s for s in shapes):
        return None
    return int(sum(np.prod(s) for s in shapes))


def average_statistics(params, sums, workers):
    """Set every copy of each running statistic in `params` to its mean over the run's devices and
    workers (`sums`: the registered 'statistics' sum; `workers`: how many). Each device's BatchNorm
    layers keep statistics of the batches it saw; averaged at the end of an epoch, the validation and
    the checkpoint use the same ones, whatever device or worker saved it (for variances, the mean of
    the per-device variances)."""
    if not params:
        return
    devices = len(params[0].list_ctx())
    if devices == 1 and workers == 1:
        return
    home = params[0].list_ctx()[0]
    flat = nd.concat(*[nd.add_n(*[a.as_in_context(home) for a in p.list_data()]).reshape((-1,)) for p in params],
                     dim=0) / devices
    flat = sums.sum('statistics', flat) / workers
    at = 0
    for p in params:
        size = int(np.prod(p.shape))
        value = flat[at:at + size].reshape(p.shape)
        at += size
        for a in p.list_data():
            a[:] = value.as_in_context(a.context).astype(a.dtype, copy=False)


def own_copies(params):
    """Copies of every device's copy of each parameter of `params` (running statistics), for
    `restore_copies` after the trainer's first step: Gluon's trainer initialises its kvstore there,
    after the step's forward and backward, and sets every device's (and every worker's) copy of
    each parameter to the first device's (rank 0's), running statistics included, which would throw
    away the first batch's statistics of every other device."""
    return [[a.copy() for a in p.list_data()] for p in params]


def restore_copies(params, copies):
    """Put back the copies `own_copies(params)` made."""
    for p, kept in zip(params, copies):
        for a, k in zip(p.list_data(), kept):
            a[:] = k


def mean_over_workers(stats, sums):
    """An epoch's training figures (`stats`: name -> value, with `n` the images they average over)
    as the means over every worker's images; unchanged with one worker, or with more figures than
    the registered sum holds (`TRAIN_FIGURES`)."""
    names = sorted(k for k, v in stats.items() if k != 'n' and isinstance(v, (int, float)) and not isinstance(v, bool))
    if not sums.distributed or len(names) > TRAIN_FIGURES:
        return stats
    n = float(stats.get('n') or 1)
    vector = np.zeros(TRAIN_FIGURES + 1, dtype=np.float64)
    vector[0] = n
    vector[1:1 + len(names)] = [n * float(stats[k]) for k in names]
    total = sums.sum('train', nd.array(vector, dtype='float64').astype('float32')).asnumpy()
    out = dict(stats)
    if total[0] > 0:
        out.update((k, float(total[1 + i] / total[0])) for i, k in enumerate(names))
    if 'n' in stats:
        out['n'] = int(round(total[0]))
    return out
