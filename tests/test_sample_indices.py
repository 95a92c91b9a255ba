"""Each training sample's index in the training set (`data.indices`), for the methods with a
memory indexed by sample (CRD): the CIFAR iterator carries each sample's position, and a
RecordIO pack's rows come back through ImageRecordIter's label list (`write_row_list`,
`RowBatches`) whatever the record ids, the shuffling and the worker part."""
import numpy as np
import mxnet as mx
import pytest

from data import DataError
from data.arrays import ArrayIter
from data.indices import RowBatches, sample_indices, write_row_list


def test_array_iter_carries_each_samples_position():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(4, axis=1).repeat(4, axis=2)
    it = ArrayIter(images, np.arange(10) % 3, 4, [0.0], [1.0], shuffle=True, seed=1, epoch=2)
    seen = []
    for batch in it:
        pixels = batch.data[0].asnumpy()[:, 0, 0, 0]
        np.testing.assert_array_equal(pixels, batch.index)                # the pixel is the sample's position
        np.testing.assert_array_equal(batch.label[0].asnumpy(), batch.index % 3)
        seen.extend(batch.index[:4 - batch.pad])
    assert sorted(seen) == list(range(10))

    class Source(object):
        _train_x = images
    idx = sample_indices(Source(), batch)
    assert idx.dtype == np.float32 and idx.shape == (4,)
    with pytest.raises(DataError, match='index 9 outside 0..7'):
        sample_indices(Source(), mx.io.DataBatch(data=batch.data, index=np.array([0, 1, 2, 9])), count=8)
    with pytest.raises(DataError, match='no sample index'):
        sample_indices(Source(), mx.io.DataBatch(data=batch.data))


def pack_with_ids(tmp_path, ids):
    """A pack whose record with header id i is an 8x8 PNG of value 10 i, label i % 3, keys = ids."""
    import cv2
    prefix = str(tmp_path / 'p')
    rec = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    for i in ids:
        buf = cv2.imencode('.png', np.full((8, 8), 10 * i, np.uint8))[1].tobytes()
        rec.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i % 3), i, 0), buf))
    rec.close()
    return prefix


@pytest.mark.parametrize('parts', [1, 2])
@pytest.mark.parametrize('shuffle', [False, True])
def test_pack_rows_come_back_through_the_label_list(tmp_path, shuffle, parts):
    ids = [5, 0, 9, 2, 7, 3, 11, 4]                  # record ids in any order; rows are .idx positions
    prefix = pack_with_ids(tmp_path, ids)
    assert write_row_list(prefix, str(tmp_path / 'rows.lst')) == len(ids)
    seen = []
    for part in range(parts):
        it = RowBatches(mx.io.ImageRecordIter(
            path_imgrec=prefix + '.rec', path_imgidx=prefix + '.idx', path_imglist=str(tmp_path / 'rows.lst'),
            label_width=2, data_shape=(1, 8, 8), batch_size=3, shuffle=shuffle, seed=4, round_batch=True,
            num_parts=parts, part_index=part))
        assert it.provide_label[0].shape == (3,)
        for batch in it:
            value = batch.data[0].asnumpy()[:, 0, 0, 0] / 10                      # the record's id
            np.testing.assert_array_equal(value, [ids[r] for r in batch.index])    # its row
            np.testing.assert_array_equal(batch.label[0].asnumpy(), value % 3)     # and its class
            seen.extend(batch.index[:3 - batch.pad])
    assert sorted(seen) == list(range(len(ids)))


def test_two_records_with_one_id_are_refused(tmp_path):
    import cv2
    prefix = str(tmp_path / 'dup')
    rec = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    for key in (0, 1):
        buf = cv2.imencode('.png', np.zeros((4, 4), np.uint8))[1].tobytes()
        rec.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, 0.0, 7, 0), buf))
    rec.close()
    with pytest.raises(DataError, match='same id 7'):
        write_row_list(prefix, str(tmp_path / 'rows.lst'))
