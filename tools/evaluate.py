"""Evaluate a checkpoint of any task: classification, single-centre-crop top-1 / top-5 on the
validation set; detection (a voc_* preset or task=detection), VOC07 mAP and AP per class.

    python -m tools.evaluate [--cfg PRESET] [--epoch N|best] [--prefix model/RUN] [key=value ...]
    python -m tools.evaluate --teacher [--cfg PRESET] [key=value ...]
    python -m tools.evaluate --cfg voc_kd_nst [--epoch N|best] [key=value ...]
    python -m tools.evaluate --onnx deploy/RUN.onnx [--cfg PRESET] [key=value ...]

By default the run named by the config's model_prefix in model_dir, its best
epoch (its best recorded epoch when the best copy is missing). The network comes
from the checkpoint's metadata, and so do the data, classes, image size and
mean/std: the configuration saved with the checkpoint, unless --cfg is given;
key=value overrides apply on top. With --teacher, the
config's teacher instead, from any teacher source (this project's checkpoint,
a gluoncv network with its weights, a legacy MXNet Module checkpoint).
"""
import os
import sys

from core.env import configure_threads

configure_threads()

from tools import cli  # noqa: E402  (after the thread defaults)


def _evaluate(cfg, load, max_batches=None, classes_of=None):
    """(validation result, what `load` says of the network) for the network `load(data, ctx)` builds;
    labels outside the classes the network outputs (`classes_of(info)`, else num_classes) are refused."""
    from tasks.classification.evaluate import evaluate
    from core.devices import contexts
    from data import DataSource
    from data.device import on_gpu
    from tasks.classification.task import check_batch_fits
    ctx = contexts(cfg)
    data = DataSource(cfg, colour_on_device=on_gpu(ctx), validation_only=True)
    if cfg.dataset in ('imagenet', 'fashion_mnist'):   # (MXNet's pack iterator needs a batch within the set;
        check_batch_fits(cfg, data.batch_size, {'validation': data.num_val}, len(ctx))   # CIFAR's arrays pad)
    net, info = load(data, ctx)
    classes = classes_of(info) if classes_of else cfg.num_classes
    if classes > cfg.num_classes:       # (fewer: the labels it cannot output are refused as they are met)
        raise cli.UsageError('the network predicts %d classes, the data (%s in %s) has %d (num_classes): evaluate it on '
                             'data of its classes (leave out --cfg, data_dir and num_classes to use its run\'s data)'
                             % (classes, cfg.dataset, cfg.data_dir, cfg.num_classes))
    return dict(evaluate(net, data.val(), ctx, classes, max_batches), classes=classes, size=data.image_size), info


def _warn_logits(res, what):
    from core.health import logit_warning
    warning = logit_warning(res.get('max_logit', 0.0), what)
    if warning:
        print('warning: %s' % warning, file=sys.stderr)


def _accuracy(res, classes):
    from tasks.classification.metrics import accuracy_text
    return accuracy_text(res['top1'], res['top5'], classes)


def evaluate_checkpoint(cfg, prefix_path, tag, max_batches=None):
    """(result, checkpoint metadata) of a checkpoint of this project; UsageError, before any
    evaluation, for a checkpoint whose parameters are not all finite."""
    from core import checkpoint

    def load(data, ctx):
        net, meta = checkpoint.load_network(prefix_path, tag, ctx)
        cli.require_finite(net, prefix_path, tag)
        if meta.get('in_channels', data.channels) != data.channels:
            raise cli.UsageError('checkpoint %s takes %d-channel images but %s in %s has %d: evaluate it on the '
                                 'data of its run (leave out --cfg and data_dir to use the configuration saved '
                                 'with it)'
                                 % (prefix_path, meta['in_channels'], cfg.dataset, cfg.data_dir, data.channels))
        from data import other_class_names
        differ = other_class_names(meta.get('classes'), cfg, meta.get('num_classes'))
        if differ:
            print('warning: checkpoint %s: %s' % (prefix_path, differ), file=sys.stderr)
        trained = meta.get('image_size')
        if isinstance(trained, int) and trained != data.image_size:
            print('warning: checkpoint %s was trained on %dx%d images and is evaluated at image_size=%d: its score '
                  'here is not its score as trained; leave out image_size (its run\'s) unless that is intended'
                  % (prefix_path, trained, trained, data.image_size), file=sys.stderr)
        net.hybridize(static_alloc=True)
        return net, meta
    return _evaluate(cfg, load, max_batches, classes_of=lambda meta: meta['num_classes'])


