"""Your data, your teacher (#19): pretrained starting weights with a new classifier, teacher_source
auto, the original teacher's tap names on this project's networks, `train.py --keys`, what an export
tells a client, scoring the ONNX file, and the warning for absurd logits."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import symbols
import train
from core import checkpoint
from symbols import pretrained
from tests.helpers import make_cifar, make_jpeg_tree, one_error, run_tool, tiny_train_args, write_as_legacy

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def saved_net(path, network='cifar_resnet8', classes=10, seed=0):
    mx.random.seed(seed)
    net = symbols.get_network(network, classes)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.save_parameters(str(path))
    return net


@pytest.fixture(scope='module')
def four(tmp_path_factory):
    """A 4-class ImageNet-layout pack and the train.py arguments of quick runs on it."""
    from data import pack
    root = tmp_path_factory.mktemp('own')
    make_jpeg_tree(str(root / 'src' / 'train'), classes=4, per_class=4, size=(20, 20), seed=1)
    make_jpeg_tree(str(root / 'src' / 'val'), classes=4, per_class=2, size=(20, 20), seed=2)
    assert pack.main(['--train', str(root / 'src' / 'train'), '--val', str(root / 'src' / 'val'),
                      '--out', str(root / 'pack')]) == 0
    args = ['dataset=imagenet', 'data_dir=%s' % (root / 'pack'), 'image_size=16', 'network=cifar_resnet8',
            'kt=false', 'gpu_list=[]', 'batch_size=4', 'progress=false', 'data_threads=1', 'num_epoch=1',
            'model_dir=%s' % (root / 'model'), 'log_dir=%s' % (root / 'log')]
    return root, args


def test_a_student_starts_from_weights_of_another_class_count_with_a_new_classifier(four, capsys):
    root, args = four
    source = saved_net(root / 'ten.params', classes=10)
    assert train.main(args + ['pretrained=%s' % (root / 'ten.params'), 'pretrained_lr_mult=0.1',
                              'model_prefix=from_ten', 'epoch_size=1', 'lr=1e-12']) == 0
    err = capsys.readouterr().err
    assert 'student starts from %s' % (root / 'ten.params') in err
    assert 'its classifier (output.weight, output.bias) is new, for 4 classes' in err
    net, meta = checkpoint.load_network(str(root / 'model' / 'from_ten'), 1, mx.cpu())
    assert meta['num_classes'] == 4                                   # from the pack's classes.txt
    got, want = net._collect_params_with_prefix(), source._collect_params_with_prefix()
    convs = [k for k in want if 'conv' in k and k.endswith('weight')]
    assert convs and set(got) == set(want)
    for k in convs:                                                   # lr ~0: as loaded
        np.testing.assert_allclose(got[k].data().asnumpy(), want[k].data().asnumpy(), rtol=1e-6, atol=1e-9)
    assert got['output.weight'].shape == (4, want['output.weight'].shape[1])
    # a run of this project as the start (its best epoch), the same way
    assert train.main(args + ['pretrained=%s' % (root / 'model' / 'from_ten'), 'model_prefix=from_run',
                              'epoch_size=1']) == 0
    assert 'student starts from %s' % (root / 'model' / 'from_ten-best.params') in capsys.readouterr().err


def test_weights_of_another_architecture_are_refused_naming_the_parameters(four, capsys):
    root, args = four
    saved_net(root / 'r14.params', network='cifar_resnet14')
    code = train.main(args + ['pretrained=%s' % (root / 'r14.params'), 'model_prefix=wrong', 'epoch_size=1'])
    err = capsys.readouterr().err
    one_error(code, err, 'do not fit network cifar_resnet8', 'of the file are not in the network (stage1.1.')
    assert not os.path.exists(str(root / 'model' / 'wrong-0001.params'))
    for value, words in (('nowhere.params', 'no such file'), ('bogus', "neither 'zoo'"),
                         ('zoo', 'gluoncv has no ImageNet weights for network cifar_resnet8')):
        code = train.main(args + ['pretrained=%s' % value, 'model_prefix=wrong'])
        err = capsys.readouterr().err
        assert code == 2 and 'config key pretrained' in err and words in err, err


def test_a_legacy_module_checkpoint_starts_a_network_of_its_architecture(four, capsys):
    """Paired by order and shape, checked by one forward: the loaded network computes the legacy
    checkpoint's logits; through train.py its classifier is replaced for the pack's 4 classes."""
    root, args = four
    prefix = str(root / 'legacy_r8')
    source = saved_net(root / 'unused.params', classes=10, seed=3)
    x, want = write_as_legacy(source, prefix, image_size=16)
    named, arrays = pretrained.weights_of('legacy', (prefix, 0), 'cifar_resnet8', 3, 16)
    assert named == 'legacy checkpoint %s epoch 0' % prefix
    fresh = symbols.get_network('cifar_resnet8', 10, prefix='fresh_')
    fresh.initialize()
    fresh(mx.nd.zeros((1, 3, 16, 16)))
    loaded, replaced = pretrained.load_with_new_head(fresh, arrays, 10, named=named)
    assert replaced == [] and len(loaded) == len(arrays)
    with mx.autograd.predict_mode():
        np.testing.assert_allclose(fresh(x).asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-5)
    assert train.main(args + ['pretrained=%s' % prefix, 'model_prefix=from_legacy', 'epoch_size=1', 'lr=1e-12']) == 0
    err = capsys.readouterr().err
    assert 'student starts from legacy checkpoint %s epoch 0' % prefix in err
    assert 'its classifier (output.weight, output.bias) is new, for 4 classes' in err
    from tools import evaluate                       # the 10-class checkpoint as a teacher of the 4-class data
    code, _, err = run_tool(evaluate.main, ['--teacher', 'teacher_prefix=%s' % prefix] + [
        a for a in args if a.split('=')[0] in ('dataset', 'data_dir', 'image_size', 'gpu_list', 'data_threads')] + [
        'batch_size=4'], capsys)
    one_error(code, err, 'predicts 10 classes, the data has 4')
    net, _ = checkpoint.load_network(str(root / 'model' / 'from_legacy'), 1, mx.cpu())
    got, src = net._collect_params_with_prefix(), source._collect_params_with_prefix()
    for k in [k for k in src if 'conv' in k and k.endswith('weight')]:
        np.testing.assert_allclose(got[k].data().asnumpy(), src[k].data().asnumpy(), rtol=1e-6, atol=1e-9)


def test_a_legacy_checkpoint_of_another_architecture_or_function_is_refused(four, capsys):
    root, args = four
    write_as_legacy(saved_net(root / 'unused14.params', network='cifar_resnet14'), str(root / 'legacy_r14'),
                    image_size=16)
    write_as_legacy(saved_net(root / 'unused8.params'), str(root / 'legacy_sigmoid'), image_size=16,
                    change=lambda text: text.replace('"act_type": "relu"', '"act_type": "sigmoid"', 1))
    for prefix, words in (('legacy_r14', ['parameters, network cifar_resnet8 has', 'another architecture']),
                          ('legacy_sigmoid', ['computes another function', 'as a teacher'])):
        code = train.main(args + ['pretrained=%s' % (root / prefix), 'model_prefix=wrong_' + prefix])
        one_error(code, capsys.readouterr().err, 'pretrained=%s' % (root / prefix), *words)
        assert not os.path.exists(str(root / 'model' / ('wrong_%s-0001.params' % prefix)))


def test_lr_mult_applies_to_the_loaded_parameters_only(four, tmp_path, monkeypatch):
    """pretrained_lr_mult on the body; the new classifier learns at lr."""
    from tasks.classification.task import ClassificationTask
    root, args = four
    saved_net(tmp_path / 'ten.params', classes=10)
    seen = {}
    real = ClassificationTask._start_from_pretrained

    def spy(self):
        real(self)
        seen.update((n, p.lr_mult) for n, p in self.student._collect_params_with_prefix().items())
    monkeypatch.setattr(ClassificationTask, '_start_from_pretrained', spy)
    assert train.main(args + ['pretrained=%s' % (tmp_path / 'ten.params'), 'pretrained_lr_mult=0.1',
                              'model_prefix=mult', 'epoch_size=1']) == 0
    assert seen['output.weight'] == seen['output.bias'] == 1.0
    assert {v for k, v in seen.items() if not k.startswith('output.')} == {0.1}


def test_teacher_source_auto_finds_what_exists(tmp_path):
    from config.checks import resolved_source
    (tmp_path / 'legacy-symbol.json').write_text('{}')
    (tmp_path / 'w.params').write_bytes(b'')
    (tmp_path / 'run-0001.params').write_bytes(b'')
    (tmp_path / 'run-0001.json').write_text('{}')
    assert resolved_source('auto', str(tmp_path / 'legacy')) == 'legacy'
    assert resolved_source('auto', str(tmp_path / 'w.params')) == 'gluoncv'
    assert resolved_source('auto', str(tmp_path / 'run-0001.params')) == 'project'   # (named as a file by its check)
    assert resolved_source('auto', None, 'preact_resnet101') == 'gluoncv'
    assert resolved_source('auto', None, 'resnet18_v1') == 'gluoncv'
    assert resolved_source('auto', str(tmp_path / 'run')) == 'project'
    assert resolved_source('legacy', str(tmp_path / 'run')) == 'legacy'


def test_the_original_teachers_tap_names_fit_this_projects_preact_networks():
    net = symbols.get_network('preact_resnet18', 10)
    tapped = symbols.with_taps(net, ['bn1_output', 'relu1_output', 'pool1_output'])
    same = symbols.with_taps(net, ['bn1', 'relu1', 'pool'])
    net.initialize()
    x = mx.nd.random.uniform(shape=(1, 3, 32, 32))
    for a, b in zip(tapped(x), same(x)):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    with pytest.raises(symbols.TapError, match=r"unknown tap 'bn1_output' for network .*Available taps: stem"):
        symbols.with_taps(symbols.get_network('cifar_resnet8', 10), ['bn1_output'])


def test_keys_lists_every_key_by_group_and_filters_by_a_word():
    r = subprocess.run([sys.executable, 'train.py', '--keys'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    from config.schema import FIELDS
    from config.detection import FIELDS as DETECTION
    for key in list(FIELDS) + list(DETECTION):
        assert '\n%s = ' % key in '\n' + r.stdout, key
    assert 'Classification: data' in r.stdout and 'Distillation: crd options (kt_type=crd)' in r.stdout
    r = subprocess.run([sys.executable, 'train.py', '--keys', 'teacher'], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and 'teacher_prefix = null' in r.stdout and '\nlr = ' not in r.stdout
    r = subprocess.run([sys.executable, 'train.py', '--keys', 'nosuchword'], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "no config key is about 'nosuchword'" in r.stderr
    r = subprocess.run([sys.executable, 'train.py', '--help'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert '--keys' in r.stdout


def test_export_meta_tells_a_client_everything_and_onnx_scores_as_mxnet(four, capsys):
    from tools import evaluate, export
    pytest.importorskip('onnxruntime')
    root, args = four
    assert train.main(args + ['model_prefix=dep', 'epoch_size=2']) == 0
    capsys.readouterr()
    out = str(root / 'deploy' / 'dep')
    code, stdout, err = run_tool(export.main, ['--prefix', str(root / 'model' / 'dep'), '--out', out, '--onnx'],
                                 capsys)
    assert code == 0 and 'relative, allowed 0.0001' in stdout, err
    meta = json.load(open(out + '-meta.json'))
    assert meta['classes'] == ['class_a', 'class_b', 'class_c', 'class_d'] and meta['num_classes'] == 4
    assert meta['input_shape'] == [3, 16, 16] and meta['resize_shorter_side'] == 18     # 16 x 256 / 224
    assert meta['interpolation'].startswith('bicubic') and meta['channel_order'] == 'RGB'
    assert meta['run'] == 'dep' and meta['epoch'] == 1 and meta['mean'] and meta['std']
    code, onnx_out, err = run_tool(evaluate.main, ['--onnx', out + '.onnx'], capsys)
    assert code == 0 and '(onnxruntime)' in onnx_out, err
    code, mx_out, err = run_tool(evaluate.main, ['--prefix', str(root / 'model' / 'dep')], capsys)
    assert code == 0
    assert onnx_out.split(': ', 1)[1] == mx_out.split('): ', 1)[1]          # the same top-1 on the same 8 images
    code, _, err = run_tool(evaluate.main, ['--onnx', out + '-meta.json'], capsys)
    one_error(code, err, 'it is not a .onnx file')


def test_absurd_logits_are_warned_of_in_training_and_evaluation(tmp_path, capsys):
    from tools import evaluate
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=16, test=16)
    args = tiny_train_args(tmp_path, tmp_path / 'cifar', epoch_size=1) + ['network=cifar_resnet8', 'kt=false']
    assert train.main(args + ['model_prefix=sane', 'lr=1e-12']) == 0
    assert 'has logits up to' not in capsys.readouterr().err
    net, meta = checkpoint.load_network(str(tmp_path / 'model' / 'sane'), 1, mx.cpu())
    dense = [p for n, p in net.collect_params().items() if 'dense' in n and n.endswith('weight')][0]
    dense.set_data(dense.data() * 1e6)
    checkpoint.save(str(tmp_path / 'model'), 'wild', 1, net, meta=dict(meta, model_prefix='wild'), best=True)
    code, out, err = run_tool(evaluate.main, ['--prefix', str(tmp_path / 'model' / 'wild')], capsys)
    assert code == 0 and 'warning: ' in err and 'has logits up to' in err and 'lr too high for the batch' in err
    assert train.main(args + ['model_prefix=wild2', 'pretrained=%s' % (tmp_path / 'model' / 'wild'),
                              'lr=1e-12']) == 0
    assert 'the student (validation of epoch 1) has logits up to' in capsys.readouterr().err


def test_a_legacy_checkpoint_offers_its_operators_outputs_as_taps(tmp_path):
    """Found by a new user: the tap list of a legacy checkpoint whose parameters have opaque names
    (layerNNN_mean, layerNNN_var) offered its BatchNorm statistics as taps; it now offers the outputs
    of its operators only, whatever its variables are called."""
    net = symbols.get_network('cifar_resnet8', 3)
    net.initialize()
    net(mx.nd.zeros((1, 3, 16, 16)))
    prefix = str(tmp_path / 'opaque')
    write_as_legacy(net, prefix, image_size=16)
    legacy = symbols.load_legacy_network(prefix, 0, mx.cpu())
    offered = legacy.internal_names()
    variables = set(legacy.full_symbol.list_arguments()) | set(legacy.full_symbol.list_auxiliary_states())
    assert offered and not variables & set(offered) and not [n for n in offered if n.startswith('layer')], offered
    assert all(n.endswith('_output') for n in offered), offered
    with pytest.raises(symbols.TapError) as e:
        symbols.with_taps(legacy, ['nope'])
    assert 'layer0' not in str(e.value) and '_output' in str(e.value), e.value
