"""Faster R-CNN (gluoncv's `FasterRCNN`) on a backbone of this project.

- `load_backbone(cfg, ctx)`: the backbone's `features` (input (B, 3, H, W) ->
  (B, C4, H/16, W/16)) and `top_features` (pooled RoIs (R, C4, roi, roi) ->
  (R, C5, roi/2, roi/2)), split by tap names (symbols/detection.py) and
  initialised from `backbone_prefix`: a run of this project, a legacy Module
  checkpoint (split at its internal outputs), a gluoncv `.params` file, or
  nothing (`backbone_source=none`, random: tests only).
- `build_detector(cfg, ctx)`: the detector around it, every parameter
  initialised on `ctx` (one imperative pass gives the deferred ones their shapes).
- `load_detector(model_dir, prefix, tag, ctx, cfg)`: a trained detector from its
  checkpoint, rebuilt from the structure recorded in the checkpoint's metadata.

Every problem is a `DetectorError` naming the key or file and the fix. Networks
are built inside their own name scopes (gluoncv hard-codes some prefixes).
"""
import os
import warnings

import core.compat  # noqa: F401
import mxnet as mx

from core import checkpoint
from core.errors import NetworkError


class Backbone(object):
    """A backbone split for Faster R-CNN: `features`, `top` (the detector's two parts), `description`,
    `split`, `stage_taps` ({tap: child path in `network`} of the taps inside `features`,
    symbols.detection.stage_taps; none for a legacy graph) and `network`, the backbone network whose
    blocks `features` and `top` share (None for a legacy graph). A plain object: a detector keeps it
    as `backbone_parts` without Gluon taking its blocks for children."""
    __slots__ = ('features', 'top', 'description', 'split', 'stage_taps', 'network')

    def __init__(self, features, top, description, split, stage_taps, network):
        self.features, self.top, self.description, self.split = features, top, description, split
        self.stage_taps, self.network = stage_taps, network


# the target encoder's fixed means and stds are used in training only (and never trained): gluoncv's
# detector at inference says they are unused; said once here, not on every run
warnings.filterwarnings('ignore', message=r'Parameter .*boxcenterencoder\d*_means.* is not used by any computation')

# config keys that fix the detector's parameters (recorded in every checkpoint)
STRUCTURE = ('network', 'classes', 'rpn_channel', 'scales', 'ratios', 'roi_size', 'backbone_split', 'num_sample',
             'rpn_train_post_nms')


class DetectorError(NetworkError):
    """A backbone or detector checkpoint that cannot be used as configured."""


def _project_backbone(cfg, ctx):
    import symbols
    import re
    model_dir, name = os.path.split(cfg.backbone_prefix)
    m = re.match(r'^(.*)-(\d{4}|best)(\.extra)?\.(params|json|states)$', name)
    if m:
        raise DetectorError('backbone_prefix=%s is a checkpoint file: give the run and the epoch, backbone_prefix=%s '
                            'backbone_epoch=%s' % (cfg.backbone_prefix, os.path.join(model_dir, m.group(1)),
                                                   -1 if m.group(2) == 'best' else int(m.group(2))))
    tag = 'best' if cfg.backbone_epoch < 0 else cfg.backbone_epoch
    try:
        meta = checkpoint.read_meta(model_dir or '.', name, tag)
    except checkpoint.CheckpointError as e:
        raise DetectorError('backbone_prefix=%s: %s. Train the backbone first (README, "Detection"), or set '
                            'backbone_prefix / backbone_epoch' % (cfg.backbone_prefix, e))
    if meta.get('kind') == 'faster_rcnn':
        raise DetectorError('backbone_prefix=%s is a Faster R-CNN run, not a backbone: give the ImageNet run the '
                            'backbone was trained in' % cfg.backbone_prefix)
    if meta.get('network') != cfg.network:
        raise DetectorError('network=%r but checkpoint %s was trained as %r: set network=%s'
                            % (cfg.network, cfg.backbone_prefix, meta.get('network'), meta.get('network')))
    net = symbols.get_network(cfg.network, meta.get('num_classes', 1000), meta.get('in_channels', 3),
                              prefix='backbone_')
    checkpoint.load_params(net, checkpoint.paths(model_dir or '.', name, tag)['params'], ctx, 'backbone params')
    return net, '%s (%s, epoch %s)' % (cfg.backbone_prefix, cfg.network, meta.get('epoch'))


