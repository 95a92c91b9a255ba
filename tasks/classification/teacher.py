"""Teachers: a checkpoint of this project, a legacy MXNet Module checkpoint,
or a gluoncv model-zoo network, returned as a hybridized tapped block
`x -> (logits, tap_1, ...)` that never receives gradients.
"""
import logging
import os

import mxnet as mx

import symbols
from symbols import pretrained
from symbols.legacy import legacy_files
from config.checks import resolved_source
from core import checkpoint
from core.errors import NetworkError

LOG = logging.getLogger('teacher')

IMAGENET_CLASSES = 1000                  # the classes of every gluoncv classification weight file used here


class TeacherError(NetworkError):
    """A teacher that cannot be used with this configuration."""


def source_of(cfg):
    """The teacher source `auto` stands for (`config.checks.resolved_source`)."""
    return resolved_source(cfg.teacher_source, cfg.teacher_prefix, cfg.teacher_network)


def _project_meta(cfg):
    """(model_dir, run name, tag, metadata) of teacher run `teacher_prefix`, a classification run."""
    if not cfg.teacher_prefix:
        raise TeacherError('teacher_prefix is not set: name the teacher checkpoint, e.g. '
                           'teacher_prefix="model/fmnist_resnet14_teacher"')
    try:
        checkpoint.check_run_prefix(cfg.teacher_prefix)
    except checkpoint.CheckpointError as e:
        raise TeacherError(str(e))
    try:
        model_dir, prefix, tag, meta = checkpoint.run_at(cfg.teacher_prefix, cfg.teacher_epoch, resolve=True)
    except checkpoint.CheckpointError as e:
        from core.project import from_another_folder, in_project
        there = in_project(cfg.teacher_prefix, lambda p: checkpoint.epochs(*os.path.split(p)))
        if there:
            raise TeacherError(from_another_folder('teacher_prefix', cfg.teacher_prefix, there, 'the run'))
        if os.path.isfile(cfg.teacher_prefix + '-symbol.json'):
            raise TeacherError('teacher_prefix=%s is a legacy MXNet Module checkpoint, not a run of this project: set '
                               'teacher_source=legacy (or auto)' % cfg.teacher_prefix)
        have = checkpoint.epochs(*os.path.split(cfg.teacher_prefix))
        if have:
            raise TeacherError('teacher run %s has no checkpoint at teacher_epoch=%s: its epochs are %s; set '
                               'teacher_epoch to one of them, or -1 for its best' % (cfg.teacher_prefix,
                                                                                     cfg.teacher_epoch, checkpoint.epochs_text(have)))
        inside = os.path.join(cfg.model_dir, cfg.teacher_prefix)        # (the run's name alone: model/ left out)
        if not os.path.dirname(cfg.teacher_prefix) and checkpoint.epochs(*os.path.split(inside)):
            raise TeacherError('teacher_prefix=%s names no run here, but model_dir holds run %r: give '
                               'teacher_prefix=%s (a run is model_dir/NAME)' % (cfg.teacher_prefix, cfg.teacher_prefix,
                                                                                inside))
        raise TeacherError('teacher checkpoint not found: %s. Train it first (see the README) or set '
                           'teacher_prefix / teacher_epoch' % e)
    try:
        checkpoint.refuse_other_kind(meta, cfg.teacher_prefix, 'a classification teacher')
    except checkpoint.CheckpointError as e:
        raise TeacherError(str(e))
    if cfg.teacher_network and meta.get('network') and cfg.teacher_network != meta['network']:
        raise TeacherError('teacher_network=%r but checkpoint %s was trained as %r'
                           % (cfg.teacher_network, cfg.teacher_prefix, meta['network']))
    return model_dir, prefix, tag, meta


def _project(cfg, in_channels, ctx):
    model_dir, prefix, tag, meta = _project_meta(cfg)
    name = cfg.teacher_network or meta.get('network')
    if name is None:
        try:
            checkpoint.network_of(meta, 'teacher %s' % cfg.teacher_prefix)
        except checkpoint.CheckpointError as e:
            raise TeacherError(str(e))
    net = symbols.get_network(name, meta.get('num_classes', cfg.num_classes),
                              meta.get('in_channels', in_channels), prefix='teacher_')
    params = checkpoint.paths(model_dir or '.', prefix, tag)['params']
    checkpoint.load_params(net, params, ctx, 'teacher params')
    try:
        checkpoint.check_params_file(meta, params)
    except checkpoint.CheckpointError as e:
        raise TeacherError('teacher: %s' % e)
    net.trained_with = {k: meta.get(k) for k in ('image_size', 'val_top1', 'dataset')}
    net.trained_with['params_crc32'] = meta.get('params_crc32')      # which parameters (a resume compares it)
    from data import other_class_names
    differ = other_class_names(meta.get('classes'), cfg, meta.get('num_classes'))
    if differ:
        LOG.warning('the teacher %s: %s; give a teacher trained on these classes', cfg.teacher_prefix, differ)
    return net, '%s (%s, epoch %s)' % (cfg.teacher_prefix, name, meta.get('epoch'))


