"""Networks: build, hybridize, taps, parameter counts, legacy checkpoints."""

import json
import shutil

import numpy as np
import mxnet as mx
import pytest

import symbols
from tests.helpers import legacy_resnet_symbol

EVERY = [n for n in symbols.NETWORKS] + ['wrn16_2', 'wrn28_4', 'wrn40_1']


def outputs_equal(net, x):
    tapped = symbols.with_taps(net, symbols.tap_names(net))
    tapped.initialize(mx.init.Xavier(magnitude=2.5))
    with mx.autograd.predict_mode():
        a = [o.asnumpy() for o in tapped(x)]
        tapped.hybridize()
        b = [o.asnumpy() for o in tapped(x)]
    assert len(a) == len(b) == len(tapped.taps) + 1
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4)
    return a


@pytest.mark.parametrize('name', EVERY)
def test_forward_hybridized_equals_imperative(name):
    channels = 1 if name in ('cifar_resnet20', 'wrn16_2', 'inception_bn_small') else 3   # Fashion-MNIST style too
    size = 32 if symbols.input_size(name) == 32 else 64
    net = symbols.get_network(name, 10, channels)
    out = outputs_equal(net, mx.nd.random.uniform(shape=(2, channels, size, size)))
    assert out[0].shape == (2, 10)


# documented tap shapes at the native input size (per sample)
TAP_SHAPES = {
    'inception_bn': {'in5b_bn': (1024, 7, 7), 'in5b': (1024, 7, 7), 'in4e': (1056, 7, 7), 'in3c': (576, 14, 14),
                     'pool2': (192, 27, 27), 'pool': (1024,)},
    'inception_bn_small': {'conv1': (96, 32, 32), 'in3c': (160, 16, 16), 'in4e': (240, 8, 8),
                           'in5b': (336, 8, 8), 'in5b_bn': (336, 8, 8), 'pool': (336,)},
    'preact_resnet101': {'bn1': (2048, 7, 7), 'stage4': (2048, 7, 7), 'stage1': (256, 56, 56), 'pool': (2048,)},
    'preact_resnet18': {'bn1': (512, 7, 7), 'stage3': (256, 14, 14)},
    'preact_resnet1001': {'stage1': (64, 32, 32), 'stage3_pre': (256, 8, 8), 'stage2_pre': (128, 16, 16)},
    'cifar_resnet56': {'stage1': (16, 32, 32), 'stage2_pre': (32, 16, 16), 'stage3': (64, 8, 8), 'pool': (64,)},
    'wrn28_4': {'stage1': (64, 32, 32), 'stage2_pre': (128, 16, 16), 'stage3_relu': (256, 8, 8)},
    'pyramidnet200': {'stage3_pre': (1024, 8, 8), 'stage1': (384, 32, 32), 'stage2': (704, 16, 16)},
    'resnet50_nst': {'stem': (128, 112, 112), 'layer4_pre': (2048, 7, 7), 'layer3': (1024, 14, 14)},
    'resnet152': {'layer4': (2048, 7, 7)},
    'mobilenet1.0': {'features_pre': (1024, 7, 7), 'pool': (1024,)},
}


@pytest.mark.parametrize('name', sorted(TAP_SHAPES))
def test_documented_tap_shapes(name):
    size = symbols.input_size(name)
    net = symbols.get_network(name, 100, 3)
    taps = list(TAP_SHAPES[name])
    tapped = symbols.with_taps(net, taps)
    data = mx.sym.var('data')
    sym = mx.sym.Group(list(tapped(data)))
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, size, size))
    assert tuple(out_shapes[0]) == (1, 100)
    for tap, shape in zip(taps, out_shapes[1:]):
        assert tuple(shape[1:]) == TAP_SHAPES[name][tap], tap


# (name, classes, expected, exact?) -- rounded figures: equal when rounded to the digits given, and
# within 0.5% where that also holds for the published rounding
COUNTS = [
    ('inception_bn', 1000, 11295246, True), ('inception_bn_small', 10, 1652826, True),
    ('inception_bn_small', 100, 1683156, True),
    ('cifar_resnet20', 10, 0.27e6, False), ('cifar_resnet32', 10, 0.47e6, False),
    ('cifar_resnet44', 10, 0.66e6, False), ('cifar_resnet56', 10, 0.86e6, False),
    ('cifar_resnet110', 10, 1.73e6, False),
    ('wrn28_4', 100, 5.87e6, False), ('wrn16_4', 100, 2.77e6, False), ('wrn16_2', 100, 0.70e6, False),
    ('wrn28_2', 10, 1.47e6, False),       # 1.47M is WRN-28-2's CIFAR-10 count (1.48M with 100 classes)
    ('pyramidnet200', 100, 26.84e6, False), ('pyramidnet110', 100, 3.91e6, False),
    ('resnet50', 1000, 25.56e6, False), ('resnet152', 1000, 60.19e6, False),
    ('mobilenet1.0', 1000, 4.23e6, False),
]


