"""Configuration of semantic segmentation (`python train.py --cfg seg_*`, task: segmentation).

Its own keys (data, network, head, augmentation) are below; the run, optimisation, engine and
distillation keys are classification's (config/schema.py, the method options from the registry),
with segmentation's defaults where they differ. Presets: config/presets/segmentation/seg_*.yaml.

    cfg = load_segmentation_config('seg_voc_r18_deeplabv3plus', ['num_epoch=2'])
"""
import os
from collections import OrderedDict

from . import checks as c, preset_files
from .checks import ConfigError, same_run
from .schema import Field, Fields, FIELDS as SCHEMA_FIELDS

HERE = os.path.dirname(os.path.abspath(__file__))
PRESET_DIR = preset_files.FOLDERS['segmentation']
# classification's keys that mean the same here (their checks and meanings), with these defaults
SHARED = OrderedDict([
    ('model_prefix', 'voc_seg'), ('model_dir', None), ('log_dir', None), ('gpu_list', None), ('kv_store', None),
    ('dtype', None), ('deterministic', None), ('seed', None), ('retrain', None), ('model_load_prefix', None),
    ('model_load_epoch', None), ('begin_epoch', None), ('overwrite', None), ('progress', None), ('frequent', 20),
    ('tensorboard', None), ('batch_size', 8), ('optimizer', 'sgd'), ('lr', 0.01), ('wd', 1e-4), ('momentum', None),
    ('lr_mode', 'poly'), ('lr_step', None), ('lr_factor', None), ('warmup_epochs', None), ('num_epoch', 50),
    ('mean', [123.68, 116.28, 103.53]), ('std', [58.395, 57.12, 57.375]),
    ('pretrained', None), ('pretrained_epoch', None), ('pretrained_lr_mult', None),
    # distillation inside the task: a segmentation teacher, any registered method on named taps
    ('kt', None), ('kt_type', 'cwd'), ('kt_weight', None), ('kt_layer_weight', None), ('kt_warmup_epochs', None),
    ('teacher_prefix', None), ('teacher_epoch', None), ('teacher_symbol', 'logits'), ('student_symbol', 'logits'),
])
HEADS = ('deeplabv3', 'deeplabv3+')


def class_names():
    """Check: null (the 21 VOC classes, background first) or a list of distinct names."""
    from data.segmentation import VOC_CLASSES

    def check(v):
        if v is None:
            return list(VOC_CLASSES)
        if isinstance(v, str):
            v = [s.strip() for s in v.split(',')]
        if not isinstance(v, list) or len(v) < 2 or len(set(v)) != len(v) or not all(
                isinstance(s, str) and s.strip() for s in v):
            c._fail('a list of 2 or more distinct class names in label order (null: the 21 VOC classes)', v)
        return list(v)
    return c._allows(check, 'list of class names, or null')


def seg_taps():
    def check(v):
        if v is None:
            return None
        if isinstance(v, str):
            v = [s.strip() for s in v.split(',')]
        if not isinstance(v, list) or len(v) != 2 or not all(isinstance(s, str) and s for s in v):
            c._fail('null or [LOW_TAP, HIGH_TAP] (a stride-4 tap and the last feature map)', v)
        return list(v)
    return c._allows(check, '[LOW_TAP, HIGH_TAP] or null')


