"""Export a trained student for deployment: OUT-symbol.json + OUT-0000.params
(plus OUT-meta.json with the input size and mean/std to apply), loadable by
MXNet's SymbolBlock and Module alone, and with --onnx OUT.onnx (MXNet's own ONNX
exporter; opset 13, input `data`, any batch size). Training-only parts
(connectors) are not included. Every exported form is checked against the
trained network's outputs (onnxruntime for the ONNX file) on the run's
validation images read from --data-dir (default: the run's data_dir, as saved
with the checkpoint, where it still is), else on random inputs.

    python -m tools.export --prefix model/RUN [--epoch N|best] --out deploy/RUN [--onnx] [--data-dir DIR]
"""
import json
import logging
import os
import shutil
import sys

from core.env import configure_threads

configure_threads()

from tools import cli  # noqa: E402  (after the thread defaults)


from core.health import logit_warning  # noqa: E402

LOG = logging.getLogger('export')


class ExportError(cli.ToolError):
    """An export that would not reproduce the trained model, or could not be written; nothing is
    left at OUT (an earlier export there is kept as it was)."""


def compare_outputs(reference, outputs, tol=1e-4):
    """The largest absolute difference between `reference` and the arrays of `outputs` ({check
    name: output}); ExportError unless it is <= tol * max(1, max |reference|). Written as
    `not (worst <= bound)`, so NaN or Inf in any output fails the check; a form that gives NaN/Inf where the trained model is finite is
    named, with the cause when the outputs are absurdly large (float32 overflow in another order)."""
    import numpy as np
    from core.health import LOGIT_LIMIT
    reference = np.asarray(reference, np.float64)
    scale = max(1.0, float(np.max(np.abs(reference))))
    broken = [name for name, out in outputs.items() if not np.isfinite(np.asarray(out)).all()]
    if broken:
        raise ExportError('exported model differs from the trained one: %s gives NaN/Inf where the trained '
                          'model\'s outputs are finite%s'
                          % (' and '.join(broken), '' if scale <= LOGIT_LIMIT else
                             ': those reach %.2g, so float32 arithmetic in another order overflows; the trained '
                             'model is not usable (logits this large mean the training diverged, e.g. an lr too '
                             'high for the batch): export an earlier epoch or retrain with a lower lr' % scale))
    diffs = [(name, float(np.max(np.abs(np.asarray(out, np.float64) - reference)))) for name, out in outputs.items()]
    worst = float(np.max([d for _, d in diffs]))            # NaN when any difference is NaN
    bound = tol * scale
    if not (worst <= bound):
        raise ExportError('exported model differs from the trained one by %g (%s; allowed %g, %g of the largest '
                          'output %g)' % (worst, ', '.join('%s %g' % d for d in diffs), bound, tol, scale))
    return worst


def _temporary_prefix(out):
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(folder, '.%s.tmp-%d' % (name, os.getpid()))


SUFFIXES = ('-0000.params', '-meta.json', '.onnx', '-symbol.json')      # renamed in this order: the symbol last


def check_inputs(meta, size, data_dir=None, images=8, batch=2, at_most=False):
    """(NDArray batch, description) the exported forms are checked on: the first `images` validation
    images of the run's dataset (meta['dataset']) read from `data_dir` as the run read them, normalised
    with the run's mean/std; without `data_dir`, `batch` standard-normal random inputs. UsageError
    when the data does not fit the checkpoint (another dataset, image size or channel count)."""
    import numpy as np
    import mxnet as mx
    shape = (meta['in_channels'], size, size)
    if data_dir is None:
        return mx.nd.random.normal(shape=(batch,) + shape), '%d random inputs (no --data-dir given)' % batch
    if not meta.get('dataset'):
        raise cli.UsageError('the checkpoint metadata names no dataset, so --data-dir %s cannot be read for it: '
                             'leave --data-dir out (random inputs are used)' % data_dir)
    from tools.features import val_images
    try:
        x = val_images(dict(meta, image_size=size), data_dir, images, at_most)
    except (OSError, ValueError) as e:
        raise cli.UsageError('--data-dir %s does not hold the run\'s %s validation data: %s'
                             % (data_dir, meta['dataset'], cli.describe(e)))
    if x.shape[1:] != shape:
        raise cli.UsageError('--data-dir %s gives %s images of %s but the checkpoint takes %s inputs: give the '
                             'validation data of the run (dataset %s)' % (data_dir, 'x'.join(map(str, x.shape[1:])),
                                                                            meta['dataset'], 'x'.join(map(str, shape)),
                                                                            meta['dataset']))
    c = shape[0]

    def per_channel(v):
        return np.asarray(list(v) * c if len(v) == 1 else v, np.float32).reshape(1, c, 1, 1)
    x = (x.astype(np.float32) - per_channel(meta['mean'])) / per_channel(meta['std'])
    return mx.nd.array(x), '%d validation images of %s from %s' % (len(x), meta['dataset'], data_dir)


