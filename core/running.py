"""The running means of a task's loss terms over an epoch, kept on the device without waiting."""
import numpy as np
from mxnet import nd

from .errors import NonFiniteLoss


class RunningTerms(object):
    """The loss terms `names` of every step, summed on the first device without waiting;
    `read` checks the steps since the last read for NaN/Inf and gives the means per step."""

    def __init__(self, names, fix):
        self.names, self.fix, self.sums, self.steps, self.pending = names, fix, None, 0, []

    def update(self, step, terms):
        """`terms`: per device, the list of arrays of `names` (a scalar, or per sample (B,)): their mean
        over samples and devices counts."""
        first = terms[0][0].context
        values = nd.add_n(*[nd.concat(*[t.mean().reshape((1,)) for t in device], dim=0).as_in_context(first)
                            for device in terms]) / len(terms)
        self.sums = values if self.sums is None else self.sums + values
        self.steps += 1
        self.pending.append((step, values))

    def read(self):
        for step, values in self.pending:
            v = values.asnumpy()
            bad = np.where(~np.isfinite(v))[0]
            if len(bad):
                raise NonFiniteLoss(self.names[bad[0]], step, fix=self.fix)
        self.pending = []
        if self.sums is None:
            return {}
        return dict(zip(self.names, (float(x) / max(self.steps, 1) for x in self.sums.asnumpy())))
