"""Segmentation, the third task (#20): the VOC layout read and checked, DeepLab heads at output
strides 8 and 16, mIoU against a numpy reference, training through train.py with exact resume,
evaluation and the results table, every bad input one error with nothing written, and learning."""
import glob
import json
import os
import shutil

import numpy as np
import pytest

import train
from core import checkpoint
from tests.helpers import merged, one_error, run_tool
from tests.seg_synth import make_voc_segmentation

pytestmark = pytest.mark.slow
CLASSES = 'classes=[background,rect,disc]'


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    return make_voc_segmentation(str(tmp_path_factory.mktemp('vocseg') / 'VOCdevkit'))


def args(voc, tmp, *extra):
    """train.py arguments of a CPU-sized DeepLabV3+ on the generated set (a key in `extra` replaces
    the same key here)."""
    words = ['--cfg', 'seg_voc_r18_deeplabv3plus', 'voc_root=%s' % voc, 'sbd_root=null', CLASSES, 'gpu_list=[]',
             'pretrained=null', 'batch_size=2', 'crop_size=32', 'epoch_size=4', 'num_epoch=1', 'num_workers=0',
             'aspp_channels=16', 'progress=false', 'model_dir=%s' % os.path.join(tmp, 'model'),
             'log_dir=%s' % os.path.join(tmp, 'log'), 'model_prefix=seg']
    keys = {w.split('=', 1)[0] for w in extra}
    return [w for w in words if w.split('=', 1)[0] not in keys] + list(extra)


def run(argv, capsys):
    code = train.main(argv)
    out, err = capsys.readouterr()
    assert 'Traceback' not in err
    return code, out, err


