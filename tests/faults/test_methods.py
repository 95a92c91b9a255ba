"""Transfer methods and the data and launch they need: a method that needs each sample's index
(crd) trains on RecordIO packs of both layouts; one with a stage or a per-sample memory (ab, ft,
crd) under several worker processes stops before training with one error naming the problem and
the fix (exit 2)."""
import os
import re
import tempfile

import mxnet as mx
import numpy as np
import pytest

from core.errors import TrainingError
from tasks.classification.task import check_methods_fit
from data import pack
from tests.helpers import make_jpeg_tree


def fashion_mnist_pack(tmp_path, train=20, val=10):
    """A Fashion-MNIST pack (data.fashion_mnist from generated idx files): `train` and `val` images."""
    import struct
    from data import fashion_mnist
    rng = np.random.RandomState(0)
    src = tmp_path / 'fm_src'
    src.mkdir()
    for (images, labels), n in zip(fashion_mnist.FILES.values(), (train, val)):
        for name, array in ((images, rng.randint(0, 255, (n, 28, 28))), (labels, np.arange(n) % 10)):
            with open(str(src / name), 'wb') as f:
                f.write(b'\0\0\x08' + bytes([array.ndim]) + struct.pack('>' + 'I' * array.ndim, *array.shape))
                f.write(array.astype(np.uint8).tobytes())
    out = tmp_path / 'fm'
    assert fashion_mnist.main(['--out', str(out), '--source', str(src), '--no-download']) == 0
    return ['dataset=fashion_mnist', 'data_dir=%s' % out, 'num_classes=10']


def imagenet_pack(tmp_path):
    """An ImageNet-layout pack of 3 classes: 12 training JPEGs, 6 validation JPEGs, at 16x16."""
    make_jpeg_tree(str(tmp_path / 'train'), classes=3, per_class=4, size=(20, 20), seed=1)
    make_jpeg_tree(str(tmp_path / 'val'), classes=3, per_class=2, size=(20, 20), seed=2)
    assert pack.main(['--train', str(tmp_path / 'train'), '--val', str(tmp_path / 'val'),
                      '--out', str(tmp_path / 'pack')]) == 0
    return ['dataset=imagenet', 'data_dir=%s' % (tmp_path / 'pack'), 'num_classes=3', 'image_size=16']


