"""Pack builder, pack checks, RecordIO iterators and the CIFAR reader."""
import os
import shutil
import subprocess
import sys

import numpy as np
import mxnet as mx
import pytest

from data import pack, packiters
from data.cifar import load_cifar, CifarError
from data.arrays import ArrayIter
from tests.helpers import make_jpeg_tree, make_cifar


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp('imgs')
    train, val = str(root / 'train'), str(root / 'val')
    classes = make_jpeg_tree(train, classes=3, per_class=6, seed=1)
    make_jpeg_tree(val, classes=3, per_class=2, seed=2)
    out = str(root / 'packs')
    pack.build_packs(train, out, val_root=val, progress=False)
    return train, val, out, classes


def test_packs_hold_the_original_bytes_and_labels(tree):
    train, _, out, classes = tree
    assert pack.read_classes(os.path.join(out, 'classes.txt')) == classes
    items = pack.read_lst(os.path.join(out, 'train.lst'))
    assert len(items) == 18
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(out, 'train.idx'), os.path.join(out, 'train.rec'), 'r')
    for idx, label, rel in items:
        header, payload = mx.recordio.unpack(rec.read_idx(idx))
        with open(os.path.join(train, rel), 'rb') as f:
            assert payload == f.read()
        assert header.label == label and header.id == idx and header.flag == 0
        assert label == classes.index(rel.split(os.sep)[0])
    assert pack.check_pack(os.path.join(out, 'train'), num_classes=3, full=True) == 18


def test_packs_equal_mxnet_im2rec_pass_through(tree, tmp_path):
    """mxnet's own tools/im2rec.py --pass-through on the same list writes the same bytes."""
    train, _, out, _ = tree
    im2rec = os.path.join(os.path.dirname(mx.__file__), 'tools', 'im2rec.py')
    shutil.copy(os.path.join(out, 'train.lst'), str(tmp_path / 'ref.lst'))
    compat_then = ('import core.compat, runpy, sys; sys.argv[:] = sys.argv[1:]; '
                   'runpy.run_path(sys.argv[0], run_name="__main__")')
    subprocess.run([sys.executable, '-c', compat_then,      # core/compat.py first, as the project's entry points
                    im2rec, '--pass-through', '--num-thread', '1', str(tmp_path / 'ref'), train],
                   check=True, capture_output=True)
    for ext in ('.rec', '.idx'):
        with open(str(tmp_path / ('ref' + ext)), 'rb') as a, open(os.path.join(out, 'train' + ext), 'rb') as b:
            assert a.read() == b.read(), ext


def test_image_record_iter_reads_pixel_exact(tree):
    """Pass-through packs decode to exactly the source images (same decoder, no resize)."""
    _, val, out, classes = tree
    items = pack.read_lst(os.path.join(out, 'val.lst'))
    sizes = set()
    for _, _, rel in items:
        with open(os.path.join(val, rel), 'rb') as f:
            sizes.add(mx.image.imdecode(f.read()).shape)
    h, w = min(s[0] for s in sizes), min(s[1] for s in sizes)
    it = mx.io.ImageRecordIter(path_imgrec=os.path.join(out, 'val.rec'), path_imgidx=os.path.join(out, 'val.idx'),
                               data_shape=(3, h, w), batch_size=len(items), shuffle=False, rand_crop=False)
    batch = it.next()
    for k, (_, label, rel) in enumerate(items):
        with open(os.path.join(val, rel), 'rb') as f:
            img = mx.image.imdecode(f.read()).asnumpy()
        H, W = img.shape[:2]
        y0, x0 = (H - h) // 2, (W - w) // 2          # ImageRecordIter's centre crop
        expected = img[y0:y0 + h, x0:x0 + w].transpose(2, 0, 1)
        np.testing.assert_array_equal(batch.data[0][k].asnumpy().astype(np.uint8), expected)
        assert batch.label[0][k].asscalar() == label