def run_process(argv):
    """train.py in a process of its own (deterministic=true takes effect only before MXNet's engine
    starts, which other tests of this process have started)."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, 'train.py'] + argv, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), capture_output=True, text=True, timeout=600)
    assert 'Traceback' not in r.stderr
    return r.returncode, r.stdout, r.stderr


def _params(model_dir, tag, prefix='seg'):
    import mxnet as mx
    return mx.nd.load(checkpoint.paths(model_dir, prefix, tag)['params'])


def test_reads_the_voc_layout_and_checks_every_mask(voc):
    from data import segmentation as segdata
    items = segdata.voc_items(voc, 'train')
    assert len(items) == 16 and all(os.path.isfile(i) and os.path.isfile(m) for i, m, _ in items)
    assert segdata.check_items(items + segdata.voc_items(voc, 'val'), 3) == 22
    mask = segdata.read_mask(items[0][1])
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2, 255} and 255 in mask
    x, y = segdata.train_sample(items[0][0], items[0][1], np.random.default_rng(0), 32, 0.5, 2.0, [120] * 3, [60] * 3)
    assert x.shape == (3, 32, 32) and y.shape == (32, 32) and set(np.unique(y)) <= {0, 1, 2, 255}
    again = segdata.train_sample(items[0][0], items[0][1], np.random.default_rng(0), 32, 0.5, 2.0, [120] * 3, [60] * 3)
    assert (x == again[0]).all() and (y == again[1]).all()


@pytest.mark.parametrize('network', ['preact_resnet18', 'resnet50'])
def test_heads_at_output_strides_8_and_16(network):
    import mxnet as mx
    from symbols.segmentation import build_segmentation_network, used_parameters
    import symbols
    x = mx.nd.random.uniform(shape=(2, 3, 64, 48))
    for head in ('deeplabv3', 'deeplabv3+'):
        for stride in (16, 8):
            net, as_built = build_segmentation_network(network, 3, head, stride, channels=16)
            assert as_built == 32
            low, high = net.features(x)
            assert low.shape[2:] == (16, 12) and high.shape[2:] == (64 // stride, 48 // stride)
            y = net(x)
            assert y.shape == (2, 3, 64, 48)
            tapped = symbols.with_taps(net, ['logits', 'aspp', 'high'])(x)
            assert tapped[1].shape[2:] == ((16, 12) if head == 'deeplabv3+' else (64 // stride, 48 // stride))
            net.hybridize()
            np.testing.assert_allclose(net(x).asnumpy(), y.asnumpy(), rtol=1e-4, atol=1e-5)
            assert len(used_parameters(net)) == len(list(net.collect_params().keys()))   # no unused parameter


def test_miou_against_a_numpy_reference():
    from tasks.segmentation.evaluate import confusion, scores
    rng = np.random.RandomState(0)
    label = rng.randint(0, 4, size=(3, 20, 30))
    label[:, :2] = 255
    pred = np.where(rng.rand(*label.shape) < 0.7, label, rng.randint(0, 4, size=label.shape)) % 4
    pred[label == 3] = 1                                      # class 3 never predicted: IoU 0
    conf = sum(confusion(p, l, 5) for p, l in zip(pred, label))          # class 4: absent everywhere
    got = scores(conf)
    valid = label != 255
    ious = []
    for c in range(5):
        inter = ((pred == c) & (label == c) & valid).sum()
        union = (((pred == c) | (label == c)) & valid).sum()
        ious.append(inter / union if union else np.nan)
    np.testing.assert_allclose(got['iou'][:4], ious[:4], rtol=1e-12)
    assert np.isnan(got['iou'][4]) and got['iou'][3] == 0.0
    assert abs(got['miou'] - np.nanmean(ious)) < 1e-12
    assert abs(got['pixel_acc'] - ((pred == label) & valid).sum() / valid.sum()) < 1e-12


def test_train_resume_exactly_evaluate_and_tabulate(voc, tmp_path, capsys):
    from core.records import read_records
    from tools import evaluate, results_table
    # (lr_mode=step: poly's lr depends on num_epoch, which the first piece of the run in two sets to 1;
    # deterministic: oneDNN's threads are not bit-exact from run to run)
    a = args(voc, str(tmp_path / 'a'), 'num_epoch=2', 'deterministic=true', 'lr_mode=step',
             'num_workers=2')                  # (loader processes: the same samples, no worker traceback)
    code, out, err = run_process(a)
    assert code == 0, err
    assert 'final: epoch 2  mIoU' in out and '| rect |' in out
    mdir = str(tmp_path / 'a' / 'model')
    assert checkpoint.epochs(mdir, 'seg') == [1, 2]
    records = read_records(str(tmp_path / 'a' / 'log' / 'seg.jsonl'))
    assert [r['epoch'] for r in records] == [0, 1] and all(0 <= r['val_miou'] <= 1 for r in records)
    assert all('iou_disc' in r and np.isfinite(r['train_ce']) for r in records)
    # in two pieces: bit-identical parameters and records
    b = args(voc, str(tmp_path / 'b'), 'deterministic=true', 'lr_mode=step')
    assert run_process(b)[0] == 0
    code, out, err = run_process(args(voc, str(tmp_path / 'b'), 'num_epoch=2', 'retrain=true', 'model_load_epoch=-1',
                                      'deterministic=true', 'lr_mode=step'))
    assert code == 0 and "resumed run 'seg' from its epoch-1 checkpoint" in err, err
    pa, pb = _params(mdir, 2), _params(str(tmp_path / 'b' / 'model'), 2)
    assert pa.keys() == pb.keys() and all(np.array_equal(pa[k].asnumpy(), pb[k].asnumpy()) for k in pa)
    # (the time it took, and where the run lives: the runs compared live in two folders)
    # (and the num_epoch each piece was trained to)
    timeless = lambda recs: [{k: v for k, v in r.items() if k not in ('time', 'speed', 'model_dir', 'num_epoch')}  # noqa
                             for r in recs]
    assert timeless(read_records(str(tmp_path / 'b' / 'log' / 'seg.jsonl'))) == timeless(records)
    # another network on resume is refused by name
    code, _, err = run(args(voc, str(tmp_path / 'b'), 'num_epoch=3', 'retrain=true', 'model_load_epoch=-1',
                            'lr_mode=step', 'head=deeplabv3'), capsys)
    one_error(code, err, 'head=deeplabv3+ (this run: deeplabv3)')
    # tools.evaluate from the checkpoint alone (its saved configuration), equal to the record
    code, out, err = run_tool(evaluate.main, ['--prefix', os.path.join(mdir, 'seg'), '--epoch', '2'], capsys)
    assert code == 0, err
    assert 'mIoU %.2f%%' % (100 * records[1]['val_miou']) in out, (out, records[1]['val_miou'])
    # the results table over seeds (runs named <prefix><method>_s<seed>)
    recs = str(tmp_path / 'records')
    os.makedirs(recs)
    for seed in (0, 1):                    # (records of two seeds: the run's, under each seed's name)
        with open(os.path.join(recs, 'seg_student_s%d.jsonl' % seed), 'w') as f:
            f.writelines(json.dumps(dict(r, model_prefix='seg_student_s%d' % seed)) + '\n' for r in records)
    shutil.copy(os.path.join(recs, 'seg_student_s0.jsonl'), os.path.join(recs, 'seg_student_s2.jsonl'))   # copied
    code, out, err = run_tool(results_table.main, ['--task', 'segmentation', '--records', recs, '--prefix', 'seg_'],
                              capsys)
    assert code == 0 and '| student alone |' in out and '%.2f ± 0.00' % (100 * records[1]['val_miou']) in out, out
    assert '| 2 |' in out and 'seg_student_s2.jsonl holds the records of run seg_student_s0' in err, (out, err)
    code, _, err = run_tool(results_table.main, ['--records', recs, '--prefix', 'seg_'], capsys)
    one_error(code, err, 'are segmentation runs', '--task segmentation')
    # evaluation at another output stride (DeepLab evaluates at 8); another head is refused
    code, out, err = run_tool(evaluate.main, ['--prefix', os.path.join(mdir, 'seg'), 'output_stride=8'], capsys)
    assert code == 0 and 'mIoU' in out, err
    code, _, err = run_tool(evaluate.main, ['--prefix', os.path.join(mdir, 'seg'), 'head=deeplabv3'], capsys)
    one_error(code, err, 'head=deeplabv3 (the checkpoint: deeplabv3+)', 'only output_stride may differ')
    # a segmentation run where a classification network is expected: named as such
    from tests.helpers import make_cifar
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=16, test=16)
    code, _, err = run_tool(evaluate.main, ['--prefix', os.path.join(mdir, 'seg'), '--cfg', 'cifar10_student',
                                            'gpu_list=[]', 'data_dir=%s' % (tmp_path / 'cifar')], capsys)
    assert code == 2 and 'is a segmentation run (task=segmentation)' in err, err
    code, _, err = run_tool(evaluate.main, ['--teacher', '--cfg', 'seg_voc_r18_deeplabv3plus', 'voc_root=%s' % voc],
                            capsys)
    one_error(code, err, '--teacher evaluates a classification teacher')
    # the backbone of a segmentation run as a starting point
    code, _, err = run(args(voc, str(tmp_path / 'c'), 'pretrained=%s' % os.path.join(mdir, 'seg')), capsys)
    assert code == 0 and 'backbone starts from %s-best.params' % os.path.join(mdir, 'seg') in err, err


def _mask_path(root, split, k=0):
    from data import segmentation as segdata
    return segdata.voc_items(root, split)[k]


def _fault(root, fault):
    """Damage a copy of the generated set as `fault` says; returns the words the error must hold."""
    from PIL import Image
    image, mask, list_file = _mask_path(root, 'train', 3)
    if fault == 'value':
        m = np.array(Image.open(mask))
        m[5, 5] = 7
        out = Image.fromarray(m, 'P')
        out.putpalette(Image.open(mask).getpalette())
        out.save(mask)
        return [os.path.basename(mask), 'has the value 7', 'neither a class', 'list every class in classes=[...]']
    if fault == 'jpeg':                         # (#18's fifteenth trial: named a JPEG artefact's value)
        Image.open(mask).convert('L').save(mask, format='JPEG')
        return [os.path.basename(mask), 'holds JPEG data', 'save the mask as a PNG']
    if fault == 'size':
        Image.open(mask).crop((0, 0, 30, 20)).save(mask)
        return [os.path.basename(mask), 'is 30x20 but its image', 'is 64x48']
    if fault == 'missing':
        os.remove(image)
        return [os.path.basename(image), 'listed in %s' % list_file, 'does not exist']
    if fault == 'palette':
        m = Image.open(mask)
        m.putpalette([255 - v for v in m.getpalette()])
        m.save(mask)
        return [os.path.basename(mask), 'palette PNG of another palette']
    if fault == 'rgb':
        Image.open(mask).convert('RGB').save(mask)
        return [os.path.basename(mask), 'is a RGB image', 'class indices']
    # (trial 27: an IndexError traceback; "convert its colours to indices" for indices; "another palette")
    if fault == 'short_palette':
        m = Image.open(mask)
        a = np.array(m)
        a[5, 5] = 15
        out = Image.fromarray(a, 'P')
        out.putpalette(m.getpalette()[:24])           # 8 colours (a 4-bit PNG): index 15 is beyond them
        out.save(mask)
        return [os.path.basename(mask), 'use index 15, beyond its palette of 8 colours']
    if fault == 'sixteen_bit':
        Image.fromarray(np.array(Image.open(mask)).astype(np.uint16)).save(mask)
        return [os.path.basename(mask), 'is a 16- or 32-bit image', 'save it as an 8-bit grayscale or VOC palette PNG']
    if fault == 'gif':                                # (GIF data of another palette: said, not "a palette PNG")
        m = Image.open(mask)
        m.putpalette([255 - v for v in m.getpalette()])
        m.save(mask, format='GIF')
        return [os.path.basename(mask), 'is a palette image (GIF data) of another palette']
    raise ValueError(fault)


@pytest.mark.parametrize('fault', ['value', 'size', 'missing', 'palette', 'rgb', 'jpeg', 'short_palette', 'sixteen_bit',
                                   'gif'])
def test_bad_data_is_one_error_and_nothing_is_written(voc, tmp_path, capsys, fault):
    root = str(tmp_path / 'VOCdevkit')
    shutil.copytree(voc, root)
    words = _fault(root, fault)
    code, _, err = run(args(root, str(tmp_path)), capsys)
    one_error(code, err, *words)
    assert not os.path.exists(str(tmp_path / 'model' / 'seg-0001.params'))
    assert not os.path.exists(str(tmp_path / 'log' / 'seg.log'))


def test_bad_networks_and_settings_are_one_error(voc, tmp_path, capsys):
    for extra, words in ((['network=cifar_resnet8'], ['no segmentation split', 'seg_taps=[LOW, HIGH]']),
                         (['network=cifar_resnet8', 'seg_taps=[stage1, stage3]'],
                          ['reaches only output stride 4', 'output_stride=16']),
                         (['output_stride=4'], ['output_stride']),
                         (['scale_min=2', 'scale_max=1'], ['scale_max 1 is below scale_min 2']),
                         (['dtype=bfloat16'], ['dtype', 'bfloat16', 'use dtype=float32']),
                         (['task=classification'], ['is a segmentation config (task: segmentation)']),
                         (['voc_root=%s' % (tmp_path / 'nowhere')], ['does not exist', 'VOCdevkit']),
                         (['train_split=bogus'], ['bogus.txt does not exist'])):
        code, _, err = run(args(voc, str(tmp_path), *extra), capsys)
        errors = [line for line in err.splitlines() if line.startswith(('error: ', 'config error: '))]
        assert code == 2 and len(errors) == 1 and all(w in errors[0] for w in words), (extra, err)
    assert not os.path.exists(str(tmp_path / 'model'))


def test_a_classification_checkpoint_is_not_evaluated_as_segmentation(voc, tmp_path, capsys):
    from tasks.segmentation.task import load_network, SegmentationError
    import mxnet as mx
    import symbols
    net = symbols.get_network('cifar_resnet8', 3)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    checkpoint.save(str(tmp_path), 'cls', 1, net, meta={'network': 'cifar_resnet8', 'num_classes': 3})
    with pytest.raises(SegmentationError, match='is not a segmentation run'):
        load_network(str(tmp_path / 'cls'), 1, [mx.cpu()])


def test_short_training_learns(voc, tmp_path, capsys):
    """On the generated shapes, 20 short epochs take the mIoU well above the untrained network's."""
    a = args(voc, str(tmp_path), 'num_epoch=20', 'epoch_size=16', 'lr=0.02', 'crop_size=48', 'aspp_channels=32')
    code, out, err = run(a, capsys)
    assert code == 0, err
    from core.records import read_records
    records = read_records(str(tmp_path / 'log' / 'seg.jsonl'))
    first, best = records[0]['val_miou'], max(r['val_miou'] for r in records)
    meta = json.load(open(checkpoint.paths(str(tmp_path / 'model'), 'seg', 'best')['meta']))
    assert meta['val_miou'] == best
    assert best > 0.5 and best > first + 0.2, [round(r['val_miou'], 3) for r in records]


