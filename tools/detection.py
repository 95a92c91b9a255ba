"""Faster R-CNN on PASCAL VOC with a distilled backbone (paper §5.3, Table 4).

    python -m tools.detection --cfg voc_kd_nst                          # train + VOC07 mAP after every epoch
    python -m tools.detection --cfg voc_kd_nst retrain=true             # resume the latest epoch
    python -m tools.detection --cfg voc_kd_nst --eval-only --epoch best # mAP + per-class AP of a checkpoint
    python -m tools.detection --cfg voc_kd_nst --figure det.png         # detections on the first test images
    python -m tools.detection --table voc_baseline voc_kd voc_fitnet voc_at voc_nst voc_kd_nst   # Table 4
    python -m tools.detection --curves curves.png voc_baseline voc_kd_nst                        # mAP, loss / epoch
    python -m tools.detection --legacy-taps teacher_model/inception-bn  # stride-16/32 outputs of a legacy checkpoint

Configuration: a detection preset (config/presets/detection/) or file with --cfg,
then key=value overrides (every key: config/detection.py). --table and --curves
take runs: a detection preset (its model_dir/model_prefix) or model_dir/RUN.
Exit status: 0, 2 for a mistake in the configuration, data, backbone or
checkpoint (one `error: ...` line), 3 when a loss became NaN/Inf (the earlier
checkpoints are kept), 130 on Ctrl-C (finished epochs are kept).
"""
import logging
import os
import sys

from core.env import configure_threads

configure_threads()      # before mxnet is imported

from tools.cli import command, parser, epoch_arg, positive_int, UsageError  # noqa: E402

LOG = logging.getLogger('detection')


def _runs(names, overrides):
    """[(label, model_dir, prefix, cfg, preset)] of --table/--curves arguments: detection presets (or
    config files; `preset` True: their method and paper_map label the run) or model_dir/RUN."""
    from config.detection import load_detection_config, is_detection_preset
    out = []
    again = sorted({n for n in names if names.count(n) > 1})
    if again:
        LOG.warning('%s named more than once: each run is shown once', ', '.join(again))
        names = [n for k, n in enumerate(names) if n not in names[:k]]
    for name in names:
        if is_detection_preset(name) or os.path.isfile(name):
            cfg = load_detection_config(name, overrides, backbone=False)
            out.append((name, cfg.model_dir, cfg.model_prefix, cfg, True))
        else:
            cfg = load_detection_config(None, overrides, backbone=False)
            folder, prefix = os.path.split(name)
            out.append((prefix, folder or cfg.model_dir, prefix, cfg, False))
    return out


def _detection_runs(model_dir):
    """Names of the Faster R-CNN runs with a best checkpoint in `model_dir`."""
    import glob
    import json
    found = []
    for path in sorted(glob.glob(os.path.join(glob.escape(model_dir), '*-best.json'))):
        try:
            with open(path) as f:
                if json.load(f).get('kind') == 'faster_rcnn':
                    found.append(os.path.basename(path)[:-len('-best.json')])
        except (OSError, ValueError, AttributeError):
            pass
    return found


def _best_meta(label, model_dir, prefix, preset):
    """The best checkpoint's metadata of a --table/--curves run; UsageError saying what to do when the
    run is not there."""
    from core import checkpoint
    if not checkpoint.epochs(model_dir, prefix) and not os.path.isfile(checkpoint.paths(model_dir, prefix,
                                                                                       'best')['meta']):
        have = _detection_runs(model_dir)
        raise UsageError('run %s/%s has no checkpoint%s; detection runs in %s: %s' % (
            model_dir, prefix, ': train it first, python -m tools.detection --cfg %s' % label if preset else '',
            model_dir, ', '.join(have) or 'none'))
    meta = checkpoint.read_meta(model_dir, prefix, 'best')
    if meta.get('kind') != 'faster_rcnn':
        raise UsageError('%s/%s is not a Faster R-CNN run of tools.detection' % (model_dir, prefix))
    return meta


def table(names, overrides):
    from tools.detection_report import results_table
    rows, classes = [], None
    for label, model_dir, prefix, cfg, preset in _runs(names, overrides):
        meta = _best_meta(label, model_dir, prefix, preset)
        if classes is not None and meta.get('classes') != classes:
            raise UsageError('run %s/%s has other classes than the runs before it: one table takes runs on one set '
                             'of classes' % (model_dir, prefix))
        classes = meta.get('classes')
        rows.append(dict(network=meta.get('network'), method=cfg.method if preset else meta.get('method'),
                         paper_map=cfg.paper_map if preset else meta.get('paper_map'), map=meta['val_map'],
                         per_class=meta['per_class_ap']))
    text = results_table(rows, classes)
    print(text)
    return text


