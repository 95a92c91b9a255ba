"""Classification's checks across keys and of its data: the class count the data has, the
teacher, the warnings a run starts with, the data files."""
import os

from core.project import from_another_folder, in_project

from .checks import ConfigError, same_run
from .plan import resolve_plan


CIFAR_CLASSES = {'cifar10': 10, 'cifar100': 100}


def classes_of_data(cfg):
    """(number of classes the data has, where that is said): 10/100 for CIFAR-10/100, else the lines
    of data_dir/classes.txt (written by the pack builders); (None, None) without one."""
    if cfg.dataset in CIFAR_CLASSES:
        return CIFAR_CLASSES[cfg.dataset], 'dataset=%s' % cfg.dataset
    listed = _classes_listed(cfg)
    return (listed, os.path.join(cfg.data_dir, 'classes.txt')) if listed else (None, None)


class ClassCountError(ConfigError):
    """num_classes set to another count than the data's: `configured`, `found` (the data's count) and
    `said` (where the data's count comes from)."""

    def __init__(self, text, configured, found, said):
        super(ClassCountError, self).__init__(text)
        self.configured, self.found, self.said = configured, found, said


def _check_num_classes(cfg, at):
    """num_classes from the data when unset; ConfigError when it is set and disagrees with the data."""
    count, said = classes_of_data(cfg)
    if count is None or count < 2:                 # (one class: check_data_files says what to do)
        return
    if cfg.num_classes is None:
        cfg['num_classes'] = count
    elif count != cfg.num_classes:
        outside = ('; its labels %d..%d lie outside num_classes=%d' % (cfg.num_classes, count - 1, cfg.num_classes)
                   if cfg.num_classes < count else '')
        raise ClassCountError('config key num_classes (%s) is %d but the data has %d classes (%s%s): leave '
                              'num_classes unset (null: taken from the data) or set num_classes=%d'
                              % (at('num_classes'), cfg.num_classes, count, said, outside, count),
                              cfg.num_classes, count, said)


def _classes_listed(cfg):
    """The number of classes in data_dir/classes.txt (written by the pack builder), None without one."""
    if cfg.dataset not in ('imagenet', 'fashion_mnist'):
        return None
    from data import read_classes_file, DataError
    try:
        names = read_classes_file(os.path.join(cfg.data_dir, 'classes.txt'))
    except DataError as e:
        raise ConfigError('config key data_dir=%r: %s' % (cfg.data_dir, e))
    return len(names) if names is not None else None


def warnings_of(cfg):
    """Settings that are valid but probably not what was meant, one sentence each: a learning-rate
    warm-up longer than the run, classes without training images."""
    out = []
    if cfg.warmup_epochs > cfg.num_epoch:
        out.append('warmup_epochs=%g is longer than the run (num_epoch=%d): the learning rate never reaches lr=%g '
                   '(at most %.3g); lower warmup_epochs or raise num_epoch'
                   % (cfg.warmup_epochs, cfg.num_epoch, cfg.lr, cfg.lr * cfg.num_epoch / cfg.warmup_epochs))
    from data import DEFAULTS
    side = DEFAULTS[cfg.dataset][1]               # (the images of these datasets' packs; a crop of image_size)
    crop = cfg.image_size or side
    if cfg.dataset != 'imagenet' and cfg.augment and cfg.pad is not None and cfg.pad * 2 >= crop:
        out.append('pad=%d on %d-pixel images: each random %dx%d crop of the padded %dx%d image holds on average %.0f%% '
                   'border; the usual pad is %d (RepDistiller pads CIFAR\'s 32 pixels by 4)'
                   % (cfg.pad, side, crop, crop, side + 2 * cfg.pad, side + 2 * cfg.pad,
                      100 * _border_share(side, crop, cfg.pad), DEFAULTS[cfg.dataset][5]))
    out += _classes_without_images(cfg)          # (a method's warm-up longer than the run: config.transfer_notes)
    return out


def _border_share(side, crop, pad):
    """The mean share of padding in a random crop x crop crop of a side x side image padded by `pad` on
    each side (offsets uniform in 0..side + 2 pad - crop on both axes)."""
    offsets = range(side + 2 * pad - crop + 1)
    inside = sum(max(0, min(o + crop, pad + side) - max(o, pad)) for o in offsets) / float(len(offsets) * crop)
    return 1 - inside ** 2