def test_logit_methods_take_every_pixel_and_average_per_image():
    """KD on class-score maps equals the mean over each image's pixels of KD on its pixel rows."""
    import mxnet as mx
    from symbols.transfer import KDLoss
    from tasks.segmentation.distill import PerPixel
    from tests import numpy_reference as ref
    rng = np.random.RandomState(0)
    s, t = rng.randn(2, 4, 3, 5), rng.randn(2, 4, 3, 5)
    want = [ref.kd(s[b].reshape(4, -1).T, t[b].reshape(4, -1).T, 4.0).mean() for b in range(2)]
    block = PerPixel(KDLoss(4.0))
    got = block(mx.nd.array(s, dtype='float64'), mx.nd.array(t, dtype='float64')).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    block.hybridize()
    np.testing.assert_allclose(block(mx.nd.array(s, dtype='float64'), mx.nd.array(t, dtype='float64')).asnumpy(),
                               want, rtol=1e-10)


def test_dkd_takes_each_pixel_s_class_and_leaves_out_its_255_pixels():
    """DKD on class-score maps equals, per image, the mean of DKD on the rows of its labelled pixels
    (label 255 excluded; an image without one gives 0); the student's scores get its gradient."""
    import mxnet as mx
    from mxnet import autograd
    from symbols.transfer import METHODS
    from tasks.segmentation.distill import PerPixel
    from tests import numpy_reference as ref
    rng = np.random.RandomState(1)
    s, t = rng.randn(3, 4, 3, 5), rng.randn(3, 4, 3, 5)
    label = rng.randint(0, 4, size=(3, 3, 5)).astype(np.float64)
    label[0, 1, :] = 255
    label[2] = 255
    want = []
    for b in range(3):
        keep = label[b].reshape(-1) != 255
        rows = ref.dkd(s[b].reshape(4, -1).T[keep], t[b].reshape(4, -1).T[keep], label[b].reshape(-1)[keep],
                       1.0, 8.0, 4.0) if keep.any() else np.zeros(1)
        want.append(rows.mean())
    block = PerPixel(METHODS['dkd'].make({}), labels=True)
    x = mx.nd.array(s, dtype='float64')
    x.attach_grad()
    with autograd.record():
        got = block(x, mx.nd.array(t, dtype='float64'), mx.nd.array(label, dtype='float64'))
        total = got.sum()
    total.backward()
    np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-8)
    assert got[2].asscalar() == 0 and np.abs(x.grad.asnumpy()[0]).sum() > 0
    assert np.abs(x.grad.asnumpy()[2]).sum() == 0                       # no labelled pixel, no gradient