def deployment_meta(meta, size, prefix_path):
    """OUT-meta.json: what a client needs to feed the exported model as the run's validation did
    (input shape, resize side, crop, interpolation, channel order, mean/std), what comes out (class
    names in output order), and where it comes from (run, epoch)."""
    from data import DEFAULTS
    config = meta.get('config') or {}
    channels = meta['in_channels']
    small = DEFAULTS.get(meta.get('dataset'), DEFAULTS['imagenet'])[4] == 'small'
    if small:
        resize, how = None, 'none: the images are used at their own size (%dx%d)' % (size, size)
    else:
        from data.augment import centre_crop_resize
        resize = config.get('resize') or centre_crop_resize(size)
        how = 'bicubic (OpenCV INTER_CUBIC)'
    return {'network': meta['network'], 'num_classes': meta['num_classes'], 'classes': meta.get('classes'),
            'input_shape': [channels, size, size], 'layout': 'NCHW, float32',
            'channel_order': 'RGB' if channels == 3 else 'grayscale',
            'resize_shorter_side': resize, 'interpolation': how,
            'crop': 'the centre %dx%d square%s' % (size, size, ' of a larger image' if small else ' after the resize'),
            'mean': meta.get('mean'), 'std': meta.get('std'),
            'input': '(pixel - mean) / std on 0-255 pixels, per channel; NCHW, %s' % (
                'RGB order' if channels == 3 else 'one grayscale channel'),
            'output': 'logits (num_classes per image, in the order of classes); softmax for probabilities',
            'source': prefix_path, 'run': meta.get('model_prefix'), 'epoch': meta.get('epoch'),
            'dataset': meta.get('dataset')}