def test_flat_val_folder_with_label_file(tmp_path):
    train = str(tmp_path / 'train')
    classes = make_jpeg_tree(train, classes=2, per_class=2)
    val = tmp_path / 'val'
    val.mkdir()
    lines = []
    for i, src in enumerate(sorted(os.listdir(os.path.join(train, classes[1])))):
        shutil.copy(os.path.join(train, classes[1], src), str(val / ('v%d.jpg' % i)))
        lines.append('v%d.jpg %s' % (i, classes[1] if i % 2 else '1'))   # synset name or index
    (tmp_path / 'val.txt').write_text('\n'.join(lines) + '\n')
    pack.build_packs(train, str(tmp_path / 'out'), str(val), str(tmp_path / 'val.txt'), progress=False)
    assert [l for _, l, _ in pack.read_lst(str(tmp_path / 'out' / 'val.lst'))] == [1.0, 1.0]


def test_corrupt_image_is_skipped_and_counted(tmp_path, caplog):
    root = str(tmp_path / 'train')
    classes = make_jpeg_tree(root, classes=2, per_class=3)
    with open(os.path.join(root, classes[0], 'broken.jpg'), 'wb') as f:
        f.write(b'\xff\xd8 not really a jpeg')
    _, stats = pack.build_packs(root, str(tmp_path / 'out'), progress=False)
    assert stats['train'] == (6, 1)
    assert len(pack.read_lst(str(tmp_path / 'out' / 'train.lst'))) == 6
    assert 'cannot be decoded' in caplog.text


def test_bad_inputs_give_clear_errors(tmp_path, tree):
    empty = tmp_path / 'empty'
    (empty / 'cls').mkdir(parents=True)
    with pytest.raises(pack.PackError, match='no images'):
        pack.list_class_folders(str(empty))
    flat = tmp_path / 'flat'
    flat.mkdir()
    (flat / 'a.jpg').write_bytes(b'x')
    with pytest.raises(pack.PackError, match='no class sub-folders'):
        pack.list_class_folders(str(flat))
    with pytest.raises(pack.PackError, match='does not exist'):
        pack.check_pack(str(tmp_path / 'nothing'))
    _, _, out, _ = tree
    # truncated .rec
    bad = tmp_path / 'trunc'
    bad.mkdir()
    shutil.copy(os.path.join(out, 'train.idx'), str(bad / 'train.idx'))
    data = open(os.path.join(out, 'train.rec'), 'rb').read()
    (bad / 'train.rec').write_bytes(data[:len(data) - 100])
    with pytest.raises(pack.PackError, match='truncated'):
        pack.check_pack(str(bad / 'train'))
    # corrupt bytes where a record should start
    second = int(open(os.path.join(out, 'train.idx')).read().split('\n')[1].split()[1])
    (bad / 'train.rec').write_bytes(data[:second] + b'\0' * 16 + data[second + 16:])
    shutil.copy(os.path.join(out, 'train.idx'), str(bad / 'train.idx'))
    with pytest.raises(pack.PackError, match='bad magic|truncated'):
        pack.check_pack(str(bad / 'train'), full=True)
    # labels outside num_classes
    with pytest.raises(pack.PackError, match='out of range'):
        pack.check_pack(os.path.join(out, 'train'), num_classes=2)


def test_damaged_image_found_by_check_and_named_while_training(tree, tmp_path):
    from data import DataError
    _, _, out, _ = tree
    bad = tmp_path / 'damaged'
    bad.mkdir()
    for ext in ('idx', 'lst'):
        shutil.copy(os.path.join(out, 'train.' + ext), str(bad / ('train.' + ext)))
    data = bytearray(open(os.path.join(out, 'train.rec'), 'rb').read())
    lines = open(os.path.join(out, 'train.idx')).read().split('\n')
    key, third = (int(v) for v in lines[14].split())     # in the third batch of 6
    data[third + 8 + 24: third + 8 + 24 + 64] = b'\0' * 64       # the JPEG's first bytes, after both headers
    (bad / 'train.rec').write_bytes(bytes(data))
    assert pack.check_pack(str(bad / 'train'), num_classes=3, full=True) == 18     # headers are intact
    with pytest.raises(pack.PackError, match='1 image.*do not decode.*keys %d' % key):
        pack.check_pack(str(bad / 'train'), decode=True)
    assert pack.main(['--check', str(bad / 'train')]) == 2
    assert pack.main(['--check', os.path.join(out, 'train'), '--num-classes', '3']) == 0
    with pytest.raises(DataError, match='reading .*train.rec failed.*--check .*damaged/train'):
        # (MXNet reads the first batch while building the iterator)
        for _ in packiters.image_record_iter(path_imgrec=str(bad / 'train.rec'), path_imgidx=str(bad / 'train.idx'),
                                           data_shape=(3, 16, 16), batch_size=6, rand_crop=True,
                                           preprocess_threads=1):
            pass


