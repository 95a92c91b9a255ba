"""The ImageNet input pipeline (data.decode.DecodeIter: OpenCV in worker processes).
Batches repeat exactly for the same (seed, epoch), whatever the workers did and however many
there are; workers read disjoint data and together see the single process's global batches;
every batch is whole and its pad leaves each image once; the augmentation is fb.resnet's; read
errors name the pack."""
import collections
import math
import os
import shutil

import cv2
import numpy as np
import mxnet as mx
import pytest

from data import augment, decode, pack, packindex, packiters, DataError
from tests.helpers import make_jpeg_tree

MEAN, STD = [123.68, 116.28, 103.53], [58.395, 57.12, 57.375]
N_TRAIN, N_VAL = 150, 61


@pytest.fixture(scope='module')
def packs(tmp_path_factory):
    """Colour packs of varied sizes whose label is the record's number (so batches can be traced
    to records)."""
    root = tmp_path_factory.mktemp('pipeline')
    rng = np.random.RandomState(0)
    for split, n in (('train', N_TRAIN), ('val', N_VAL)):
        items = []
        for i in range(n):
            img = cv2.resize(rng.randint(0, 256, (6, 8, 3)).astype(np.uint8), (30 + i % 7, 24 + i % 5))
            items.append((i, float(i), cv2.imencode('.jpg', img)[1].tobytes()))
        pack.write_records(str(root / split), items, progress=False)
    return str(root / 'train'), str(root / 'val')


def iters(packs, batch=8, threads=2, **kw):
    kw = dict(dict(augment=True, seed=5, threads=threads), **kw)
    return packiters.record_iters(packs[0], packs[1], batch, 16, 3, MEAN, STD, 'imagenet', resize=18, **kw)


def epoch(it):
    return [(b.data[0].asnumpy(), b.label[0].asnumpy(), b.pad) for b in it]


def real_labels(batches):
    """The labels of the rows that are not padding, in order."""
    return [int(v) for _, label, pad in batches for v in label[:len(label) - pad]]


def same(a, b):
    return len(a) == len(b) and all(x[0].tobytes() == y[0].tobytes() and x[1].tobytes() == y[1].tobytes()
                                    and x[2] == y[2] for x, y in zip(a, b))