def test_a_distillation_term_moves_the_student_toward_the_teacher():
    """CWD on the class-score maps alone (every label 255: no cross-entropy): a few SGD steps on
    the student lower it."""
    import mxnet as mx
    from mxnet import autograd, gluon
    from symbols.segmentation import build_segmentation_network
    from tasks.classification.distiller import loss_options
    from tasks.segmentation.distill import DenseDistillBlock
    from config.segmentation import load_segmentation_config
    import symbols
    mx.random.seed(0)
    student, _ = build_segmentation_network('preact_resnet18', 3, 'deeplabv3', 16, channels=16, prefix='s_')
    teacher, _ = build_segmentation_network('preact_resnet18', 3, 'deeplabv3', 16, channels=16, prefix='t_')
    cfg = load_segmentation_config(None, ['kt=true', 'teacher_prefix=elsewhere', 'kt_type=cwd'], check=False)
    block = DenseDistillBlock(student, cfg.plan, loss_options(cfg), ['logits'])
    tapped = symbols.with_taps(teacher, ['logits'])
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    y = mx.nd.full((2, 64, 64), 255)
    t_out = tapped(x)
    trainer = gluon.Trainer(student.collect_params(), 'sgd', {'learning_rate': 0.05})
    values = []
    for _ in range(4):
        with autograd.record():
            out = block(x, y, t_out[0], t_out[1])
        out[0].backward()
        trainer.step(2)
        values.append(float(out[3].mean().asscalar()))
        assert float(out[2].abs().max().asscalar()) == 0.0            # no labelled pixel: no cross-entropy
    assert values[-1] < values[0] * 0.9, values


