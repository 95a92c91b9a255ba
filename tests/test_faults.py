"""Bad input and faults: each gives one clear error, and nothing already written is lost."""
import os

import mxnet as mx
import numpy as np
import pytest

import train
from core import checkpoint
from tests.helpers import make_cifar, tiny_train_args

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('faults')
    make_cifar(str(root / 'cifar'), 'cifar10', train=64, test=32)
    common = tiny_train_args(root, root / 'cifar', frequent=1)
    assert train.main(common + ['network=cifar_resnet8', 'model_prefix=teacher']) == 0
    student = common + ['network=cifar_resnet8', 'kt=true', 'teacher_prefix=%s' % (root / 'model' / 'teacher')]
    return root, common, student


def run(argv, capsys):
    code = train.main(argv)
    err = capsys.readouterr().err
    return code, err


def test_label_outside_num_classes(setup, capsys):
    _, common, _ = setup
    code, err = run(common + ['num_classes=5', 'network=cifar_resnet8', 'model_prefix=s5'], capsys)
    assert code == 2 and 'outside num_classes=5' in err


def test_gluoncv_teacher_from_a_local_params_file(setup, tmp_path, capsys):
    """teacher_source=gluoncv with a local file: gluoncv's ResNetV2 (preact_resnet18) weights."""
    import symbols
    root, _, student = setup
    net = symbols.get_network('preact_resnet18', 10)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path / 'resnet18_v2.params')
    net.save_parameters(path)
    code, err = run(student + ['teacher_source=gluoncv', 'teacher_network=preact_resnet18',
                               'teacher_prefix=%s' % path, 'kt_type=kd+mmd', 'teacher_symbol=[null, bn1]',
                               'student_symbol=[null, stage3_pre]', 'model_prefix=gcv'], capsys)
    assert code == 0, err
    assert 'teacher: preact_resnet18 from %s' % path in err


def test_evaluate_the_configured_teacher(setup, capsys):
    import json
    from tools import evaluate
    root, _, student = setup
    argv = ['--teacher'] + student + ['kt_type=kd']          # student: --cfg PRESET key=value ...
    code = evaluate.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    with open(str(root / 'log' / 'teacher.jsonl')) as f:
        last = json.loads(f.readlines()[-1])
    assert 'teacher %s' % (root / 'model' / 'teacher') in out
    assert ('top-1 %.2f%%' % (100 * last['val_top1'])) in out and 'on %d images' % last['val_n'] in out
    assert evaluate.main(argv + ['teacher_prefix=%s' % root]) == 2
    assert 'teacher checkpoint not found' in capsys.readouterr().err


def test_label_out_of_range_inside_a_pack_stops_before_any_checkpoint(tmp_path, capsys):
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
    code, err = run(argv, capsys)
    assert code == 2 and 'training label(s) lie outside 0..1' in err and 'num_classes=2' in err
    assert checkpoint.epochs(str(tmp_path / 'model'), 'labels') == []


def test_undecodable_validation_image_is_an_error_not_a_crash(tmp_path, capsys):
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
    assert run(argv, capsys)[0] == 0
    key, offset = (int(v) for v in open(val + '.idx').read().split('\n')[4].split())
    data = bytearray(open(val + '.rec', 'rb').read())
    data[offset + 8 + 24: offset + 8 + 24 + 64] = b'\0' * 64        # the JPEG's first bytes
    open(val + '.rec', 'wb').write(bytes(data))
    st = os.stat(val + '.rec')                     # (a file system with coarse times: still a new time)
    os.utime(val + '.rec', ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    assert not is_decodable(val)                   # the files changed since
    code, err = run(argv + ['model_prefix=dec2'], capsys)
    assert code == 2 and 'do not decode (record keys %d)' % key in err and 'val.rec' in err
