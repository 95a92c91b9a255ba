"""Configuration of Faster R-CNN training (`python train.py --cfg voc_*`, paper §5.3).

Detection has its own small schema (below: every key, its default, what it
allows, what it means) and its own presets, `config/presets/detection/voc_*.yaml`
(`base:` files, as the classification presets); files, `key=value` overrides
and the validation messages work as in `config/__init__.py`:

    cfg = load_detection_config('voc_kd_nst', ['num_epoch=2'])

train.py trains these presets too (they set `task: detection`); a classification preset given
to `python -m tools.detection` is refused with the command that takes it.
"""
import os
import re

from . import checks as c, preset_files
from .checks import ConfigError, same_run
from .schema import Field, Fields, FIELDS as SCHEMA_FIELDS

# the engine's keys of every task (core/engine.py), defined once in config/schema.py
ENGINE_KEYS = ('kv_store', 'dtype', 'tensorboard')

HERE = os.path.dirname(os.path.abspath(__file__))
DETECTION_PRESET_DIR = preset_files.FOLDERS['detection']
VOC_CLASSES = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor']
SET = re.compile(r'^\s*(\d{4})\s*:\s*([A-Za-z0-9_\-]+)\s*$')


def voc_sets():
    """Check: 'YEAR:SPLIT[,YEAR:SPLIT...]' (e.g. '2007:trainval,2012:trainval') -> [(year, split), ...]."""
    what = "'YEAR:SPLIT' pairs joined by commas, e.g. '2007:trainval,2012:trainval'"

    def check(v):
        if isinstance(v, list):          # (a checkpoint's saved configuration: [[2007, 'trainval'], ...])
            v = ','.join('%s:%s' % tuple(x) if isinstance(x, (list, tuple)) and len(x) == 2 else str(x) for x in v)
        if not isinstance(v, str) or not v.strip():
            c._fail(what, v)
        out = []
        for part in v.split(','):
            m = SET.match(part)
            if not m:
                c._fail('%s (bad part %r)' % (what, part), v)
            out.append((int(m.group(1)), m.group(2)))
        return out
    check.text = True
    return c._allows(check, 'YEAR:SPLIT joined by commas')


def class_list():
    """Check: distinct lower-case names (a list or 'a,b,c'); null: the 20 VOC classes."""
    def check(v):
        if v is None:
            return list(VOC_CLASSES)
        if isinstance(v, str):
            v = [s.strip() for s in v.split(',')]
        if not isinstance(v, list) or not v or len(set(v)) != len(v) or not all(
                isinstance(s, str) and s and s == s.lower() and s.strip() == s and ' ' not in s for s in v):
            c._fail('a list of distinct lower-case class names without spaces (null: the 20 VOC classes)', v)
        return list(v)
    return c._allows(check, 'list of lower-case class names, or null')


def split_taps():
    """Check: null, or [STRIDE16_TAP, STRIDE32_TAP] / [STRIDE16_TAP, STRIDE32_TAP, FROZEN_TAP] (FROZEN may be null)."""
    def check(v):
        if v is None:
            return None
        if isinstance(v, str):
            v = [s.strip() for s in v.split(',')]
        if not isinstance(v, list) or len(v) not in (2, 3) or not all(isinstance(s, str) and s for s in v[:2]) or \
                (len(v) == 3 and v[2] is not None and not (isinstance(v[2], str) and v[2])):
            c._fail('null or [STRIDE16_TAP, STRIDE32_TAP, FROZEN_TAP] (tap names; FROZEN_TAP may be null or left '
                    'out)', v)
        return list(v) + [None] * (3 - len(v))
    return c._allows(check, '[STRIDE16_TAP, STRIDE32_TAP, FROZEN_TAP] or null')