@pytest.mark.parametrize('name,classes,expected,exact', COUNTS)
def test_parameter_counts(name, classes, expected, exact):
    n = symbols.count_parameters(symbols.get_network(name, classes, 3), 3, symbols.input_size(name))
    if exact:
        assert n == expected
    else:
        digits = 2 if expected < 10e6 else 2
        assert round(n / 1e6, digits) == round(expected / 1e6, digits), n


def test_resnet1001_parameter_count():
    n = symbols.count_parameters(symbols.get_network('preact_resnet1001', 10, 3), 3, 32)
    assert abs(n - 10.33e6) / 10.33e6 < 0.005, n


def test_unknown_tap_lists_available_ones():
    net = symbols.get_network('cifar_resnet20', 10)
    with pytest.raises(symbols.TapError, match=r"unknown tap 'stage9'.*stage1, stage1_pre"):
        symbols.with_taps(net, ['stage9'])
    with pytest.raises(ValueError, match='unknown network'):
        symbols.get_network('resnet7', 10)


def test_child_path_and_input_taps():
    net = symbols.get_network('cifar_resnet20', 10)
    t = symbols.with_taps(net, ['stage3.2.relu2:in', 'stage3_pre', 'stage3.2.relu2'])
    t.initialize()
    a, b, c = t(mx.nd.random.uniform(shape=(1, 3, 32, 32)))[1:]
    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    np.testing.assert_allclose(np.maximum(a.asnumpy(), 0), c.asnumpy())


def test_taps_share_parameters_and_families_do_not_collide():
    teacher = symbols.get_network('resnet50', 10, prefix='teacher_')
    student = symbols.get_network('resnet50', 10, prefix='student_')
    tn, sn = set(teacher.collect_params().keys()), set(student.collect_params().keys())
    assert not tn & sn and all(n.startswith('teacher_') for n in tn)
    both = teacher.collect_params()
    both.update(student.collect_params())        # raises on a name collision
    net = symbols.get_network('cifar_resnet20', 10)
    tapped = symbols.with_taps(net, ['stage2'])
    tapped.initialize()
    for name, p in tapped.collect_params().items():
        assert p is net.collect_params()[name]