def _records_of(label, model_dir, prefix, cfg, preset, overrides):
    """The epoch records of run model_dir/prefix, found as --table finds the run: from its checkpoints,
    in the log_dir its checkpoints record (log_dir= on the command line first), and only when their
    mAPs are those of its checkpoints (a log folder of another run under the same name is refused)."""
    from core import checkpoint
    from core.records import read_records
    meta = _best_meta(label, model_dir, prefix, preset)
    given = any(o.startswith('log_dir=') for o in overrides)
    folders = [cfg.log_dir] if given else [d for d in (meta.get('log_dir'), cfg.log_dir) if d]
    saved = {e: checkpoint.read_meta(model_dir, prefix, e).get('val_map') for e in checkpoint.epochs(model_dir, prefix)}
    tried = []
    for folder in folders:
        path = os.path.join(folder, prefix + '.jsonl')
        if path in tried:
            continue
        tried.append(path)
        if not os.path.isfile(path):
            continue
        records = [r for r in read_records(path) if 'val_map' in r]
        if records and all(saved.get(r['epoch'] + 1, r['val_map']) == r['val_map'] for r in records):
            return records
        raise UsageError('%s does not hold the records of run %s/%s (%s): give its log folder with log_dir=DIR'
                         % (path, model_dir, prefix, 'no detection record' if not records else
                            'their mAPs are not those of its checkpoints'))
    raise UsageError('run %s/%s has no records file: %s %s; give its log folder with log_dir=DIR'
                     % (model_dir, prefix, ' nor '.join(tried), 'does not exist' if len(tried) == 1 else 'exist'))


def _figure_out(out, option, example, names=()):
    """`out` is a figure file: it has an image extension and does not name a run."""
    from core import checkpoint
    folder, base = os.path.split(out)
    if out in names or checkpoint.epochs(folder or '.', base) or (out.endswith(('.params', '.json', '.states'))):
        raise UsageError('%s %s names a run or checkpoint, not a figure: give the image file first, e.g. %s %s RUN...'
                         % (option, out, option, example))
    if not os.path.splitext(out)[1]:
        raise UsageError('%s %s has no image extension: give the image file first, e.g. %s %s RUN... (.png, .pdf, '
                         '.svg)' % (option, out, option, example))


def curves(out, names, overrides):
    from tools.detection_report import plot_curves
    from tools.plotting import figure_path
    _figure_out(out, '--curves', 'curves.png', names)
    figure_path(out, '--curves', 'curves.png')
    runs = []
    for label, model_dir, prefix, cfg, preset in _runs(names, overrides):
        runs.append((label, _records_of(label, model_dir, prefix, cfg, preset, overrides)))
    plot_curves(runs, out)
    print('%s: %d run(s) drawn' % (out, len(runs)))


def figure(cfg, out, tag, count, threshold):
    from core.devices import contexts
    from tasks.detection import detector
    from tasks.detection.evaluate import detect
    from data.voc import voc_dataset
    from tools.detection_report import plot_detections
    from tools.plotting import figure_path
    figure_path(out, '--figure', 'detections.png')
    ctx = contexts(cfg)[:1]
    dataset = voc_dataset(cfg.voc_root, cfg.val_sets, cfg.classes)
    if count > len(dataset):
        raise UsageError('--images %d: val_sets %s hold %d images' % (count, cfg.val_sets, len(dataset)))
    net, meta = detector.load_detector(cfg.model_dir, cfg.model_prefix, tag, ctx, cfg)
    images = []
    for i in range(count):
        img, label = dataset[i]
        images.append((os.path.basename(dataset.image_path(i)), img.asnumpy(), label, detect(net, img, cfg, ctx)))
    n = plot_detections(images, out, meta['classes'], threshold,
                        '%s epoch %s: detections scoring >= %g (yellow); ground truth black, dashed'
                        % (cfg.model_prefix, meta.get('epoch'), threshold))
    scores = [float(d[1][0]) for _, _, _, d in images if len(d[1])]
    print('%s: %d image(s), %d detection(s) scoring >= %g drawn (%s)' % (
        out, count, n, threshold, 'highest score %.2f' % max(scores) if scores else 'no detection at all'))


def evaluate_only(cfg, tag):
    from core.devices import contexts
    from tasks.detection import detector
    from tasks.detection.evaluate import evaluate, evaluated, unscored, val_loader
    from data.voc import check_anchors, voc_dataset
    ctx = contexts(cfg)
    val_set = voc_dataset(cfg.voc_root, cfg.val_sets, cfg.classes)
    unscored(val_set, cfg)
    net, meta = detector.load_detector(cfg.model_dir, cfg.model_prefix, tag, ctx, cfg)
    check_anchors(val_set, cfg, 'rpn_test_post_nms', net.features, evaluated(val_set, cfg))
    if meta['classes'] != list(cfg.classes):
        raise UsageError('run %r was trained on the classes %s, the config names %s: set classes=[...] as in '
                         'training' % (cfg.model_prefix, meta['classes'], cfg.classes))
    net.hybridize(static_alloc=True)
    per_class, m = evaluate(net, val_loader(val_set, cfg, ctx), cfg.classes, ctx)
    return dict(network=meta.get('network'), method=meta.get('method', cfg.method), paper_map=cfg.paper_map,
                map=m, per_class=per_class)