_FIELDS = [
    Field('task', 'detection', c.choice('detection'), 'detection: this schema (python train.py --cfg voc_*)'),
    # run
    Field('model_prefix', 'voc_frcnn', c.name_like(), 'run name: model_dir/<prefix>-NNNN.*, log_dir/<prefix>.log '
          'and .jsonl'),
    Field('model_dir', 'model', c.string(), 'checkpoint folder'),
    Field('log_dir', 'log', c.string(), 'log folder (<prefix>.log, <prefix>.jsonl: one record per epoch)'),
    Field('gpu_list', [], c.device_ids(), 'GPU ids, one image per GPU per step; [] trains on the CPU '
          '(NST_CPU_DEVICES=N: N CPU devices, as train.py)'),
    Field('retrain', False, c.boolean(), 'resume run model_prefix from model_load_epoch'),
    Field('model_load_prefix', None, c.optional(c.name_like()), 'with retrain=true, the run to start from '
          '(null: model_prefix itself): model_prefix=NEW model_load_prefix=RUN model_load_epoch=N branches run RUN '
          'at epoch N into run NEW (in model_dir), leaving RUN as it is'),
    Field('model_load_epoch', -1, c.integer(min=-1), 'epoch to resume from with retrain=true; -1: the latest'),
    Field('overwrite', False, c.boolean(), 'start over under a name that has checkpoints, or resume from an '
          'epoch before the latest (the old files are moved to model_dir/replaced/, nothing is deleted)'),
    Field('progress', True, c.boolean(), 'a progress bar per epoch (stderr)'),
    Field('deterministic', False, c.boolean(), 'MXNet\'s synchronous NaiveEngine: bit-exact runs and resumes '
          '(CPU; slower)'),
    # backbone
    Field('network', 'inception_bn', c.string(), 'backbone network: one with a stride-16/32 split (symbols/'
          'detection.py: inception_bn, preact_resnet18..152, resnet50, resnet152, resnet50_nst, or one that '
          'declares DETECTION_SPLIT), or any with backbone_split; with a legacy checkpoint only a label'),
    Field('backbone_prefix', None, c.optional(c.string()), 'the backbone\'s initial weights: a run of this '
          'project (model/RUN), a legacy Module checkpoint (PREFIX with PREFIX-symbol.json), or a gluoncv '
          '.params file (backbone_source=gluoncv)'),
    Field('backbone_epoch', -1, c.integer(min=-1), 'checkpoint epoch of backbone_prefix; -1: a project run\'s '
          'best, a legacy checkpoint\'s epoch 0'),
    Field('backbone_source', 'auto', c.choice('auto', 'project', 'legacy', 'gluoncv', 'none'),
          'where the backbone comes from: auto (legacy when PREFIX-symbol.json exists, else project), project, '
          'legacy, gluoncv (a .params file of the gluoncv network), none (random initialisation: tests only)'),
    Field('backbone_split', None, split_taps(), '[STRIDE16_TAP, STRIDE32_TAP, FROZEN_TAP]: where features end, '
          'where top_features end, the last frozen tap (null: the network\'s declared split; required for a '
          'legacy checkpoint, whose taps are internal output names)'),
    Field('freeze', True, c.boolean(), 'the standard recipe: parameters up to the frozen tap fixed, every '
          'BatchNorm fixed (stored statistics, fixed gamma/beta)'),
    # data
    Field('voc_root', 'datasets/VOCdevkit', c.string(), 'the VOCdevkit folder (holding VOC2007/, VOC2012/)'),
    Field('train_sets', '2007:trainval,2012:trainval', voc_sets(), 'training sets, YEAR:SPLIT joined by commas'),
    Field('val_sets', '2007:test', voc_sets(), 'evaluation sets, YEAR:SPLIT joined by commas'),
    Field('classes', None, class_list(), 'class names (null: the 20 VOC classes); every annotated object must '
          'have one of them'),
    Field('short', 600, c.integer(min=16), 'shorter image side after resizing'),
    Field('max_size', 1000, c.integer(min=16), 'longer image side at most'),
    Field('mean', [123.68, 116.779, 103.939], c.list_of(c.number()), 'per-channel mean of 0-255 pixels '
          '([0,0,0] with std [1,1,1] for Inception-BN, which normalises with an input BatchNorm)'),
    Field('std', [58.393, 57.12, 57.375], c.list_of(c.number(min=1e-6)), 'per-channel std of 0-255 pixels'),
    Field('num_workers', 0, c.integer(min=0), 'data loader processes (0: in the training process)'),
    Field('num_val', None, c.optional(c.integer(min=1)), 'evaluate on the first N images of val_sets only '
          '(quick runs)'),
    # detector (gluoncv FasterRCNN arguments)
    Field('rpn_channel', 1024, c.integer(min=1), 'RPN convolution channels'),
    Field('scales', [8, 16, 32], c.list_of(c.number(min=0, strict=True)), 'anchor scales (x 16 pixels)'),
    Field('ratios', [0.5, 1, 2], c.list_of(c.number(min=0, strict=True)), 'anchor aspect ratios'),
    Field('rpn_train_pre_nms', 12000, c.integer(min=1), 'RPN proposals before NMS (training)'),
    Field('rpn_train_post_nms', 2000, c.integer(min=1), 'RPN proposals after NMS (training); at most the '
          'anchors of a short x short image, (short // 16)^2 x len(scales) x len(ratios)'),
    Field('rpn_test_pre_nms', 6000, c.integer(min=1), 'RPN proposals before NMS (test)'),
    Field('rpn_test_post_nms', 300, c.integer(min=1), 'RPN proposals after NMS (test): RoIs per test image; '
          'at most the anchors, as rpn_train_post_nms'),
    Field('rpn_min_size', 16, c.integer(min=0), 'smallest proposal side (pixels)'),
    Field('num_sample', 128, c.integer(min=1), 'RoIs sampled per training image for the RCNN head'),
    Field('roi_size', 14, c.integer(min=1), 'RoIAlign output side (top_features then halves it)'),
    # optimisation (gluoncv's VOC recipe: SGD lr 1e-3, x0.1 at epoch 14, 20 epochs, wd 5e-4)
    Field('lr', 0.001, c.number(min=0, strict=True), 'learning rate (one image per device per step)'),
    Field('wd', 5e-4, c.number(min=0), 'weight decay'),
    Field('momentum', 0.9, c.number(min=0, max=1, max_strict=True), 'SGD momentum'),
    Field('lr_step', [14], c.increasing_ints(), 'epochs at which lr is multiplied by lr_factor'),
    Field('lr_factor', 0.1, c.number(min=0, max=1, strict=True), 'lr multiplier at each lr_step'),
    Field('warmup_iters', 0, c.integer(min=0), 'linear lr warm-up over this many steps'),
    Field('num_epoch', 20, c.integer(min=1), 'epochs'),
    Field('epoch_size', None, c.optional(c.integer(min=1)), 'images per epoch (default: the training images '
          'that hold objects; the order is reshuffled each epoch and repeats when this is larger)'),
    Field('seed', 0, c.integer(min=0), 'seed of initialisation, data order, flips and RoI sampling'),
    Field('frequent', 100, c.integer(min=1), 'log the running losses every this many steps'),
    # reporting
    Field('method', 'baseline', c.string(), 'how the backbone was trained (a label for the results table)'),
    Field('paper_map', None, c.optional(c.number(min=0, max=100)), 'the paper\'s VOC07 mAP for this row of '
          'Table 4 (shown beside the result)'),
] + [SCHEMA_FIELDS[k] for k in ENGINE_KEYS] + [
    # distillation inside the detector: a Faster R-CNN teacher of this project, registered methods on named taps
    SCHEMA_FIELDS['kt']._replace(doc='distil the detector from a Faster R-CNN teacher (teacher_prefix) besides its own '
                                 'losses (false: the plain recipe)'),
    SCHEMA_FIELDS['kt_type']._replace(default='kd', doc="'+'-joined methods on the detectors' taps (features: "
                                      "the stride-16 map; the backbone's taps up to it by name, e.g. layer2, "
                                      "layer3_pre; rcnn_logits: the class scores of the student's RoIs): logit "
                                      'methods kd, dist, dkd, map methods fitnet, at, mmd, cwd, vid, ofd, fsp, kdsvd, '
                                      'reviewkd, ab, ...'),
    SCHEMA_FIELDS['kt_weight'], SCHEMA_FIELDS['kt_layer_weight'], SCHEMA_FIELDS['kt_warmup_epochs'],
    SCHEMA_FIELDS['teacher_prefix']._replace(doc='the teacher: a Faster R-CNN run of this project (model_dir/RUN) '
                                             'with the same classes'),
    SCHEMA_FIELDS['teacher_epoch']._replace(doc="the teacher run's epoch; -1: its best"),
    SCHEMA_FIELDS['teacher_symbol']._replace(doc="teacher taps per method (features, rcnn_logits or the teacher "
                                             "backbone's taps by name; null for the logit methods), in the forms "
                                             'classification takes'),
    SCHEMA_FIELDS['student_symbol']._replace(doc='student taps per method, as teacher_symbol'),
]
# detection's keys and the registered methods' options (read when looked up)
FIELDS = Fields(_FIELDS, methods_after='kt_warmup_epochs')
# keys of other tools a user may try here: what to write instead
_BATCH = ('detection trains one image per device per step (gluoncv\'s recipe, as lr is set for): more images a '
          'step means more devices, gpu_list=[0,1,...]')
