"""Export a trained student for deployment: OUT-symbol.json + OUT-0000.params
(plus OUT-meta.json with the input size and mean/std to apply), loadable by
MXNet's SymbolBlock and Module alone. Training-only parts (connectors) are
not included. The exported model is checked against the trained one.

    python -m tools.export --prefix model/RUN [--epoch N|best] --out deploy/RUN
"""
import json
import os
import sys

from core.env import configure_threads

configure_threads()

from tools import cli  # noqa: E402  (after the thread defaults)


class ExportError(cli.ToolError):
    """An export that would not reproduce the trained model, or could not be written; nothing is
    left at OUT (an earlier export there is kept as it was)."""


def compare_outputs(reference, outputs, tol=1e-4):
    """The largest absolute difference between `reference` and the arrays of `outputs` ({check
    name: output}); ExportError unless it is <= tol * max(1, max |reference|). Written as
    `not (worst <= bound)`, so NaN or Inf in any output fails the check."""
    import numpy as np
    reference = np.asarray(reference, np.float64)
    diffs = [(name, float(np.max(np.abs(np.asarray(out, np.float64) - reference)))) for name, out in outputs.items()]
    worst = float(np.max([d for _, d in diffs]))            # NaN when any difference is NaN
    bound = tol * max(1.0, float(np.max(np.abs(reference))))
    if not (worst <= bound):
        raise ExportError('exported model differs from the trained one by %g (%s; allowed %g)'
                          % (worst, ', '.join('%s %g' % d for d in diffs), bound))
    return worst


def _temporary_prefix(out):
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(folder, '.%s.tmp-%d' % (name, os.getpid()))


SUFFIXES = ('-0000.params', '-meta.json', '-symbol.json')      # renamed in this order: the symbol last


def export(prefix_path, tag, out, batch=2, tol=1e-4):
    """Write OUT-symbol.json, OUT-0000.params and OUT-meta.json for checkpoint `prefix_path` at
    `tag`; return the max abs difference of the checks (SymbolBlock and Module against the
    trained network). Guarantees: a checkpoint whose parameters or outputs are not all finite is
    refused (UsageError / ExportError naming it); the files are written under temporary names,
    checked, fsynced and only then renamed to OUT-*, so a failure at any point leaves no OUT file
    changed and no temporary file behind."""
    import numpy as np
    import mxnet as mx
    import symbols
    from core import checkpoint
    ctx = mx.cpu()
    net, meta = checkpoint.load_network(prefix_path, tag, ctx, prefix='student_')
    cli.require_finite(net, prefix_path, tag)
    size = meta.get('image_size', symbols.input_size(meta['network']))
    x = mx.nd.random.normal(shape=(batch, meta['in_channels'], size, size))
    reference = net(x).asnumpy()                       # imperative, unfused
    if not np.isfinite(reference).all():
        raise ExportError('checkpoint %s (epoch %s) has finite parameters but its outputs are not finite (NaN/Inf) '
                          'on random inputs (e.g. negative BatchNorm variances): it cannot be deployed; pick an '
                          'earlier epoch with --epoch N' % (prefix_path, tag))
    net.hybridize()
    net(x)
    tmp = _temporary_prefix(out)
    try:
        try:
            net.export(tmp, epoch=0)
        except mx.base.MXNetError as e:
            raise ExportError('cannot write the export to %s (%s): free disk space or choose another --out'
                              % (os.path.dirname(tmp), str(e).strip().split('\n')[-1][:200]))
        with open(tmp + '-meta.json', 'w') as f:
            json.dump({'network': meta['network'], 'num_classes': meta['num_classes'], 'input_shape':
                       [meta['in_channels'], size, size], 'mean': meta.get('mean'), 'std': meta.get('std'),
                       'input': '(pixel - mean) / std, NCHW, RGB order for 3 channels', 'source': prefix_path,
                       'epoch': meta.get('epoch')}, f, indent=1)
        # check 1: Gluon SymbolBlock
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            loaded = mx.gluon.SymbolBlock.imports(tmp + '-symbol.json', ['data'], tmp + '-0000.params', ctx=ctx)
        outputs = {'SymbolBlock': loaded(x).asnumpy()}
        # check 2: Module
        sym, arg, aux = mx.model.load_checkpoint(tmp, 0)
        mod = mx.mod.Module(sym, data_names=['data'], label_names=None, context=ctx)
        mod.bind(data_shapes=[('data', x.shape)], for_training=False)
        mod.set_params(arg, aux)
        mod.forward(mx.io.DataBatch([x]), is_train=False)
        outputs['Module'] = mod.get_outputs()[0].asnumpy()
        worst = compare_outputs(reference, outputs, tol)
        for suffix in SUFFIXES:
            with open(tmp + suffix, 'rb+') as f:
                os.fsync(f.fileno())
        for suffix in SUFFIXES:
            os.replace(tmp + suffix, out + suffix)
    finally:
        for suffix in SUFFIXES:
            if os.path.lexists(tmp + suffix):
                os.remove(tmp + suffix)
    return worst


@cli.command
def main(argv=None):
    """Export; 2 with one error line for a wrong argument, checkpoint or --out, a checkpoint that is
    not finite, or an export that does not match the trained model."""
    p = cli.parser('export', __doc__)
    p.add_argument('--prefix', required=True, help='checkpoint prefix path, e.g. model/fmnist_resnet8_kd_nst')
    p.add_argument('--epoch', default='best', type=cli.epoch_arg, help='epoch number or "best"')
    p.add_argument('--out', required=True, help='output prefix, e.g. deploy/fmnist_resnet8')
    args = p.parse_args(argv)
    cli.checkpoint_prefix(args.prefix)
    cli.output_path(args.out, '--out', example=os.path.basename(args.prefix) or 'RUN')
    worst = export(args.prefix, args.epoch, args.out)
    print('exported %s-symbol.json and %s-0000.params; SymbolBlock and Module outputs match the trained model '
          '(max abs difference %.2g)' % (args.out, args.out, worst))
    return 0


if __name__ == '__main__':
    sys.exit(main())