def test_legacy_checkpoint_loads_with_taps(tmp_path, monkeypatch):
    sym = legacy_resnet_symbol()
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[('data', (4, 3, 10, 10))], label_shapes=[('softmax_label', (4,))])
    mod.init_params(mx.init.Xavier(magnitude=2.5))
    arg, aux = mod.get_params()
    aux = {k: mx.nd.random.uniform(0.5, 1.5, v.shape) if 'var' in k else mx.nd.random.normal(0, 0.1, v.shape)
           for k, v in aux.items()}
    prefix = str(tmp_path / 'resnet-tiny')
    mx.model.save_checkpoint(prefix, 3, sym, arg, aux)
    x = mx.nd.random.uniform(0, 255, shape=(4, 3, 10, 10))

    # reference: the Module on the grouped internals, without MKLDNN subgraph fusion
    monkeypatch.setenv('MXNET_SUBGRAPH_BACKEND', 'NONE')
    internals = sym.get_internals()
    ref_sym = mx.sym.Group([internals['fc1_output'], internals['bn1_output']])
    ref = mx.mod.Module(ref_sym, label_names=None, context=mx.cpu())
    ref.bind(data_shapes=[('data', x.shape)], for_training=False)
    ref.set_params(arg, aux)
    ref.forward(mx.io.DataBatch([x]), is_train=False)
    expected = [o.asnumpy() for o in ref.get_outputs()]
    monkeypatch.delenv('MXNET_SUBGRAPH_BACKEND')

    block = symbols.load_legacy(prefix, 3, ['bn1_output'])
    assert symbols.tap_names(block.base)[:1] and 'bn1_output' in symbols.tap_names(block.base)
    got = [o.asnumpy() for o in block(x)]
    block.hybridize(static_alloc=True)
    got_h = [o.asnumpy() for o in block(x)]
    for g, gh, e in zip(got, got_h, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gh, e, rtol=1e-5, atol=1e-5)
    with pytest.raises(symbols.TapError, match='bn1_output'):
        symbols.load_legacy(prefix, 3, ['bn9'])
    with pytest.raises(symbols.CheckpointError, match='does not exist'):
        symbols.load_legacy(prefix, 4, ['bn1'])
    data = open(prefix + '-0003.params', 'rb').read()
    open(prefix + '-0005.params', 'wb').write(data[:len(data) // 2])
    with pytest.raises(symbols.CheckpointError, match='truncated or corrupt'):
        symbols.load_legacy(prefix, 5, ['bn1'])

    # the same checkpoint with the symbol file in older MXNet layouts: per-node "attr"
    # (MXNet 0.9.5 - 1.x, as the original's 2017 teacher) and "param" (before 0.9)
    for version, key in ((905, 'attr'), (800, 'param')):
        doc = json.load(open(prefix + '-symbol.json'))
        for node in doc['nodes']:
            node[key] = node.pop('attrs', {})
        doc['attrs'] = {'mxnet_version': ['int', version]}
        old = str(tmp_path / ('resnet-v%d' % version))
        json.dump(doc, open(old + '-symbol.json', 'w'))
        shutil.copy(prefix + '-0003.params', old + '-0003.params')
        for g, e in zip(symbols.load_legacy(old, 3, ['bn1_output'])(x), expected):
            np.testing.assert_allclose(g.asnumpy(), e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('gluoncv_name,name', [('resnet18_v2', 'preact_resnet18'), ('resnet50_v2', 'preact_resnet50'),
                                               ('resnet50_v1b', 'resnet50'), ('resnet50_v1s', 'resnet50_nst'),
                                               ('mobilenet1.0', 'mobilenet1.0')])
def test_gluoncv_weight_files_load_into_the_zoo_networks(gluoncv_name, name, tmp_path):
    """A params file saved from gluoncv's own model (as its model store's files are) loads into
    the project's network, which then computes the same outputs."""
    from gluoncv.model_zoo import get_model
    ref = get_model(gluoncv_name, classes=10, pretrained=False)
    ref.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    expected = ref(x).asnumpy()
    ref.save_parameters(str(tmp_path / 'w.params'))
    net = symbols.get_network(name, 10, prefix='teacher_')
    net.load_parameters(str(tmp_path / 'w.params'))
    np.testing.assert_array_equal(net(x).asnumpy(), expected)


@pytest.mark.parametrize('hybridize', [False, True])
def test_every_batchnorm_keeps_running_statistics_while_training_on_cpu(hybridize):
    """MXNet's CPU BatchNorm updates its running statistics only in a backward pass, which it skips
    for the ResNetV2 input BatchNorm (no trainable parameter): its statistics stayed 0 and 1 and a
    network trained on dark images predicted one class in evaluation. After training, the input
    BatchNorm's running statistics are the data's, as every other BatchNorm's follow theirs."""
    from mxnet import autograd, gluon
    mx.random.seed(0)
    net = symbols.get_network('preact_resnet18', 4, prefix='bnstat_')
    net.initialize(mx.init.Xavier(magnitude=2))
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 1e-4})
    data_bn = net.features[0]
    net(mx.nd.zeros((1, 3, 32, 32)))
    beta_before = data_bn.beta.data().asnumpy().copy()
    for _ in range(40):
        x = mx.nd.random.normal(-1.5, 0.4, shape=(4, 3, 32, 32))       # darker than the mean/std assume
        with autograd.record():
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(x), mx.nd.array([0, 1, 2, 3]))
        loss.backward()
        trainer.step(4)
    mx.nd.waitall()
    np.testing.assert_allclose(data_bn.running_mean.data().asnumpy(), -1.5, atol=0.05)
    np.testing.assert_allclose(data_bn.running_var.data().asnumpy(), 0.16, atol=0.02)
    assert (data_bn.beta.data().asnumpy() == beta_before).all()           # its beta is never trained
    for block in (net.features[2], net.features[5][0].bn1):      # and the other BatchNorms follow theirs
        assert np.abs(block.running_mean.data().asnumpy()).max() > 0.01