def _gluoncv_backbone(cfg, ctx):
    import symbols
    if not cfg.backbone_prefix.endswith('.params'):
        raise DetectorError('backbone_source=gluoncv takes the gluoncv network\'s weights as a .params file '
                            '(backbone_prefix=PATH.params); got %s' % cfg.backbone_prefix)
    net = symbols.get_network(cfg.network, 1000, prefix='backbone_')
    try:
        checkpoint.load_params(net, cfg.backbone_prefix, ctx, 'backbone params')
    except checkpoint.CheckpointError as e:
        if 'does not fit' not in str(e):
            raise
        raise DetectorError('backbone_prefix=%s does not fit network=%s (%s): give the .params file of that network '
                            '(1000 ImageNet classes), or set network= to the file\'s network'
                            % (cfg.backbone_prefix, cfg.network, str(e).split(' (', 1)[-1].rsplit('):', 1)[0][:200]))
    return net, '%s from %s' % (cfg.network, cfg.backbone_prefix)


def legacy_error(error, prefix_key='backbone_prefix', epoch_key='backbone_epoch'):
    """The message of a legacy loader's CheckpointError with the keys named as here."""
    return str(error).replace('teacher_prefix', prefix_key).replace('teacher_epoch', epoch_key)


def _legacy_backbone(cfg, ctx):
    import symbols
    from symbols.detection import split_legacy, as_split
    epoch = max(cfg.backbone_epoch, 0)
    net = symbols.load_legacy_network(cfg.backbone_prefix, epoch, ctx[0])
    net.collect_params().reset_ctx(ctx)
    split = as_split(cfg.backbone_split)
    features, top = split_legacy(net, split, freeze=cfg.freeze)
    return features, top, split, 'legacy checkpoint %s-%04d' % (cfg.backbone_prefix, epoch)


def load_backbone(cfg, ctx, source=None):
    """The backbone of `cfg` split for Faster R-CNN, as a `Backbone`. `source` overrides the
    configured one (`load_detector` rebuilds the structure without the backbone's weights)."""
    import symbols
    from config.detection import backbone_source
    from symbols.detection import detection_split, split_backbone, check_split, stage_taps, SplitError
    source = source or backbone_source(cfg)
    try:
        if source == 'legacy':
            features, top, split, desc = _legacy_backbone(cfg, ctx)
            check_split(features, top, split)
            taps, net = {}, None
        else:
            if source == 'none':
                net = symbols.get_network(cfg.network, 1000, prefix='backbone_')
                net.initialize(mx.init.Xavier(), ctx=ctx)
                desc = '%s, randomly initialised' % cfg.network
            elif source == 'gluoncv':
                net, desc = _gluoncv_backbone(cfg, ctx)
            else:
                net, desc = _project_backbone(cfg, ctx)
            split = detection_split(cfg.network, net, cfg.backbone_split)
            features, top = split_backbone(net, split, freeze=cfg.freeze)
            check_split(features, top, split, net)
            taps = stage_taps(net, split)
    except SplitError as e:
        raise DetectorError('backbone %s: %s' % (cfg.backbone_prefix or cfg.network, e))
    except symbols.CheckpointError as e:
        raise DetectorError(legacy_error(e))
    return Backbone(features, top, '%s, split at %s / %s' % (desc, split.stride16, split.stride32), split, taps, net)