def export(prefix_path, tag, out, batch=2, tol=1e-4, onnx=False, data_dir=None, images=8):
    """Write OUT-symbol.json, OUT-0000.params, OUT-meta.json and, with `onnx`, OUT.onnx for
    checkpoint `prefix_path` at `tag`; return {'worst': the max abs difference of the checks
    (SymbolBlock, Module and, with `onnx`, onnxruntime against the trained network), 'inputs':
    what they ran on (see `check_inputs`)}. Guarantees: a checkpoint whose parameters or outputs
    are not all finite is refused (UsageError / ExportError naming it); a network MXNet's ONNX
    exporter cannot convert faithfully is refused with the operator and the reason (OnnxError);
    the files are written under temporary names, checked, fsynced and only then renamed to OUT-*,
    so a failure at any point leaves no OUT file changed and no temporary file behind. An OUT.onnx
    of an earlier export is removed by an export without `onnx` (it would not match)."""
    import numpy as np
    import mxnet as mx
    import symbols
    from core import checkpoint
    ctx = mx.cpu()
    net, meta = checkpoint.load_network(prefix_path, tag, ctx, prefix='student_')
    cli.require_finite(net, prefix_path, tag)
    size = meta.get('image_size', symbols.input_size(meta['network']))
    saved_dir = (meta.get('config') or {}).get('data_dir')
    if saved_dir and not os.path.isabs(saved_dir) and not os.path.isdir(saved_dir) and meta.get('cwd'):
        saved_dir = os.path.join(meta['cwd'], saved_dir)          # relative to the folder the run started in
    if data_dir is None and saved_dir and os.path.isdir(saved_dir):     # the run's own data, where it still is
        try:
            x, inputs = check_inputs(meta, size, saved_dir, images, batch, at_most=True)
            inputs += ' (the run\'s data_dir)'
        except cli.UsageError as e:
            x, inputs = check_inputs(meta, size, None, images, batch)
            inputs += '; the run\'s data_dir could not be read: %s' % e
    else:
        x, inputs = check_inputs(meta, size, data_dir, images, batch)
    reference = net(x).asnumpy()                       # imperative, unfused
    if not np.isfinite(reference).all():
        raise ExportError('checkpoint %s (epoch %s) has finite parameters but its outputs are not finite (NaN/Inf) '
                          'on %s (e.g. negative BatchNorm variances): it cannot be deployed; pick an '
                          'earlier epoch with --epoch N' % (prefix_path, tag, inputs))
    warning = logit_warning(float(np.max(np.abs(reference))), 'checkpoint %s (epoch %s)' % (prefix_path, tag))
    if warning:
        LOG.warning('%s', warning)
    net.hybridize()
    net(x)
    tmp = _temporary_prefix(out)
    try:
        try:
            net.export(tmp, epoch=0)
        except mx.base.MXNetError as e:
            raise ExportError('cannot write the export to %s (%s): free disk space or choose another --out'
                              % (os.path.dirname(tmp), str(e).strip().split('\n')[-1][:200]))
        described = deployment_meta(meta, size, prefix_path)
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
        written = [s for s in SUFFIXES if onnx or s != '.onnx']
        if onnx:                                    # check 3: the ONNX file, with onnxruntime
            from tools import onnx_export
            reasons = onnx_export.unsupported(tmp + '-symbol.json', x.shape)
            if reasons:
                raise onnx_export.OnnxError('network %s cannot be exported to ONNX faithfully by MXNet 1.9.1\'s '
                                            'exporter: %s. Nothing was written; export without --onnx for MXNet'
                                            % (meta['network'], '; '.join(reasons)))
            onnx_export.write(tmp + '-symbol.json', tmp + '-0000.params', x.shape, tmp + '.onnx')
            described['onnx_crc32'] = checkpoint.file_crc32(tmp + '.onnx')   # (tools.evaluate --onnx knows it by it)
            outputs['onnxruntime'] = onnx_export.run(tmp + '.onnx', x.asnumpy())
        worst = compare_outputs(reference, outputs, tol)
        with open(tmp + '-meta.json', 'w') as f:
            json.dump(described, f, indent=1)
        for suffix in written:
            with open(tmp + suffix, 'rb+') as f:
                os.fsync(f.fileno())
        for suffix in written:
            os.replace(tmp + suffix, out + suffix)
        if not onnx and os.path.lexists(out + '.onnx'):
            os.remove(out + '.onnx')
    finally:
        for suffix in SUFFIXES:
            if os.path.lexists(tmp + suffix):
                os.remove(tmp + suffix)
    scale = max(1.0, float(np.max(np.abs(reference))))
    return {'worst': worst, 'relative': worst / scale, 'tol': tol, 'inputs': inputs, 'scale': scale}


def clear_stale_temporaries(out):
    """Remove the temporary files (`.NAME.tmp-PID-*`) an export to `out` left when it was killed
    (SIGKILL): those of a process that no longer runs."""
    import re
    from core.atomic import remove_stale
    from core.runs import process_alive
    folder, name = os.path.split(os.path.abspath(out))
    remove_stale(folder, r'^\.%s\.tmp-(\d+)(-0000\.params|-meta\.json|\.onnx|-symbol\.json)$' % re.escape(name),
                 lambda m, path: not process_alive(int(m.group(1))))


def keep_existing(out, overwrite):
    """An export already at `out`: UsageError without `overwrite`; with it, a copy of its files in
    <folder of out>/replaced/<name>-<time>/ (returned; None when there is nothing at `out`)."""
    existing = [out + s for s in SUFFIXES if os.path.isfile(out + s)]
    if not existing:
        return None
    if not overwrite:
        source = ''
        try:
            with open(out + '-meta.json') as f:
                meta = json.load(f)
            source = ' (of %s, epoch %s)' % (meta.get('source'), meta.get('epoch'))
        except (OSError, ValueError):
            pass
        raise cli.UsageError('--out %s already holds an export%s: choose another --out, or add --overwrite to '
                             'replace it (a copy of the old files is kept)' % (out, source))
    from core.atomic import aside_stamp
    folder, name = os.path.split(os.path.abspath(out))
    dest = os.path.join(folder, 'replaced', '%s-%s' % (name, aside_stamp()))
    os.makedirs(dest, exist_ok=True)
    for f in existing:
        shutil.copy2(f, os.path.join(dest, os.path.basename(f)))
    return dest