def legacy_taps(prefix, epoch):
    import symbols
    from symbols.detection import legacy_candidates, CHECK_SIZE
    from tasks.detection.detector import legacy_error
    try:
        net = symbols.load_legacy_network(prefix, epoch)
    except symbols.CheckpointError as e:
        raise UsageError(legacy_error(e, '--legacy-taps', '--epoch'))
    found = legacy_candidates(net)
    print('internal outputs of %s-%04d by output stride on a %dx%d input (backbone_split=[STRIDE16, STRIDE32, '
          'FROZEN]):' % (prefix, epoch, CHECK_SIZE, CHECK_SIZE))
    for stride in (16, 32):
        print('  stride %d: %s' % (stride, ', '.join(found[stride]) or 'none'))


@command
def main(argv=None):
    p = parser('detection', __doc__)
    p.add_argument('--cfg', default=None, help='a detection preset (voc_*) or a YAML/.py detection config')
    p.add_argument('--eval-only', action='store_true', help='evaluate checkpoint --epoch of run model_prefix')
    p.add_argument('--epoch', type=epoch_arg, default='best', help="checkpoint for --eval-only/--figure (number or "
                   "'best'; --legacy-taps: the legacy epoch, default 0)")
    p.add_argument('--figure', metavar='OUT', help='draw the detections of checkpoint --epoch on the first --images '
                   'test images')
    p.add_argument('--images', type=positive_int, default=4, help='images in --figure (default 4)')
    p.add_argument('--threshold', type=float, default=0.5, help='lowest score drawn in --figure (default 0.5)')
    p.add_argument('--table', action='store_true', help='Table 4 from the best checkpoints of the runs named after '
                   'the options (detection presets or model_dir/RUN)')
    p.add_argument('--curves', metavar='OUT', help='mAP and training loss per epoch of the runs named after the '
                   'options')
    p.add_argument('--legacy-taps', metavar='PREFIX', help='list the stride-16/32 internal outputs of a legacy Module '
                   'checkpoint (for backbone_split)')
    p.add_argument('overrides', nargs='*', help='key=value (and, with --table/--curves, the runs)')
    args = p.parse_intermixed_args(argv)      # key=value before and after the options
    names = [o for o in args.overrides if '=' not in o]
    overrides = [o for o in args.overrides if '=' in o]
    if not 0 <= args.threshold <= 1:
        raise UsageError('--threshold %g: a detection score lies in [0, 1]; give a threshold in it (default 0.5)'
                         % args.threshold)
    if args.legacy_taps:
        legacy_taps(args.legacy_taps, 0 if args.epoch == 'best' else args.epoch)
        return 0
    if args.table or args.curves:
        if not names:
            raise UsageError('--table/--curves need runs: detection presets (%s) or model_dir/RUN'
                             % ', '.join(__import__('config.detection').detection.list_detection_presets()))
        if args.table:
            table(names, overrides)
        if args.curves:
            curves(args.curves, names, overrides)
        return 0
    if names:
        raise UsageError('%r is not key=value (runs are named only with --table or --curves)' % names[0])
    if not (args.eval_only or args.figure):
        # training is train.py's, with its run handling (resume hints, Ctrl-C and SIGTERM, exit codes)
        import train
        from config import preset_files
        other = preset_files.task_of_preset(args.cfg)
        if other not in (None, 'detection'):
            raise UsageError('%s is a %s preset of train.py (python train.py --cfg %s); tools.detection trains the '
                             'detection presets: %s' % (args.cfg, other, args.cfg, ', '.join(preset_files.names('detection'))))
        given = any(o.split('=', 1)[0].strip() == 'task' for o in overrides)
        return train.main((['--cfg', args.cfg] if args.cfg else []) + overrides + ([] if given else ['task=detection']))
    from config.detection import load_detection_config
    # a checkpoint to evaluate or draw records its backbone: no backbone checks then
    cfg = load_detection_config(args.cfg, overrides, backbone=False)
    if args.figure:
        figure(cfg, args.figure, args.epoch, args.images, args.threshold)
        return 0
    from tools.detection_report import results_table
    result = evaluate_only(cfg, args.epoch)
    print('VOC07 11-point mAP: %.2f%%' % (100 * result['map']))
    print(results_table([result], cfg.classes))
    return 0


if __name__ == '__main__':
    import train            # (a worker of a parameter-server job that stops early ends at once, as train.py's)
    sys.exit(train.run_process(main))