SYNONYMS = {'epochs': 'the epochs are num_epoch=N (epoch_size=N: images per epoch)', 'num_epochs':
            'the epochs are num_epoch=N', 'batch_size': _BATCH, 'batch': _BATCH, 'batch_per_gpu': _BATCH}


# ------------------------------------------------------------------ files
def list_detection_presets():
    """Names of the detection presets (config/presets/detection/voc_*.yaml)."""
    return preset_files.names('detection')


def is_detection_preset(name):
    """Whether `name` (not a file) names a detection preset."""
    return preset_files.task_of_preset(name) == 'detection'


def find_detection_file(path):
    """The file `path` names: itself, else a detection preset; ConfigError for a classification preset
    or nothing at all (a preset's bare name means the preset beside a folder or non-config file of that
    name, `preset_files.shadowed`)."""
    preset = preset_files.shadowed(path, ('detection',))
    if preset:
        return preset
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        raise ConfigError('detection config file %s is a folder: give a YAML/.py file in it or a detection preset (%s)'
                          % (path, ', '.join(list_detection_presets())))
    found = preset_files.find(path, ('detection',))
    if found:
        return found
    other = preset_files.task_of_preset(path)
    if other:
        raise ConfigError('%s is a %s preset of train.py (python train.py --cfg %s); detection presets: %s'
                          % (path, other, path, ', '.join(list_detection_presets())))
    raise preset_files.unknown(path, 'detection config file', ('detection',))


