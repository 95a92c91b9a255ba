"""End to end on a small generated dataset in RecordIO form: pack, train a
teacher, distil a student with kd+mmd, checkpoint, kill -9 and resume to the
same parameters, evaluate, export."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import mxnet as mx
import pytest

from data import pack
from tests.helpers import make_jpeg_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def train(args, work, check=True, **kw):
    cmd = [sys.executable, os.path.join(ROOT, 'train.py')] + list(args)
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError('train.py failed (%d):\n%s' % (r.returncode, r.stderr[-3000:]))
    return r


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp('e2e')
    make_jpeg_tree(str(root / 'imgs' / 'train'), classes=4, per_class=24, size=(30, 30), seed=3)
    make_jpeg_tree(str(root / 'imgs' / 'val'), classes=4, per_class=6, size=(30, 30), seed=4)
    pack.build_packs(str(root / 'imgs' / 'train'), str(root / 'packs'), str(root / 'imgs' / 'val'), progress=False)
    base = """dataset: imagenet
data_dir: {packs}
image_size: 24
resize: 28
num_classes: 4
batch_size: 8
data_threads: 1
optimizer: nag
lr: 0.05
lr_mode: cosine
model_dir: {root}/model
log_dir: {root}/log
progress: false
frequent: 2
""".format(packs=root / 'packs', root=root)
    (root / 'base.yaml').write_text(base)
    (root / 'teacher.yaml').write_text('base: base.yaml\nnetwork: cifar_resnet14\nmodel_prefix: teacher\n'
                                       'num_epoch: 3\nepoch_size: 12\nkt: false\n'
                                       'lr: 0.02\n')   # at 0.05 this tiny set trains erratically
    (root / 'student.yaml').write_text(
        'base: base.yaml\nnetwork: cifar_resnet8\nnum_epoch: 4\nepoch_size: 6\nkt: true\nkt_type: kd+mmd\n'
        'teacher_prefix: %s/model/teacher\nteacher_symbol: [null, stage3_pre]\nstudent_symbol: [null, stage3_pre]\n'
        'kt_weight: [16, 50]\ndeterministic: true\n' % root)
    train(['--cfg', str(root / 'teacher.yaml')], str(root))
    return root


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


def test_teacher_trained_and_checkpointed(work):
    model = work / 'model'
    for e in (1, 2, 3):
        for ext in ('params', 'states', 'json'):
            assert (model / ('teacher-%04d.%s' % (e, ext))).is_file()
    assert (model / 'teacher-best.params').is_file()
    recs = read_jsonl(str(work / 'log' / 'teacher.jsonl'))
    assert [r['epoch'] for r in recs] == [0, 1, 2]
    assert recs[-1]['val_n'] == 24 and recs[-1]['val_top1'] > 0.5       # colour-coded classes are easy
    assert 'Validation-top1' in (work / 'log' / 'teacher.log').read_text()


def test_distilled_student_kill_and_resume_is_exact(work):
    r = train(['--cfg', str(work / 'student.yaml'), 'model_prefix=full'], str(work))
    assert 'teacher validation: top-1' in r.stderr
    recs = read_jsonl(str(work / 'log' / 'full.jsonl'))
    assert len(recs) == 4 and all(np.isfinite(r_['train_kd']) and np.isfinite(r_['train_mmd']) for r_ in recs)
    assert recs[0]['train_mmd'] > 0

    # the same run, killed with SIGKILL during its third epoch, then resumed
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--cfg', str(work / 'student.yaml'),
           'model_prefix=killed']
    proc = subprocess.Popen(cmd, cwd=str(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = work / 'model' / 'killed-0002.json'
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists()
    assert not (work / 'model' / 'killed-0004.json').exists(), 'the run finished before it was killed'
    train(['--cfg', str(work / 'student.yaml'), 'model_prefix=killed', 'retrain=true', 'model_load_epoch=-1'],
          str(work))
    a, b = params(str(work / 'model' / 'full-0004.params')), params(str(work / 'model' / 'killed-0004.params'))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_evaluate_and_export(work):
    r = subprocess.run([sys.executable, '-m', 'tools.evaluate', '--cfg', str(work / 'student.yaml'),
                        '--prefix', str(work / 'model' / 'full'), '--epoch', '4'], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    top1 = float(r.stdout.split('top-1 ')[1].split('%')[0])
    rec = read_jsonl(str(work / 'log' / 'full.jsonl'))[-1]
    assert abs(top1 - 100 * rec['val_top1']) < 1e-6 + 0.005
    out = str(work / 'deploy' / 'student')
    r = subprocess.run([sys.executable, '-m', 'tools.export', '--prefix', str(work / 'model' / 'full'),
                        '--epoch', '4', '--out', out], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(out + '-symbol.json') and os.path.isfile(out + '-0000.params')
    # loadable with MXNet alone; no connector or teacher parameters inside
    sym, arg, aux = mx.model.load_checkpoint(out, 0)
    assert not [k for k in arg if 'extras' in k or 'teacher' in k]
    assert json.load(open(out + '-meta.json'))['input_shape'] == [3, 24, 24]