def test_same_seed_and_epoch_give_the_same_batches_whatever_the_workers(packs):
    """The same batches from 1, 2 or 5 decoding processes (which worker decodes which rows varies)."""
    train, val = iters(packs)
    first, again, other = epoch(train(3)), epoch(train(3)), epoch(train(4))
    assert len(first) == -(-N_TRAIN // 8) and all(d.shape == (8, 3, 16, 16) for d, _, _ in first)
    assert same(first, again)
    for threads in (1, 5):
        assert same(first, epoch(iters(packs, threads=threads)[0](3)))
    assert same(epoch(val()), epoch(iters(packs, threads=1)[1]()))
    assert not any(np.array_equal(a[0], b[0]) for a, b in zip(first, other))          # another epoch
    assert sorted(real_labels(first)) == sorted(real_labels(other)) == list(range(N_TRAIN))
    assert not same(first, epoch(iters(packs, seed=6)[0](3)))
    for batch in train(3):                          # DataBatch.index: each row's record (= its label here)
        assert batch.index.tolist() == batch.label[0].asnumpy().astype(int).tolist()


def test_workers_are_slices_of_the_single_process_global_batch(packs):
    """Two workers of batch 8 read disjoint records and, together, exactly the batches of one
    process with the global batch of 16 (the rows of worker r are rows 8r..8r+7)."""
    whole = epoch(iters(packs, batch=16)[0](2))
    parts = [epoch(iters(packs, num_parts=2, part_index=r)[0](2)) for r in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == -(-N_TRAIN // 16)
    for w, p0, p1 in zip(whole, *parts):
        assert w[0].tobytes() == np.concatenate([p0[0], p1[0]]).tobytes()
        assert w[1].tobytes() == np.concatenate([p0[1], p1[1]]).tobytes() and w[2] == p0[2] + p1[2]
    seen = [set(real_labels(p)) for p in parts]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(N_TRAIN))
    assert sum(len(real_labels(p)) for p in parts) == N_TRAIN


@pytest.mark.parametrize('batch,workers', [(8, 1), (8, 2), (16, 3), (128, 1)])
def test_validation_counts_every_image_once(packs, batch, workers):
    """Whole batches; `pad` leaves exactly the images of the pack, each once over the workers, as
    a single ImageRecordIter's round_batch does (a batch larger than the set included)."""
    labels, pads = [], 0
    for r in range(workers):
        batches = epoch(iters(packs, batch=batch, num_parts=workers, part_index=r)[1]())
        assert all(d.shape == (batch, 3, 16, 16) and l.shape == (batch,) for d, l, _ in batches)
        labels += real_labels(batches)
        pads += sum(p for _, _, p in batches)
        # the padding rows are images of the pack, as round_batch's
        assert set(int(v) for _, l, p in batches for v in l[len(l) - p:]) <= set(range(N_VAL))
    single = mx.io.ImageRecordIter(path_imgrec=packs[1] + '.rec', path_imgidx=packs[1] + '.idx',
                                   data_shape=(3, 16, 16), batch_size=8, resize=18, round_batch=True,
                                   verbose=False)
    reference = [(None, b.label[0].asnumpy(), b.pad) for b in single]
    assert collections.Counter(labels) == collections.Counter(real_labels(reference)) == \
        collections.Counter(range(N_VAL))
    assert pads == -(-N_VAL // (batch * workers)) * batch * workers - N_VAL


def test_evaluate_leaves_the_padding_out(packs):
    from tasks.classification.evaluate import evaluate
    _, val = iters(packs)

    class Net(object):                           # logits whose top-1 is the label of each row
        def __init__(self):
            self.labels = iter([b.label[0] for b in val()])

        def __call__(self, x):
            return mx.nd.one_hot(next(self.labels)[:x.shape[0]], N_VAL)
    res = evaluate(Net(), val(), [mx.cpu()], N_VAL)
    assert res['n'] == N_VAL and res['correct1'] == N_VAL


def network_inputs(batches_of, ctx=(mx.cpu(),)):
    """[(network input (numpy, the devices' shares joined), labels, pad)] of an epoch's batches."""
    from data.device import device_inputs
    return [(np.concatenate([x.asnumpy() for x in device_inputs(b, list(ctx))]), b.label[0].asnumpy(), b.pad)
            for b in batches_of]


def test_colour_on_the_device_gives_the_same_network_input(packs):
    """For a GPU the workers deliver uint8 RGB planes and each image's colour map (B, 3, 4), the
    colour step left to the device: the network input computed there equals the float32 one the
    workers write for a CPU, in training and in validation, on one device or split over two; its
    batches are the same whatever the workers, and the uint8 planes are the float images' pixels."""
    on_device, on_cpu = iters(packs, colour_on_device=True), iters(packs)
    first = next(on_device[0](3))
    assert [(a.dtype, a.shape) for a in first.data] == [(np.uint8, (8, 3, 16, 16)), (np.float32, (8, 3, 4))]
    assert [d.name for d in first.provide_data] == ['data', 'colour']
    for split in (0, 1):
        make = (lambda f: f[0](3)) if split == 0 else (lambda f: f[1]())
        mine, theirs = network_inputs(make(on_device)), network_inputs(make(on_cpu))
        assert len(mine) == len(theirs) and all(a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
                                                for a, b in zip(mine, theirs))
        np.testing.assert_allclose(np.concatenate([m[0] for m in mine]), np.concatenate([t[0] for t in theirs]),
                                   rtol=0, atol=2e-5)
        two = network_inputs(make(on_device), ctx=(mx.cpu(0), mx.cpu(1)))
        assert all(a[0].tobytes() == b[0].tobytes() for a, b in zip(mine, two))
    raw = [(b.data[0].asnumpy(), b.data[1].asnumpy()) for b in on_device[0](3)]
    again = [(b.data[0].asnumpy(), b.data[1].asnumpy()) for b in iters(packs, threads=1, colour_on_device=True)[0](3)]
    assert all(a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() for a, b in zip(raw, again))
    val = next(on_device[1]())                         # validation: the normalisation alone
    np.testing.assert_allclose(val.data[1].asnumpy()[0], np.concatenate(
        [np.diag(1 / np.asarray(STD)), (-np.asarray(MEAN) / STD)[:, None]], axis=1), rtol=1e-6)
    pixels = (val.data[0].asnumpy().astype(np.float64) - np.reshape(MEAN, (3, 1, 1))) / np.reshape(STD, (3, 1, 1))
    np.testing.assert_allclose(pixels, next(on_cpu[1]()).data[0].asnumpy(), rtol=0, atol=2e-5)


def test_evaluate_takes_batches_whose_colour_runs_on_the_device(packs):
    """Validation (tasks/classification/evaluate.py) on uint8 batches and colour maps: the same counts as on float32
    batches, the padding left out on both, on two devices too."""
    from tasks.classification.evaluate import evaluate

    class Net(object):                           # the classes nearest to a function of the image's mean
        def __call__(self, x):
            centre = x.mean(axis=(1, 2, 3)).reshape((-1, 1)) * 40 + N_VAL / 2
            return -(mx.nd.arange(N_VAL, ctx=x.context).reshape((1, -1)) - centre) ** 2
    results = [evaluate(Net(), iters(packs, colour_on_device=flag)[1](), ctx, N_VAL)
               for flag in (False, True) for ctx in ([mx.cpu()], [mx.cpu(0), mx.cpu(1)])]
    assert all(r == results[0] for r in results) and results[0]['n'] == N_VAL
    assert 0 < results[0]['correct5'] < N_VAL


def test_validation_images_are_the_resized_centre(packs):
    """Shorter side bicubic to `resize` (ImageRecordIter's rounding), the centre crop, RGB,
    (x - mean) / std."""
    data, _, _ = epoch(iters(packs)[1]())[0]
    index = decode.PackIndex(packs[1])
    for i in range(8):
        img = cv2.imdecode(np.frombuffer(index.read(i)[1], np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        nh, nw = (18 * h // w, 18) if h > w else (18, 18 * w // h)
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
        y, x = (nh - 16) // 2, (nw - 16) // 2
        ref = (img[y:y + 16, x:x + 16, ::-1].transpose(2, 0, 1) - np.reshape(MEAN, (3, 1, 1))) \
            / np.reshape(STD, (3, 1, 1))
        np.testing.assert_allclose(data[i], ref, atol=1e-5)


def fb_resnet_colour(img_rgb, order, alpha, light):
    """fb.resnet's ColorJitter + Lighting step by step on a float RGB image (H, W, 3)."""
    def gray(x):
        return x[..., 0:1] * 0.299 + x[..., 1:2] * 0.587 + x[..., 2:3] * 0.114
    x = img_rgb.astype(np.float64)
    for t in order:
        f = alpha[t]
        other = 0.0 if t == 0 else (gray(x).mean() if t == 1 else gray(x))
        x = x * f + (1 - f) * other
    return x + augment.EIGVEC.dot(np.asarray(light) * augment.EIGVAL)


def test_training_augmentation_is_fb_resnet():
    """crop_image + the colour map = random-resized crop + bicubic resize + mirror + colour jitter
    (in a random order) + PCA lighting + normalisation, step by step as fb.resnet does (the
    colour steps folded into one affine map per image, exact up to float32 rounding), the same
    whether the worker applies the map (write_affine) or the device does (colour_apply)."""
    from data.device import colour_apply
    rng = np.random.RandomState(1)
    img = cv2.resize(rng.randint(0, 256, (5, 7, 3)).astype(np.uint8), (70, 50), interpolation=cv2.INTER_CUBIC)
    draws = augment.draw_augmentation(seed=3, epoch=1, batch=0, rows=40)
    affine, contrast = augment.colour_affine(draws, MEAN, STD)
    planes, floats = np.empty((40, 3, 24, 24), np.uint8), np.empty((40, 3, 24, 24), np.float32)
    scratch = (np.empty((24, 24, 3), np.float32), np.empty((24, 24, 3), np.float32))
    for r, p in enumerate(draws):
        crop = augment.crop_image(img, p, np.empty((24, 24, 3), np.uint8))
        augment.finish_colour(affine[r], contrast[r], crop)
        augment.write_planes(crop, planes[r])
        augment.write_affine(crop, affine[r], floats[r], scratch)
        areas, ratios = p[:10], p[10:20]
        x, y, cw, ch = augment.random_resized_box(50, 70, areas, ratios, p[20], p[21])
        assert 0 <= x and x + cw <= 70 and 0 <= y and y + ch <= 50
        if (x, y, cw, ch) != (10, 0, 50, 50):            # not the centre square (no try fitted)
            assert 0.07 < cw * ch / 3500.0 <= 1 and 3 / 4 - 0.05 <= cw / float(ch) <= 4 / 3 + 0.05
        ref_crop = cv2.resize(img[y:y + ch, x:x + cw], (24, 24), interpolation=cv2.INTER_CUBIC)
        if p[22] < 0.5:
            ref_crop = ref_crop[:, ::-1]
        np.testing.assert_array_equal(planes[r], ref_crop[..., ::-1].transpose(2, 0, 1))
        ref = fb_resnet_colour(ref_crop[..., ::-1], rng.permutation(3), p[23:26], p[26:29])
        ref = ((ref - np.asarray(MEAN)) / np.asarray(STD)).transpose(2, 0, 1)
        np.testing.assert_allclose(floats[r], ref, rtol=0, atol=2e-5)
    on_device = colour_apply(mx.nd.array(planes, dtype='uint8'), mx.nd.array(affine)).asnumpy()
    np.testing.assert_allclose(on_device, floats, rtol=0, atol=2e-5)
    assert 0.07 < draws[:, :10].min() and draws[:, :10].max() <= 1.0
    assert np.abs(draws[:, 10:20]).max() <= math.log(4 / 3) and np.abs(draws[:, 23:26] - 1).max() <= 0.4
    assert not np.array_equal(draws, augment.draw_augmentation(seed=3, epoch=2, batch=0, rows=40))
    np.testing.assert_array_equal(draws, augment.draw_augmentation(seed=3, epoch=1, batch=0, rows=40))


def test_a_batch_stays_valid_while_the_next_is_taken(packs):
    """The arrays of the last `keep` (2) batches are not rewritten by the decoding ahead."""
    train = iters(packs, threads=3)[0]
    it = train(0)
    held = []
    for batch in it:
        held = (held + [(batch.data[0], batch.data[0].asnumpy().copy())])[-2:]
        for arr, copy in held:
            assert arr.asnumpy().tobytes() == copy.tobytes()
    assert len(it._ring) == 5                    # the prefetch: 3 batches ahead + 2 kept
    # the arrays of an iterator that has ended serve the next epoch's
    assert {id(a) for a in it._ring} == {id(a) for a in train(1)._ring}


def test_an_abandoned_iterator_stops(packs):
    """The trainer may stop an epoch early (epoch_size): the iterator stops decoding and closes."""
    it = iters(packs)[0](0)
    next(it)
    it.close()
    assert it._pool is None
    with pytest.raises(StopIteration):
        next(it)


def test_damaged_record_names_the_pack(tmp_path):
    """A record that does not decode, or is no record, read by the decoding workers: DataError
    naming the pack and the record."""
    make_jpeg_tree(str(tmp_path / 'src'), classes=3, per_class=6, seed=1)
    pack.build_packs(str(tmp_path / 'src'), str(tmp_path / 'out'), progress=False)
    data = (tmp_path / 'out' / 'train.rec').read_bytes()
    lines = (tmp_path / 'out' / 'train.idx').read_text().split('\n')
    key, offset = (int(v) for v in lines[14].split())
    for name, start, what in (('undecodable', offset + 8 + 24, 'record %d does not decode' % key),
                              ('nomagic', offset, 'no whole record at offset %d' % offset)):
        bad = tmp_path / name
        bad.mkdir()
        shutil.copy(str(tmp_path / 'out' / 'train.idx'), str(bad / 'train.idx'))
        (bad / 'train.rec').write_bytes(data[:start] + b'\0' * 64 + data[start + 64:])
        it = decode.DecodeIter(decode.PackIndex(str(bad / 'train')), 4, 16, MEAN, STD, augment=True,
                                shuffle=False, threads=2)
        with pytest.raises(DataError, match='reading .*%s/train.rec failed \\(%s.*--check .*%s/train'
                           % (name, what, name)):
            for _ in it:
                pass
        assert it._pool is None


def test_data_source_decodes_imagenet_packs_in_worker_processes(packs, tmp_path):
    """DataSource reads dataset=imagenet packs with DecodeIter in data_threads (else the cores)
    worker processes; the batches do not depend on the number."""
    from config import load_config
    from data import DataSource
    folder = tmp_path / 'packs'
    folder.mkdir()
    for split, src in zip(('train', 'val'), packs):
        for ext in ('.rec', '.idx'):
            shutil.copy(src + ext, str(folder / (split + ext)))

    def source(threads):
        cfg = load_config(None, ['dataset=imagenet', 'data_dir=%s' % folder, 'num_classes=%d' % N_TRAIN,
                                 'image_size=16', 'resize=18', 'batch_size=8', 'kt=false', 'gpu_list=[]',
                                 'progress=false', 'data_threads=%d' % threads])
        return DataSource(cfg, batch_size=8)
    one, three = source(1), source(3)
    it = three.train(0)
    assert isinstance(it, decode.DecodeIter) and it._pool.workers == 3
    assert same(epoch(it), epoch(one.train(0)))
    assert collections.Counter(real_labels(epoch(three.val()))) == collections.Counter(range(N_VAL))


def test_validation_images_are_those_of_the_image_record_iter_used_before(packs):
    """The validation batches did not change with the new pipeline: MXNet's ImageRecordIter with
    the keywords the project used (resize, centre crop, bicubic) gives the same pixels, up to one
    grey level where its bundled JPEG decoder rounds differently."""
    ours = epoch(iters(packs)[1]())
    before = packiters.image_record_iter(path_imgrec=packs[1] + '.rec', path_imgidx=packs[1] + '.idx',
                                       data_shape=(3, 16, 16), batch_size=8, resize=18, rand_crop=False,
                                       rand_mirror=False, inter_method=2, round_batch=True, verbose=False,
                                       **packiters._norm(MEAN, STD, 3))
    theirs = [(b.data[0].asnumpy(), b.label[0].asnumpy(), b.pad) for b in before]
    assert len(ours) == len(theirs)
    for (d, l, p), (d2, l2, p2) in zip(ours, theirs):
        assert l.tobytes() == l2.tobytes() and p == p2
        levels = np.abs(d - d2) * np.reshape(STD, (1, 3, 1, 1))
        assert levels.max() <= 1.0 + 1e-3 and levels.mean() < 0.2


@pytest.mark.parametrize('use_map', [True, False])
def test_pack_index_reads_records_in_any_index_order_mapped_or_not(packs, tmp_path, monkeypatch, use_map):
    """PackIndex.read gives each record's label and image bytes as MXNet's reader does, whatever
    the order of the index lines (a record ends where the next record in the file starts), from
    the memory map or with pread (where the file system has no mmap), reading a record longer
    than READ_AHEAD whole."""
    lines = [l for l in open(packs[0] + '.idx').read().split('\n') if l.strip()]
    prefix = str(tmp_path / 'shuffled')
    shutil.copy(packs[0] + '.rec', prefix + '.rec')
    chosen = lines[::-3]                              # backwards, and a third of the records
    with open(prefix + '.idx', 'w') as f:
        f.write('\n'.join(chosen) + '\n')
    monkeypatch.setattr(packindex, 'READ_AHEAD', 64)     # (pread) every record takes a second read
    index = decode.PackIndex(prefix, use_map=use_map)
    assert (index._map is not None) == use_map
    reader = mx.recordio.MXIndexedRecordIO(packs[0] + '.idx', packs[0] + '.rec', 'r')
    try:
        for i, line in enumerate(chosen):
            header, image = mx.recordio.unpack(reader.read_idx(int(line.split()[0])))
            label, data = index.read(i)
            assert label == header.label and bytes(data) == image and len(image) > 64
    finally:
        reader.close()
        index.close()


def test_a_pack_rewritten_in_place_while_in_use_is_an_error_not_a_crash(packs, tmp_path):
    """Reading a mapped file past its new end would kill the process (SIGBUS): each read checks
    that the file still holds the record."""
    prefix = str(tmp_path / 'p')
    for ext in ('.rec', '.idx'):
        shutil.copy(packs[0] + ext, prefix + ext)
    it = decode.DecodeIter(decode.PackIndex(prefix), 8, 16, MEAN, STD, augment=True, shuffle=True, threads=2,
                           depth=1)
    next(it)
    it._pool.claim(it._inflight[0].slot)              # the batch decoded ahead: done before the truncation
    size = os.path.getsize(prefix + '.rec')
    with open(prefix + '.rec', 'r+b') as f:
        f.truncate(size // 2)
    with pytest.raises(DataError, match='reading %s.rec failed \\(it shrank from %d to %d bytes while in use: '
                       'a pack must be replaced' % (prefix, size, size // 2)):
        for _ in it:
            pass
    assert it._pool is None
    shutil.copy(packs[0] + '.rec', prefix + '.rec')    # cut short before any worker opened it
    index = decode.PackIndex(prefix)
    with open(prefix + '.rec', 'r+b') as f:
        f.truncate(size // 2)
    with pytest.raises(DataError, match='it shrank from %d to %d bytes while in use' % (size, size // 2)):
        for _ in decode.DecodeIter(index, 8, 16, MEAN, STD, augment=True, threads=2):
            pass
    with pytest.raises(DataError, match=r'its index %s.idx has a record at offset \d+, but the file holds %d bytes'
                       % (prefix, size // 2)):
        decode.PackIndex(prefix)


EXIT_SCRIPT = r'''
import faulthandler, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)     # (the test asks for the stacks if it hangs)
signal.signal(signal.SIGINT, signal.default_int_handler)   # as at a terminal (a background job inherits it ignored)
from data import packiters
train, _ = packiters.record_iters(sys.argv[1], sys.argv[1], 48, 224, 3, [0.0], [1.0], 'imagenet', threads=1)
it = train(0)
next(it)                                            # three batches now being decoded ahead
sys.stderr.write('decoding %s\n' % ' '.join(str(pid) for pid in it._pool.pids))
sys.stderr.flush()
if sys.argv[2] == 'exit':
    sys.exit(0)
while True:                                         # until Ctrl-C: epoch after epoch
    for batch in train(int(time.time())):
        pass
'''


@pytest.fixture(scope='module')
def photo_pack(tmp_path_factory):
    """96 JPEGs of 400x300: about 2 ms each to decode, so a batch of 48 keeps a worker busy."""
    root = tmp_path_factory.mktemp('photos')
    rng = np.random.RandomState(3)
    items = []
    for i in range(96):
        img = cv2.resize(rng.randint(0, 256, (30, 40, 3)).astype(np.uint8), (400, 300))
        img = np.clip(img + rng.randint(-20, 21, img.shape), 0, 255).astype(np.uint8)
        items.append((i, float(i % 3), cv2.imencode('.jpg', img)[1].tobytes()))
    pack.write_records(str(root / 'p'), items, progress=False)
    return str(root / 'p')


def alive(pid):
    """Whether process `pid` exists and is not a zombie."""
    from core.env import proc_stat
    fields = proc_stat(pid)
    return fields is not None and fields[0] != 'Z'


@pytest.mark.parametrize('how', ['exit', 'ctrl-c', 'killed'])
def test_the_process_exits_promptly_while_batches_are_being_decoded(photo_pack, how):
    """Leaving with an iterator decoding ahead, or Ctrl-C (SIGINT to the whole process group, as
    a terminal sends it) while waiting for a batch: the process ends within seconds (the decoding
    workers take at most the queued work, no hang), with exit status 0, or KeyboardInterrupt for
    Ctrl-C; its decoding workers are gone soon after, also when it was killed (SIGKILL)."""
    import signal
    import subprocess
    import sys
    import time
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.Popen([sys.executable, '-c', EXIT_SCRIPT, photo_pack, how], cwd=root, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        line = ''
        while not line.startswith('decoding'):
            line = p.stderr.readline()                # (MXNet's engine line)
            assert line, p.stderr.read()
        workers = [int(pid) for pid in line.split()[1:]]
        assert p.poll() is None and len(workers) == 1 and alive(workers[0])
        tic = time.time()
        if how != 'exit':
            time.sleep(1.0)                           # well into the loop
            tic = time.time()
            os.killpg(p.pid, signal.SIGINT if how == 'ctrl-c' else signal.SIGKILL)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:             # where it hangs, for the report
            os.kill(p.pid, signal.SIGUSR1)
            time.sleep(2.0)
            p.kill()
            pytest.fail('no exit 60 s after %s; its threads:\n%s' % (how, p.communicate()[1][-6000:]))
        elapsed = time.time() - tic
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if how == 'exit':
        assert p.returncode == 0, err
    elif how == 'ctrl-c':
        assert p.returncode != 0 and 'KeyboardInterrupt' in err, err
    else:
        assert p.returncode == -signal.SIGKILL
    assert elapsed < 8.0, (elapsed, err)
    deadline = time.time() + 5.0                      # (an orphan sees its parent gone within a second)
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
    assert 'decoding worker' not in err and err.count('Traceback') == (how == 'ctrl-c'), err


def shm_entries():
    """The names in /dev/shm (POSIX shared memory) now."""
    return set(os.listdir('/dev/shm')) if os.path.isdir('/dev/shm') else set()


def open_fds():
    """This process's open file descriptors now."""
    return set(os.listdir('/proc/self/fd'))


def test_a_worker_killed_mid_epoch_is_one_clear_error_and_the_next_epoch_starts_anew(packs):
    """A decoding worker killed (as by the OOM killer) while batches are decoded: the iterator
    raises one WorkerError naming the worker and the signal, without hanging, and stops the other
    worker; the factory's next iterator starts a new pool and gives the undisturbed batches."""
    import signal
    import time
    train, _ = iters(packs)
    it = train(0)
    next(it)
    pids = it._pool.pids
    os.kill(pids[1], signal.SIGKILL)
    while alive(pids[1]):                   # dead before the epoch goes on (else the epoch, a few ms of tiny
        time.sleep(0.01)                    # images, may end before the death shows: the next use reports it)
    tic = time.time()
    with pytest.raises(decode.WorkerError, match=r'^the decoding worker 2 of 2 \(pid %d\) exited with signal 9 '
                       r'\(SIGKILL\): killed, perhaps for lack of memory \(lower data_threads or batch_size\); '
                       r'the batches it was decoding are lost$' % pids[1]):
        for _ in it:
            pass
    assert time.time() - tic < 10 and it._pool is None and not any(alive(pid) for pid in pids)
    again = train(0)
    assert not set(again._pool.pids) & set(pids)
    assert same(epoch(again), epoch(iters(packs)[0](0)))


def test_nothing_is_left_behind_when_the_factories_are_dropped(packs, tmp_path):
    """Dropping the iterator factories (after batches, or after a damaged record's DataError)
    stops their workers and closes every file and shared memory (memfds: nothing ever appears in
    /dev/shm); a batch held past that keeps its memory (the NDArray holds the mapping)."""
    import gc
    bad = str(tmp_path / 'bad')
    pack.write_records(bad, [(i, float(i), cv2.imencode('.jpg', np.full((20, 20, 3), i, np.uint8))[1].tobytes())
                             for i in range(12)], progress=False)
    offset = dict(tuple(int(v) for v in line.split()) for line in open(bad + '.idx') if line.strip())[9]
    with open(bad + '.rec', 'r+b') as f:              # record 9's image: zeros
        f.seek(offset + 8 + 24)
        f.write(b'\0' * 64)
    next(iters(packs)[0](0))                          # (MXNet's own first-use files before the count)
    gc.collect()
    shm, fds = shm_entries(), open_fds()
    for prefix, error in ((packs[0], None), (bad, DataError)):
        train, val = packiters.record_iters(prefix, prefix, 4, 16, 3, MEAN, STD, 'imagenet', resize=18, threads=2)
        it = train(0)
        pids = it._pool.pids
        assert shm_entries() == shm and open_fds() != fds and all(alive(pid) for pid in pids)
        if error is None:
            held = next(it).data[0]                   # (a batch kept past its factory: still valid)
            copy = held.asnumpy().copy()
            next(val())
        else:
            with pytest.raises(error, match='record 9 does not decode'):
                for _ in it:
                    pass
        del train, val, it
        gc.collect()
        assert not any(alive(pid) for pid in pids) and shm_entries() == shm
        if error is None:                             # the held batch's slot: its mapping (mmap's fd) stays
            assert (held + 0).asnumpy().tobytes() == copy.tobytes()
            assert [os.readlink('/proc/self/fd/' + fd) for fd in open_fds() - fds] == ['/memfd:decode-slot (deleted)']
            del held
            gc.collect()
        assert open_fds() == fds


def test_the_workers_share_the_trainers_session_in_a_group_of_their_own(packs):
    """Ctrl-C at a terminal (SIGINT to the foreground process group) reaches the main process
    only, while the workers stay in its session: where Linux shares the CPU by session
    (autogroup), a session per worker would give each as much CPU as the whole trainer and put
    it out of reach of `nice`."""
    import sys
    it = iters(packs)[0](0)
    next(it)
    for pid in it._pool.pids:
        assert os.getpgid(pid) != os.getpgid(0)
        if sys.version_info >= (3, 11):
            assert os.getsid(pid) == os.getsid(0)
            if os.path.exists('/proc/self/autogroup'):
                assert open('/proc/%d/autogroup' % pid).read() == open('/proc/self/autogroup').read()
    it.close()


def test_the_workers_load_opencv_but_not_mxnet(packs):
    """The decoding workers import OpenCV and the data package, never mxnet (a few hundred MB and
    its engine's threads in every worker)."""
    import time
    it = iters(packs)[0](0)
    next(it)
    deadline = time.time() + 20
    for pid in it._pool.pids:
        while 'cv2' not in open('/proc/%d/maps' % pid).read() and time.time() < deadline:
            time.sleep(0.05)                          # (a worker may still be starting)
        maps = open('/proc/%d/maps' % pid).read()
        assert 'cv2' in maps and 'libmxnet' not in maps


def test_an_iterator_made_while_another_holds_the_ring_decodes_on_its_own(packs):
    """Two open iterators of one factory: the second starts a pool of its own (the first still
    holds the ring); both give the epoch's batches, and the next iterator uses the ring again."""
    train, _ = iters(packs)
    a = train(1)
    shared = a._pool
    first = next(a)
    first = (first.data[0].asnumpy(), first.label[0].asnumpy(), first.pad)
    b = train(1)
    assert b._pool is not shared and b._pool.workers == shared.workers
    assert same(epoch(b), [first] + epoch(a))
    assert a._pool is None and b._pool is None and train(2)._pool is shared


def test_input_pipeline_benchmark_measures_every_method_side_by_side(tmp_path):
    """benchmarks/input_pipeline.py at a tiny scale: a line per path with the project's, the
    previous and the bound's images/s and their ratio, the JSON with every figure; bad arguments
    are one error each (exit status 2)."""
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, '-m', 'benchmarks.input_pipeline', '--images', '48', '--small-images', '300',
           '--seconds', '0.2', '--rounds', '1', '--keep', str(tmp_path / 'data')]
    r = subprocess.run(cmd + ['--paths', 'imagenet_train,fashion_val,cifar_train'], cwd=root, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().split('\n')
    result = json.loads(lines[-1])
    assert [l.split()[0] for l in lines[:-1]] == ['imagenet_train', 'fashion_val', 'cifar_train']
    assert 'project/bound' in lines[0] and 'project/before' in lines[0] and 'load' in lines[0]
    for path, entry in result['paths'].items():
        assert entry['img_s']['project'] > 0 and entry['img_s']['bound'] > 0
        assert entry['ratio'] == pytest.approx(entry['img_s']['project'] / entry['img_s']['bound'])
        assert set(entry['img_s']) == ({'project', 'bound'} if path == 'cifar_train' else
                                       {'project', 'project_cpu', 'before', 'bound'} if path == 'imagenet_train'
                                       else {'project', 'before', 'bound'})
    inet = result['paths']['imagenet_train']
    assert inet['project_cpu_ratio'] == pytest.approx(inet['img_s']['project_cpu'] / inet['img_s']['bound'])
    assert inet['colour_ms'] > 0 and 'project_cpu' in lines[0] and 'colour_apply' in lines[0]
    assert not [f for f in os.listdir(str(tmp_path / 'data')) if f.endswith('.pickle')]
    for bad, message in ((['--paths', 'imagenet_test'], '--paths: imagenet_test is not one of'),
                         (['--seconds', '0'], '--seconds must be positive'),
                         (['--rounds', '0'], '--rounds must be at least 1')):
        r = subprocess.run(cmd + bad, cwd=root, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]


def test_a_worker_killed_while_fetching_from_the_resource_sharer_prints_no_traceback(capsys):
    """The SIGINT-to-the-process-group test saw multiprocessing's resource sharer thread print a
    ConnectionResetError traceback once (a worker killed in its handshake); WorkerLoader installs
    an excepthook that passes over exactly that, and hands anything else on."""
    import sys
    from data.workers import _quiet_resource_sharer
    seen = []
    hook = _quiet_resource_sharer(lambda *exc: seen.append(exc[0]))

    def _serve():                                     # (named as the sharer's thread function)
        raise ConnectionResetError(104, 'Connection reset by peer')
    _serve.__code__ = _serve.__code__.replace(co_filename='/usr/lib/python3/multiprocessing/resource_sharer.py')
    for fn, kind in ((_serve, ConnectionResetError), (lambda: 1 / 0, ZeroDivisionError)):
        try:
            fn()
        except Exception:
            hook(*sys.exc_info())
    assert seen == [ZeroDivisionError]
