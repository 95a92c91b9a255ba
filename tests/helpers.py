"""Small generated datasets in the real formats, for the tests."""
import os
import re
import pickle

import numpy as np


PALETTE = np.array([(190, 20, 20), (20, 190, 20), (20, 20, 190), (190, 190, 20), (190, 20, 190),
                    (20, 190, 190), (120, 120, 120)], dtype=np.uint8)


def make_jpeg_tree(root, classes=3, per_class=8, size=(40, 36), seed=0, ext='.jpg'):
    """ROOT/<class>/<i>.jpg with class-dependent colours (learnable), varied sizes."""
    import cv2
    rng = np.random.RandomState(seed)
    names = ['class_%s' % chr(ord('a') + c) for c in range(classes)]
    for c, name in enumerate(names):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            h, w = size[0] + rng.randint(0, 6), size[1] + rng.randint(0, 6)
            img = rng.randint(0, 50, size=(h, w, 3)).astype(np.uint8)
            img += PALETTE[c % len(PALETTE)]
            img[h // 4: h // 2, (c * w) // classes: ((c + 1) * w) // classes] = 255
            cv2.imwrite(os.path.join(root, name, '%03d%s' % (i, ext)), img)
    return names


def make_cifar(root, variant='cifar10', train=200, test=100, seed=0):
    """Official-format python pickles with learnable colour-coded classes."""
    rng = np.random.RandomState(seed)
    classes = 10 if variant == 'cifar10' else 100
    key = b'labels' if variant == 'cifar10' else b'fine_labels'
    folder = os.path.join(root, 'cifar-10-batches-py' if variant == 'cifar10' else 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)

    def batch(n):
        labels = rng.randint(0, classes, size=n)
        img = rng.randint(0, 80, size=(n, 3, 32, 32)).astype(np.uint8)
        for i, l in enumerate(labels):
            img[i, l % 3] += np.uint8(120 + (l // 3) * 10 % 100)
        return {b'data': img.reshape(n, -1), key: labels.tolist(), b'batch_label': b'generated'}
    names = (['data_batch_%d' % i for i in range(1, 6)], ['test_batch']) if variant == 'cifar10' \
        else (['train'], ['test'])
    for n_total, files in ((train, names[0]), (test, names[1])):
        for f in files:
            with open(os.path.join(folder, f), 'wb') as fh:
                pickle.dump(batch(n_total // len(files)), fh)
    return folder


def make_fashion_mnist(out, train=20, val=10, seed=0):
    """A Fashion-MNIST pack (28x28 grayscale, 10 classes) in `out`, from generated idx files (the
    official files' format) packed by data.fashion_mnist."""
    import struct
    from data import fashion_mnist
    rng = np.random.RandomState(seed)
    src = os.path.join(out, 'idx')
    os.makedirs(src, exist_ok=True)
    for (images, labels), n in zip(fashion_mnist.FILES.values(), (train, val)):
        for name, array in ((images, rng.randint(0, 255, (n, 28, 28))), (labels, np.arange(n) % 10)):
            with open(os.path.join(src, name), 'wb') as f:
                f.write(b'\0\0\x08' + bytes([array.ndim]) + struct.pack('>' + 'I' * array.ndim, *array.shape))
                f.write(array.astype(np.uint8).tobytes())
    assert fashion_mnist.main(['--out', out, '--source', src, '--no-download']) == 0


def merged(argv):
    """`argv` (train.py arguments, or a command that ends with them) with each key=value override
    once: a later one replaces an earlier one of the same key. Tests build arguments by appending
    to a common list; train.py itself refuses a key given twice."""
    out, seen = [], set()
    for arg in reversed(list(argv)):
        m = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)=', arg) if isinstance(arg, str) else None
        if m and m.group(1) in seen:
            continue
        if m:
            seen.add(m.group(1))
        out.append(arg)
    return out[::-1]


def tiny_train_args(root, data, epoch_size=2, **extra):
    """train.py arguments for quick CPU runs on generated CIFAR pickles in `data`."""
    args = ['--cfg', 'cifar10_student', 'data_dir=%s' % data, 'gpu_list=[]', 'batch_size=8',
            'epoch_size=%d' % epoch_size, 'num_epoch=1', 'progress=false', 'model_dir=%s' % (root / 'model'),
            'log_dir=%s' % (root / 'log')]
    return args + ['%s=%s' % kv for kv in extra.items()]


def cifar_teacher_run(root, network='cifar_resnet14'):
    """A generated CIFAR-10 set (32 training, 16 test images) under `root`/cifar and a teacher
    `network` trained on it for one step by train.py (run `teacher` in `root`/model); returns the
    common train.py arguments (`tiny_train_args`, one step an epoch) for students on it."""
    import train
    make_cifar(str(root / 'cifar'), 'cifar10', train=32, test=16)
    common = tiny_train_args(root, root / 'cifar', epoch_size=1)
    assert train.main(common + ['network=%s' % network, 'model_prefix=teacher', 'kt=false']) == 0
    return common


def legacy_resnet_symbol(num_classes=5, stride=1, global_pool=True):
    """A small tornadomeet-style pre-activation net with internal outputs bn1_output and
    fc1_output, as a Module symbol (the layout of the original's teacher resnet-101);
    `stride` on the first convolution (32 gives 7x7 maps at 224x224, as ResNet-101);
    global_pool=False pools with a fixed 7x7 window (too large for maps under 7x7)."""
    import mxnet as mx
    data = mx.sym.var('data')
    x = mx.sym.BatchNorm(data, fix_gamma=True, eps=2e-5, name='bn_data')
    x = mx.sym.Convolution(x, num_filter=8, kernel=(3, 3), stride=(stride, stride), pad=(1, 1), no_bias=True,
                           name='conv0')
    y = mx.sym.BatchNorm(x, fix_gamma=False, eps=2e-5, name='stage1_unit1_bn1')
    y = mx.sym.Activation(y, act_type='relu', name='stage1_unit1_relu1')
    y = mx.sym.Convolution(y, num_filter=8, kernel=(3, 3), pad=(1, 1), no_bias=True, name='stage1_unit1_conv1')
    x = x + y
    x = mx.sym.BatchNorm(x, fix_gamma=False, eps=2e-5, name='bn1')
    x = mx.sym.Activation(x, act_type='relu', name='relu1')
    x = mx.sym.Pooling(x, global_pool=global_pool, pool_type='avg', kernel=(7, 7), name='pool1')
    x = mx.sym.FullyConnected(mx.sym.flatten(x), num_hidden=num_classes, name='fc1')
    return mx.sym.SoftmaxOutput(x, name='softmax')


def run_tool(main, argv, capsys):
    """(exit status, stdout, stderr) of a tool's main(argv), as `python -m tools.X` would end."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert 'Traceback' not in err
    return code or 0, out, err


def one_error(code, err, *needles):
    """Exit status 2 and exactly one `error: ...` line holding every needle."""
    assert code == 2, err
    errors = [l for l in err.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def write_as_legacy(net, prefix, image_size=32, in_channels=3, change=None):
    """Write Gluon network `net` (initialised) as a legacy MXNet Module checkpoint PREFIX-symbol.json
    + PREFIX-0000.params: its graph with a SoftmaxOutput on top and every parameter renamed to
    ``layerNNN_<kind>`` in graph order (names that say nothing of Gluon's), as the original's
    checkpoints are. BatchNorm statistics and gammas are first set to random values so that
    a wrong pairing shows. `change(json_text)`, if given, edits the symbol (another function).
    Returns (a random image x, the network's logits of x in predict mode)."""
    import json
    import os
    import tempfile
    import mxnet as mx
    rng = np.random.RandomState(7)
    for name, p in net._collect_params_with_prefix().items():
        if name.endswith(('running_var', 'gamma')):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
        elif name.endswith(('running_mean', 'beta')):
            p.set_data(mx.nd.array(rng.uniform(-0.2, 0.2, p.shape)))
    x = mx.nd.array(rng.uniform(-1, 1, (1, in_channels, image_size, image_size)))
    net.hybridize()
    with mx.autograd.predict_mode():
        net(x)
    with tempfile.TemporaryDirectory() as tmp:
        net.export(os.path.join(tmp, 'g'))
        sym = mx.sym.load(os.path.join(tmp, 'g-symbol.json'))
        saved = mx.nd.load(os.path.join(tmp, 'g-0000.params'))
    sym = mx.sym.SoftmaxOutput(sym, name='softmax')
    order = [n for n in sym.list_arguments() if n not in ('data', 'softmax_label')] + sym.list_auxiliary_states()
    names = {old: 'layer%03d_%s' % (i, old.rsplit('_', 1)[-1]) for i, old in enumerate(order)}
    graph = json.loads(sym.tojson())
    for node in graph['nodes']:
        node['name'] = names.get(node['name'], node['name'])
    text = json.dumps(graph)
    if change is not None:
        text = change(text)
    with open(prefix + '-symbol.json', 'w') as f:
        f.write(text)
    mx.nd.save(prefix + '-0000.params', {k.split(':', 1)[0] + ':' + names[k.split(':', 1)[1]]: v
                                          for k, v in saved.items()})
    with mx.autograd.predict_mode():
        return x, net(x)