def load_detection_config(path=None, overrides=(), backbone=True):
    """Read a detection config (a voc_* preset name or a YAML/.py file; None: the defaults), apply
    `key=value` overrides and validate everything (config.load, the loader of every task);
    ConfigError naming the key on any problem. `backbone=False` leaves out the backbone checks
    (evaluating a checkpoint, which records its own)."""
    from . import load
    return load(DETECTION, path, overrides, backbone=backbone)


def backbone_source(cfg):
    """The backbone source `auto` stands for: legacy when backbone_prefix-symbol.json exists, else project."""
    return c.resolved_source(cfg.backbone_source, cfg.backbone_prefix)


def _check_together(cfg, where, backbone=True):
    """Detection's checks across keys: mean/std lengths, sizes and (with `backbone`) a backbone to
    start from and a split for it; fills in model_load_prefix (null: model_prefix)."""
    cfg['model_load_prefix'] = cfg.model_load_prefix or cfg.model_prefix
    for key in ('mean', 'std'):
        if len(cfg[key]) not in (1, 3):
            raise ConfigError('config key %r (%s) must list 1 or 3 values; got %r' % (key, where(key), cfg[key]))
    if cfg.max_size < cfg.short:
        raise ConfigError('config key max_size (%s) must be >= short (%d); got %d' % (where('max_size'), cfg.short,
                                                                                   cfg.max_size))
    for key in ('scales', 'ratios'):
        if not cfg[key]:
            raise ConfigError('config key %r (%s) lists no value: give at least one (default %r)'
                              % (key, where(key), FIELDS[key].default))
    # the RPN keeps rpn_*_post_nms proposals of the anchors of an image: a square image of side `short`
    # (the fewest) has (short // 16)^2 anchor positions x len(scales) x len(ratios) anchors
    anchors = (cfg.short // 16) ** 2 * len(cfg.scales) * len(cfg.ratios)
    for key in ('rpn_train_post_nms', 'rpn_test_post_nms'):
        if cfg[key] > anchors:
            raise ConfigError('config key %s (%s) is %d, but an image of short=%d has only %d anchors ((%d // 16)^2 '
                              'positions x %d scales x %d ratios): lower %s to at most %d (and rpn_%s_pre_nms with '
                              'it), or raise short' % (key, where(key), cfg[key], cfg.short, anchors, cfg.short,
                                                       len(cfg.scales), len(cfg.ratios), key, anchors,
                                                       key.split('_')[1]))
    if cfg.paper_map is not None and where('network') == 'the command line' != where('paper_map'):
        cfg['paper_map'] = None       # (a Table 4 row's figure is of its Inception-BN, not of the network given)
    if backbone:
        _check_backbone(cfg, where)
    if cfg.kt:
        _check_distillation(cfg, where)
    else:
        cfg['plan'] = []


# A detector's taps: its stride-16 `features`, the RoIs' class scores `rcnn_logits`, and the backbone's
# taps up to stride 16 by their names (symbols.detection.stage_taps). A stage before epoch 0 trains
# loss heads on the teacher's taps (FT's paraphraser) or the student's backbone up to its taps (AB's
# initialisation); a method with a memory row per image (CRD) takes the image's index.


def student_stage_taps(cfg):
    """The student backbone's stage taps (symbols.detection.stage_taps), [] for a legacy graph or a
    network that cannot be built here."""
    if backbone_source(cfg) == 'legacy':
        return []
    import symbols
    from symbols.detection import stage_taps, SplitError
    try:
        return list(stage_taps(symbols.get_network(cfg.network, 10), cfg.backbone_split))
    except (ValueError, SplitError):
        return []


def _flat(taps):
    return [t for tap in taps for t in (tap if isinstance(tap, tuple) else (tap,))]


def _check_distillation(cfg, where):
    """The transfer plan (config.plan.resolve_plan, as classification's) of a distilled detector.
    The teacher's stage taps are checked when the teacher is loaded (tasks.detection)."""
    from .plan import resolve_plan
    from symbols.transfer import METHODS
    from tasks.detection.distill import TAPS
    if not cfg.teacher_prefix:
        raise ConfigError('config key kt (%s) is true but teacher_prefix is not set: name the teacher, a Faster R-CNN '
                          'run of this project (teacher_prefix=model/RUN)' % where('kt', 'teacher_prefix'))
    if same_run(cfg.teacher_prefix, os.path.join(cfg.model_dir, cfg.model_prefix)):
        raise ConfigError('config keys model_prefix and teacher_prefix (%s) name the same run, %s: choose another '
                          'model_prefix' % (where('model_prefix', 'teacher_prefix', 'model_dir'), cfg.teacher_prefix))
    cfg['plan'] = resolve_plan(cfg, where('kt_type', 'kt_weight', 'teacher_symbol', 'student_symbol',
                                          'kt_layer_weight'), example='features', logits=('rcnn_logits',))
    taps_at = where('student_symbol', 'teacher_symbol')
    stages = student_stage_taps(cfg)
    for entry in cfg.plan:
        method, spec = entry['method'], METHODS[entry['method']]
        for tap in _flat(s for s, _ in entry['pairs']):
            if tap not in TAPS and tap not in stages:
                raise ConfigError('config key student_symbol (%s): %r is not a tap of a Faster R-CNN on %s; its taps '
                                  'are %s' % (where('student_symbol'), tap, cfg.network,
                                          ', '.join(list(TAPS) + [t for t in stages if t not in TAPS])))
        for pair in entry['pairs']:
            s_taps, t_taps = _flat([pair[0]]), _flat([pair[1]])
            if ('rcnn_logits' in s_taps) != ('rcnn_logits' in t_taps):
                raise ConfigError('config keys student_symbol and teacher_symbol (%s): %s pairs the student\'s %s with '
                                  'the teacher\'s %s; the RoIs\' class scores (rcnn_logits) are compared with the '
                                  'teacher\'s, maps with maps' % (taps_at, method, pair[0], pair[1]))
            logits = 'rcnn_logits' in s_taps
            if spec.indices and logits:
                raise ConfigError('config keys student_symbol and teacher_symbol (%s): %s keeps a memory row per '
                                  'training image, and rcnn_logits has a row per RoI: give it the tap features'
                                  % (taps_at, method))
            if spec.relational and not spec.indices and not logits:    # (CRD: its negatives are drawn from
                # its memory of the other images, not from the batch)
                raise ConfigError('config keys kt_type, student_symbol and teacher_symbol (%s): %s needs a batch of '
                                  'images on %s (it relates them; detection trains one image a device): give it the '
                                  'tap rcnn_logits, where it relates the sampled RoIs of the image'
                                  % (taps_at, method, pair[0]))
            if not spec.relational and spec.inputs != 'logits' and logits and spec.inputs != 'vector':
                raise ConfigError('config keys student_symbol and teacher_symbol (%s): %s pairs feature maps, and '
                                  'rcnn_logits are the RoIs\' class scores: give it the tap features (or a logit '
                                  'method, kd, for the class scores)' % (taps_at, method))


def _check_backbone(cfg, where):
    source = backbone_source(cfg)
    if source != 'none' and not cfg.backbone_prefix:
        raise ConfigError('config key backbone_prefix (%s) is not set: name the distilled backbone\'s checkpoint '
                          '(backbone_prefix=model/RUN, a legacy PREFIX, or a gluoncv .params file), or '
                          'backbone_source=none for a randomly initialised one' % where('backbone_prefix'))
    if source == 'legacy':
        if cfg.backbone_split is None:
            raise ConfigError('config key backbone_split (%s) is not set: a legacy Module checkpoint is split by its '
                              'internal output names, e.g. backbone_split=[STRIDE16_OUTPUT, STRIDE32_OUTPUT, '
                              'FROZEN_OUTPUT] (python -m tools.detection --legacy-taps %s lists the candidates)'
                              % (where('backbone_split'), cfg.backbone_prefix))
        return                      # `network` only labels a legacy backbone
    import symbols
    from symbols.detection import detection_split
    try:
        cfg['network'] = symbols.resolve_name(cfg.network)
        if cfg.backbone_split is None:
            detection_split(cfg.network)
    except ValueError as e:
        raise ConfigError('config key %r (%s): %s' % ('network', where('network'), e))


def _schema():
    from . import TaskSchema
    return TaskSchema('detection', FIELDS, SYNONYMS, find_detection_file, None, 'config/detection.py',
                      _check_together, label='detection ')


DETECTION = _schema()


__all__ = ['FIELDS', 'DETECTION', 'VOC_CLASSES', 'DETECTION_PRESET_DIR', 'load_detection_config', 'list_detection_presets',
           'is_detection_preset', 'find_detection_file', 'backbone_source']
