"""Seeds: a run's set-up from `seed`, every epoch from (seed, epoch), so that a resumed run repeats
what an uninterrupted one does."""
import random

import numpy as np
import mxnet as mx


def seed_everything(seed):
    """Seed MXNet, numpy and Python's `random`."""
    mx.random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


def epoch_seed(seed, epoch):
    """The seed of epoch `epoch` (0-based) of a run seeded with `seed`."""
    return seed * 100003 + epoch