@pytest.mark.parametrize('layout', ['fashion_mnist', 'imagenet'])
def test_crd_trains_on_a_pack_and_updates_the_memory_row_of_every_sample(tmp_path, train_run, layout, monkeypatch):
    """RecordIO packs carry each record's row in the pack (data/indices.py): after one epoch over the
    whole training set every row of CRD's memory banks has been moved and renormalised (rows not reached
    keep their random initial norms), and the checkpoint holds them."""
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))     # where the row list of the pack goes
    data, samples = (fashion_mnist_pack(tmp_path), 20) if layout == 'fashion_mnist' else (imagenet_pack(tmp_path), 12)
    common = data + ['network=cifar_resnet8', 'gpu_list=[]', 'batch_size=4', 'progress=false', 'data_threads=1',
                     'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'num_epoch=1',
                     'epoch_size=%d' % (samples // 4)]
    assert train_run(common + ['model_prefix=teacher', 'kt=false', 'epoch_size=1'])[0] == 0
    code, err = train_run(common + ['model_prefix=crd', 'kt=true', 'kt_type=kd+crd', 'teacher_symbol=[null, pool]',
                                    'student_symbol=[null, pool]', 'teacher_prefix=%s' % (tmp_path / 'model' /
                                                                                          'teacher')])
    assert code == 0, err
    saved = mx.nd.load(str(tmp_path / 'model' / 'crd-0001.extra.params'))
    memories = [v.asnumpy() for k, v in saved.items() if k.endswith('memory_s') or k.endswith('memory_t')]
    assert len(memories) == 2, list(saved)
    for memory in memories:
        assert memory.shape[0] == samples
        np.testing.assert_allclose(np.linalg.norm(memory, axis=1), 1.0, rtol=1e-4)
    assert os.listdir(str(tmp_path / 'tmp')) == []                     # the row list is gone


def test_stage_and_memory_methods_under_several_workers_are_refused():
    plan = [{'method': m} for m in ('kd', 'mmd', 'ab')]
    check_methods_fit(plan, 1)
    with pytest.raises(TrainingError, match='ab has a stage before training .* not 2 workers under dist_'):
        check_methods_fit(plan, 2)
    check_methods_fit([{'method': m} for m in ('kd', 'mmd', 'cc', 'vid')], 8)


def test_batches_for_a_gpu_train_as_the_cpu_ones_do(tmp_path, train_run, monkeypatch):
    """ImageNet batches in their GPU form (uint8 images + colour maps, the colour step on the device:
    data.device) go through the whole trainer (teacher, the distillation step, validation; a stage
    before training takes its batches through the same step): with the devices taken for a GPU, a kd+mmd run ends where the CPU form's run
    ends, up to float32 rounding: after its one step the parameters agree within about 1e-6 (with
    three steps of a batch of 4 the difference grew chaotically, to 2e-4 with AVX2 kernels and past
    1e-3 with AVX-512 ones)."""
    import tasks.classification.task as classification
    data = imagenet_pack(tmp_path)
    common = data + ['network=cifar_resnet8', 'gpu_list=[]', 'batch_size=4', 'progress=false', 'data_threads=1',
                     'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'num_epoch=1',
                     'epoch_size=1', 'deterministic=true']
    assert train_run(common + ['model_prefix=teacher', 'kt=false'])[0] == 0
    student = ['kt=true', 'kt_type=kd+mmd', 'teacher_prefix=%s' % (tmp_path / 'model' / 'teacher'),
               'teacher_symbol=[null, stage3]',
               'student_symbol=[null, stage3]']
    forms = []
    real = classification.DataSource
    for gpu_form in (False, True):
        def source(*args, **kw):
            forms.append(kw['colour_on_device'])
            return real(*args, **dict(kw, colour_on_device=gpu_form))
        monkeypatch.setattr(classification, 'DataSource', source)
        code, err = train_run(common + student + ['model_prefix=s%d' % gpu_form])
        assert code == 0, err
    assert forms == [False, False]                      # (CPU devices: the CPU form, unless made otherwise)
    cpu, gpu = [mx.nd.load(str(tmp_path / 'model' / ('s%d-0001.params' % k))) for k in (0, 1)]
    assert sorted(cpu) == sorted(gpu)
    for name in cpu:
        np.testing.assert_allclose(gpu[name].asnumpy(), cpu[name].asnumpy(), rtol=1e-3, atol=2e-5, err_msg=name)
    assert any(not np.array_equal(gpu[n].asnumpy(), cpu[n].asnumpy()) for n in cpu)   # (two computations)


@pytest.mark.parametrize('method', ['mmd', 'at', 'cwd'])
def test_a_spatial_method_on_a_1x1_tap_is_refused(method):
    """#18's sixteenth trial: NST on a tap that is 1x1 at the image size trained (tools.compare tabled
    it as NST) with a term of exactly 0 every step. The methods that compare spatial positions declare
    it, and the block refuses such a tap."""
    from symbols.transfer import PairingError
    from tasks.classification.distiller import loss_options
    from tasks.detection.distill import DetectionDistillBlock
    from config import load_config
    options = loss_options(load_config(None, [], check_data=False))
    plan = [{'method': method, 'weight': 1.0, 'pairs': [('a', 'a')], 'layer_weights': [1.0]}]
    with pytest.raises(PairingError, match="compares its taps across their spatial positions, and the student tap "
                                           "'a' is 1x1 here"):
        DetectionDistillBlock(plan, options, ['a']).connect({'a': (8, 1, 1)}, {'a': (8, 2, 2)})
    DetectionDistillBlock(plan, options, ['a']).connect({'a': (8, 2, 2)}, {'a': (8, 2, 2)})


def test_a_teacher_at_chance_or_with_diverged_logits_is_warned_of(caplog):
    """#18's sixteenth trial: a diverged teacher (logits up to 1.2e7, 10.14 % top-1 on 10 classes) was
    distilled from without a word (tools.evaluate warned of the same checkpoint)."""
    import logging
    from types import SimpleNamespace
    from tasks.classification.task import ClassificationTask
    task = SimpleNamespace(teacher=SimpleNamespace(trained_with={'image_size': 28, 'val_top1': 0.1}),
                           data=SimpleNamespace(image_size=28),
                           cfg=SimpleNamespace(teacher_prefix='model/big2', num_classes=10))
    with caplog.at_level(logging.WARNING):
        ClassificationTask.check_teacher(task, {'top1': 0.1014, 'top5': 0.5, 'max_logit': 1.2e7})
    assert 'the teacher model/big2 has logits up to 1.2e+07' in caplog.text, caplog.text
    assert 'the teacher scores at chance here (top-1 10.14% on 10 classes, chance 10.00%)' in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ClassificationTask.check_teacher(task, {'top1': 0.8, 'top5': 0.99, 'max_logit': 12.0})
    assert not caplog.text


def test_a_divergence_from_an_outsized_kt_weight_advises_the_default_weights_and_that_works(tmp_path, capsys):
    """#18's sixteenth trial: kt_weight=[1e30] diverged, and the advice (a lower lr, the weight kept)
    diverged again when followed."""
    import shlex
    import train
    from tests.helpers import make_cifar, merged, tiny_train_args
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=64, test=32)
    common = tiny_train_args(tmp_path, tmp_path / 'cifar', frequent=1)
    assert train.main(merged(common + ['network=cifar_resnet8', 'model_prefix=t'])) == 0
    argv = merged(common + ['network=cifar_resnet8', 'model_prefix=s', 'kt=true', 'kt_type=kd', 'kt_weight=[1e30]',
                            'teacher_prefix=%s' % (tmp_path / 'model' / 't'), 'teacher_symbol=null',
                            'student_symbol=null'])
    capsys.readouterr()
    assert train.main(argv) == 3
    err = capsys.readouterr().err
    assert 'kt_weight 1e+30 of kd is 6.' in err and 'times its default (16): start again with the default ' \
        'weights' in err, err
    advice = shlex.split(err.strip().splitlines()[-1])
    assert advice[1] == 'train.py' and 'kt_weight=null' in advice
    assert train.main(advice[2:]) == 0, capsys.readouterr().err


def test_a_divergence_from_a_method_option_names_it_and_the_advice_works(tmp_path, capsys):
    """(trial 27) kd_t=1e-9 diverged with "lower lr ... resume from the last good checkpoint" although none
    was saved, and the command offered (a lower lr, kd_t kept) diverged again. The options set away from
    their defaults are named, and the command offered (the defaults) trains; the message no longer
    claims a checkpoint."""
    import shlex
    import train
    from tests.helpers import make_cifar, merged, tiny_train_args
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=64, test=32)
    common = tiny_train_args(tmp_path, tmp_path / 'cifar', frequent=1)
    assert train.main(merged(common + ['network=cifar_resnet8', 'model_prefix=t'])) == 0
    argv = merged(common + ['network=cifar_resnet8', 'model_prefix=s', 'kt=true', 'kt_type=kd', 'kt_weight=null',
                            'kd_t=1e-9', 'teacher_prefix=%s' % (tmp_path / 'model' / 't'), 'teacher_symbol=null',
                            'student_symbol=null'])
    capsys.readouterr()
    assert train.main(argv) == 3
    err = capsys.readouterr().err
    assert re.search('(loss|parameters) became NaN or Inf', err) and 'resume' not in err, err
    assert 'sets method options away from their defaults, a likely cause: kd_t=1e-09 (default 4.0); start again ' \
        'with the defaults' in err, err
    advice = shlex.split(err.strip().splitlines()[-1])
    assert advice[1] == 'train.py' and 'kd_t=4.0' in advice and 'kd_t=1e-9' not in advice
    assert train.main(advice[2:]) == 0, capsys.readouterr().err


