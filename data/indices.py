"""Each training sample's index in the training set, for the methods whose memory has a row per
sample (CRD; their registry entries declare ``indices=True``).

    sample_count(source)          N, the rows such a memory needs: the whole training set
                                  (every worker's part, whatever `num_examples` says)
    sample_indices(source, batch) the indices of a training batch's samples, (B,) float32 in
                                  0..N-1, checked on the host

Every training iterator carries them in `DataBatch.index` when `DataSource` is asked for them:
- the in-memory datasets (CIFAR pickles, `ArrayIter`): each sample's position in the training arrays;
- ImageNet packs (`DecodeIter`): each record's row in train.idx;
- small-image packs (Fashion-MNIST): MXNet 1.9.1's `ImageRecordIter` leaves `DataBatch.index` at 0
  for every record, so `row_list_file` writes a list that makes it (``path_imglist``,
  ``label_width=2``) return each record's row in the pack beside its class, and `RowBatches` turns
  such batches into ordinary ones with the rows in `DataBatch.index`. Order, images and
  augmentation are those of the iterator without the list (the list only replaces the labels).
"""
import os
import tempfile

import numpy as np
import mxnet as mx

from core.atomic import discard

from .packfile import read_idx, read_record_at, unpack_record


def _error(text):
    from . import DataError
    return DataError(text)


def sample_count(source):
    """N: the number of distinct sample indices the training iterators yield (0..N-1): the source's
    `num_samples` when it declares one (its iterators then carry `DataBatch.index`), else the
    in-memory arrays' length."""
    if getattr(source, 'num_samples', None) is not None:
        return int(source.num_samples)
    train_x = getattr(source, '_train_x', None)
    if train_x is not None:
        return len(train_x)
    raise _error('a method of kt_type needs each training sample\'s index (a memory bank with a row per sample, '
                 'e.g. crd), which %s was not built to supply (DataSource(..., indices=True))'
                 % type(source).__name__)


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


def write_row_list(prefix, path):
    """Write `path`: an image list for ImageRecordIter's ``path_imglist`` with ``label_width=2``,
    one line a record of prefix.rec, ``<id>\t<class>\t<row>\t<key>`` (row: the record's position in
    prefix.idx, 0..N-1). ImageRecordIter looks a record's labels up by the id in its header, so each
    batch's label (B, 2) then holds the class and the row. Returns N; a DataError if two records
    share an id (the lookup could not tell them apart)."""
    keys, offsets = read_idx(prefix + '.idx')
    rec = prefix + '.rec'
    size = os.path.getsize(rec)
    seen = {}
    with open(rec, 'rb') as f, open(path, 'w') as out:
        for row, (key, offset) in enumerate(zip(keys, offsets)):
            header, _ = unpack_record(read_record_at(f, offset, size, rec), key, rec)
            if header.id in seen:
                raise _error('records %d and %d of %s carry the same id %d in their headers, so ImageRecordIter '
                             'cannot tell their indices apart: rebuild the pack with python -m data.pack'
                             % (seen[header.id], key, rec, header.id))
            seen[header.id] = key
            label = header.label if np.isscalar(header.label) else header.label[0]
            out.write('%d\t%r\t%d\t%d\n' % (header.id, float(label), row, key))
    return len(keys)


def row_list_file(prefix):
    """`write_row_list` of pack `prefix` into a new temporary file; returns its path (the caller
    removes it). A failure removes the file and raises."""
    fd, path = tempfile.mkstemp(prefix='nst-rows-', suffix='.lst')
    os.close(fd)
    try:
        write_row_list(prefix, path)
    except BaseException:
        discard(path)
        raise
    return path


class RowBatches(object):
    """Batches of an iterator built with a `write_row_list` list (labels (B, 2): class, row) as
    ordinary batches: label (B,) the class, `index` (B,) the rows (int64)."""

    def __init__(self, it):
        self._it = it
        batch = it.provide_label[0].shape[0]
        self.provide_data = it.provide_data
        self.provide_label = [mx.io.DataDesc('softmax_label', (batch,))]

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._it)
        both = batch.label[0].asnumpy()
        return mx.io.DataBatch(data=batch.data, label=[mx.nd.array(both[:, 0])], pad=batch.pad,
                               index=both[:, 1].astype(np.int64), provide_data=self.provide_data,
                               provide_label=self.provide_label)

    next = __next__

    def reset(self):
        self._it.reset()
