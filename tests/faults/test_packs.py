"""RecordIO pack faults: every user mistake gives one clear error (PackError / DataError, which the
entry points turn into exit status 2 and `error: ...` on stderr, never a traceback), and nothing
already on disk is lost."""
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from core import checkpoint
from data import pack, fashion_mnist, DataSource, DataError
from data.packfile import PackError, RECORD_MAGIC, check_pack, is_decodable, read_lst, read_record_at
from tests.helpers import make_jpeg_tree, one_error

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def src(tmp_path_factory):
    """Source trees: train/val (3 classes), train2/val2 (2 classes, a second pack for re-packs)."""
    root = tmp_path_factory.mktemp('src')
    make_jpeg_tree(str(root / 'train'), classes=3, per_class=4, size=(20, 20), seed=1)
    make_jpeg_tree(str(root / 'val'), classes=3, per_class=2, size=(20, 20), seed=2)
    make_jpeg_tree(str(root / 'train2'), classes=2, per_class=3, size=(20, 20), seed=3)
    make_jpeg_tree(str(root / 'val2'), classes=2, per_class=2, size=(20, 20), seed=4)
    return root


def files(folder):
    """{relative path: bytes} of every file under `folder`."""
    out = {}
    for d, _, names in os.walk(str(folder)):
        for n in names:
            with open(os.path.join(d, n), 'rb') as f:
                out[os.path.relpath(os.path.join(d, n), str(folder))] = f.read()
    return out


def cli(main, argv, capsys):
    """(exit status, stderr) of an entry point's main(argv); it must not print a traceback."""
    try:
        code = main(argv)
    except KeyboardInterrupt:          # (not caught here, it would stop the whole pytest session)
        pytest.fail('%s let KeyboardInterrupt through' % main.__module__)
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return code, err


def built(src, out, val=True):
    """`out` holding a pack of src/train (and src/val), plus a file of the user's."""
    argv = ['--train', str(src / 'train'), '--out', str(out)] + (['--val', str(src / 'val')] if val else [])
    assert pack.main(argv) == 0
    (out / 'notes.txt').write_text('not part of the pack')
    return files(out)


def damage_image(prefix, line=4):
    """Zero the first image bytes of the record on index line `line` (its headers stay intact) and
    give the .rec a new time, as a copy would; returns the record's key."""
    with open(prefix + '.idx') as f:
        key, offset = (int(v) for v in f.read().split('\n')[line].split())
    with open(prefix + '.rec', 'rb') as f:
        data = bytearray(f.read())
    data[offset + 8 + 24: offset + 8 + 24 + 64] = b'\0' * 64
    with open(prefix + '.rec', 'wb') as f:
        f.write(bytes(data))
    st = os.stat(prefix + '.rec')
    os.utime(prefix + '.rec', ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert not is_decodable(prefix)
    return key


def png_records(images, labels=None):
    import cv2
    labels = labels if labels is not None else [i % 2 for i in range(len(images))]
    return [(i, float(l), cv2.imencode('.png', img)[1].tobytes()) for i, (img, l) in enumerate(zip(images, labels))]


def config(data_dir, dataset='imagenet', **kv):
    from config import load_config
    kv = dict(dict(num_classes=3, kt='false', progress='false', augment='true', gpu_list='[]'), **kv)
    return load_config(None, ['dataset=%s' % dataset, 'data_dir=%s' % data_dir]
                       + ['%s=%s' % item for item in kv.items()])


def train_argv(data_dir, tmp_path, *extra):
    return ['dataset=imagenet', 'data_dir=%s' % data_dir, 'num_classes=3', 'image_size=16',
            'network=cifar_resnet8', 'kt=false', 'gpu_list=[]', 'batch_size=2', 'progress=false',
            'data_threads=1', 'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'),
            'model_prefix=p', 'num_epoch=1', 'epoch_size=2'] + list(extra)


# --- 1. a re-pack replaces the whole pack or nothing ------------------------------------------------

def test_failed_repack_leaves_the_old_pack_untouched(src, tmp_path, capsys):
    """The validation images of the new pack all fail to decode: that is found after the training
    pack is written, which must not reach --out."""
    out = tmp_path / 'out'
    before = built(src, out)
    bad_val = tmp_path / 'bad_val'
    for name in ('class_a', 'class_b'):
        (bad_val / name).mkdir(parents=True)
        (bad_val / name / 'x.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    code, err = cli(pack.main, ['--train', str(src / 'train2'), '--val', str(bad_val), '--out', str(out),
                                '--overwrite'], capsys)
    assert code == 2 and 'none of the 2 images' in err and str(bad_val) in err
    assert files(out) == before
    assert sorted(os.listdir(str(out))) == sorted(before)          # no temporary folder left inside
    assert sorted(os.listdir(str(tmp_path))) == ['bad_val', 'out']  # ... or beside


def interrupt_at_val(monkeypatch):
    """Make pack.write_records raise KeyboardInterrupt when it reaches the val pack (as Ctrl-C
    there would); return the real function."""
    real = pack.write_records

    def interrupted(prefix, *args, **kwargs):
        if os.path.basename(prefix) == 'val':
            raise KeyboardInterrupt
        return real(prefix, *args, **kwargs)
    monkeypatch.setattr(pack, 'write_records', interrupted)
    return real


def test_interrupted_repack_leaves_the_old_pack_untouched(src, tmp_path, capsys, monkeypatch):
    out = tmp_path / 'out'
    before = built(src, out)
    interrupt_at_val(monkeypatch)
    code, err = cli(pack.main, ['--train', str(src / 'train2'), '--val', str(src / 'val2'), '--out', str(out),
                                '--overwrite'], capsys)
    assert code == 130 and 'interrupted' in err and '%s is unchanged' % out in err
    assert files(out) == before and sorted(os.listdir(str(tmp_path))) == ['out']
    fresh = tmp_path / 'fresh' / 'packs'
    code, err = cli(pack.main, ['--train', str(src / 'train2'), '--val', str(src / 'val2'), '--out', str(fresh)],
                    capsys)
    assert code == 130 and not (tmp_path / 'fresh').exists()       # the folders it created are gone again


def test_a_repack_stopped_by_sigterm_leaves_the_old_pack_and_no_staging_folder(src, tmp_path, capsys, monkeypatch):
    """SIGTERM (kill, a scheduler) during a re-pack is handled as Ctrl-C is: the pack-sized .building-*
    folder is removed and OUT is said to be unchanged, exit 143 (it exited 143 with no message and left
    the folder)."""
    import signal
    import time
    out = tmp_path / 'out'
    before = built(src, out)
    real = pack.write_records

    def terminated(prefix, *args, **kwargs):
        if os.path.basename(prefix) == 'val':
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                            # the handler raises before this ends
        return real(prefix, *args, **kwargs)
    monkeypatch.setattr(pack, 'write_records', terminated)
    handler = signal.getsignal(signal.SIGTERM)
    code, err = cli(pack.main, ['--train', str(src / 'train2'), '--val', str(src / 'val2'), '--out', str(out),
                                '--overwrite'], capsys)
    assert code == 143 and 'terminated (SIGTERM): %s is unchanged' % out in err, err
    assert files(out) == before and not [n for n in os.listdir(str(out)) if n.startswith('.building-')]
    assert signal.getsignal(signal.SIGTERM) == handler