def test_a_branch_with_other_methods_is_told_how_and_a_begin_epoch_on_resume_is_refused(tmp_path, capsys):
    """(trial 27) retrain=true from another run's checkpoint with another kt_type was refused with "start a
    new run", which it was; begin_epoch=0 on a resume was ignored without a word."""
    import shlex
    import train
    from tests.helpers import make_cifar, merged, tiny_train_args
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=64, test=32)
    common = tiny_train_args(tmp_path, tmp_path / 'cifar')
    assert train.main(merged(common + ['network=cifar_resnet8', 'model_prefix=t'])) == 0
    distil = ['network=cifar_resnet8', 'kt=true', 'kt_weight=null', 'teacher_prefix=%s' % (tmp_path / 'model' / 't')]
    taps = ['teacher_symbol=[null, stage3]', 'student_symbol=[null, stage3]']
    assert train.main(merged(common + distil + taps + ['model_prefix=s', 'kt_type=kd+mmd'])) == 0
    capsys.readouterr()
    branch = ['retrain=true', 'model_load_prefix=s', 'model_load_epoch=1', 'model_prefix=b', 'kt_type=kd',
              'teacher_symbol=null', 'student_symbol=null', 'num_epoch=2']
    assert train.main(merged(common + distil + branch)) == 2
    err = capsys.readouterr().err
    words = re.search(r'start a new run from them: (pretrained=\S+ pretrained_epoch=1), without retrain', err)
    assert words, err
    assert train.main(merged(common + distil + ['model_prefix=b', 'kt_type=kd', 'teacher_symbol=null',
                                                'student_symbol=null'] + shlex.split(words.group(1)))) == 0, \
        capsys.readouterr().err
    assert train.main(merged(common + distil + taps + ['retrain=true', 'model_load_epoch=1', 'model_prefix=s',
                                                       'kt_type=kd+mmd', 'begin_epoch=0', 'num_epoch=2'])) == 2
    assert 'begin_epoch=0 (the command line) is not used with retrain=true' in capsys.readouterr().err