@cli.command
def main(argv=None):
    """Export; 2 with one error line for a wrong argument, checkpoint or --out, a checkpoint that is
    not finite, or an export that does not match the trained model."""
    p = cli.parser('export', __doc__)
    p.add_argument('--prefix', required=True, help='checkpoint prefix path, e.g. model/fmnist_resnet8_kd_nst')
    p.add_argument('--epoch', default='best', type=cli.epoch_arg, help='epoch number or "best"')
    p.add_argument('--out', required=True, help='output prefix, e.g. deploy/fmnist_resnet8')
    p.add_argument('--onnx', action='store_true', help='also write OUT.onnx (needs onnx and onnxruntime: '
                   "pip install -c constraints.txt -e '.[onnx]')")
    p.add_argument('--data-dir', help='the run\'s validation data: the exported forms are checked on its images '
                   '(default: the run\'s data_dir saved with the checkpoint, where it still is; else random inputs)')
    p.add_argument('--images', type=cli.positive_int, default=8, help='validation images to check on (default 8)')
    p.add_argument('--overwrite', action='store_true', help='replace an export already at --out (a copy of the old '
                   'files goes to OUT_FOLDER/replaced/)')
    args = p.parse_args(argv)
    cli.checkpoint_prefix(args.prefix)
    if args.data_dir is not None:
        cli.existing_dir(args.data_dir, '--data-dir', 'give the folder holding the run\'s validation data (its '
                         'data_dir), or leave --data-dir out to check on random inputs')
    versions = None
    if args.onnx:
        from tools import onnx_export
        versions = onnx_export.require()
    cli.output_path(args.out, '--out', example=os.path.basename(args.prefix) or 'RUN')
    from core import checkpoint
    folder, name = os.path.split(args.out)
    for suffix in sorted(SUFFIXES + ('.params', '.json', '.states'), key=len, reverse=True):
        if name.lower().endswith(suffix) and name.lower() != suffix:      # (x.ONNX too)       # (x.onnx would give x.onnx.onnx, x.onnx-symbol.json, ...)
            raise cli.UsageError('--out %s names a file; --out is the prefix of the files an export writes (%s): give '
                                 '--out %s' % (args.out, ', '.join('PREFIX' + s for s in SUFFIXES),
                                               os.path.join(folder, name[:-len(suffix)])))
    if checkpoint.epochs(folder or '.', name) or os.path.isfile(checkpoint.paths(folder or '.', name, 'best')['meta']):
        raise cli.UsageError('--out %s is the prefix of run %s\'s checkpoints: an export there would sit among them and '
                             'read as a legacy checkpoint of that name; choose another --out, e.g. deploy/%s'
                             % (args.out, name, name))
    from core.runs import RunLock
    os.makedirs(folder or '.', exist_ok=True)
    # (two exports to one --out at once: each found nothing there, and the later replaced the other unasked)
    with RunLock(folder or '.', '.%s.export' % name, subject='the export to --out %s' % args.out, doing='written',
                 instead='another --out'):
        clear_stale_temporaries(args.out)
        kept = keep_existing(args.out, args.overwrite)
        try:
            done = export(args.prefix, args.epoch, args.out, onnx=args.onnx, data_dir=args.data_dir,
                          images=args.images)
        except BaseException:
            if kept:                                   # the old export is still in place: no copy needed
                shutil.rmtree(kept, ignore_errors=True)
                try:
                    os.rmdir(os.path.dirname(kept))   # replaced/, if nothing else is in it
                except OSError:
                    pass
            raise
    if kept:
        print('the earlier export at %s was replaced; a copy is in %s' % (args.out, kept))
    print('exported %s-symbol.json%s %s-0000.params%s; SymbolBlock%s outputs match the trained model on %s '
          '(largest difference %.2g at an output scale of %.2g: %.1g relative, allowed %g)'
          % (args.out, ',' if args.onnx else ' and', args.out, ' and %s.onnx (opset 13)' % args.out if args.onnx else '',
             ', Module and onnxruntime %s' % versions[1] if args.onnx else ' and Module', done['inputs'],
             done['worst'], done['scale'], done['relative'], done['tol']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
