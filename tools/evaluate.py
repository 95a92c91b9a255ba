"""Evaluate a checkpoint of any task: classification, single-centre-crop top-1 / top-5 on the
validation set; detection (a voc_* preset or task=detection), VOC07 mAP and AP per class.

    python -m tools.evaluate [--cfg PRESET] [--epoch N|best] [--prefix model/RUN] [key=value ...]
    python -m tools.evaluate --teacher [--cfg PRESET] [key=value ...]
    python -m tools.evaluate --cfg voc_kd_nst [--epoch N|best] [key=value ...]

By default the run named by the config's model_prefix in model_dir, its best
epoch. The network comes from the checkpoint's metadata. With --teacher, the
config's teacher instead, from any teacher source (this project's checkpoint,
a gluoncv network with its weights, a legacy MXNet Module checkpoint).
"""
import os
import sys

from core.env import configure_threads

configure_threads()

from tools import cli  # noqa: E402  (after the thread defaults)


def _evaluate(cfg, load, max_batches=None):
    """(validation result, what `load` says of the network) for the network `load(data, ctx)` builds."""
    from tasks.classification.evaluate import evaluate
    from core.devices import contexts
    from data import DataSource
    from data.device import on_gpu
    ctx = contexts(cfg)
    data = DataSource(cfg, colour_on_device=on_gpu(ctx))
    net, info = load(data, ctx)
    return evaluate(net, data.val(), ctx, cfg.num_classes, max_batches), info


def evaluate_checkpoint(cfg, prefix_path, tag, max_batches=None):
    """(result, checkpoint metadata) of a checkpoint of this project; UsageError, before any
    evaluation, for a checkpoint whose parameters are not all finite."""
    from core import checkpoint

    def load(data, ctx):
        net, meta = checkpoint.load_network(prefix_path, tag, ctx)
        cli.require_finite(net, prefix_path, tag)
        net.hybridize(static_alloc=True)
        return net, meta
    return _evaluate(cfg, load, max_batches)


def evaluate_teacher(cfg, max_batches=None):
    """(result, description) of the configured teacher, from any teacher source."""
    from tasks.classification.teacher import load_teacher
    return _evaluate(cfg, lambda data, ctx: load_teacher(cfg, [], data.channels, ctx), max_batches)


def evaluate_detection(args):
    """VOC07 mAP of a detection checkpoint (the run of the config, or --prefix), printed with its table."""
    from config.detection import load_detection_config
    from tools.detection import evaluate_only
    from tools.detection_report import results_table
    if args.teacher:
        raise cli.UsageError('--teacher evaluates a classification teacher; a detection config has none (its '
                             'backbone is a classification run: evaluate that with its own config)')
    cfg = load_detection_config(args.cfg, args.overrides, backbone=False)
    if args.prefix:
        folder, name = os.path.split(cli.checkpoint_prefix(args.prefix, '--prefix'))
        cfg['model_dir'], cfg['model_prefix'] = folder or '.', name
    result = evaluate_only(cfg, args.epoch)
    print('%s epoch %s: VOC07 11-point mAP: %.2f%%' % (os.path.join(cfg.model_dir, cfg.model_prefix), args.epoch,
                                                      100 * result['map']))
    print(results_table([result], cfg.classes))
    return 0


@cli.command
def main(argv=None):
    """Print top-1/top-5; 2 with one error line for a wrong argument, config, checkpoint (missing,
    a folder, not finite) or data."""
    p = cli.parser('evaluate', __doc__)
    p.add_argument('--cfg')
    p.add_argument('--prefix', help='checkpoint prefix path (default: model_dir/model_prefix)')
    p.add_argument('--epoch', default='best', type=cli.epoch_arg, help='epoch number or "best"')
    p.add_argument('--teacher', action='store_true', help="evaluate the config's teacher (teacher_source, "
                   'teacher_prefix, teacher_epoch, teacher_network)')
    p.add_argument('overrides', nargs='*')
    args = p.parse_args(argv)
    from config import load_config, task_of
    if task_of(args.cfg, args.overrides) == 'detection':
        return evaluate_detection(args)
    cfg = load_config(args.cfg, args.overrides)
    if args.teacher:
        res, desc = evaluate_teacher(cfg)
    else:
        prefix = cli.checkpoint_prefix(args.prefix, '--prefix') if args.prefix else cli.checkpoint_prefix(
            os.path.join(cfg.model_dir, cfg.model_prefix), 'model_dir/model_prefix')
        res, meta = evaluate_checkpoint(cfg, prefix, args.epoch)
    if args.teacher:
        print('teacher %s: top-1 %.2f%%  top-5 %.2f%%  error %.2f%% / %.2f%%  on %d images'
              % (desc, 100 * res['top1'], 100 * res['top5'], 100 * (1 - res['top1']), 100 * (1 - res['top5']),
                 res['n']))
        return 0
    print('%s epoch %s (%s): top-1 %.2f%%  top-5 %.2f%%  error %.2f%% / %.2f%%  on %d images'
          % (prefix, meta.get('epoch'), meta['network'], 100 * res['top1'], 100 * res['top5'],
             100 * (1 - res['top1']), 100 * (1 - res['top5']), res['n']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