def evaluate_segmentation(cfg, prefix, tag):
    """mIoU, pixel accuracy and IoU per class of a segmentation checkpoint on its validation list."""
    from tasks.segmentation.task import evaluate_checkpoint, iou_table
    res, meta = evaluate_checkpoint(cfg, prefix, tag)
    if not res['pixels']:
        from tasks.segmentation.evaluate import unscored_words
        print('warning: %s' % unscored_words(res['n']), file=sys.stderr)
    print('%s epoch %s (%s, %s): mIoU %.2f%%  pixel accuracy %.2f%%  on %d images'
          % (prefix, meta.get('epoch'), meta['segmentation']['head'], meta['network'], 100 * res['miou'],
             100 * res['pixel_acc'], res['n']))
    print(iou_table(dict(('iou_%s' % c, v) for c, v in zip(cfg.classes, res['iou'])), cfg.classes))
    return 0


def _whose(overrides):
    return 'config/cfgs.py' if not overrides else 'config/cfgs.py with %s' % ' '.join(overrides)


def _refuse_other_data(path, gone, meta, cfg, overrides):
    """UsageError when the export's run is gone (`gone`: its path) and the config now read names
    another dataset than the one the export was trained on."""
    if meta.get('dataset') and cfg.dataset != meta['dataset']:
        raise cli.UsageError('--onnx %s was exported from run %s (epoch %s), which is not there any more (moved, '
                             'deleted or on another machine), on %s data, and %s reads %s: name its data, e.g. '
                             '--cfg PRESET or dataset=%s data_dir=...' % (path, gone, meta.get('epoch'),
                                                                         meta['dataset'], _whose(overrides),
                                                                         cfg.dataset, meta['dataset']))


def evaluate_onnx(args):
    """(result, description) of an exported OUT.onnx scored with onnxruntime on a validation set:
    the data of --cfg / overrides, else of the run it was exported from (OUT-meta.json's source, with
    the configuration saved with that checkpoint, where it is on disk), else config/cfgs.py's."""
    import json
    from config import ConfigError, load_config, of_checkpoint
    from core import checkpoint
    from tools import onnx_export
    onnx_export.require()
    path = args.onnx
    if not path.endswith('.onnx') or not os.path.isfile(path):
        raise cli.UsageError('--onnx %s: %s; give the OUT.onnx that tools.export --onnx wrote'
                             % (path, 'it is not a .onnx file' if os.path.isfile(path) else 'it is a folder'
                                if os.path.isdir(path) else 'no such file'))
    meta = {}
    meta_path = path[:-len('.onnx')] + '-meta.json'
    if os.path.isfile(meta_path):
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except ValueError as e:
            raise cli.UsageError('%s is not valid JSON (%s): export again' % (meta_path, e))
    elif args.cfg is None and not args.overrides:
        raise cli.UsageError('--onnx %s: its metadata %s (tools.export writes it beside the .onnx file: the data, '
                             'input size and mean/std) is missing: copy it there, or name the data and its '
                             'normalisation yourself (--cfg PRESET, or data_dir=... image_size=... mean=... std=...)'
                             % (path, meta_path))
    if isinstance(meta.get('onnx_crc32'), int) and checkpoint.file_crc32(path) != meta['onnx_crc32']:
        print('warning: --onnx %s is not the file exported with its metadata %s (its CRC-32 differs: copied over or '
              'replaced since?): scoring it as it is, on the data that metadata names; it is not run %s\'s network '
              '(epoch %s) as exported' % (path, meta_path, meta.get('run'), meta.get('epoch')), file=sys.stderr)
    cfg, gone = None, None
    if args.cfg is None and meta.get('source'):
        folder, name = os.path.split(meta['source'])
        try:
            saved = checkpoint.read_meta(folder or '.', name, meta.get('epoch') or 'best')
        except checkpoint.CheckpointError as e:
            saved = None
            if checkpoint.epochs(folder or '.', name) or os.path.isfile(
                    checkpoint.paths(folder or '.', name, 'best')['meta']):
                print('warning: --onnx %s: the checkpoint it was exported from cannot be read (%s): scoring it on the '
                      'data config/cfgs.py (and the keys given) name' % (path, checkpoint.reason(e)), file=sys.stderr)
            else:
                gone = meta['source']          # (the run it came from: moved, deleted, another machine)
        if saved is not None:
            cfg = of_checkpoint(saved, '%s epoch %s' % (meta['source'], meta.get('epoch')), args.overrides,
                                check_data='validation')
    if cfg is None:
        from config import task_of
        task = task_of(args.cfg, args.overrides)
        if task != 'classification':
            raise cli.UsageError('--onnx scores a classification export on a classification validation set, and '
                                 '--cfg %s is a %s config: give a classification config (or none: the export\'s '
                                 'metadata names its data)' % (args.cfg, task))
        if gone:
            _refuse_other_data(path, gone, meta, load_config(args.cfg, args.overrides, check_data=False),
                               args.overrides)
        try:
            cfg = load_config(args.cfg, args.overrides, check_data='validation')
        except ConfigError as e:
            if not gone:
                raise
            raise cli.UsageError('--onnx %s was exported from run %s (epoch %s), which is not there any more (moved, '
                                 'deleted or on another machine), and %s does not name data to score it on (%s): '
                                 'name the %s data it was trained on, e.g. data_dir=...'
                                 % (path, gone, meta.get('epoch'), _whose(args.overrides), e, meta.get('dataset')))
    if gone and 'data_dir' not in {o.split('=', 1)[0] for o in args.overrides}:
        print('warning: --onnx %s was exported from run %s (epoch %s), which is not there any more (moved, deleted '
              'or on another machine): scoring it on %s data in %s, as %s reads them (data_dir=... names other '
              'data)' % (path, gone, meta.get('epoch'), cfg.dataset, cfg.data_dir, _whose(args.overrides)),
              file=sys.stderr)
    for key in ('mean', 'std'):
        if meta.get(key) is not None and cfg[key] is None:
            cfg[key] = meta[key]                    # the normalisation the exported model expects
    classes = meta.get('num_classes', cfg.num_classes)

    def load(data, ctx):
        net = onnx_export.OnnxNet(path)
        own = [d for d in net.input_shape[1:]]                     # what the model itself takes
        said = meta.get('input_shape')
        if said and all(isinstance(d, int) for d in own) and list(said) != own:
            raise cli.UsageError('%s takes %s inputs, but its metadata %s says %s: the metadata belongs to another '
                                 'export; copy the -meta.json written with this .onnx (or export again)'
                                 % (path, 'x'.join(map(str, own)), meta_path, 'x'.join(map(str, said))))
        want = own if all(isinstance(d, int) for d in own) else (said or own)
        if all(isinstance(d, int) for d in want) and tuple(want) != tuple(data.data_shape):
            raise cli.UsageError('%s takes %s inputs but %s in %s gives %s: score it on the data it was exported '
                                 'for (image_size, dataset), e.g. with --cfg and data_dir=...'
                                 % (path, 'x'.join(map(str, want)), cfg.dataset, cfg.data_dir,
                                    'x'.join(map(str, data.data_shape))))
        return net, '%s (onnxruntime)' % path
    cfg['gpu_list'] = []                             # onnxruntime runs on the CPU here
    return _evaluate(cfg, load, classes_of=lambda info: classes)