def build_detector(cfg, ctx, source=None, prefix='detector_'):
    """(FasterRCNN, Backbone): gluoncv's Faster R-CNN on the backbone of `cfg`, every parameter
    initialised on the devices `ctx` (seed first for a reproducible initialisation), built in name
    scope `prefix` (a teacher beside a student: another one)."""
    import symbols
    from gluoncv.model_zoo.rcnn.faster_rcnn import FasterRCNN
    backbone = load_backbone(cfg, ctx, source)
    scope = symbols.NameScope(prefix=prefix)
    with scope.name_scope():
        net = FasterRCNN(backbone.features, backbone.top, classes=list(cfg.classes), short=cfg.short,
                         max_size=cfg.max_size, train_patterns=None, nms_thresh=0.3, nms_topk=400, post_nms=100,
                         roi_mode='align', roi_size=(cfg.roi_size, cfg.roi_size), strides=16, clip=None,
                         rpn_channel=cfg.rpn_channel, base_size=16, scales=tuple(cfg.scales),
                         ratios=tuple(cfg.ratios), alloc_size=(128, 128), rpn_nms_thresh=0.7,
                         rpn_train_pre_nms=cfg.rpn_train_pre_nms, rpn_train_post_nms=cfg.rpn_train_post_nms,
                         rpn_test_pre_nms=cfg.rpn_test_pre_nms, rpn_test_post_nms=cfg.rpn_test_post_nms,
                         rpn_min_size=cfg.rpn_min_size, num_sample=cfg.num_sample, pos_iou_thresh=0.5,
                         pos_ratio=0.25, max_num_gt=100)
        net.target_generator        # gluoncv builds it on first use: now, so that every checkpoint holds it
    for name, p in net.collect_params().items():
        if 'boxcenterencoder' in name:          # the target encoder's fixed means/stds: never trained or decayed
            p.grad_req = 'null'
        if p._data is None and p._deferred_init == ():
            p.initialize(ctx=ctx)               # each layer's own initialiser (gluoncv: Normal(0.01) heads)
        elif p._deferred_init and p.shape and all(d > 0 for d in p.shape):
            p._finish_deferred_init()
    net.collect_params().reset_ctx(ctx)
    # one imperative inference pass gives the remaining deferred parameters their shapes (a hybridized
    # detector first called for inference cannot infer them past the target encoder)
    net(mx.nd.zeros((1, 3, min(cfg.short, 256), min(cfg.short, 256)), ctx=ctx[0]))
    mx.nd.waitall()
    net.backbone_parts = backbone     # (its taps by name, for distillation; a plain object: no child block)
    return net, backbone


def trainable(net):
    """{name: Parameter} of the parameters that are trained (grad_req != 'null')."""
    return {k: p for k, p in net.collect_params().items() if p.grad_req != 'null'}


def structure_differences(saved, cfg):
    """'key: CHECKPOINT here, VALUE configured' for every structure key of checkpoint metadata
    `saved` (its 'detector') that the configuration changes."""
    now = structure(cfg)
    keys = [k for k in STRUCTURE if k in saved and saved[k] != now[k]]
    return ['%s=%s (the checkpoint: %s)' % (k, _text(now[k]), _text(saved[k])) for k in keys]


def _text(v):
    return '[%s]' % ','.join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def structure(cfg):
    """What a checkpoint records to rebuild its detector: STRUCTURE keys and the backbone source."""
    from config.detection import backbone_source
    out = {k: cfg[k] for k in STRUCTURE}
    out.update(backbone_source=backbone_source(cfg), backbone_prefix=cfg.backbone_prefix,
               backbone_epoch=cfg.backbone_epoch, freeze=cfg.freeze)
    return out


def load_detector(model_dir, prefix, tag, ctx, cfg, scope='detector_'):
    """(detector, metadata) of run `prefix` at `tag` (epoch number or 'best'): rebuilt with the
    structure its checkpoint records, test-time settings (short, max_size, rpn_test_*) from
    `cfg`, parameters from the checkpoint. A legacy backbone needs its symbol file again."""
    try:
        tag = checkpoint.resolve_tag(model_dir, prefix, tag)    # (a run without its best copy: its best scored epoch)
        meta = checkpoint.read_meta(model_dir, prefix, tag)
    except checkpoint.CheckpointError as e:
        raise DetectorError(str(e))
    if meta.get('kind') != 'faster_rcnn' or not isinstance(meta.get('detector'), dict):
        raise DetectorError('checkpoint %s is not a Faster R-CNN run of tools.detection: evaluate it with '
                            'python -m tools.evaluate' % checkpoint.paths(model_dir, prefix, tag)['meta'])
    built = type(cfg)(cfg)
    built.update({k: v for k, v in meta['detector'].items() if k in STRUCTURE or k.startswith('backbone_')
                  or k == 'freeze'})
    source = 'legacy' if built.backbone_source == 'legacy' else 'none'
    if source == 'legacy' and not os.path.isfile(str(built.backbone_prefix) + '-symbol.json'):
        raise DetectorError('run %r has a legacy backbone whose graph %s-symbol.json is needed to rebuild the '
                            'detector, and it is not there: restore it' % (prefix, built.backbone_prefix))
    net, _ = build_detector(built, ctx, source, prefix=scope)
    checkpoint.load_params(net, checkpoint.paths(model_dir, prefix, tag)['params'], ctx, 'detector params')
    return net, meta


__all__ = ['DetectorError', 'structure_differences', 'Backbone', 'legacy_error', 'load_backbone', 'build_detector', 'trainable', 'structure',
           'load_detector', 'STRUCTURE']