def test_a_distilled_student_trains_resumes_and_refuses_what_does_not_fit(voc, tmp_path, capsys):
    teacher = args(voc, str(tmp_path), 'model_prefix=teacher')
    assert run(teacher, capsys)[0] == 0
    student = args(voc, str(tmp_path), 'model_prefix=student', 'kt=true', 'teacher_prefix=%s' % (tmp_path / 'model' /
                                                                                                 'teacher'),
                   'kt_type=kd+cwd+ofd', 'teacher_symbol=[null, logits, backbone.bn1]',
                   'student_symbol=[null, logits, backbone.bn1]')
    code, out, err = run(student, capsys)
    assert code == 0, err
    assert 'kd x 16 on the class scores of every pixel, cwd x 3 on logits<-logits, ofd x 0.001 on ' in err
    from core.records import read_records
    rec, = read_records(str(tmp_path / 'log' / 'student.jsonl'))
    assert all(np.isfinite(rec['train_%s' % m]) for m in ('ce', 'kd', 'cwd', 'ofd'))
    assert checkpoint.epochs(str(tmp_path / 'model'), 'student') == [1]
    assert os.path.isfile(checkpoint.paths(str(tmp_path / 'model'), 'student', 1)['extra'])   # OFD's connector
    code, _, err = run(merged(student + ['num_epoch=2', 'retrain=true', 'model_load_epoch=-1']), capsys)
    assert code == 0, err
    code, _, err = run(merged(student + ['kt_type=cwd', 'teacher_symbol=logits', 'student_symbol=logits', 'num_epoch=3',
                                  'retrain=true', 'model_load_epoch=-1']), capsys)
    one_error(code, err, 'kt_type=kd+cwd+ofd (this run: cwd)')
    code, _, err = run(merged(student + ['classes=[background,square,circle]', 'model_prefix=other']), capsys)
    one_error(code, err, 'the teacher', "trained on the classes ['background', 'rect', 'disc']")
    # DKD takes the class scores and the class of every pixel (its 255 pixels left out)
    code, _, err = run(merged(student + ['kt_type=dkd', 'kt_weight=1', 'teacher_symbol=null', 'student_symbol=null',
                                         'model_prefix=dkd']), capsys)
    assert code == 0 and 'dkd x 1 on the class scores of every pixel' in err, err
    rec, = read_records(str(tmp_path / 'log' / 'dkd.jsonl'))
    assert np.isfinite(rec['train_dkd']) and rec['train_dkd'] > 0, rec
    # OFD on the pre-ReLU map of every stage of the dilated backbones (the OFD preset's taps)
    stages = '[[%s]]' % ', '.join('backbone.stage%d_pre' % k for k in range(1, 5))
    code, _, err = run(merged(student + ['kt_type=ofd', 'kt_weight=0.001', 'teacher_symbol=%s' % stages,
                                         'student_symbol=%s' % stages, 'kt_layer_weight={ofd: [0.125, 0.25, 0.5, 1]}',
                                         'model_prefix=ofd4']), capsys)
    assert code == 0 and 'backbone.stage1_pre<-backbone.stage1_pre' in err, err
    rec, = read_records(str(tmp_path / 'log' / 'ofd4.jsonl'))
    assert np.isfinite(rec['train_ofd']) and rec['train_ofd'] > 0, rec
    code, _, err = run(merged(student + ['teacher_prefix=%s' % (tmp_path / 'model' / 'nobody'),
                                         'model_prefix=other']), capsys)
    one_error(code, err, "no checkpoint of a run named 'nobody'")
    assert not os.path.exists(str(tmp_path / 'model' / 'other-0001.params'))


def test_methods_with_stages_or_a_row_per_image_distil_a_segmentation_student(voc, tmp_path, capsys):
    """#20 "any registered method": AB and FT run their stages before epoch 0 on the training crops
    (a resume does not run them again), CRD keeps a memory row per training image, indexed by the
    image's place in the training list."""
    from core.records import read_records
    teacher = args(voc, str(tmp_path), 'model_prefix=teacher')
    assert run(teacher, capsys)[0] == 0
    common = ['kt=true', 'teacher_prefix=%s' % (tmp_path / 'model' / 'teacher')]
    pre = '[backbone.stage3_pre, backbone.stage4_pre]'
    for name, extra, stage in (
            ('ab', ['kt_type=ab', 'teacher_symbol=%s' % pre, 'student_symbol=%s' % pre, 'ab_init_epochs=2',
                    'kt_weight=1'], 'stage ab_init of ab: 2 epoch(s)'),
            ('ft', ['kt_type=ft', 'teacher_symbol=backbone.stage4', 'student_symbol=backbone.stage4',
                    'ft_init_epochs=1', 'kt_weight=null'], 'stage ft_init of ft: 1 epoch(s)'),
            ('crd', ['kt_type=crd', 'teacher_symbol=backbone.stage4', 'student_symbol=backbone.stage4',
                     'crd_nce_k=4', 'crd_feat_dim=8', 'kt_weight=null'], None)):
        argv = args(voc, str(tmp_path), 'model_prefix=%s' % name, 'epoch_size=2', *(common + extra))
        code, _, err = run(argv, capsys)
        assert code == 0, err
        if stage:
            assert stage in err and 'stage %s epoch 1/' % stage.split()[1] in err, err
            losses = [float(l.split('loss ')[1].split()[0]) for l in err.splitlines()
                      if 'stage %s epoch' % stage.split()[1] in l]
            assert all(np.isfinite(losses)), losses
        rec, = read_records(str(tmp_path / 'log' / ('%s.jsonl' % name)))
        assert np.isfinite(rec['train_%s' % name]) and (name == 'ab' or rec['train_%s' % name] > 0), rec
        if name in ('ab', 'crd'):      # a resume: no stage again; CRD's memory bank comes back
            code, _, err = run(merged(argv + ['num_epoch=2', 'retrain=true', 'model_load_epoch=-1']), capsys)
            assert code == 0, err
            assert name == 'crd' or 'done before the checkpoint (its result was restored)' in err, err
    # CRD's memory bank has a row per training image (16): the images' indices reached it
    banks = [v.asnumpy() for k, v in _params_extra(str(tmp_path / 'model'), 'crd', 2).items() if 'memory' in k]
    assert banks and all(b.shape[0] == 16 and np.isfinite(b).all() for b in banks), [b.shape for b in banks]