_OWN = [
    Field('task', 'segmentation', c.choice('segmentation'), 'segmentation: this schema (python train.py --cfg seg_*)'),
    # data
    Field('voc_root', 'datasets/VOCdevkit', c.string(), 'the VOCdevkit folder (VOC2012/JPEGImages, '
          'SegmentationClass, ImageSets/Segmentation)'),
    Field('train_split', 'train', c.string(), 'training list: VOC2012/ImageSets/Segmentation/<split>.txt'),
    Field('val_split', 'val', c.string(), 'validation list (the whole list is evaluated, single scale)'),
    Field('sbd_root', None, c.optional(c.string()), 'the SBD augmented set (its dataset/ folder: img/, cls/, '
          'train.txt): its train list is trained on besides train_split, minus the validation images; null: VOC alone'),
    Field('classes', None, class_names(), 'class names in label order (null: the 21 VOC classes, background first); '
          'mask values are class indices, 255 is ignored'),
    Field('crop_size', 513, c.integer(min=8), 'training crop side (DeepLab: 513)'),
    Field('scale_min', 0.5, c.number(min=0, strict=True), 'smallest random scale of a training image'),
    Field('scale_max', 2.0, c.number(min=0, strict=True), 'largest random scale of a training image'),
    Field('num_workers', 0, c.integer(min=0), 'data loading worker processes (0: in the training process)'),
    Field('epoch_size', None, c.optional(c.integer(min=1)), 'images per epoch, as detection counts them (the list '
          'shuffled, then cut or repeated to it; quick runs and tests); default: the whole training list'),
    Field('num_val', None, c.optional(c.integer(min=1)), 'evaluate only the first N validation images (smoke runs; '
          'null: all)'),
    # network
    Field('network', 'preact_resnet18', c.string(), 'backbone: a network of this project with a segmentation split '
          '(symbols/segmentation.py: preact_resnet18..152, resnet50, resnet152, resnet50_nst) or seg_taps'),
    Field('head', 'deeplabv3+', c.choice(*HEADS), 'DeepLabV3 (ASPP at the output stride) or DeepLabV3+ (ASPP + '
          'stride-4 decoder)'),
    Field('output_stride', 16, c.choice(16, 8), 'the backbone\'s output stride: later strides become dilations'),
    Field('seg_taps', None, seg_taps(), '[LOW_TAP, HIGH_TAP]: the backbone\'s stride-4 map and its last feature map '
          '(null: the network\'s own split)'),
    Field('aspp_channels', 256, c.integer(min=1), 'width of the ASPP branches and the decoder'),
    # the teacher of kt=true
    Field('teacher_source', 'project', c.choice('project', 'gluoncv'), 'where the teacher comes from: project (a '
          'segmentation run of this project, teacher_prefix=model/RUN) or gluoncv (gluoncv\'s DeepLabV3 '
          'teacher_network; its weights: teacher_prefix=FILE.params, or null for gluoncv\'s model store)'),
    Field('teacher_network', None, c.optional(c.string()), 'the gluoncv DeepLabV3 of teacher_source=gluoncv: '
          'deeplab_resnet101_voc, deeplab_resnet152_voc, deeplab_resnet101_coco, ... (taps: logits, aspp, '
          'layer1..layer4)'),
]


def _shared():
    out = []
    for key, default in SHARED.items():
        f = SCHEMA_FIELDS[key]
        out.append(f._replace(default=default) if default is not None else f)
    return out


# segmentation's own keys, the shared ones, and the registered methods' options (read when looked up)
FIELDS = Fields(_OWN + _shared(), methods_after='kt_warmup_epochs')
SYNONYMS = {'crop': 'crop_size=N', 'base_size': 'crop_size=N (the random scale is scale_min..scale_max of the '
            'image itself)', 'backbone': 'network=NAME', 'os': 'output_stride=16 or 8', 'aux': 'no auxiliary '
            'head here: head=deeplabv3 or deeplabv3+'}


def list_segmentation_presets():
    """Names of the segmentation presets (config/presets/segmentation/seg_*.yaml)."""
    return preset_files.names('segmentation')


def find_segmentation_file(path):
    """The file `path` names: itself, a segmentation preset, else what `config._find_file` finds (a
    preset's bare name means the preset beside a folder or non-config file of that name)."""
    preset = preset_files.shadowed(path, ('segmentation',))
    if preset:
        return preset
    if os.path.isfile(path):
        return path
    from . import _find_file
    return preset_files.find(path, ('segmentation',)) or _find_file(path)


def _check_together(cfg, at):
    """Segmentation's checks across keys; fills in model_load_prefix, begin_epoch, num_classes and
    the transfer plan."""
    if cfg.model_load_prefix is None:
        cfg['model_load_prefix'] = cfg.model_prefix
    if cfg.begin_epoch is None:
        cfg['begin_epoch'] = cfg.model_load_epoch if cfg.retrain else 0
    cfg['num_classes'] = len(cfg.classes)
    if cfg.dtype == 'bfloat16':
        raise ConfigError('config key dtype (%s) is bfloat16, which segmentation does not run yet (under MXNet 1.9.1\'s '
                          'AMP the ASPP concatenates bfloat16 and float32 maps): use dtype=float32' % at('dtype'))
    if cfg.scale_max < cfg.scale_min:
        raise ConfigError('config keys scale_min and scale_max (%s): scale_max %g is below scale_min %g'
                          % (at('scale_min', 'scale_max'), cfg.scale_max, cfg.scale_min))
    for key in ('mean', 'std'):
        if len(cfg[key]) != 3:
            raise ConfigError('config key %r (%s) must list 3 values (RGB); got %r' % (key, at(key), cfg[key]))
    import symbols
    try:
        cfg['network'] = symbols.resolve_name(cfg.network)
    except ValueError as e:
        raise ConfigError('config key network (%s): %s' % (at('network'), e))
    if cfg.kt:
        _check_distillation(cfg, at)
    else:
        cfg['plan'] = []
    if cfg.pretrained is not None:
        from symbols import pretrained
        try:
            pretrained.source_of(cfg.pretrained, cfg.network, cfg.pretrained_epoch)
        except pretrained.WeightsError as e:
            raise ConfigError('config key pretrained (%s): %s' % (at('pretrained'), e))