def _classes_without_images(cfg):
    """A sentence naming the classes of data_dir/classes.txt that no training image is labelled with
    (its train.lst: a line added to classes.txt by hand, or a class folder that lost its images);
    the network would keep an output that never trains. [] where there is no list to read."""
    if cfg.dataset not in ('imagenet', 'fashion_mnist') or not cfg.num_classes:
        return []
    import re
    from data import read_classes_file, DataError
    try:
        names = read_classes_file(os.path.join(cfg.data_dir, 'classes.txt'))
        lst = os.path.join(cfg.data_dir, 'train.lst')
        labels = None
        if os.path.isfile(lst):    # (the label column alone, read at once: 0.4 s for ImageNet's 1.28M lines)
            with open(lst, 'rb') as f:
                labels = {int(float(v)) for v in set(re.findall(rb'^\d+\t([^\t\n]*)\t', f.read(), re.M))}
    except (DataError, ValueError, OverflowError, OSError):
        return []                  # (the data checks say what is wrong with these files)
    if not names or not labels:
        return []
    empty = [k for k in range(len(names)) if k not in labels]
    if not empty:
        return []
    shown = ', '.join('%d (%s)' % (k, names[k]) for k in empty[:5]) + (' ...' if len(empty) > 5 else '')
    return ['%s lists %d classes, but no training image of %s is labelled %s: the network keeps an output for '
            'each that never trains; remove the line(s) from classes.txt (and re-pack), or add images of those '
            'classes' % (os.path.join(cfg.data_dir, 'classes.txt'), len(names), os.path.join(cfg.data_dir,
                                                                                            'train.lst'), shown)]


def check_classification(cfg, at):
    """Classification's checks across keys (each key's own check has passed); fills in the derived
    keys (model_load_prefix, begin_epoch, the full network name) and the transfer plan `cfg.plan`."""
    if cfg.model_load_prefix is None:
        cfg['model_load_prefix'] = cfg.model_prefix
    _check_num_classes(cfg, at)
    if cfg.retrain and cfg.begin_epoch is not None and cfg.begin_epoch != cfg.model_load_epoch:
        raise ConfigError('config key begin_epoch=%d (%s) is not used with retrain=true: a resume starts after the '
                          'epoch of its checkpoint (model_load_epoch=%d); leave begin_epoch out'
                          % (cfg.begin_epoch, at('begin_epoch'), cfg.model_load_epoch))
    if cfg.begin_epoch is None:
        cfg['begin_epoch'] = cfg.model_load_epoch if cfg.retrain else 0
    import symbols
    try:                                             # a family + depth becomes the full name
        cfg['network'] = symbols.resolve_name(cfg.network, cfg.depth)
    except ValueError as e:
        raise ConfigError('config key %r (%s): %s' % ('network', at('network', 'depth'), e))
    if cfg.teacher_network is not None:              # a project network, or any gluoncv model-zoo name
        try:
            cfg['teacher_network'] = symbols.resolve_name(cfg.teacher_network)
        except ValueError as e:
            from gluoncv.model_zoo import get_model_list
            if cfg.teacher_network not in get_model_list():
                raise ConfigError('config key %r (%s): %s, and not a gluoncv model-zoo name either'
                                  % ('teacher_network', at('teacher_network'), e))
    if cfg.pretrained is not None:
        from symbols import pretrained
        try:
            pretrained.source_of(cfg.pretrained, cfg.network, cfg.pretrained_epoch)
        except pretrained.WeightsError as e:
            raise ConfigError('config key pretrained (%s): %s' % (at('pretrained'), e))
    from data import DEFAULTS
    channels = DEFAULTS[cfg.dataset][0]
    for key in ('mean', 'std'):
        if cfg[key] is not None and len(cfg[key]) not in (1, 3):
            raise ConfigError('config key %r (%s) must list 1 or 3 values (one per channel); got %r'
                              % (key, at(key), cfg[key]))
    extra = [k for k in ('mean', 'std') if cfg[k] is not None and len(cfg[k]) not in (1, channels)]
    if extra:
        raise ConfigError('config key%s %s (%s) list%s %d values, but %s images have %d channel(s): give %d value(s) '
                          '(the others would not be used)' % ('s' if len(extra) > 1 else '', ' and '.join(extra),
                                                              at(*extra), '' if len(extra) > 1 else 's',
                                                              len(cfg[extra[0]]), cfg.dataset, channels, channels))
    if cfg.dataset != 'imagenet' and cfg.resize is not None:
        raise ConfigError('config key resize (%s) applies to dataset=imagenet packs (validation resizes their shorter '
                          'side, then crops the centre); %s images are used at their size: leave resize out'
                          % (at('resize'), cfg.dataset))
    if cfg.dataset in ('cifar10', 'cifar100') and cfg.image_size not in (None, 32):
        raise ConfigError('config key image_size (%s) is %d, but %s images are 32x32 and are not resized: '
                          'leave image_size unset (or 32)' % (at('image_size'), cfg.image_size, cfg.dataset))
    if cfg.dataset == 'imagenet' and cfg.resize is not None:
        from data import DEFAULTS
        from data.augment import centre_crop_resize
        size = cfg.image_size or DEFAULTS['imagenet'][1]
        if cfg.resize < size:
            raise ConfigError('config key resize (%s) is %d, smaller than image_size %d: validation resizes the '
                              'shorter side to resize, then takes the centre image_size square; set resize to %d '
                              'or more (unset: %d)' % (at('resize', 'image_size'), cfg.resize, size, size,
                                                       centre_crop_resize(size)))
    if (cfg.mean is None) != (cfg.std is None):
        raise ConfigError('config keys mean and std (%s) must be given together' % at('mean', 'std'))
    cfg['plan'] = resolve_plan(cfg, at('kt_type', 'kt_weight', 'teacher_symbol', 'student_symbol',
                                       'kt_layer_weight')) if cfg.kt else []
    _check_teacher_is_not_the_run(cfg, at)