def _params_extra(model_dir, prefix, tag):
    import mxnet as mx
    return mx.nd.load(checkpoint.paths(model_dir, prefix, tag)['extra'])


def test_every_segmentation_preset_is_a_valid_configuration():
    from config.segmentation import list_segmentation_presets, load_segmentation_config
    names = list_segmentation_presets()
    assert {'seg_voc_r101_deeplabv3plus', 'seg_voc_r18_deeplabv3plus', 'seg_voc_r18_deeplabv3plus_ofd',
            'seg_voc_r18_deeplabv3plus_cwd'} <= set(names)
    for name in names:
        cfg = load_segmentation_config(name, check=False)
        assert cfg.task == 'segmentation' and cfg.lr_mode == 'poly' and cfg.crop_size == 513
        assert cfg.num_classes == 21 and (cfg.plan != []) == cfg.kt
    # OFD's rows: every backbone stage's pre-ReLU map, stage i's term divided by 2^(4 - i)
    ofd, = load_segmentation_config('seg_voc_r18_deeplabv3plus_ofd', check=False).plan
    assert ofd['pairs'] == [('backbone.stage%d_pre' % k,) * 2 for k in range(1, 5)]
    assert ofd['layer_weights'] == [0.125, 0.25, 0.5, 1.0]


def test_an_image_with_an_exif_rotation_is_read_as_stored(voc, tmp_path):
    """Found by a new user: a JPEG with EXIF Orientation=6 was rotated by OpenCV while its mask and the
    size check were not (training misaligned silently, validation an IndexError traceback)."""
    from PIL import Image
    from data import segmentation as segdata
    root = str(tmp_path / 'VOCdevkit')
    shutil.copytree(voc, root)
    image, mask, _ = segdata.voc_items(root, 'val')[0]
    img = Image.open(image)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(image, exif=exif, quality=95)
    assert segdata.read_image(image).shape[:2] == segdata.read_mask(mask).shape
    assert segdata.check_items(segdata.voc_items(root, 'val'), 3) == 6


def test_classes_no_mask_holds_and_validation_images_trained_on_are_warned_of(voc, tmp_path, capsys):
    code, _, err = run(args(voc, str(tmp_path), 'classes=[background,rect,disc,star]', 'val_split=trainval',
                            'epoch_size=2'), capsys)
    assert code == 0, err
    assert 'no mask holds the class(es) star' in err and '6 validation image(s) of trainval are training images' in \
        err, err