def _check_distillation(cfg, at):
    """The transfer plan (config.plan.resolve_plan, as classification's) of a distilled segmentation run."""
    from .plan import resolve_plan
    if cfg.teacher_source == 'gluoncv':
        _check_gluoncv_teacher(cfg, at)
    elif not cfg.teacher_prefix:
        raise ConfigError('config key kt (%s) is true but teacher_prefix is not set: name the teacher, a segmentation '
                          'run of this project (teacher_prefix=model/RUN), or teacher_source=gluoncv with a '
                          'teacher_network' % at('kt', 'teacher_prefix'))
    elif cfg.teacher_network is not None:
        raise ConfigError('config key teacher_network (%s) names a gluoncv teacher, but teacher_source is project (a '
                          'run, whose network its checkpoint names): set teacher_source=gluoncv, or leave '
                          'teacher_network out' % at('teacher_network', 'teacher_source'))
    elif same_run(cfg.teacher_prefix, os.path.join(cfg.model_dir, cfg.model_prefix)):
        raise ConfigError('config keys model_prefix and teacher_prefix (%s) name the same run, %s: choose another '
                          'model_prefix' % (at('model_prefix', 'teacher_prefix', 'model_dir'), cfg.teacher_prefix))
    cfg['plan'] = resolve_plan(cfg, at('kt_type', 'kt_weight', 'teacher_symbol', 'student_symbol', 'kt_layer_weight'),
                               example='logits')


def _check_gluoncv_teacher(cfg, at):
    """teacher_source=gluoncv: a gluoncv DeepLabV3 of this run's class count, its weights a file that
    exists or the model store's (looked up when the task loads it)."""
    from symbols.segmentation import gluoncv_teacher_classes, SegmentationNetworkError
    if cfg.teacher_network is None:
        raise ConfigError('config key teacher_source (%s) is gluoncv but teacher_network is not set: name gluoncv\'s '
                          'DeepLabV3, e.g. teacher_network=deeplab_resnet101_voc' % at('teacher_source',
                                                                                       'teacher_network'))
    try:
        classes = gluoncv_teacher_classes(cfg.teacher_network)
    except SegmentationNetworkError as e:
        raise ConfigError('config key teacher_network (%s): %s' % (at('teacher_network'), e))
    if classes != cfg.num_classes:
        raise ConfigError('config key teacher_network (%s): %s predicts %d classes, this run has %d (classes): use a '
                          'teacher trained on this run\'s classes' % (at('teacher_network', 'classes'),
                                                                       cfg.teacher_network, classes, cfg.num_classes))
    if cfg.teacher_prefix is not None and not os.path.isfile(cfg.teacher_prefix):
        raise ConfigError('config key teacher_prefix (%s) = %s: no such file; with teacher_source=gluoncv it is the '
                          'teacher\'s .params file (null: gluoncv\'s model store)' % (at('teacher_prefix'),
                                                                                     cfg.teacher_prefix))


def check_data(cfg):
    """The data folders exist (the files themselves are checked by the task before training)."""
    if not os.path.isdir(cfg.voc_root):
        raise ConfigError('config key voc_root=%r %s: give the VOCdevkit folder (VOC2012/JPEGImages, '
                          'SegmentationClass, ImageSets/Segmentation)'
                          % (cfg.voc_root, 'is a file, not a folder' if os.path.exists(cfg.voc_root) else
                             'does not exist'))
    if cfg.sbd_root is not None and not os.path.isdir(cfg.sbd_root):
        raise ConfigError('config key sbd_root=%r does not exist: give the SBD dataset folder (img/, cls/, '
                          'train.txt), or sbd_root=null' % cfg.sbd_root)


def segmentation_schema():
    from . import TaskSchema
    return TaskSchema('segmentation', FIELDS, SYNONYMS, find_segmentation_file, None, 'config/segmentation.py',
                      _check_together, label='segmentation ')


def load_segmentation_config(path=None, overrides=(), check=True):
    """Read, override and validate a segmentation config (a seg_* preset or a file; None: the
    defaults); ConfigError naming the key on any problem. `check`: the data folders exist too."""
    from . import load
    cfg = load(segmentation_schema(), path, overrides)
    if check:
        check_data(cfg)
    return cfg
