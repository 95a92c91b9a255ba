"""Bad input and faults: each gives one clear error, and nothing already written is lost."""
import errno
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


def test_unknown_teacher_tap(setup, capsys):
    _, _, student = setup
    code, err = run(student + ['kt_type=mmd', 'teacher_symbol=nope', 'student_symbol=stage3_pre',
                               'model_prefix=s1'], capsys)
    assert code == 2 and "teacher_symbol: unknown tap 'nope'" in err and 'stage3_pre' in err


def test_teacher_class_count_must_match(setup, capsys):
    _, _, student = setup
    code, err = run(student + ['kt_type=kd', 'num_classes=12', 'model_prefix=s2'], capsys)
    assert code == 2 and 'teacher predicts 10 classes but num_classes=12' in err


def test_unpairable_features(setup, capsys):
    _, _, student = setup
    code, err = run(student + ['kt_type=fsp', 'network=wrn10_2', 'teacher_symbol=[[stage1, stage2]]',
                               'student_symbol=[[stage1, stage2]]', 'model_prefix=s3'], capsys)
    assert code == 2 and 'cannot be paired' in err and 'FSP needs equal' in err
    code, err = run(student + ['kt_type=mmd', 'teacher_symbol=pool', 'student_symbol=stage3',
                               'model_prefix=s4'], capsys)
    assert code == 2 and 'pairs feature maps' in err


def test_label_outside_num_classes(setup, capsys):
    _, common, _ = setup
    code, err = run(common + ['num_classes=5', 'network=cifar_resnet8', 'model_prefix=s5'], capsys)
    assert code == 2 and 'outside num_classes=5' in err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(setup, capsys):
    root, common, student = setup
    argv = student + ['kt_type=kd', 'model_prefix=nan']
    assert train.main(argv) == 0
    good = checkpoint.paths(str(root / 'model'), 'nan', 1)
    before = {k: open(v, 'rb').read() for k, v in good.items() if os.path.isfile(v)}
    code, err = run(argv + ['retrain=true', 'model_load_epoch=1', 'num_epoch=2', 'lr=1e38', 'epoch_size=4'],
                    capsys)
    assert code == 3 and 'NaN or Inf' in err and 'step' in err
    assert {k: open(v, 'rb').read() for k, v in good.items() if os.path.isfile(v)} == before
    assert not os.path.exists(checkpoint.paths(str(root / 'model'), 'nan', 2)['meta'])


def test_unwritable_model_folder(setup, tmp_path, capsys):
    _, common, _ = setup
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code, err = run(common + ['network=cifar_resnet8', 'model_prefix=s6', 'model_dir=%s' % (blocker / 'sub')],
                    capsys)
    assert code == 2 and 'not writable' in err


def test_full_disk_keeps_previous_checkpoints(tmp_path, monkeypatch):
    import symbols
    net = symbols.get_network('cifar_resnet8', 10)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    checkpoint.save(str(tmp_path), 'run', 1, net, meta={'network': 'cifar_resnet8'}, best=True)
    before = sorted(os.listdir(str(tmp_path)))
    saved = {f: open(str(tmp_path / f), 'rb').read() for f in before}

    def full(path):
        with open(path, 'wb') as f:
            f.write(b'partial')
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(net, 'save_parameters', full)
    with pytest.raises(checkpoint.CheckpointError, match='No space left.*earlier checkpoints are intact'):
        checkpoint.save(str(tmp_path), 'run', 2, net, meta={'network': 'cifar_resnet8'}, best=True)
    assert sorted(os.listdir(str(tmp_path))) == before          # no partial or temporary files
    assert {f: open(str(tmp_path / f), 'rb').read() for f in before} == saved
    assert checkpoint.epochs(str(tmp_path), 'run') == [1]