def test_compare_trains_segmentation_students_and_writes_table_and_curves(voc, tmp_path, capsys):
    """tools.compare with a segmentation config: one run per method and seed, resumable, the mIoU
    table and the cross-entropy / mIoU curves; plot_curves tells the tasks apart; tools.plot_masks
    draws the runs' predictions."""
    from tools import compare, plot_curves
    teacher = args(voc, str(tmp_path / 't'), 'model_prefix=teacher')
    assert run(teacher, capsys)[0] == 0
    common = [w for w in args(voc, str(tmp_path / 'x'))[2:] if not w.startswith(('model_dir=', 'log_dir=',
                                                                                   'model_prefix=', 'progress=',
                                                                                   'num_epoch='))]
    argv = ['--cfg', 'seg_voc_r18_deeplabv3plus_cwd', '--methods', 'student', 'cwd', '--seeds', '0', '--epochs', '1',
            '--name', 'cmp', '--out', str(tmp_path / 'cmp')] + common + [
        'teacher_prefix=%s' % (tmp_path / 't' / 'model' / 'teacher')]
    code, out, err = run_tool(compare.main, argv, capsys)
    assert code == 0, err
    assert '| student alone | preact_resnet18 |' in out and '| CWD | preact_resnet18 | teacher |' in out, out
    assert 'mIoU (%)' in open(str(tmp_path / 'cmp' / 'table.md')).read()
    assert os.path.getsize(str(tmp_path / 'cmp' / 'curves.png')) > 1000
    code, out, _ = run_tool(compare.main, argv, capsys)                 # finished runs are not trained again
    assert code == 0 and out.count(': done') == 2, out
    code, _, err = run_tool(plot_curves.main, ['--records', str(tmp_path / 'cmp' / 'records'), '--prefix', 'cmp_',
                                               '--methods', 'student', '--out', str(tmp_path / 'c.png')], capsys)
    one_error(code, err, 'run cmp_cwd_s0 is a segmentation run', 'add --task segmentation')
    assert not os.path.exists(str(tmp_path / 'c.png'))
    # the predicted masks of the teacher and both students, side by side
    from tools import plot_masks
    runs = [str(tmp_path / 't' / 'model' / 'teacher')] + [str(tmp_path / 'cmp' / 'model' / n)
                                                         for n in ('cmp_student_s0', 'cmp_cwd_s0')]
    code, out, err = run_tool(plot_masks.main, ['--prefix'] + runs + ['--images', '2', '--out',
                                                                     str(tmp_path / 'masks.png')], capsys)
    assert code == 0 and '2 image(s) x 3 run(s)' in out, err
    assert os.path.getsize(str(tmp_path / 'masks.png')) > 1000
    code, _, err = run_tool(plot_masks.main, ['--prefix', runs[0], '--first', '99', '--out',
                                              str(tmp_path / 'm2.png')], capsys)
    one_error(code, err, '--first 99: the validation list val', 'has 6 images')
    code, _, err = run_tool(plot_masks.main, ['--prefix', runs[0], '--images', '100', '--out',
                                              str(tmp_path / 'm2.png')], capsys)
    one_error(code, err, '--images 100: the validation list val', 'ask for at most 6')
    # a teacher that is not there stops the comparison before any run trains (the student alone first)
    missing = [a for a in argv if not a.startswith('teacher_prefix=')] + [
        'teacher_prefix=%s' % (tmp_path / 't' / 'model' / 'nope')]
    missing[missing.index('cmp')] = 'cmp2'
    code, _, err = run_tool(compare.main, missing, capsys)          # (its outputs would replace cmp's: refused)
    one_error(code, err, 'holds table.md and curves.png that the comparison --name cmp --cfg '
              'seg_voc_r18_deeplabv3plus_cwd wrote', 'give another --out')
    missing[missing.index(str(tmp_path / 'cmp'))] = str(tmp_path / 'cmp2')
    code, _, err = run_tool(compare.main, missing, capsys)
    one_error(code, err, 'run cmp2_cwd_s0: teacher_prefix=', "no checkpoint of a run named 'nope'")
    assert not glob.glob(str(tmp_path / 'cmp' / 'model' / 'cmp2_*')) and not glob.glob(str(tmp_path / 'cmp2' / 'model'
                                                                                           / 'cmp2_*'))
    # a run whose VOC folder moved: the tools say that its voc_root comes from the saved configuration
    from tools import evaluate
    for tag in ('best', '0001'):
        meta_file = tmp_path / 't' / 'model' / ('teacher-%s.json' % tag)
        meta = json.load(open(str(meta_file)))
        meta['config']['voc_root'] = str(tmp_path / 'gone')
        meta_file.write_text(json.dumps(meta))
    for tool, extra in ((evaluate, []), (plot_masks, ['--out', str(tmp_path / 'm3.png')])):
        code, _, err = run_tool(tool.main, ['--prefix', runs[0]] + extra, capsys)
        one_error(code, err, 'voc_root=%s comes from the configuration saved with' % (tmp_path / 'gone'),
                  'give its new folder: voc_root=NEW')


def test_a_gluoncv_deeplab_teacher_from_its_params_file(voc, tmp_path, capsys, monkeypatch):
    """teacher_source=gluoncv: gluoncv's DeepLabV3 (ResNet-101, 21 VOC classes) from a local .params
    file (its auxiliary head left out) distils the student on its `logits` tap; what does not fit
    is one error each: another class count, a file of another network, weights missing offline."""
    import mxnet as mx
    import symbols
    from gluoncv.model_zoo.deeplabv3 import get_deeplab
    from symbols.segmentation import gluoncv_teacher
    src = get_deeplab('pascal_voc', 'resnet101', pretrained=False, pretrained_base=False, aux=True, crop_size=32)
    src.initialize()
    x = mx.nd.random.uniform(shape=(1, 3, 32, 32))
    want = src(x)[0]
    weights = str(tmp_path / 'deeplab_r101_voc.params')
    src.save_parameters(weights)
    tapped = symbols.with_taps(gluoncv_teacher('deeplab_resnet101_voc', weights, 32, [mx.cpu()]), ['logits'])
    got = tapped(x)
    np.testing.assert_allclose(got[0].asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-5)
    assert got[1].shape == (1, 21, 4, 4)                          # the class scores at stride 8
    base = [w for w in args(voc, str(tmp_path)) if not w.startswith('classes=')] + [    # the 21 VOC classes
        'kt=true', 'kt_type=cwd', 'teacher_source=gluoncv', 'teacher_network=deeplab_resnet101_voc']
    code, _, err = run(base + ['teacher_prefix=%s' % weights], capsys)
    assert code == 0, err
    assert 'teacher: gluoncv deeplab_resnet101_voc (%s)' % weights in err
    for extra, words in (
            (['teacher_network=deeplab_resnet50_ade', 'teacher_prefix=%s' % weights, 'model_prefix=ade'],
             ['deeplab_resnet50_ade predicts 150 classes, this run has 21']),
            (['teacher_network=deeplab_resnet152_voc', 'teacher_prefix=%s' % weights, 'model_prefix=r152'],
             ['do not fit gluoncv network deeplab_resnet152_voc', 'are not in the file (layer2.4.']),
            (['teacher_network=resnet18_v1', 'model_prefix=r18'], ["'resnet18_v1' is not a gluoncv DeepLabV3"]),
            (['teacher_source=project', 'teacher_prefix=%s' % weights, 'model_prefix=proj'],
             ['teacher_network', 'names a gluoncv teacher, but teacher_source is project'])):
        keys = {e.split('=', 1)[0] for e in extra}
        code, _, err = run([w for w in base if w.split('=', 1)[0] not in keys] + extra, capsys)
        errors = [line for line in err.splitlines() if line.startswith(('error: ', 'config error: '))]
        assert code == 2 and len(errors) == 1 and all(w in errors[0] for w in words), (extra, err)
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'store'))
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')    # nothing answers: no download is tried
    code, _, err = run([w for w in base if not w.startswith('model_prefix=')] + ['model_prefix=offline'], capsys)
    one_error(code, err, 'deeplab_resnet101_voc', 'are not on disk', str(tmp_path / 'store' / 'models'))
    assert not os.path.exists(str(tmp_path / 'model' / 'offline-0001.params'))


