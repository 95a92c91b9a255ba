"""Every paper preset starts training: its taps exist on its networks, its layer
pairs fit, its connectors build, one step runs and a checkpoint is written.

Tiny generated data on the CPU, with stand-in teachers that offer the same taps
at the same shapes as the real ones: a pre-activation ResNet-164 for ResNet-1001
(`stage3_pre`, 256 x 8 x 8), a small legacy Module checkpoint with internal
outputs `fc1_output` / `bn1_output` (7 x 7 at 224 x 224) for the original's
resnet-101, and gluoncv's ResNetV2-18 for ResNetV2-101 (`bn1`).
"""

import mxnet as mx
import pytest

import symbols
import train
from config import list_presets, load_config
from core import checkpoint
from data import pack
from tests.helpers import make_cifar, make_jpeg_tree, legacy_resnet_symbol

pytestmark = pytest.mark.slow
CIFAR = [p for p in list_presets() if p.startswith('cifar') and 'teacher' not in p]
IMAGENET = [p for p in list_presets() if p.startswith('imagenet')]


def tiny(root, data, name):
    return ['gpu_list=[]', 'batch_size=2', 'epoch_size=1', 'num_epoch=1', 'progress=false', 'data_threads=1',
            'model_dir=%s' % (root / 'model'), 'log_dir=%s' % (root / 'log'), 'data_dir=%s' % data,
            'model_prefix=smoke_%s' % name]


@pytest.fixture(scope='module')
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp('presets_cifar')
    for variant in ('cifar10', 'cifar100'):
        make_cifar(str(root / variant), variant, train=16, test=8)
        # lr 1e-6: a stand-in teacher that stays at its sane initialisation
        assert train.main(['--cfg', '%s_teacher_resnet1001' % variant, 'network=preact_resnet164', 'lr=1e-6'] +
                          tiny(root, root / variant, variant + '_teacher')) == 0
    return root


@pytest.mark.parametrize('name', CIFAR)
def test_cifar_preset_trains_a_step(cifar, name, capsys):
    variant = name.split('_')[0]
    teacher = cifar / 'model' / ('smoke_%s_teacher' % variant)
    code = train.main(['--cfg', name, 'teacher_prefix=%s' % teacher, 'teacher_epoch=1'] +
                      tiny(cifar, cifar / variant, name))
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert checkpoint.epochs(str(cifar / 'model'), 'smoke_' + name) == [1]
    cfg = load_config(name, check_data=False)
    if cfg.kt:                          # the stand-in offers the real teacher's taps
        real = symbols.tap_names(symbols.get_network('preact_resnet1001', cfg.num_classes))
        for entry in cfg.plan:
            for _, t_tap in entry['pairs']:
                assert t_tap in real


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp('presets_imagenet')
    make_jpeg_tree(str(root / 'imgs' / 'train'), classes=2, per_class=4, size=(48, 56), seed=1)
    make_jpeg_tree(str(root / 'imgs' / 'val'), classes=2, per_class=2, size=(48, 56), seed=2)
    pack.build_packs(str(root / 'imgs' / 'train'), str(root / 'packs'), str(root / 'imgs' / 'val'),
                     progress=False)
    # the original's teacher layout: a Module checkpoint with fc1_output and bn1_output (for the
    # stand-in's 2 classes: num_classes comes from the pack)
    sym = legacy_resnet_symbol(num_classes=2, stride=32)
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[('data', (1, 3, 224, 224))], label_shapes=[('softmax_label', (1,))])
    mod.init_params(mx.init.Xavier(magnitude=2))
    arg, aux = mod.get_params()
    mx.model.save_checkpoint(str(root / 'resnet-legacy'), 0, sym, arg, aux)
    # a gluoncv ResNetV2 params file, as downloaded weights would be
    net = symbols.get_network('preact_resnet18', 2)
    net.initialize(mx.init.Xavier(magnitude=2))
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.save_parameters(str(root / 'resnet18_v2.params'))
    return root


@pytest.mark.parametrize('name', IMAGENET)
def test_imagenet_preset_trains_a_step(imagenet, name, capsys):
    cfg = load_config(name, check_data=False)
    if cfg.teacher_source == 'gluoncv':
        teacher = ['teacher_network=preact_resnet18', 'teacher_prefix=%s' % (imagenet / 'resnet18_v2.params')]
    else:
        teacher = ['teacher_prefix=%s' % (imagenet / 'resnet-legacy')]
    code = train.main(['--cfg', name] + teacher + tiny(imagenet, imagenet / 'packs', name))
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    if cfg.kt:
        assert 'teacher validation' in err
    assert checkpoint.epochs(str(imagenet / 'model'), 'smoke_' + name) == [1]
