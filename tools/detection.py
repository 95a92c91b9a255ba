"""Faster R-CNN on PASCAL VOC with a distilled backbone (paper §5.3, Table 4).

    python -m tools.detection --cfg voc_kd_nst backbone_prefix=model/imagenet_inception_bn_kd_nst_poly
    python -m tools.detection --cfg voc_kd_nst retrain=true            # resume the latest epoch
    python -m tools.detection --cfg voc_kd_nst --eval-only --epoch best   # VOC07 mAP of a checkpoint
    python -m tools.detection --table voc_baseline voc_kd ...          # Table 4 from the runs' best checkpoints

Trains (or resumes) run `model_prefix`, evaluating VOC07 11-point mAP after every
epoch, and prints the result in Table 4's format. Configuration: a `voc_*`
preset or file (--cfg) and key=value overrides (keys: config/detection.py).
"""
import sys

import core.compat  # noqa: F401

from tools.cli import command, parser, epoch_arg, ToolError


@command
def main(argv=None):
    p = parser('detection', __doc__)
    p.add_argument('--cfg', default=None, help='a voc_* preset or a YAML/.py detection config')
    p.add_argument('--eval-only', action='store_true', help='evaluate checkpoint --epoch of run model_prefix')
    p.add_argument('--epoch', type=epoch_arg, default='best', help="checkpoint to evaluate (number or 'best')")
    p.add_argument('--table', nargs='+', metavar='PRESET', help='print Table 4 from the best checkpoints of '
                   'these presets\' runs (no evaluation; the stored per-class AP)')
    p.add_argument('overrides', nargs='*', help='key=value')
    args = p.parse_args(argv)
    from config.detection import load_detection_config
    from core import detection, checkpoint
    if args.table:
        presets = [t for t in args.table if '=' not in t]
        shared = [t for t in args.table if '=' in t] + list(args.overrides)   # key=value after --table
        rows, classes = [], None
        for preset in presets:
            cfg = load_detection_config(preset, shared + ['backbone_source=none'])
            meta = checkpoint.read_meta(cfg.model_dir, cfg.model_prefix, 'best')
            classes = classes or meta.get('classes')
            rows.append(dict(network=meta.get('network'), method=cfg.method, paper_map=cfg.paper_map,
                             map=meta['val_map'], per_class=meta['per_class_ap']))
        print(detection.results_table(rows, classes))
        return 0
    overrides = list(args.overrides)
    if args.eval_only and not any(o.startswith(('backbone_source=', 'backbone_prefix=')) for o in overrides):
        overrides.append('backbone_source=none')          # the detector's own checkpoint holds the backbone
    cfg = load_detection_config(args.cfg, overrides)
    if args.eval_only:
        ctx = detection.contexts(cfg)
        net, meta = detection.load_detector(cfg, args.epoch, ctx)
        val_set = detection.voc_dataset(cfg.voc_root, cfg.val_sets, cfg.classes)
        per_class, m = detection.evaluate(net, detection.val_loader(val_set, cfg, ctx), cfg.classes, ctx)
        result = dict(network=cfg.network, method=cfg.method, paper_map=cfg.paper_map, map=m, per_class=per_class)
    else:
        from core.runs import RunError
        try:
            result = detection.train(cfg, log=lambda s: print(s, flush=True))
        except RunError as e:
            fix = ('; resume it: python -m tools.detection %s retrain=true'
                   % ' '.join((['--cfg', args.cfg] if args.cfg else []) + overrides)) if e.resume else ''
            raise ToolError('%s%s' % (e, fix))
    print('VOC07 11-point mAP: %.2f%%' % (100 * result['map']))
    print(detection.results_table([result], cfg.classes))
    return 0


if __name__ == '__main__':
    sys.exit(main())