def evaluate_teacher(cfg, max_batches=None):
    """(result, description) of the configured teacher, from any teacher source."""
    from tasks.classification.teacher import load_teacher

    def load(data, ctx):
        import mxnet as mx
        net, desc = load_teacher(cfg, [], data.channels, ctx)
        out = net(mx.nd.zeros((1,) + tuple(data.data_shape), ctx=ctx[0]))
        out = out[0] if isinstance(out, (list, tuple)) else out
        if out.shape[1] != cfg.num_classes:
            raise cli.UsageError('the teacher %s predicts %d classes, the data has %d (num_classes): evaluate it on '
                                 'data of its classes' % (desc, out.shape[1], cfg.num_classes))
        return net, desc
    return _evaluate(cfg, load, max_batches)


def evaluate_detection(args, cfg=None):
    """VOC07 mAP of a detection checkpoint (the run of the config, or --prefix), printed with its
    table; `cfg`: its configuration when already read (the one saved with the checkpoint)."""
    from config.detection import load_detection_config
    from tools.detection import evaluate_only
    from tools.detection_report import results_table
    if args.teacher:
        raise cli.UsageError('--teacher evaluates a classification teacher; a detection config has none (its '
                             'backbone is a classification run: evaluate that with its own config)')
    cfg = cfg or load_detection_config(args.cfg, args.overrides, backbone=False)
    if args.prefix:
        folder, name = os.path.split(cli.checkpoint_prefix(args.prefix, '--prefix'))
        cfg['model_dir'], cfg['model_prefix'] = folder or '.', name
    result = evaluate_only(cfg, args.epoch)
    print('%s epoch %s: VOC07 11-point mAP: %.2f%%' % (os.path.join(cfg.model_dir, cfg.model_prefix), args.epoch,
                                                      100 * result['map']))
    print(results_table([result], cfg.classes))
    return 0