def _zoo_params(cfg, name, weights):
    """The file of gluoncv's ImageNet weights `weights` for teacher network `name` (None: it has
    none), after checking that this run has ImageNet's classes."""
    if weights is None:
        raise TeacherError('gluoncv has no pretrained weights for %r: give a params file as teacher_prefix' % name)
    if cfg.num_classes != IMAGENET_CLASSES:       # checked before anything is looked for or downloaded
        raise TeacherError('gluoncv\'s %s weights predict the %d ImageNet classes but num_classes=%d: a zoo '
                           'teacher needs ImageNet-labelled data; for other classes train (or fine-tune) a '
                           'teacher on your data first and give its run as teacher_prefix'
                           % (weights, IMAGENET_CLASSES, cfg.num_classes))
    try:
        return pretrained.weights_file(weights)
    except pretrained.WeightsError as e:
        raise TeacherError(str(e) + ' (as teacher_prefix)')


def locate_teacher(cfg):
    """Check, without building a network, that the teacher of `cfg` can be found as configured
    (`Task.locate_teacher`); TeacherError naming what is missing."""
    source = source_of(cfg)
    if source == 'legacy':
        epoch = cfg.teacher_epoch if cfg.teacher_epoch >= 0 else symbols.latest_legacy_epoch(cfg.teacher_prefix)
        try:
            legacy_files(cfg.teacher_prefix, epoch)
        except symbols.CheckpointError as e:
            raise TeacherError(str(e))
    elif source == 'gluoncv':
        if not cfg.teacher_network:
            raise TeacherError('teacher_source=gluoncv needs teacher_network (e.g. preact_resnet101 or a gluoncv '
                               'model-zoo name)')
        if not (cfg.teacher_prefix and cfg.teacher_prefix.endswith('.params')):
            try:
                weights = pretrained.ZOO_WEIGHTS.get(symbols.resolve_name(cfg.teacher_network))
            except ValueError:
                weights = cfg.teacher_network
            _zoo_params(cfg, cfg.teacher_network, weights)
    else:
        _project_meta(cfg)


def teacher_network_name(cfg):
    """The network of a teacher run of this project, as its checkpoint names it; None for a legacy
    or gluoncv teacher."""
    return _project_meta(cfg)[3].get('network') if source_of(cfg) == 'project' else None


def _gluoncv(cfg, in_channels, ctx):
    name = cfg.teacher_network
    if not name:
        raise TeacherError('teacher_source=gluoncv needs teacher_network (e.g. preact_resnet101 or a gluoncv '
                           'model-zoo name)')
    params_file = cfg.teacher_prefix if cfg.teacher_prefix and cfg.teacher_prefix.endswith('.params') else None
    try:
        name = symbols.resolve_name(name)
        net = symbols.get_network(name, cfg.num_classes, in_channels, prefix='teacher_')
        weights = pretrained.ZOO_WEIGHTS.get(name)
    except ValueError:
        from gluoncv.model_zoo import get_model
        holder = symbols.NameScope(prefix='teacher_')
        with holder.name_scope():
            net = get_model(name, classes=cfg.num_classes, pretrained=False)
        weights = name
    params_file = params_file or _zoo_params(cfg, name, weights)
    checkpoint.load_params(net, params_file, ctx, 'teacher params',
                           'check teacher_network (%s here) and num_classes: the file holds another network\'s '
                           'weights' % name)
    return net, '%s from %s' % (name, params_file)


def input_channels(net):
    """The number of image channels `net` takes: the input-channel axis of its first 4-d weight
    (its first convolution's), None when that is not known yet."""
    for p in net.collect_params().values():
        shape = p.shape or ()
        if len(shape) == 4 and p.name.endswith('weight'):
            return shape[1] or None
    return None


def load_teacher(cfg, taps, in_channels, ctx):
    """(tapped teacher block, description). Checks taps and class count."""
    source = source_of(cfg)
    if source == 'legacy':
        epoch = cfg.teacher_epoch if cfg.teacher_epoch >= 0 else symbols.latest_legacy_epoch(cfg.teacher_prefix)
        try:
            net = symbols.load_legacy_network(cfg.teacher_prefix, epoch, ctx[0])
        except symbols.CheckpointError as e:
            raise TeacherError(str(e))
        net.collect_params().reset_ctx(ctx)
        desc = 'legacy checkpoint %s-%04d' % (cfg.teacher_prefix, epoch)
    elif source == 'gluoncv':
        net, desc = _gluoncv(cfg, in_channels, ctx)
    else:
        net, desc = _project(cfg, in_channels, ctx)
    takes = input_channels(net)
    if takes and takes != in_channels:
        raise TeacherError('the teacher (%s) takes %d-channel images but the data has %d channel(s) (%s): use a '
                           'teacher trained on images like these (the same dataset, or one packed with the same '
                           'colour mode)' % (desc, takes, in_channels, 'grayscale' if in_channels == 1 else 'colour'))
    try:
        tapped = symbols.with_taps(net, taps)
    except symbols.TapError as e:
        raise TeacherError('teacher_symbol: %s' % e)
    for p in net.collect_params().values():
        p.grad_req = 'null'
    tapped.trained_with = getattr(net, 'trained_with', None)     # what the teacher was trained with, if known
    tapped.hybridize(static_alloc=True, static_shape=True)
    return tapped, desc


class BatchStatsGuard(object):
    """Runs the teacher with BatchNorm in training mode (batch statistics), as
    the original did, and puts the stored running statistics back afterwards
    so they never change."""

    def __init__(self, block):
        from core.workers import statistics_of
        self.stats = statistics_of([block])
        self.saved = [[d.copy() for d in p.list_data()] for p in self.stats]

    def __call__(self, block, x):
        with mx.autograd.train_mode():
            out = block(x)
        for p, saved in zip(self.stats, self.saved):
            for d, s in zip(p.list_data(), saved):
                if d.context == x.context:
                    s.copyto(d)
        return out