def test_the_commands_offered_after_a_divergence_run(tmp_path):
    """(review of trial 27's fixes) A resume command kept begin_epoch=0, which a resume now refuses; an
    option whose default is null was offered as `ab_init_epochs=None`, which the config refuses; a
    preset's own method options (mmd_kernel=gaussian) were blamed."""
    from argparse import Namespace
    import train
    from config import load_config
    args = Namespace(cfg=None, overrides=['begin_epoch=0', 'model_prefix=x'])
    assert 'begin_epoch' not in train.train_command(args, resume=True)
    assert 'begin_epoch=0' in train.train_command(args, resume=False)
    args = Namespace(cfg=None, overrides=['model_prefix=x', 'ab_init_epochs=3'])
    assert 'ab_init_epochs' not in train.train_command(args, resume=False, drop=['ab_init_epochs'])
    cfg = load_config('cifar10_nst_gaussian', ['data_dir=%s' % tmp_path], check_data=False)
    assert train.changed_options(cfg, ['data_dir']) == []
    cfg = load_config('cifar10_nst_gaussian', ['data_dir=%s' % tmp_path, 'mmd_kernel=linear'], check_data=False)
    assert train.changed_options(cfg, ['data_dir', 'mmd_kernel']) == [('mmd_kernel', 'linear', 'poly')]


def test_data_settings_that_would_not_be_used_and_a_legacy_teacher_of_other_channels(tmp_path, capsys):
    """(trial 28) On grayscale data, mean=[a,b,c] used a and dropped b and c without a word; resize was
    ignored for fashion_mnist; pad=100 on 28-pixel images trained on crops of border without a word; a
    3-channel legacy teacher for grayscale data got "set image_size to its size", which cannot help."""
    import train
    import symbols
    from config import ConfigError, load_config, warnings_of
    from tests.helpers import make_fashion_mnist, merged, write_as_legacy
    with pytest.raises(ConfigError, match=r"keys mean and std \(the command line\) list 3 values, but fashion_mnist "
                                          r"images have 1 channel\(s\): give 1 value"):
        load_config(None, ['mean=[100,100,100]', 'std=[50,50,50]'], check_data=False)
    with pytest.raises(ConfigError, match='resize .* applies to dataset=imagenet packs.*leave resize out'):
        load_config(None, ['resize=16'], check_data=False)
    said = warnings_of(load_config(None, ['pad=100'], check_data=False))
    assert said and 'holds on average 98% border; the usual pad is 2' in said[0]
    assert not warnings_of(load_config(None, ['pad=4'], check_data=False))
    make_fashion_mnist(str(tmp_path / 'fm'))
    net = symbols.get_network('cifar_resnet8', 10)
    net.initialize()
    net(mx.nd.zeros((1, 3, 28, 28)))
    write_as_legacy(net, str(tmp_path / 'colour'), image_size=28)
    argv = merged(['data_dir=%s' % (tmp_path / 'fm'), 'network=cifar_resnet8', 'num_epoch=1', 'epoch_size=1',
                   'progress=false', 'kt=true', 'kt_type=kd', 'kt_weight=null', 'teacher_symbol=null',
                   'student_symbol=null', 'teacher_prefix=%s' % (tmp_path / 'colour'), 'teacher_epoch=0',
                   'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'batch_size=4'])
    capsys.readouterr()
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert 'takes 3-channel images' in err and 'but this data has 1 channel(s): use a teacher trained on 1-channel ' \
        'images' in err and 'image_size' not in err.split('error:')[-1], err


def test_a_finished_cosine_run_named_again_is_told_how_to_train_on(tmp_path, capsys):
    """(trial 29) The resume command offered for a finished run (num_epoch + 1) stretched its cosine
    schedule, which the resume then warned of; the error now says so and offers a new run from its
    weights, and that command trains. tools.compare trained nst and mmd (one method) twice."""
    import shlex
    import train
    from tools import compare
    from tests.helpers import make_cifar, merged, tiny_train_args
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=64, test=32)
    argv = merged(tiny_train_args(tmp_path, tmp_path / 'cifar') + ['network=cifar_resnet8', 'model_prefix=f',
                                                                   'lr_mode=cosine'])
    assert train.main(argv) == 0
    capsys.readouterr()
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert "run 'f' is finished: epochs 1..1 of num_epoch=1. That resume stretches its cosine lr schedule" in err, err
    advice = shlex.split(err.strip().splitlines()[-1].rstrip(')'))
    assert 'model_prefix=f_more' in advice and 'pretrained=%s' % (tmp_path / 'model' / 'f') in advice
    assert train.main(advice[2:]) == 0, capsys.readouterr().err
    code = compare.main(['--cfg', 'cifar10_student', 'data_dir=%s' % (tmp_path / 'cifar'), '--name', 'al',
                         '--out', str(tmp_path / 'al'), '--methods', 'nst', 'mmd', 'teacher_prefix=%s'
                         % (tmp_path / 'model' / 'nothing')])
    err = capsys.readouterr().err
    assert code == 2 and 'warning: nst and mmd name one method: it is trained once, as nst' in err, err
