"""Export a trained student for deployment: OUT-symbol.json + OUT-0000.params
(plus OUT-meta.json with the input size and mean/std to apply), loadable by
MXNet's SymbolBlock and Module alone. Training-only parts (connectors) are
not included. The exported model is checked against the trained one.

    python -m tools.export --prefix model/RUN [--epoch N|best] --out deploy/RUN
"""
import argparse
import json
import os
import sys

from core.env import configure_threads

configure_threads()


def export(prefix_path, tag, out, batch=2, tol=1e-4):
    """Write the deployable model; return the max abs difference of the checks."""
    import numpy as np
    import mxnet as mx
    import symbols
    from core import checkpoint
    ctx = mx.cpu()
    net, meta = checkpoint.load_network(prefix_path, tag, ctx, prefix='student_')
    size = meta.get('image_size', symbols.input_size(meta['network']))
    x = mx.nd.random.normal(shape=(batch, meta['in_channels'], size, size))
    reference = net(x).asnumpy()                       # imperative, unfused
    net.hybridize()
    net(x)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    net.export(out, epoch=0)
    with open(out + '-meta.json', 'w') as f:
        json.dump({'network': meta['network'], 'num_classes': meta['num_classes'], 'input_shape':
                   [meta['in_channels'], size, size], 'mean': meta.get('mean'), 'std': meta.get('std'),
                   'input': '(pixel - mean) / std, NCHW, RGB order for 3 channels', 'source': prefix_path,
                   'epoch': meta.get('epoch')}, f, indent=1)
    # check 1: Gluon SymbolBlock
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        loaded = mx.gluon.SymbolBlock.imports(out + '-symbol.json', ['data'], out + '-0000.params', ctx=ctx)
    diffs = [np.abs(loaded(x).asnumpy() - reference).max()]
    # check 2: Module
    sym, arg, aux = mx.model.load_checkpoint(out, 0)
    mod = mx.mod.Module(sym, data_names=['data'], label_names=None, context=ctx)
    mod.bind(data_shapes=[('data', x.shape)], for_training=False)
    mod.set_params(arg, aux)
    mod.forward(mx.io.DataBatch([x]), is_train=False)
    diffs.append(np.abs(mod.get_outputs()[0].asnumpy() - reference).max())
    worst = float(max(diffs))
    if worst > tol * max(1.0, float(np.abs(reference).max())):
        raise RuntimeError('exported model differs from the trained one by %g (SymbolBlock %g, Module %g)'
                           % (worst, diffs[0], diffs[1]))
    return worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--prefix', required=True, help='checkpoint prefix path, e.g. model/fmnist_resnet8_kd_nst')
    p.add_argument('--epoch', default='best')
    p.add_argument('--out', required=True, help='output prefix, e.g. deploy/fmnist_resnet8')
    args = p.parse_args(argv)
    from core.checkpoint import CheckpointError
    try:
        worst = export(args.prefix, 'best' if args.epoch == 'best' else int(args.epoch), args.out)
    except (CheckpointError, RuntimeError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    print('exported %s-symbol.json and %s-0000.params; SymbolBlock and Module outputs match the trained model '
          '(max abs difference %.2g)' % (args.out, args.out, worst))
    return 0


if __name__ == '__main__':
    sys.exit(main())