def test_truncated_params_file(setup, capsys):
    root, common, _ = setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=trunc']
    assert train.main(argv) == 0
    p = checkpoint.paths(str(root / 'model'), 'trunc', 1)['params']
    data = open(p, 'rb').read()
    open(p, 'wb').write(data[:len(data) // 3])
    code, err = run(argv + ['retrain=true', 'model_load_epoch=1', 'num_epoch=2'], capsys)
    assert code == 2 and 'truncated or corrupt' in err and p in err
    code, err = run(argv + ['retrain=true', 'model_load_epoch=7', 'num_epoch=8'], capsys)
    assert code == 2 and 'no checkpoint' in err and '[1]' in err


def test_connectors_are_checkpointed_and_resumed(setup, capsys):
    """FitNet/OFD connectors train with the student, live in .extra.params, and come back on resume."""
    root, _, student = setup
    argv = student + ['kt_type=kd+fitnet+ofd', 'kt_weight=[16, 100, 0.001]',
                      'teacher_symbol=[null, stage2_pre, stage3_pre]', 'student_symbol=[null, stage2_pre, stage3_pre]',
                      'model_prefix=conn']
    assert train.main(argv) == 0
    extra = checkpoint.paths(str(root / 'model'), 'conn', 1)['extra']
    names = sorted(mx.nd.load(extra).keys())
    assert any(n.startswith('fitnet_0.conv') for n in names) and any(n.startswith('ofd_0.bn') for n in names)
    assert not [n for n in mx.nd.load(checkpoint.paths(str(root / 'model'), 'conn', 1)['params']) if 'conv' in n
                and n.startswith(('fitnet', 'ofd'))]
    assert train.main(argv + ['retrain=true', 'model_load_epoch=1', 'num_epoch=2']) == 0
    assert checkpoint.epochs(str(root / 'model'), 'conn') == [1, 2]


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


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason='this machine has GPUs')
def test_gpu_list_without_gpus(setup, capsys):
    _, common, _ = setup
    code, err = run(common + ['network=cifar_resnet8', 'model_prefix=g', 'gpu_list=0,1'], capsys)
    assert code == 2 and 'sees no GPU' in err and 'gpu_list=[]' in err and 'Traceback' not in err


def test_ctrl_c_keeps_finished_epochs_and_says_how_to_resume(setup, capsys, monkeypatch):
    root, common, _ = setup
    from core.trainer import Session
    real = Session.train_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)
    argv = common + ['network=cifar_resnet8', 'model_prefix=ctrlc', 'num_epoch=3']
    monkeypatch.setattr(Session, 'train_epoch', interrupted)
    code, err = run(argv, capsys)
    assert code == 130 and 'interrupted' in err and 'retrain=true model_load_epoch=-1' in err
    assert checkpoint.epochs(str(root / 'model'), 'ctrlc') == [1]
    monkeypatch.setattr(Session, 'train_epoch', real)
    code, err = run(argv + ['retrain=true', 'model_load_epoch=-1'], capsys)
    assert code == 0 and 'resumed ctrlc from epoch 1' in err
    assert checkpoint.epochs(str(root / 'model'), 'ctrlc') == [1, 2, 3]
    code, err = run(argv + ['retrain=true', 'model_load_epoch=-1'], capsys)    # already finished
    assert code == 0 and 'nothing to train' in err and 'num_epoch=3' in err


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


def test_bfloat16_amp_distillation(setup):
    """dtype=bfloat16 (CPU AMP) through KD + NST; a subprocess, since amp.init patches MXNet for good."""
    import json
    import subprocess
    import sys
    root, _, student = setup
    argv = student + ['kt_type=kd+mmd', 'teacher_symbol=[null, stage3_pre]', 'student_symbol=[null, stage3_pre]',
                      'dtype=bfloat16', 'model_prefix=bf16']
    r = subprocess.run([sys.executable, 'train.py'] + argv, cwd=os.path.dirname(os.path.dirname(__file__)),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(str(root / 'log' / 'bf16.jsonl')) as f:
        rec = json.loads(f.readlines()[-1])
    assert np.isfinite(rec['train_kd']) and np.isfinite(rec['train_mmd']) and rec['train_mmd'] > 0
    params = mx.nd.load(checkpoint.paths(str(root / 'model'), 'bf16', 1)['params'])
    assert {v.dtype for v in params.values()} == {np.float32}        # float32 master weights are saved


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