def _check_teacher_is_not_the_run(cfg, at):
    if cfg.kt and cfg.teacher_prefix and cfg.teacher_source in ('auto', 'project') and \
            same_run(cfg.teacher_prefix, os.path.join(cfg.model_dir, cfg.model_prefix)):
        raise ConfigError('config keys model_prefix and teacher_prefix (%s) name the same run, %s: the student would '
                          'be written over (or with overwrite=true, move aside) its own teacher; choose another '
                          'model_prefix' % (at('model_prefix', 'teacher_prefix', 'model_dir'), cfg.teacher_prefix))



def data_files(cfg, validation_only=False):
    """The files the dataset needs (paths), for the existence check; `validation_only`: those of its
    validation set alone (what evaluating a checkpoint reads)."""
    d = cfg.data_dir
    if cfg.dataset in ('imagenet', 'fashion_mnist'):
        return [os.path.join(d, n) for n in (() if validation_only else ('train.rec', 'train.idx')) +
                ('val.rec', 'val.idx')]
    from data.cifar import cifar_files
    return cifar_files(d, cfg.dataset, train=not validation_only)


def check_data_files(cfg, validation_only=False):
    if os.path.isfile(cfg.data_dir):
        raise ConfigError('config key data_dir=%r is a file: data_dir is the folder that holds the data, '
                          'data_dir=%s' % (cfg.data_dir, os.path.dirname(cfg.data_dir) or '.'))
    if cfg.dataset in ('imagenet', 'fashion_mnist'):
        from data.packindex import uri_problem
        problem = uri_problem(data_files(cfg, validation_only)[-1])
        if problem:
            raise ConfigError('config key data_dir=%r: the pack %s' % (cfg.data_dir, problem))
    missing = [f for f in data_files(cfg, validation_only) if not os.path.isfile(f)]
    there = missing and in_project(cfg.data_dir, lambda d: all(
        os.path.isfile(os.path.join(d, os.path.relpath(f, cfg.data_dir))) for f in missing))
    if there:
        raise ConfigError('config key %s' % from_another_folder('data_dir', cfg.data_dir, there, 'the data'))
    if missing:
        if os.path.isdir(cfg.data_dir) and os.listdir(cfg.data_dir) and len(missing) == len(data_files(cfg, validation_only)) and \
                cfg.dataset in ('fashion_mnist', 'imagenet'):
            fix = ('data_dir holds other files, not this dataset\'s packs: give the folder of the packs (python -m '
                   'data.pack writes them) or of the data the run was trained on')
        elif cfg.dataset == 'fashion_mnist' and os.path.normpath(cfg.data_dir) != os.path.join('datasets', 'fashion_mnist'):
            fix = ('pack it with `python -m data.fashion_mnist --out %s` (add --per-class N for a subset; `bash '
                   'init.sh` packs datasets/fashion_mnist, `python -m tools.reproduce` datasets/fmnist_2k with '
                   '--per-class 200)' % cfg.data_dir)
        elif cfg.dataset == 'fashion_mnist':
            fix = 'run `bash init.sh` (or `python -m data.fashion_mnist --out %s`)' % cfg.data_dir
        elif cfg.dataset == 'imagenet':
            fix = 'build the packs with `python -m data.pack --train TRAIN_DIR --val VAL_DIR --out %s`' % cfg.data_dir
        else:
            fix = 'unpack the official CIFAR python archive into data_dir'
            other = {'cifar10': ('cifar100', 'train'), 'cifar100': ('cifar10', 'data_batch_1')}[cfg.dataset]
            if os.path.isfile(os.path.join(cfg.data_dir, other[1])):
                fix = 'data_dir holds %s, not %s: set dataset=%s' % (
                    {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100'}[other[0]],
                    {'cifar10': 'CIFAR-10', 'cifar100': 'CIFAR-100'}[cfg.dataset], other[0])
        raise ConfigError('config key data_dir=%r: missing data file(s) %s; %s'
                          % (cfg.data_dir, ', '.join(missing), fix))
    if _classes_listed(cfg) == 1:
        raise ConfigError('config key data_dir=%r: its classes.txt lists 1 class, and a classifier needs 2 or more: '
                          'pack a folder with two or more class sub-folders (python -m data.pack --train DIR '
                          '--out %s)' % (cfg.data_dir, cfg.data_dir))
    if cfg.num_classes is None:
        listed = os.path.join(cfg.data_dir, 'classes.txt')
        raise ConfigError('config key num_classes is not set and data_dir=%r %s to take it from: set num_classes=N '
                          '(the number of classes of the data), or pack the data with python -m data.pack, which '
                          'writes classes.txt' % (cfg.data_dir, 'has an empty classes.txt' if os.path.isfile(listed)
                                                   else 'has no classes.txt'))



__all__ = ['CIFAR_CLASSES', 'classes_of_data', 'warnings_of', 'check_classification', 'data_files', 'check_data_files']