def test_repack_replaces_every_pack_file_and_keeps_the_rest(src, tmp_path):
    """A new pack without validation: the old val.* (built for the old classes) are removed, so a new
    train never sits beside an old val; the user's own files stay; the builder's marks stay valid."""
    out = tmp_path / 'out'
    built(src, out)
    assert pack.main(['--train', str(src / 'train2'), '--out', str(out), '--overwrite']) == 0   # (other classes)
    assert sorted(os.listdir(str(out))) == ['classes.txt', 'notes.txt', 'replaced', 'train.decoded.json',
                                            'train.idx', 'train.lst', 'train.rec']
    assert pack.read_classes(str(out / 'classes.txt')) == ['class_a', 'class_b']
    assert check_pack(str(out / 'train'), num_classes=2) == 6 and is_decodable(str(out / 'train'))
    assert (out / 'notes.txt').read_text() == 'not part of the pack'


def write_idx_file(path, array):
    with open(path, 'wb') as f:
        f.write(b'\0\0\x08' + bytes([array.ndim]) + struct.pack('>' + 'I' * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.fixture()
def fmnist_source(tmp_path):
    rng = np.random.RandomState(0)
    folder = tmp_path / 'fm_src'
    folder.mkdir()
    for (images, labels), n in zip(fashion_mnist.FILES.values(), (20, 10)):
        write_idx_file(str(folder / images), rng.randint(0, 255, (n, 28, 28)))
        write_idx_file(str(folder / labels), np.arange(n) % 10)
    return folder


def test_interrupted_fashion_mnist_pack_leaves_out_untouched(fmnist_source, tmp_path, capsys, monkeypatch):
    """An earlier run stopped after the training pack (no val yet): a new run that is interrupted in
    turn leaves that earlier state as it was; an uninterrupted one completes it."""
    out = tmp_path / 'fm'
    out.mkdir()
    pack.write_records(str(out / 'train'), png_records(np.zeros((4, 28, 28), np.uint8)), progress=False)
    (out / 'raw').mkdir()
    (out / 'raw' / 'downloaded.gz').write_bytes(b'keep')
    before = files(out)
    real = interrupt_at_val(monkeypatch)
    argv = ['--out', str(out), '--source', str(fmnist_source), '--no-download']
    code, err = cli(fashion_mnist.main, argv, capsys)
    assert code == 130 and '%s is unchanged' % out in err
    assert files(out) == before and sorted(os.listdir(str(out))) == sorted(['raw', 'train.rec', 'train.idx',
                                                                            'train.decoded.json'])
    monkeypatch.setattr(pack, 'write_records', real)
    assert cli(fashion_mnist.main, argv, capsys)[0] == 0
    assert check_pack(str(out / 'train'), 10) == 20 and check_pack(str(out / 'val'), 10) == 10
    assert (out / 'raw' / 'downloaded.gz').read_bytes() == b'keep' and fashion_mnist.is_packed(str(out))


def test_fashion_mnist_subset_over_a_pack_of_another_size(fmnist_source, tmp_path, capsys):
    """--per-class into a folder holding a pack of another size is an error, not a silent 'present'."""
    out = tmp_path / 'fm'
    argv = ['--out', str(out), '--source', str(fmnist_source), '--no-download']
    assert cli(fashion_mnist.main, argv, capsys)[0] == 0                      # 20 training images
    before = files(out)
    code, err = cli(fashion_mnist.main, argv + ['--per-class', '1'], capsys)
    assert code == 2 and 'already holds a Fashion-MNIST pack of 20 training images, not the 10 of --per-class 1' in err
    assert files(out) == before
    assert cli(fashion_mnist.main, argv + ['--per-class', '2'], capsys)[0] == 0  # the same 20: present
    # (#18's seventeenth trial) a --per-class subset asked for as the whole set: refused, not 'present'
    sub = tmp_path / 'sub'
    assert cli(fashion_mnist.main, ['--out', str(sub), '--source', str(fmnist_source), '--no-download',
                                    '--per-class', '1'], capsys)[0] == 0
    before = files(sub)
    code, err = cli(fashion_mnist.main, ['--out', str(sub), '--source', str(fmnist_source), '--no-download'], capsys)
    assert code == 2 and 'already holds a Fashion-MNIST subset of 10 training images (--per-class 1), not the ' \
        'whole training set' in err, err
    assert files(sub) == before


def test_fashion_mnist_per_class_above_a_class_size_is_refused(fmnist_source, tmp_path, capsys):
    """--per-class larger than a class packed every image of it and said nothing."""
    argv = ['--out', str(tmp_path / 'fm'), '--source', str(fmnist_source), '--no-download']
    code, err = cli(fashion_mnist.main, argv + ['--per-class', '3'], capsys)
    assert code == 2 and "--per-class 3 is more than the 2 training images of class 't-shirt'" in err
    assert 'at most 2' in err and not (tmp_path / 'fm').exists()


# --- 2. every input is read and checked before anything is written -----------------------------------

def flat_val(tmp_path, src, lines):
    """A flat validation folder of copies of class_b's training images, and its label file."""
    val = tmp_path / 'flat'
    val.mkdir()
    images = sorted(os.listdir(str(src / 'train' / 'class_b')))
    for (name, _), image in zip(lines, images):
        shutil.copy(str(src / 'train' / 'class_b' / image), str(val / name))
    (tmp_path / 'val.txt').write_text(''.join('%s %s\n' % line for line in lines))
    return val, tmp_path / 'val.txt'


def test_val_labels_are_checked_before_anything_is_written(src, tmp_path, capsys):
    val, labels = flat_val(tmp_path, src, [('v0.jpg', '1'), ('v1.jpg', '7')])
    out = tmp_path / 'out'
    before = built(src, out)
    for target in (out, tmp_path / 'new'):
        code, err = cli(pack.main, ['--train', str(src / 'train'), '--val', str(val), '--val-labels', str(labels),
                                    '--out', str(target)], capsys)
        assert code == 2 and '%s line 2: label 7 is out of range for 3 classes' % labels in err
    assert files(out) == before and not (tmp_path / 'new').exists()


def test_a_partial_val_label_file_is_refused_naming_the_unlisted_images(src, tmp_path, capsys, caplog):
    """Images of the flat folder missing from --val-labels silently shrank the validation set."""
    val, labels = flat_val(tmp_path, src, [('v0.jpg', '1'), ('v1.jpg', '0'), ('v2.jpg', '2')])
    labels.write_text('v1.jpg 0\n')
    argv = ['--train', str(src / 'train'), '--val', str(val), '--val-labels', str(labels), '--out', str(tmp_path / 'o')]
    code, err = cli(pack.main, argv, capsys)
    assert code == 2 and '2 of the 3 images in %s are not in the label file %s (v0.jpg, v2.jpg)' % (val, labels) in err
    assert '--skip-unlisted' in err and not (tmp_path / 'o').exists()
    code, err = cli(pack.main, argv + ['--skip-unlisted'], capsys)
    assert code == 0 and 'left out of the validation pack (v0.jpg, v2.jpg)' in caplog.text
    assert [p for _, _, p in read_lst(str(tmp_path / 'o' / 'val.lst'))] == ['v1.jpg']
    code, err = cli(pack.main, ['--train', str(src / 'train'), '--out', str(tmp_path / 'p'), '--skip-unlisted'], capsys)
    assert code == 2 and '--skip-unlisted applies to a flat --val' in err


def test_a_dataset_root_given_as_the_image_folder_is_refused(src, tmp_path, capsys):
    """--train pointing one level too high (train/ and val/ became two classes) packed silently."""
    root = tmp_path / 'dataset'
    shutil.copytree(str(src / 'train'), str(root / 'train'))
    shutil.copytree(str(src / 'val'), str(root / 'val'))
    code, err = cli(pack.main, ['--train', str(root), '--out', str(tmp_path / 'o')], capsys)
    assert code == 2 and 'the class folders of %s hold class folders themselves' % root in err
    assert 'train/ holds class_a, class_b, class_c' in err and '--train %s --val %s' % (root / 'train', root / 'val') in err
    assert not (tmp_path / 'o').exists()
    code, err = cli(pack.main, ['--train', str(root), '--out', str(tmp_path / 'o'), '--nested-classes'], capsys)
    assert code == 0 and pack.read_classes(str(tmp_path / 'o' / 'classes.txt')) == ['train', 'val']


def test_val_label_file_names_with_spaces(src, tmp_path):
    val, labels = flat_val(tmp_path, src, [('my photo 1.jpg', 'class_b'), ('my photo 2.jpg', '0')])
    pack.build_packs(str(src / 'train'), str(tmp_path / 'out'), str(val), str(labels), progress=False)
    assert [(l, p) for _, l, p in read_lst(str(tmp_path / 'out' / 'val.lst'))] == [(1.0, 'my photo 1.jpg'),
                                                                                   (0.0, 'my photo 2.jpg')]


def test_unknown_validation_classes_fail_before_anything_is_written(src, tmp_path, capsys):
    out = tmp_path / 'out'
    before = built(src, out)
    code, err = cli(pack.main, ['--train', str(src / 'train2'), '--val', str(src / 'val'), '--out', str(out)], capsys)
    assert code == 2 and "classes not in training: ['class_c']" in err
    assert files(out) == before


# --- 3. empty class folders, sources with no image that decodes --------------------------------------

def test_empty_class_folders_are_an_error(src, tmp_path, capsys):
    train = tmp_path / 'train'
    shutil.copytree(str(src / 'train'), str(train))
    (train / 'class_x').mkdir()
    (train / 'class_y').mkdir()
    (train / 'class_y' / 'readme.txt').write_text('no images here')
    with pytest.raises(PackError, match=r'class folder\(s\) with no images in %s: class_x, class_y' % train):
        pack.list_class_folders(str(train))
    code, err = cli(pack.main, ['--train', str(train), '--out', str(tmp_path / 'out')], capsys)
    assert code == 2 and 'every sub-folder is a class' in err and 'remove' in err
    assert not (tmp_path / 'out').exists()


def test_a_source_without_one_decodable_image_is_an_error(tmp_path, capsys):
    train = tmp_path / 'train'
    for name in ('a', 'b'):
        (train / name).mkdir(parents=True)
        for i in range(2):
            (train / name / ('%d.png' % i)).write_bytes(b'\x89PNG\r\n\x1a\n broken')
    code, err = cli(pack.main, ['--train', str(train), '--out', str(tmp_path / 'out')], capsys)
    assert code == 2 and 'none of the 4 images in %s could be read and decoded' % train in err
    assert not (tmp_path / 'out').exists()
    with pytest.raises(PackError, match='none of the 2 images'):
        pack.write_records(str(tmp_path / 'x'), [(0, 0.0, b'junk'), (1, 0.0, b'more junk')], progress=False)
    assert os.listdir(str(tmp_path)) == ['train']                      # no half-written x.rec.tmp


# --- 4. malformed index and list lines ----------------------------------------------------------------

def test_malformed_index_and_list_lines(src, tmp_path, capsys):
    out = tmp_path / 'out'
    built(src, out)
    prefix = str(out / 'train')
    good_idx, good_lst = (out / 'train.idx').read_text(), (out / 'train.lst').read_text()
    for bad in ('x7\t1234', '3\t12a', '3\t-1.5'):
        lines = good_idx.split('\n')
        lines[2] = bad
        (out / 'train.idx').write_text('\n'.join(lines))
        with pytest.raises(PackError, match='index %s line 3 .*rebuild the pack' % (out / 'train.idx')):
            check_pack(prefix)
        code, err = cli(pack.main, ['--check', prefix], capsys)
        assert code == 2 and 'train.idx line 3' in err
    (out / 'train.idx').write_text(good_idx)
    for bad in ('a\t1.000000\tclass_a/000.jpg', '1\tone\tclass_a/000.jpg', '1\tnan\tclass_a/000.jpg'):
        lines = good_lst.split('\n')
        lines[1] = bad
        (out / 'train.lst').write_text('\n'.join(lines))
        with pytest.raises(PackError, match='list %s line 2 .*rebuild the pack' % (out / 'train.lst')):
            read_lst(prefix + '.lst')
        with pytest.raises(PackError, match='train.lst line 2'):
            check_pack(prefix, num_classes=3)


# --- 5. every index offset is the start of a whole record ---------------------------------------------

def test_index_offset_inside_a_record_stops_training_with_an_error(src, tmp_path):
    """MXNet's ImageRecordIter aborts the process (SIGABRT) on it; the start-up check must find it first.
    A subprocess, so that an abort fails this test instead of killing pytest."""
    out = tmp_path / 'out'
    built(src, out)
    lines = (out / 'train.idx').read_text().split('\n')
    key, offset = lines[5].split()
    following = int(lines[6].split()[1])
    lines[5] = '%s\t%d' % (key, (int(offset) + following) // 8 * 4)
    (out / 'train.idx').write_text('\n'.join(lines))
    code = 'import sys, train; sys.exit(train.main(%r))' % train_argv(out, tmp_path)
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-1500:]
    assert 'index %s line 6: record %s' % (out / 'train.idx', key) in r.stderr
    assert 'rebuild the pack' in r.stderr and 'Traceback' not in r.stderr


def test_header_check_reads_every_record_start(src, tmp_path):
    out = tmp_path / 'out'
    built(src, out)
    prefix, idx = str(out / 'train'), str(out / 'train.idx')
    good = (out / 'train.idx').read_text()
    data = (out / 'train.rec').read_bytes()
    offsets = [int(l.split()[1]) for l in good.split('\n') if l.strip()]

    def with_offset(line, offset):
        lines = good.split('\n')
        lines[line] = '%s\t%d' % (lines[line].split()[0], offset)
        (out / 'train.idx').write_text('\n'.join(lines))
    with_offset(3, offsets[3] + 2)                 # not 4-byte aligned: never a record start
    with pytest.raises(PackError, match='index %s line 4: record 3 .*offset %d.*not the start of a record'
                       % (idx, offsets[3] + 2)):
        check_pack(prefix)
    with_offset(3, offsets[3] + 40)                # inside the image bytes
    with pytest.raises(PackError, match='line 4: .*not the start of a record'):
        check_pack(prefix)
    (out / 'train.idx').write_text(good)
    damaged = bytearray(data)                      # record 4's length field says more than there is
    damaged[offsets[4] + 4: offsets[4] + 8] = struct.pack('<I', offsets[5] - offsets[4])
    (out / 'train.rec').write_bytes(bytes(damaged))
    with pytest.raises(PackError, match='line 5: record 4 .*runs past the start of the next record'):
        check_pack(prefix)
    (out / 'train.rec').write_bytes(data)
    assert check_pack(prefix, num_classes=3) == 12


def test_an_index_with_a_deleted_line_is_refused(src, tmp_path, capsys):
    """A deleted .idx line passed every check: its record was left out of training without a word.
    The records must fill the .rec; the .lst must list every record of the index."""
    out = tmp_path / 'out'
    built(src, out)
    prefix, idx = str(out / 'train'), str(out / 'train.idx')
    good = (out / 'train.idx').read_text()
    lines = good.split('\n')
    for dropped, where in ((3, 'after line 3 (record 2)'), (0, 'before its first line'), (11, 'after line 11')):
        (out / 'train.idx').write_text('\n'.join(lines[:dropped] + lines[dropped + 1:]))
        with pytest.raises(PackError, match=r'index %s does not list every record .*%s.*hold record %d'
                           % (idx, re.escape(where), dropped)):
            check_pack(prefix, num_classes=3)
    (out / 'train.idx').write_text(good)
    code, err = cli(pack.main, ['--check', prefix], capsys)
    assert code == 0, err
    lst = (out / 'train.lst').read_text().split('\n')
    (out / 'train.lst').write_text('\n'.join(lst[:5] + lst[6:]))           # the list lost a line
    with pytest.raises(PackError, match=r'list .*train.lst does not list 1 record\(s\) of the index \(keys 5\)'):
        check_pack(prefix, num_classes=3)
    code, err = cli(pack.main, ['--check', prefix], capsys)
    assert code == 2 and 'train.lst does not list' in err
    lst[6] = lst[6].replace('\t0.000000\t', '\t2.000000\t').replace('\t1.000000\t', '\t2.000000\t')
    (out / 'train.lst').write_text('\n'.join(lst))                           # a label that is not the record's
    code, err = cli(pack.main, ['--check', prefix], capsys)
    assert code == 2 and 'has label 2 in the list but' in err, err
    lst[6] = 'not a list line'
    (out / 'train.lst').write_text('\n'.join(lst))
    code, err = cli(pack.main, ['--check', prefix], capsys)
    assert code == 2 and 'train.lst line 7' in err, err


def test_records_split_around_the_magic_number_are_read_whole(tmp_path):
    """MXNet's RecordIO splits a record whose bytes hold its magic number (4-byte aligned) into parts;
    checks and decoding must read the whole record (an ImageNet-size pack holds a few of these)."""
    import mxnet as mx
    items = png_records([np.full((8, 8), 40 * i, np.uint8) for i in range(4)])
    magic = struct.pack('<I', RECORD_MAGIC)
    i, label, image = items[2]
    pad = (-(24 + len(image))) % 4                  # the payload starts 4-byte aligned after the 8-byte header
    items[2] = (i, label, image + b'\0' * pad + magic + b'tail' + magic + b'end!')
    prefix = str(tmp_path / 'split')
    pack.write_records(prefix, items, progress=False)
    rec = mx.recordio.MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'r')
    with open(prefix + '.rec', 'rb') as f:
        offset = int(open(prefix + '.idx').read().split('\n')[2].split()[1])
        assert read_record_at(f, offset, os.path.getsize(prefix + '.rec'), prefix + '.rec') == rec.read_idx(2)
    assert check_pack(prefix, num_classes=2, decode=True) == 4
    assert check_pack(prefix, num_classes=2) == 4


# --- 6. packs not known to decode are decoded once on every path --------------------------------------

@pytest.mark.parametrize('dataset,augment,split', [('imagenet', 'true', 'train'), ('imagenet', 'false', 'train'),
                                                   ('imagenet', 'true', 'val'), ('fashion_mnist', 'true', 'train'),
                                                   ('fashion_mnist', 'false', 'val')])
def test_undecodable_image_is_found_on_every_path(tmp_path, dataset, augment, split):
    rng = np.random.RandomState(0)
    shape = (12, 12, 3) if dataset == 'imagenet' else (12, 12)
    for s in ('train', 'val'):
        pack.write_records(str(tmp_path / s), png_records(rng.randint(0, 255, (8,) + shape).astype(np.uint8)),
                           progress=False)
    key = damage_image(str(tmp_path / split))
    with pytest.raises(PackError, match=r'1 image\(s\) in %s do not decode \(record keys %d\)'
                       % (tmp_path / (split + '.rec'), key)):
        DataSource(config(tmp_path, dataset, num_classes=2, augment=augment, image_size=12))


def test_a_batch_larger_than_the_training_set_is_named(src, tmp_path, capsys):
    """Found by a new user: batch_size=64 over 12 training images failed with 'A record is probably
    damaged' (MXNet: number of input images must be bigger than the batch size); a validation set
    smaller than a batch failed the same way, after a whole epoch of training."""
    out = tmp_path / 'out'
    built(src, out)
    import train
    from tests.helpers import merged
    code, err = cli(train.main, merged(train_argv(out, tmp_path, 'batch_size=16')), capsys)
    assert code == 2 and 'a batch takes 16 images but the training set of %s has 12' % out in err, err
    # (the advice fits the validation set of 6 too: #18's twelfth trial followed 'at most 12' into a second error)
    assert 'lower batch_size to at most 6' in err and 'damaged' not in err
    code, err = cli(train.main, merged(train_argv(out, tmp_path, 'batch_size=8')), capsys)     # after an epoch
    assert code == 2 and 'a batch takes 8 images but the validation set of %s has 6' % out in err, err


def test_undecodable_training_image_on_the_augmenting_path_stops_training(src, tmp_path, capsys):
    out = tmp_path / 'out'
    built(src, out)
    key = damage_image(str(out / 'train'))
    import train
    code, err = cli(train.main, train_argv(out, tmp_path, 'augment=true'), capsys)
    assert code == 2 and 'do not decode (record keys %d)' % key in err and 'train.rec' in err
    assert not (tmp_path / 'model').exists() or not os.listdir(str(tmp_path / 'model'))


# --- 7. the dataset's channel count against the pack's images -----------------------------------------

def test_pack_channels_must_match_the_dataset(tmp_path):
    rng = np.random.RandomState(0)
    gray, colour = tmp_path / 'gray', tmp_path / 'colour'
    for folder, shape in ((gray, (40, 12, 12)), (colour, (40, 12, 12, 3))):
        folder.mkdir()
        for s in ('train', 'val'):
            pack.write_records(str(folder / s), png_records(rng.randint(0, 255, shape).astype(np.uint8)),
                               progress=False)
    with pytest.raises(DataError, match=r'dataset=imagenet expects 3-channel .* %s .*1-channel.*'
                       r'set dataset=fashion_mnist.*or re-pack' % (gray / 'train.rec')):
        DataSource(config(gray, 'imagenet', num_classes=2))
    with pytest.raises(DataError, match=r'dataset=fashion_mnist expects 1-channel .* %s .*3-channel.*'
                       r'set dataset=imagenet.*or re-pack' % (colour / 'train.rec')):
        DataSource(config(colour, 'fashion_mnist', num_classes=2))
    DataSource(config(gray, 'fashion_mnist', num_classes=2, image_size=12))   # (12x12 images are not enlarged)
    DataSource(config(colour, 'imagenet', num_classes=2))
    # (#18's seventeenth trial) a colour pack with a few grayscale images is no grayscale pack either
    mixed = tmp_path / 'mixed'
    mixed.mkdir()
    for s in ('train', 'val'):
        images = [rng.randint(0, 255, (12, 12, 3)).astype(np.uint8) for _ in range(36)] + \
            [rng.randint(0, 255, (12, 12)).astype(np.uint8) for _ in range(4)]
        pack.write_records(str(mixed / s), png_records(images), progress=False)
    with pytest.raises(DataError, match=r'dataset=fashion_mnist expects 1-channel .*set dataset=imagenet'):
        DataSource(config(mixed, 'fashion_mnist', num_classes=2, image_size=12))
    DataSource(config(mixed, 'imagenet', num_classes=2))


def test_small_images_are_never_seen_differently_in_training_and_validation(tmp_path):
    """#18.8: image_size=32 on a 28x28 Fashion-MNIST pack trained on the image in a zero border and
    validated on it stretched (5x5 images at the default 28 likewise): refused, naming the size."""
    from tests.helpers import make_fashion_mnist
    make_fashion_mnist(str(tmp_path / 'fm'))
    with pytest.raises(DataError, match=r'image_size=32 but images of .*train.rec are 28x28.*not resized.*'
                       r'set image_size to 28 or less'):
        DataSource(config(tmp_path / 'fm', 'fashion_mnist', num_classes=10, image_size=32))
    DataSource(config(tmp_path / 'fm', 'fashion_mnist', num_classes=10, image_size=24))   # a crop: the same in both
    rng = np.random.RandomState(0)
    tiny = tmp_path / 'tiny'
    tiny.mkdir()
    for s in ('train', 'val'):
        pack.write_records(str(tiny / s), png_records(rng.randint(0, 255, (8, 5, 5)).astype(np.uint8)), progress=False)
    with pytest.raises(DataError, match=r'image_size=28 but images of .*are 5x5'):
        DataSource(config(tiny, 'fashion_mnist', num_classes=2))


def test_a_few_grayscale_images_in_a_colour_pack_are_fine(src, tmp_path):
    import cv2
    train = tmp_path / 'train'
    shutil.copytree(str(src / 'train'), str(train))
    for c in ('class_a', 'class_c'):
        for name in ('000.jpg', '002.jpg'):
            img = cv2.imread(str(train / c / name), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(train / c / name), img)
    pack.build_packs(str(train), str(tmp_path / 'out'), str(src / 'val'), progress=False)
    assert DataSource(config(tmp_path / 'out', 'imagenet')).num_train == 12


# --- 8. command-line mistakes -------------------------------------------------------------------------

def read_only_folder(tmp_path):
    """An existing folder this process cannot write to: a chmod 555 one, or /sys when running as root."""
    ro = tmp_path / 'ro'
    ro.mkdir()
    os.chmod(str(ro), 0o555)
    try:
        (ro / 'probe').mkdir()
    except OSError:
        return ro
    (ro / 'probe').rmdir()
    try:
        os.mkdir('/sys/kd-pack-probe')
    except OSError:
        return type(tmp_path)('/sys')
    os.rmdir('/sys/kd-pack-probe')
    pytest.skip('no read-only folder available')


def test_pack_command_line_mistakes(src, tmp_path, capsys):
    code, err = cli(pack.main, ['--check', str(tmp_path / 'nowhere' / 'train')], capsys)
    assert code == 2 and 'folder %s does not exist' % (tmp_path / 'nowhere') in err
    out = tmp_path / 'out'
    built(src, out)
    code, err = cli(pack.main, ['--check', str(out)], capsys)
    assert code == 2 and 'is a folder' in err and '--check %s' % (out / 'train') in err
    code, err = cli(pack.main, ['--check', str(out / 'test')], capsys)
    assert code == 2 and 'test.rec' in err and 'packs in %s: train, val' % out in err
    for threads in ('0', '-2'):
        with pytest.raises(SystemExit) as e:
            pack.main(['--train', str(src / 'train'), '--out', str(tmp_path / 'o'), '--threads', threads])
        assert e.value.code == 2 and '--threads' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()
    afile = tmp_path / 'afile'
    afile.write_text('keep')
    code, err = cli(pack.main, ['--train', str(src / 'train'), '--out', str(afile)], capsys)
    assert code == 2 and '--out %s is a file' % afile in err and afile.read_text() == 'keep'
    code, err = cli(fashion_mnist.main, ['--out', str(afile), '--source', str(tmp_path), '--no-download'], capsys)
    assert code == 2 and '%s is a file' % afile in err
    code, err = cli(pack.main, ['--train', str(src / 'train'), '--val-labels', 'x.txt', '--out', str(out)], capsys)
    assert code == 2 and '--val-labels needs --val' in err
    code, err = cli(pack.main, ['--train', str(src / 'train'), '--out', str(src / 'train' / 'packs')], capsys)
    assert code == 2 and 'inside the image folder' in err and not (src / 'train' / 'packs').exists()
    ro = read_only_folder(tmp_path)
    try:
        for target in (ro / 'packs', ro):
            code, err = cli(pack.main, ['--train', str(src / 'train'), '--out', str(target)], capsys)
            assert code == 2 and 'cannot write' in err and str(ro) in err and 'writable --out' in err
        assert not (ro / 'packs').exists()
    finally:
        if ro != type(tmp_path)('/sys'):
            os.chmod(str(ro), 0o755)


def test_pack_usage_slips_are_one_line(src, tmp_path, capsys):
    """Found by a new user: argparse's usage block around the error, and a pack folder given as the
    image folder ('has no class sub-folders')."""
    for main, argv in ((pack.main, []), (pack.main, ['--train', 'x', '--out', 'y', '--threads', 'two']),
                       (fashion_mnist.main, ['--per-class', 'x'])):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith('error: '), err
    out = tmp_path / 'out'
    built(src, out)
    code, err = cli(pack.main, ['--train', str(out), '--out', str(tmp_path / 'again')], capsys)
    assert code == 2 and 'holds packs already (train.rec, val.rec)' in err and 'data_dir=%s' % out in err


def test_fashion_mnist_source_mistakes(tmp_path, capsys, monkeypatch):
    """A --source without the idx files is an error (not a silent download instead)."""
    def no_download(out):
        raise AssertionError('downloaded although --source was given')
    monkeypatch.setattr(fashion_mnist, 'download', no_download)
    fm = tmp_path / 'fm'
    code, err = cli(fashion_mnist.main, ['--out', str(fm), '--source', str(tmp_path / 'nowhere')], capsys)
    assert code == 2 and '--source folder %s does not exist' % (tmp_path / 'nowhere') in err
    (tmp_path / 'partial').mkdir()
    write_idx_file(str(tmp_path / 'partial' / 'train-images-idx3-ubyte'), np.zeros((2, 28, 28)))
    code, err = cli(fashion_mnist.main, ['--out', str(fm), '--source', str(tmp_path / 'partial')], capsys)
    assert code == 2 and 'does not hold the Fashion-MNIST idx files (missing: train-labels-idx1-ubyte, ' in err
    assert not fm.exists()


def test_fashion_mnist_damaged_or_misnamed_sources(fmnist_source, tmp_path, capsys, monkeypatch):
    """A .gz cut short (an interrupted copy) or not gzip at all, an idx file that ends inside its
    header, and a --source that is a file: one error each, naming the file, nothing written."""
    import gzip
    import shutil
    monkeypatch.setattr(fashion_mnist, 'download', lambda out: None)
    fm = tmp_path / 'fm'
    name = 'train-images-idx3-ubyte'

    def source_with(content, gz):
        src = tmp_path / ('src_gz' if gz else 'src_raw')
        shutil.rmtree(str(src), ignore_errors=True)
        shutil.copytree(str(fmnist_source), str(src))
        os.remove(str(src / name))
        with open(str(src / (name + '.gz' if gz else name)), 'wb') as f:
            f.write(content)
        return ['--out', str(fm), '--source', str(src)]
    whole = gzip.compress(open(str(fmnist_source / name), 'rb').read())
    for content, gz, needle in ((whole[:len(whole) // 3], True, 'is not a complete gzip file'),
                                (b'not gzip', True, 'is not a complete gzip file'),
                                (b'\0\0\x08\x03\0\0', False, 'ends inside its header')):
        code, err = cli(fashion_mnist.main, source_with(content, gz), capsys)
        one_error(code, err, name, needle, 'again')
        assert not fm.exists()
    code, err = cli(fashion_mnist.main, ['--out', str(fm), '--source', str(fmnist_source / name)], capsys)
    one_error(code, err, 'is a file, not a folder')


def test_label_outside_num_classes(cifar_setup, train_run):
    _, common, _ = cifar_setup
    code, err = train_run(common + ['num_classes=5', 'network=cifar_resnet8', 'model_prefix=s5'])
    assert code == 2 and 'outside num_classes=5' in err


def test_label_out_of_range_inside_a_pack_stops_before_any_checkpoint(tmp_path, train_run):
    """A pack whose first and last labels fit num_classes (so the start-up check passes) but
    a record in between does not: training stops with a data error and writes no checkpoint."""
    import cv2
    from data import pack
    rng = np.random.RandomState(0)
    labels = [0, 1, 1, 0, 7, 1, 0, 1, 0, 1, 0, 1]
    items = [(i, lab, cv2.imencode('.png', rng.randint(0, 255, (12, 12, 3)).astype(np.uint8))[1].tobytes())
             for i, lab in enumerate(labels)]
    for split in ('train', 'val'):
        pack.write_records(str(tmp_path / split), items, progress=False)
    argv = ['dataset=imagenet', 'data_dir=%s' % tmp_path, 'num_classes=2', 'image_size=12', 'resize=12',
            'network=cifar_resnet8', 'kt=false', 'gpu_list=[]', 'batch_size=4', 'progress=false', 'frequent=1',
            'data_threads=1', 'augment=false', 'model_dir=%s' % (tmp_path / 'model'),
            'log_dir=%s' % (tmp_path / 'log'), 'model_prefix=labels', 'num_epoch=1']
    code, err = train_run(argv)
    assert code == 2 and 'training label(s) lie outside 0..1' in err and 'num_classes=2' in err
    assert checkpoint.epochs(str(tmp_path / 'model'), 'labels') == []


def test_undecodable_validation_image_is_an_error_not_a_crash(tmp_path, train_run):
    """MXNet's resizing iterator would abort the process on it (SIGFPE): packs not known to decode
    are decoded once before their first use, and the damaged record is named."""
    from data import pack
    from data.packfile import is_decodable
    from tests.helpers import make_jpeg_tree
    make_jpeg_tree(str(tmp_path / 'imgs' / 'train'), classes=2, per_class=4, size=(20, 20), seed=1)
    make_jpeg_tree(str(tmp_path / 'imgs' / 'val'), classes=2, per_class=3, size=(20, 20), seed=2)
    pack.build_packs(str(tmp_path / 'imgs' / 'train'), str(tmp_path / 'packs'), str(tmp_path / 'imgs' / 'val'),
                     progress=False)
    val = str(tmp_path / 'packs' / 'val')
    assert is_decodable(val)                       # the builder decoded every image
    argv = ['dataset=imagenet', 'data_dir=%s' % (tmp_path / 'packs'), 'num_classes=2', 'image_size=16',
            'network=cifar_resnet8', 'kt=false', 'gpu_list=[]', 'batch_size=2', 'progress=false',
            'data_threads=1', 'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'),
            'model_prefix=dec', 'num_epoch=1']
    assert train_run(argv)[0] == 0
    key, offset = (int(v) for v in open(val + '.idx').read().split('\n')[4].split())
    data = bytearray(open(val + '.rec', 'rb').read())
    data[offset + 8 + 24: offset + 8 + 24 + 64] = b'\0' * 64        # the JPEG's first bytes
    open(val + '.rec', 'wb').write(bytes(data))
    st = os.stat(val + '.rec')                     # (a file system with coarse times: still a new time)
    os.utime(val + '.rec', ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert not is_decodable(val)                   # the files changed since
    code, err = train_run(argv + ['model_prefix=dec2'])
    assert code == 2 and 'do not decode (record keys %d)' % key in err and 'val.rec' in err


def test_an_image_folder_that_is_a_file_is_named_as_one(tmp_path):
    """Found by a new user: --train naming a file (e.g. an existing pack's train.rec) said the folder
    did not exist."""
    f = tmp_path / 'train.rec'
    f.write_bytes(b'x')
    code = pack.main(['--train', str(f), '--val', str(tmp_path), '--out', str(tmp_path / 'out')])
    assert code == 2 and not (tmp_path / 'out').exists()
    with pytest.raises(pack.PackError, match='image folder %s is a file, not a folder$' % f):
        pack.list_class_folders(str(f))
    with pytest.raises(pack.PackError, match='does not exist$'):
        pack.list_class_folders(str(tmp_path / 'nowhere'))


def test_a_zero_byte_image_is_skipped_and_counted(src, tmp_path, capsys, caplog):
    """The commonest leftover of an interrupted copy, an empty image file, is skipped, counted and
    logged like any image that does not decode (it stopped data.pack with a cv2.error traceback)."""
    train = tmp_path / 'train'
    shutil.copytree(str(src / 'train'), str(train))
    cls = sorted(os.listdir(str(train)))[0]
    (train / cls / 'copied_halfway.jpg').write_bytes(b'')
    assert pack.main(['--train', str(train), '--out', str(tmp_path / 'out')]) == 0
    out, err = capsys.readouterr()
    assert 'train: 12 images packed, 1 skipped, 3 classes' in out, (out, err)
    assert 'copied_halfway.jpg: cannot be decoded as an image' in caplog.text and 'Traceback' not in err


def test_a_cifar_pickle_written_by_numpy_2_is_read(tmp_path):
    """#18.15: a CIFAR batch pickled by numpy 2 (its arrays name the module numpy._core, which this
    numpy does not have) was a traceback advising to unpack the archive again; it is read, equal to
    the same batch written by this numpy. A class that cannot be rebuilt at all is named as such."""
    import pickle
    from data.cifar import load_cifar, CifarError
    from tests.helpers import make_cifar
    folder = make_cifar(str(tmp_path / 'c'), 'cifar10', train=50, test=10)
    expected = load_cifar(str(tmp_path / 'c'), 'cifar10')
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        with open(path, 'rb') as f:
            batch = pickle.load(f)
        batch[b'data'] = np.asarray(batch[b'data'])
        batch[b'labels'] = np.asarray(batch[b'labels'])           # arrays, as a numpy-2 conversion would write
        text = pickle.dumps(batch, protocol=2)
        assert b'numpy.core.multiarray' in text
        with open(path, 'wb') as f:
            f.write(text.replace(b'numpy.core.multiarray', b'numpy._core.multiarray'))
    got = load_cifar(str(tmp_path / 'c'), 'cifar10')
    for (ex, ey), (gx, gy) in zip(expected, got):
        np.testing.assert_array_equal(ex, gx)
        np.testing.assert_array_equal(ey, gy)
    with open(os.path.join(folder, 'test_batch'), 'wb') as f:
        f.write(b'\x80\x02cnumpy.nosuch\nthing\n)R.')          # protocol 2: GLOBAL numpy.nosuch.thing, call
    with pytest.raises(CifarError, match=r'test_batch was pickled with objects this environment cannot rebuild'):
        load_cifar(str(tmp_path / 'c'), 'cifar10')


def test_a_pack_of_other_classes_is_not_replaced_without_overwrite(src, tmp_path, capsys):
    """Found by a new user: `data.pack --out` into a folder holding a Fashion-MNIST pack replaced it
    with a 3-class colour pack, without a word and without a copy. Now refused naming both class
    lists; with --overwrite the old pack files are kept in OUT/replaced/<time>/. A re-pack of the
    same classes replaces in place, as before."""
    out = tmp_path / 'out'
    before = built(src, out)
    code, err = cli(pack.main, ['--train', str(src / 'train2'), '--out', str(out)], capsys)
    assert code == 2 and 'holds a pack of other classes (3: class_a, class_b, class_c)' in err, err
    assert 'the new one has 2: class_a, class_b' in err and '--overwrite' in err
    assert files(out) == before
    assert cli(pack.main, ['--train', str(src / 'train2'), '--out', str(out), '--overwrite'], capsys)[0] == 0
    kept, = os.listdir(str(out / 'replaced'))
    assert (out / 'replaced' / kept / 'train.rec').read_bytes() == before['train.rec']
    assert pack.read_classes(str(out / 'classes.txt')) == ['class_a', 'class_b']
    assert cli(pack.main, ['--train', str(src / 'train2'), '--out', str(out)], capsys)[0] == 0   # same classes


def test_a_named_pipe_among_the_images_is_not_read_and_val_equal_to_train_is_warned_of(src, tmp_path, capsys,
                                                                                      caplog):
    """Found by a new user: a FIFO named pipe.jpg in the image tree made data.pack block for ever; and
    --val given the training folder itself packed without a word."""
    tree = tmp_path / 'tree'
    shutil.copytree(str(src / 'train'), str(tree))
    os.mkfifo(str(tree / 'class_a' / 'pipe.jpg'))
    code, err = cli(pack.main, ['--train', str(tree), '--val', str(tree), '--out', str(tmp_path / 'out')], capsys)
    assert code == 0 and 'is the training folder itself' in caplog.text + err, err
    assert check_pack(str(tmp_path / 'out' / 'train'), 3) == 12


def test_a_killed_builds_partial_packs_are_removed_by_the_next_build(src, tmp_path):
    """Found by a new user (#18's ninth trial): after `kill -9` of a pack build, every later build only
    warned of its pack-sized .building-* folder, forever. A folder of a writer that no longer runs,
    holding only partial packs, is removed now; one holding the pack files it was replacing
    (.replaced) is kept and named."""
    out = tmp_path / 'out'
    assert pack.main(['--train', str(src / 'train'), '--val', str(src / 'val'), '--out', str(out)]) == 0
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    partial = out / ('.building-%d-abc' % gone.pid)
    partial.mkdir()
    (partial / 'train.rec').write_bytes(b'x' * 1000)
    moving = out / ('.building-%d-def' % gone.pid)
    (moving / '.replaced').mkdir(parents=True)
    assert pack.main(['--train', str(src / 'train'), '--val', str(src / 'val'), '--out', str(out)]) == 0
    assert not partial.exists() and (moving / '.replaced').is_dir()


def test_overwrite_with_a_file_where_the_old_pack_goes_is_refused_before_building(src, tmp_path, capsys):
    """Found by a new user (#18's twelfth trial): with a file named `replaced` in --out, `--overwrite`
    installed the new pack, then stopped with a NotADirectoryError traceback, the old pack left in a
    hidden staging folder."""
    out = tmp_path / 'out'
    before = built(src, out)
    (out / 'replaced').write_text('in the way')
    code, err = cli(pack.main, ['--train', str(src / 'train2'), '--val', str(src / 'val2'), '--out', str(out),
                                '--overwrite'], capsys)
    assert code == 2 and 'holds a file named replaced, where --overwrite keeps the pack it replaces' in err, err
    assert 'Traceback' not in err
    assert {k: v for k, v in files(out).items() if k != 'replaced'} == before
    assert not [n for n in os.listdir(str(out)) if n.startswith('.building-')]


def test_skipped_and_left_out_files_are_named_and_fashion_mnist_never_replaces_another_pack(tmp_path, caplog, capsys):
    """#18's fifteenth trial: the summary of skipped images named none of them (a text file named .jpg, a
    0-byte copy), a .webp image was left out without a word, and `data.fashion_mnist --out` on the
    user's own pack called it a Fashion-MNIST pack (and replaced a pack without a validation set)."""
    import logging
    root = tmp_path / 'imgs'
    make_jpeg_tree(str(root), classes=2, per_class=3)
    (root / 'class_a' / 'notes.jpg').write_text('not an image')
    (root / 'class_a' / 'empty.jpg').write_bytes(b'')
    (root / 'class_b' / 'w.webp').write_bytes(b'RIFF')
    (root / 'class_b' / '.DS_Store').write_bytes(b'x')
    out = tmp_path / 'own'
    with caplog.at_level(logging.WARNING):
        assert pack.main(['--train', str(root), '--out', str(out)]) == 0
    assert 'skipped 2 of 8 images that could not be read or decoded: %s, %s' % (
        os.path.join('class_a', 'empty.jpg'), os.path.join('class_a', 'notes.jpg')) in caplog.text, caplog.text
    assert 'an empty file (a copy cut short?)' in caplog.text
    assert 'left out 1 file(s) that are not .jpg/.jpeg/.png/.bmp images: %s' % os.path.join('class_b', 'w.webp') \
        in caplog.text and '.DS_Store' not in caplog.text, caplog.text
    before = files(out)
    capsys.readouterr()
    assert fashion_mnist.main(['--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert 'already holds a pack of other classes (class_a, class_b), not Fashion-MNIST' in err, err
    assert files(out) == before


def test_val_labels_name_a_class_with_a_space_in_its_name(tmp_path, capsys):
    """#18's seventeenth trial: a class folder 'dog house' could not be named in --val-labels (only
    the last field was read as the label), and the error did not say to give its index."""
    root = tmp_path / 'photos'
    make_jpeg_tree(str(root / 'train'), classes=2, per_class=4)
    os.rename(str(root / 'train' / 'class_b'), str(root / 'train' / 'dog house'))
    val = root / 'valflat'
    val.mkdir()
    for k, cls in enumerate(('class_a', 'dog house')):
        image = sorted(os.listdir(str(root / 'train' / cls)))[0]
        shutil.copy(str(root / 'train' / cls / image), str(val / ('v %d.jpg' % k)))
    labels = tmp_path / 'labels.txt'
    labels.write_text('v 0.jpg class_a\nv 1.jpg dog house\n')
    argv = ['--train', str(root / 'train'), '--val', str(val), '--val-labels', str(labels)]
    assert cli(pack.main, argv + ['--out', str(tmp_path / 'o1')], capsys)[0] == 0
    assert [l.split('\t')[1] for l in open(str(tmp_path / 'o1' / 'val.lst'))] == ['0.000000', '1.000000']
    labels.write_text('v 0.jpg\tclass_a\nv 1.jpg\tdog house\n')                       # tab-separated
    assert cli(pack.main, argv + ['--out', str(tmp_path / 'o2')], capsys)[0] == 0
    labels.write_text('v 0.jpg class_a\nv 1.jpg house\n')
    code, err = cli(pack.main, argv + ['--out', str(tmp_path / 'o3')], capsys)
    assert code == 2 and "label 'house' is neither a class index nor a class folder name (the classes: 0 class_a, " \
        "1 dog house); give the class index" in err, err


# --- 6. a researcher's own folders (trial 26) -----------------------------------------------------------

def test_hidden_and_macos_entries_and_dangling_class_links_are_left_out_and_said(src, tmp_path, capsys, caplog):
    """.ipynb_checkpoints became a class, a hidden image and a macOS zip's __MACOSX/._x.jpg were packed
    (the latter a class of images that do not decode); a class-folder link to nothing was dropped
    without a word. All are left out now, each named in a warning."""
    import cv2
    train = tmp_path / 'train'
    shutil.copytree(str(src / 'train'), str(train))
    first = sorted(os.listdir(str(train / 'class_a')))[0]
    for hidden in ('.ipynb_checkpoints', '__MACOSX/class_a'):
        (train / hidden).mkdir(parents=True)
        shutil.copy(str(train / 'class_a' / first), str(train / hidden / first))
    (train / '__MACOSX' / 'class_a' / ('._' + first)).write_bytes(b'\0\5\26\7 AppleDouble')
    shutil.copy(str(train / 'class_a' / first), str(train / 'class_b' / '.hidden.jpg'))
    (train / 'class_c' / '.thumbs').mkdir()                       # (a hidden folder inside a class folder)
    shutil.copy(str(train / 'class_a' / first), str(train / 'class_c' / '.thumbs' / 'small.jpg'))
    os.symlink('../no_such_folder', str(train / 'kitty'))
    caplog.set_level('WARNING')
    code, err = cli(pack.main, ['--train', str(train), '--out', str(tmp_path / 'out')], capsys)
    assert code == 0
    assert (tmp_path / 'out' / 'classes.txt').read_text().split() == ['0', 'class_a', '1', 'class_b', '2', 'class_c']
    assert sorted(n for _, _, n in read_lst(str(tmp_path / 'out' / 'train.lst'))) == sorted(
        os.path.join(c, f) for c in ('class_a', 'class_b', 'class_c') for f in os.listdir(str(src / 'train' / c)))
    said = caplog.text
    assert 'left out 4 hidden or system' in said and '.ipynb_checkpoints' in said and '__MACOSX' in said
    assert 'class_c/.thumbs' in said
    assert 'class_b/.hidden.jpg' in said and 'kitty -> ../no_such_folder' in said
    assert cv2 is not None


def test_a_line_break_in_a_class_or_image_name_is_refused(src, tmp_path, capsys):
    """A class folder 'new\\nline' packed into list files broken across lines, which training then
    refused with "pack the data again" (a circle): refused before anything is written."""
    for bad in ('new\nline', 'class_a/im\rage.jpg'):
        train = tmp_path / 'train'
        shutil.rmtree(str(train), ignore_errors=True)
        shutil.copytree(str(src / 'train'), str(train))
        target = train / bad if '/' in bad else train / bad / 'x.jpg'
        target.parent.mkdir(exist_ok=True)
        shutil.copy(str(train / 'class_a' / sorted(os.listdir(str(train / 'class_a')))[0]), str(target))
        code, err = cli(pack.main, ['--train', str(train), '--out', str(tmp_path / 'out')], capsys)
        assert code == 2 and 'has a line break in its name' in err and 'rename it' in err, err
        assert not (tmp_path / 'out').exists()


def test_a_16_bit_image_is_not_packed_as_its_top_8_bits(tmp_path, capsys, caplog):
    """A 12-bit sensor image in a 16-bit PNG decodes in MXNet to its top 8 bits (0..4095 -> 0..15): it
    was packed and trained on without a word. Such an image is skipped, with the reason and the fix;
    a class left with no image is refused (nothing is written), as an empty class folder is."""
    import cv2
    train = tmp_path / 'train'
    rng = np.random.RandomState(0)
    for c in ('a', 'b'):
        (train / c).mkdir(parents=True)
        for i in range(3):
            img = rng.randint(0, 4096, size=(12, 12)).astype(np.uint16) if c == 'a' else \
                rng.randint(0, 256, size=(12, 12)).astype(np.uint8)
            cv2.imwrite(str(train / c / ('%d.png' % i)), img)
    code, err = cli(pack.main, ['--train', str(train), '--out', str(tmp_path / 'out')], capsys)
    assert code == 2 and 'class a of %s: none of its images could be read and decoded' % train in err, err
    assert 'is a 16-bit image' in err and 'convert it to 8 bits' in err
    assert not (tmp_path / 'out').exists()
    cv2.imwrite(str(train / 'a' / '8bit.png'), rng.randint(0, 256, size=(12, 12)).astype(np.uint8))
    full = rng.randint(0, 65536, size=(12, 12)).astype(np.uint16)          # a full-range 16-bit image packs
    cv2.imwrite(str(train / 'a' / 'full.png'), full)
    code, err = cli(pack.main, ['--train', str(train), '--out', str(tmp_path / 'out')], capsys)
    assert code == 0 and 'skipping %s: is a 16-bit image whose values reach only' % (train / 'a' / '0.png') \
        in caplog.text, err
    assert sorted(n for _, _, n in read_lst(str(tmp_path / 'out' / 'train.lst'))) == [
        'a/8bit.png', 'a/full.png', 'b/0.png', 'b/1.png', 'b/2.png']


def test_a_label_file_with_a_byte_order_mark(src, tmp_path, capsys):
    """An editor's byte-order mark made the first line's image "not exist"."""
    val, listed = flat_val(tmp_path, src, [('v0.jpg', '1'), ('v1.jpg', '0')])
    lines = listed.read_text().splitlines()
    labels = tmp_path / 'bom.txt'
    labels.write_bytes(b'\xef\xbb\xbf' + '\n'.join(lines).encode('utf-8') + b'\n')
    code, err = cli(pack.main, ['--train', str(src / 'train'), '--val', str(val), '--val-labels', str(labels),
                                '--out', str(tmp_path / 'out')], capsys)
    assert code == 0, err
    labels.write_bytes('\n'.join(lines).encode('utf-16'))
    code, err = cli(pack.main, ['--train', str(src / 'train'), '--val', str(val), '--val-labels', str(labels),
                                '--out', str(tmp_path / 'out2')], capsys)
    assert code == 2 and 'is not UTF-8 text' in err and 'save it as UTF-8' in err, err


def test_seeds_beyond_a_c_int_train(src, tmp_path):
    """seed=2**31 was accepted and then failed as "a record is probably damaged" (MXNet's iterator seeds
    are C ints); the in-memory arrays' generator takes seeds below 2**32 only."""
    from data.packiters import record_iters
    from data.arrays import ArrayIter
    out = tmp_path / 'out'
    built(src, out)
    for seed in (2 ** 31, 2 ** 32 + 5, 10 ** 20):
        make_train, _ = record_iters(str(out / 'train'), str(out / 'val'), 2, 16, 3, [0, 0, 0], [1, 1, 1], 'small',
                                     seed=seed)
        assert next(iter(make_train(3))).data[0].shape == (2, 3, 16, 16)
        it = ArrayIter(np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4), 2, [0.0], [1.0], shuffle=True, seed=seed, epoch=3)
        assert next(iter(it)).data[0].shape[0] == 2