def test_an_image_listed_twice_is_used_once_and_a_crop_far_beyond_the_images_is_warned_of(voc, tmp_path, caplog):
    """#18's fifteenth trial: two IDs listed twice in train.txt trained twice an epoch without a word;
    crop_size=512 on 48x64 images trained crops of ~97% padding at 1 image/s without a word."""
    import logging
    from data import segmentation as segdata
    from config.segmentation import load_segmentation_config
    from tasks.segmentation.task import crop_beyond_images
    root = str(tmp_path / 'VOCdevkit')
    shutil.copytree(voc, root)
    items = segdata.voc_items(root, 'train')
    list_file = items[0][2]
    ids = open(list_file).read().split()
    with open(list_file, 'a') as f:
        f.write('%s\n%s\n' % (ids[0], ids[1]))
    with caplog.at_level(logging.WARNING):
        again = segdata.voc_items(root, 'train')
    assert again == items and 'names 2 image(s) more than once (e.g. %s, %s): each is used once' % (ids[0], ids[1]) \
        in caplog.text, caplog.text
    cfg = load_segmentation_config('seg_voc_r18_deeplabv3plus', ['voc_root=%s' % root, 'sbd_root=null', CLASSES,
                                                                 'crop_size=512'], check=False)
    said = crop_beyond_images(cfg, items)
    assert said and 'crop_size=512 is more than twice' in said and '(64 x scale_max 2 = 128)' in said, said
    cfg['crop_size'] = 200
    assert crop_beyond_images(cfg, items) is None


def test_a_teacher_that_finds_one_class_is_warned_of():
    """#18's seventeenth trial: students were distilled from a teacher predicting background
    everywhere (mIoU 30.61 %) without a word (classification warns of a teacher at chance)."""
    from tasks.segmentation.task import one_class_teacher
    said = one_class_teacher({'val_miou': 0.3061, 'iou_background': 0.918, 'iou_rect': 0.0, 'iou_disc': 0.0})
    assert said and 'finds only background in its validation (mIoU 30.61%; IoU 0 for rect, disc)' in said, said
    assert one_class_teacher({'val_miou': 0.6, 'iou_background': 0.9, 'iou_rect': 0.5, 'iou_disc': 0.4}) is None
    assert one_class_teacher({'val_miou': 0.6}) is None                  # (an older checkpoint: no IoUs)


def test_validation_masks_with_nothing_to_score(voc, tmp_path, capsys, caplog):
    """(trial 27) Validation masks that are all 255 ("ignore") were scored as mIoU 0.00% and pixel
    accuracy 0.00%, marked best: nothing was scorable. They are n/a now (NaN in the record), with a
    warning; no epoch becomes the best, and evaluating the best then names an epoch to give."""
    from PIL import Image
    from core.records import read_records
    from tools import evaluate as evaluate_tool
    from tasks.segmentation.evaluate import scores
    out = scores(np.zeros((3, 3), np.int64))
    assert out['pixels'] == 0 and np.isnan(out['miou']) and np.isnan(out['pixel_acc'])
    root = str(tmp_path / 'VOCdevkit')
    shutil.copytree(voc, root)
    from data import segmentation as segdata
    for _, mask, _ in segdata.voc_items(root, 'val'):
        m = Image.open(mask)
        blank = Image.fromarray(np.full(np.array(m).shape, 255, np.uint8), 'P')
        blank.putpalette(m.getpalette())
        blank.save(mask)
    caplog.set_level('WARNING')
    code, _, err = run(args(root, str(tmp_path)), capsys)
    assert code == 0 and 'validation masks hold no pixel to score' in caplog.text + err, err
    record, = read_records(str(tmp_path / 'log' / 'seg.jsonl'))
    assert np.isnan(record['val_miou']) and np.isnan(record['val_pixel_acc'])
    assert not os.path.exists(str(tmp_path / 'model' / 'seg-best.json'))
    code = evaluate_tool.main(['--prefix', str(tmp_path / 'model' / 'seg')])
    err = capsys.readouterr().err
    assert code == 2 and "run 'seg' has no best copy: none of its epochs (1) has a validation score" in err, err
    code = evaluate_tool.main(['--prefix', str(tmp_path / 'model' / 'seg'), '--epoch', '1'])
    err = capsys.readouterr().err
    assert code == 0 and 'hold no pixel to score' in err, err
