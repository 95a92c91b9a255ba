"""Evaluate a checkpoint of any task: classification, single-centre-crop top-1 / top-5 on the
validation set; detection (a voc_* preset or task=detection), VOC07 mAP and AP per class.

    python -m tools.evaluate [--cfg PRESET] [--epoch N|best] [--prefix model/RUN] [key=value ...]
    python -m tools.evaluate --teacher [--cfg PRESET] [key=value ...]
    python -m tools.evaluate --cfg voc_kd_nst [--epoch N|best] [key=value ...]

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
    ctx = contexts(cfg)
    data = DataSource(cfg, colour_on_device=on_gpu(ctx))
    net, info = load(data, ctx)
    classes = classes_of(info) if classes_of else cfg.num_classes
    return evaluate(net, data.val(), ctx, classes, max_batches), info


def evaluate_checkpoint(cfg, prefix_path, tag, max_batches=None):
    """(result, checkpoint metadata) of a checkpoint of this project; UsageError, before any
    evaluation, for a checkpoint whose parameters are not all finite."""
    from core import checkpoint

    def load(data, ctx):
        net, meta = checkpoint.load_network(prefix_path, tag, ctx)
        cli.require_finite(net, prefix_path, tag)
        if meta.get('in_channels', data.channels) != data.channels:
            raise cli.UsageError('checkpoint %s takes %d-channel images but %s in %s has %d: evaluate it on the '
                                 'data of its run (leave out --cfg to use the configuration saved with it)'
                                 % (prefix_path, meta['in_channels'], cfg.dataset, cfg.data_dir, data.channels))
        net.hybridize(static_alloc=True)
        return net, meta
    return _evaluate(cfg, load, max_batches, classes_of=lambda meta: meta['num_classes'])


def evaluate_teacher(cfg, max_batches=None):
    """(result, description) of the configured teacher, from any teacher source."""
    from tasks.classification.teacher import load_teacher
    return _evaluate(cfg, lambda data, ctx: load_teacher(cfg, [], data.channels, ctx), max_batches)


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
        tag = checkpoint.resolve_tag(folder or '.', name, args.epoch)
        cfg = of_checkpoint(checkpoint.read_meta(folder or '.', name, tag), '%s epoch %s' % (prefix, tag),
                            args.overrides, backbone=False)
        if cfg is not None:
            return cfg, prefix
    return load_config(args.cfg, args.overrides), prefix


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
    p.add_argument('overrides', nargs='*')
    args = p.parse_args(argv)
    from config import load_config, task_of
    if task_of(args.cfg, args.overrides) == 'detection':
        return evaluate_detection(args)
    if args.teacher:
        res, desc = evaluate_teacher(load_config(args.cfg, args.overrides))
        print('teacher %s: top-1 %.2f%%  top-5 %.2f%%  error %.2f%% / %.2f%%  on %d images'
              % (desc, 100 * res['top1'], 100 * res['top5'], 100 * (1 - res['top1']), 100 * (1 - res['top5']),
                 res['n']))
        return 0
    cfg, prefix = checkpoint_config(args)
    if cfg.task == 'detection':
        return evaluate_detection(args, cfg)
    res, meta = evaluate_checkpoint(cfg, prefix, args.epoch)
    print('%s epoch %s (%s): top-1 %.2f%%  top-5 %.2f%%  error %.2f%% / %.2f%%  on %d images'
          % (prefix, meta.get('epoch'), meta['network'], 100 * res['top1'], 100 * res['top5'],
             100 * (1 - res['top1']), 100 * (1 - res['top5']), res['n']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