def checkpoint_config(args):
    """(configuration, prefix) for evaluating a checkpoint: the run --prefix names (else
    model_dir/model_prefix of --cfg or config/cfgs.py) with the configuration saved with it (its
    data, classes, image size, mean/std) and the overrides on top; --cfg instead when given, or for
    a checkpoint written before the metadata kept its configuration."""
    from config import load_config, of_checkpoint
    from core import checkpoint
    if args.prefix:
        prefix = cli.checkpoint_prefix(args.prefix, '--prefix')
    else:
        named = load_config(args.cfg, args.overrides, check_data=False)
        prefix = cli.checkpoint_prefix(os.path.join(named.model_dir, named.model_prefix), 'model_dir/model_prefix')
    if args.cfg is None:
        folder, name = os.path.split(prefix)
        tag = args.epoch = checkpoint.resolve_tag(folder or '.', name, args.epoch)   # (resolved once: one warning)
        cfg = of_checkpoint(checkpoint.read_meta(folder or '.', name, tag), '%s epoch %s' % (prefix, tag),
                            args.overrides, backbone=False, check_data='validation')
        if cfg is not None:
            return cfg, prefix
    return load_config(args.cfg, args.overrides, check_data='validation'), prefix


@cli.command
def main(argv=None):
    """Print top-1/top-5; 2 with one error line for a wrong argument, config, checkpoint (missing,
    a folder, not finite) or data."""
    p = cli.parser('evaluate', __doc__)
    p.add_argument('--cfg', help='the config (preset or file) whose data to evaluate on; default: the configuration '
                   'saved with the checkpoint (with --teacher: config/cfgs.py)')
    p.add_argument('--prefix', help='checkpoint prefix path (default: model_dir/model_prefix)')
    p.add_argument('--epoch', default='best', type=cli.epoch_arg, help='epoch number or "best"')
    p.add_argument('--teacher', action='store_true', help="evaluate the config's teacher (teacher_source, "
                   'teacher_prefix, teacher_epoch, teacher_network)')
    p.add_argument('--onnx', metavar='FILE', help='score an exported OUT.onnx with onnxruntime instead (on the '
                   'data of the run it was exported from, or of --cfg / key=value)')
    p.add_argument('overrides', nargs='*')
    args = p.parse_args(argv)
    from config import load_config, task_of
    if args.teacher and args.prefix:
        raise cli.UsageError('--teacher evaluates the config\'s teacher (teacher_prefix=...); --prefix names a run to '
                             'evaluate: give one of them')
    if args.onnx and (args.prefix or args.teacher):
        raise cli.UsageError('--onnx scores an exported file; --%s names something else to evaluate: give one of '
                             'them' % ('prefix' if args.prefix else 'teacher'))
    if args.teacher and task_of(args.cfg, args.overrides) != 'classification':
        raise cli.UsageError('--teacher evaluates a classification teacher; a %s config has none: evaluate its run '
                             'with --prefix' % task_of(args.cfg, args.overrides))
    if task_of(args.cfg, args.overrides) == 'segmentation' and args.cfg:
        from config.segmentation import load_segmentation_config
        cfg = load_segmentation_config(args.cfg, args.overrides)
        prefix = cli.checkpoint_prefix(args.prefix or os.path.join(cfg.model_dir, cfg.model_prefix), '--prefix')
        return evaluate_segmentation(cfg, prefix, args.epoch)
    if args.onnx:
        res, desc = evaluate_onnx(args)
        _warn_logits(res, desc)
        print('%s: %s  on %d images (%dx%d)' % (desc, _accuracy(res, res.get('classes')), res['n'], res['size'],
                                               res['size']))
        return 0
    if task_of(args.cfg, args.overrides) == 'detection':
        return evaluate_detection(args)
    if args.teacher:
        res, desc = evaluate_teacher(load_config(args.cfg, args.overrides, check_data='validation'))
        print('teacher %s: %s  on %d images (%dx%d)' % (desc, _accuracy(res, res.get('classes')), res['n'],
                                                       res['size'], res['size']))
        return 0
    cfg, prefix = checkpoint_config(args)
    if cfg.task == 'detection':
        return evaluate_detection(args, cfg)
    if cfg.task == 'segmentation':
        return evaluate_segmentation(cfg, prefix, args.epoch)
    res, meta = evaluate_checkpoint(cfg, prefix, args.epoch)
    _warn_logits(res, '%s epoch %s' % (prefix, meta.get('epoch')))
    print('%s epoch %s (%s): %s  on %d images (%dx%d)' % (prefix, meta.get('epoch'), meta['network'],
                                                          _accuracy(res, meta['num_classes']), res['n'],
                                                          res['size'], res['size']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