def test_record_iter_rejects_unknown_keywords():
    with pytest.raises(TypeError, match='facebook_aug'):
        packiters.image_record_iter(path_imgrec='x.rec', data_shape=(3, 8, 8), batch_size=1, facebook_aug=True)


def test_imagenet_training_iterator_shapes(tree):
    _, _, out, _ = tree
    train, val = packiters.record_iters(os.path.join(out, 'train'), os.path.join(out, 'val'), 4, 24, 3,
                                      [123.68, 116.28, 103.53], [58.395, 57.12, 57.375], 'imagenet', resize=28)
    b = train(0).next()
    assert b.data[0].shape == (4, 3, 24, 24) and abs(float(b.data[0].mean().asscalar())) < 5
    assert val().next().data[0].shape == (4, 3, 24, 24)


@pytest.mark.parametrize('variant', ['cifar10', 'cifar100'])
def test_cifar_reader_on_official_format(tmp_path, variant):
    folder = make_cifar(str(tmp_path), variant, train=100, test=50)
    (x, y), (tx, ty) = load_cifar(str(tmp_path), variant)
    assert x.shape == (100, 32, 32, 3) and tx.shape == (50, 32, 32, 3) and x.dtype == np.uint8
    import pickle
    first = pickle.load(open(os.path.join(folder, 'data_batch_1' if variant == 'cifar10' else 'train'), 'rb'),
                        encoding='bytes')
    np.testing.assert_array_equal(x[0], first[b'data'][0].reshape(3, 32, 32).transpose(1, 2, 0))
    key = b'labels' if variant == 'cifar10' else b'fine_labels'
    assert y[0] == first[key][0]


def test_cifar_reader_errors(tmp_path):
    with pytest.raises(CifarError, match='does not exist'):
        load_cifar(str(tmp_path), 'cifar10')
    folder = make_cifar(str(tmp_path), 'cifar10', train=50, test=10)
    with open(os.path.join(folder, 'test_batch'), 'wb') as f:
        f.write(b'garbage')
    with pytest.raises(CifarError, match='cannot be read'):
        load_cifar(str(tmp_path), 'cifar10')


def test_array_iter_augments_and_pads_last_batch():
    x = np.arange(10 * 8 * 8, dtype=np.uint8).reshape(10, 8, 8)
    it = ArrayIter(x, np.arange(10), 4, [0], [1], shuffle=True, augment=True, pad=2, seed=3)
    batches = list(it)
    assert len(batches) == 3 and batches[-1].pad == 2 and batches[0].pad == 0
    assert batches[0].data[0].shape == (4, 1, 8, 8)
    again = list(ArrayIter(x, np.arange(10), 4, [0], [1], shuffle=True, augment=True, pad=2, seed=3))
    np.testing.assert_array_equal(batches[1].data[0].asnumpy(), again[1].data[0].asnumpy())


def test_array_iter_parts_are_slices_of_the_global_batch():
    x = np.random.RandomState(0).randint(0, 255, size=(22, 6, 6, 3)).astype(np.uint8)
    y = np.arange(22)
    whole = list(ArrayIter(x, y, 8, [0], [1], shuffle=True, augment=True, pad=1, seed=5))
    parts = [list(ArrayIter(x, y, 4, [0], [1], shuffle=True, augment=True, pad=1, seed=5, num_parts=2,
                            part_index=k)) for k in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 3
    for b, p0, p1 in zip(whole, *parts):
        np.testing.assert_array_equal(b.data[0].asnumpy(), np.concatenate([p0.data[0].asnumpy(),
                                                                           p1.data[0].asnumpy()]))
        assert b.pad == p0.pad + p1.pad


def test_array_iter_batch_larger_than_the_whole_set():
    """A validation set smaller than half a batch (tools.evaluate's 128 on 16 images) still gives one
    whole batch whose pad leaves exactly the real images."""
    x = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    batches = list(ArrayIter(x, np.arange(3), 8, [0], [1]))
    assert len(batches) == 1 and batches[0].pad == 5 and batches[0].data[0].shape == (8, 1, 4, 4)
    assert batches[0].label[0].asnumpy()[:3].tolist() == [0, 1, 2]
