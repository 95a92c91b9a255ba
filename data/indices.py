"""Each training sample's index in the training set, for the methods whose memory has a row per
sample (CRD; their registry entries declare ``indices=True``).

    sample_count(source)          N, the rows such a memory needs: the whole training set
                                  (every worker's part, whatever `num_examples` says)
    sample_indices(source, batch) the indices of a training batch's samples, (B,) float32 in
                                  0..N-1, checked on the host

The in-memory datasets (CIFAR pickles, `ArrayIter`) carry them in `DataBatch.index`: the
position of each sample in the training arrays. RecordIO packs do not yet: MXNet 1.9.1's
`ImageRecordIter` leaves `DataBatch.index` at 0 for every record, so there a method that needs
indices is refused with a DataError naming the fix.
"""
import numpy as np
import mxnet as mx


def _error(text):
    from . import DataError
    return DataError(text)


def sample_count(source):
    """N: the number of distinct sample indices the training iterators yield (0..N-1)."""
    train_x = getattr(source, '_train_x', None)
    if train_x is not None:
        return len(train_x)
    raise _error('a method of kt_type needs each training sample\'s index (a memory bank with a row per sample, '
                 'e.g. crd), which the %s RecordIO pack iterator does not supply yet; train it on cifar10/cifar100 '
                 '(the python pickles) or leave it out of kt_type' % source.cfg.dataset)


def sample_indices(source, batch, count=None):
    """The batch's sample indices as a float32 NDArray (B,), after checking that the iterator
    supplied one per sample and that each lies in 0..count-1 (count: `sample_count`)."""
    index = getattr(batch, 'index', None)
    size = batch.data[0].shape[0]
    if index is None or len(index) != size:
        raise _error('the training iterator gave no sample index for a batch of %d (a method of kt_type needs '
                     'them): %s' % (size, type(source).__name__))
    index = np.asarray(index)
    count = sample_count(source) if count is None else count
    if index.min() < 0 or index.max() >= count:
        raise _error('the training iterator gave sample index %d outside 0..%d' %
                     (index.min() if index.min() < 0 else index.max(), count - 1))
    return mx.nd.array(index, dtype='float32')
