"""Every configuration key: its default, what values it allows, what it means.

The keys and meanings of the original NST code base are kept (gpu_list,
dataset, model_prefix, network, depth, ..., kt_type, teacher_symbol,
mmd_kernel, kt_weight, kd_t); the rest is what the Gluon port adds.
"""
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

from . import checks as c

Field = namedtuple('Field', 'name default check doc')
# the tasks train.py trains (tasks/ has one folder each), as the config key `task` names them
TASK_NAMES = ('classification', 'detection', 'segmentation')

_FIELDS = [
    Field('task', 'classification', c.choice(*TASK_NAMES), 'what train.py trains: classification (this schema), '
          'detection (Faster R-CNN on VOC: config/detection.py and its voc_* presets, which set it) or segmentation '
          '(DeepLab on VOC: config/segmentation.py, the seg_* presets)'),
    # --- devices and run names (original keys) ---
    Field('gpu_list', [], c.device_ids(), "GPU ids to train on, e.g. [0, 1] or '0,1'; [] trains on the CPU"),
    Field('dataset', 'fashion_mnist', c.choice('fashion_mnist', 'cifar10', 'cifar100', 'imagenet'),
          'fashion_mnist (RecordIO packs by init.sh), cifar10/cifar100 (official python pickles), '
          'imagenet (train/val RecordIO packs of any ImageNet-style folder tree)'),
    Field('model_prefix', 'student', c.name_like(), 'run name: model/<prefix>-NNNN.params, '
          'log/<prefix>.log'),
    Field('network', 'cifar_resnet20', c.string(), 'student network name (symbols.network_names()) or a '
          'family (preact_resnet, cifar_resnet, pyramidnet) completed by depth'),
    Field('depth', None, c.optional(c.integer(min=1)), 'depth that completes a family name in network'),
    Field('model_load_prefix', None, c.optional(c.name_like()), 'run to resume (default, and when a config '
          'file sets it equal to its model_prefix: model_prefix, also when model_prefix is overridden); '
          'another run name starts a new run from that run\'s checkpoint'),
    Field('model_load_epoch', 0, c.integer(min=-1), 'epoch to resume from with retrain=True; -1: the latest '
          'checkpoint whose parameters are finite'),
    Field('retrain', False, c.boolean(), 'resume from model_load_prefix/model_load_epoch'),
    Field('overwrite', False, c.boolean(), 'start over under a run name that already has checkpoints (or '
          'resume from an earlier epoch than its latest): the old run\'s files are moved to '
          'model_dir/replaced/<prefix>-<time>/, nothing is deleted. Without it such a run is refused'),
    # --- data ---
    Field('data_dir', 'datasets/fashion_mnist', c.string(), 'folder of the packs or pickles'),
    Field('batch_size', 128, c.integer(min=1), 'batch size per device (multiplied by the device count, '
          'as in the original)'),
    Field('kv_store', 'device', c.choice('device', 'local', 'dist_sync', 'dist_device_sync', 'horovod'),
          'gradient aggregation; dist_* for several machines (tools/launch.py); horovod: one process per '
          'device, started by horovodrun'),
    Field('image_size', None, c.optional(c.integer(min=8)), 'training crop side (default 224 for imagenet, '
          '32 for cifar, 28 for fashion_mnist)'),
    Field('resize', None, c.optional(c.integer(min=8)), 'validation: resize the shorter side to this, then '
          'centre-crop image_size (default 256 for imagenet)'),
    Field('mean', None, c.optional(c.list_of(c.number())), 'per-channel mean subtracted from 0-255 pixels '
          '(default per dataset; [0,0,0] with std [1,1,1] for Inception-BN\'s input BatchNorm)'),
    Field('std', None, c.optional(c.list_of(c.number(min=1e-6))), 'per-channel std (see mean)'),
    Field('augment', True, c.boolean(), 'training augmentation (imagenet: random-resized crop, colour '
          'jitter 0.4, PCA lighting 0.1, mirror; cifar/fashion_mnist: pad + random crop, mirror)'),
    Field('pad', None, c.optional(c.integer(min=0)), 'padding before the random crop for small images '
          '(default 4 for cifar, 2 for fashion_mnist)'),
    Field('data_threads', None, c.optional(c.integer(min=1)), 'ImageNet packs: decoding worker processes '
          '(default: the cores of this process, shared among the local workers of a distributed run); '
          'Fashion-MNIST packs: ImageRecordIter preprocess_threads'),
    Field('num_examples', None, c.optional(c.integer(min=1)), 'training-set size (default: counted from the '
          'pack index or the arrays)'),
    Field('epoch_size', None, c.optional(c.integer(min=1)), 'stop each epoch after this many batches '
          '(quick runs and tests); default: the whole training set'),
    # --- optimisation (original keys) ---
    Field('optimizer', 'nag', c.choice('nag', 'sgd'), 'NAG as in the original, or SGD with momentum'),
    Field('lr', 0.1, c.number(min=0, strict=True), 'base learning rate'),
    Field('wd', 1e-4, c.number(min=0), 'weight decay'),
    Field('momentum', 0.9, c.number(min=0, max=1, max_strict=True), 'momentum'),
    Field('lr_step', [30, 60, 90], c.increasing_ints(), 'epochs at which lr is multiplied by lr_factor'),
    Field('lr_factor', 0.1, c.number(min=0, max=1, strict=True), 'lr multiplier at each lr_step'),
    Field('lr_mode', 'step', c.choice('step', 'cosine', 'poly'), 'step (lr_step/lr_factor), cosine decay, or poly '
          '(1 - e/E)^0.9 (DeepLab\'s)'),
    Field('warmup_epochs', 0, c.number(min=0), 'linear warm-up from 0 over this many epochs'),
    Field('begin_epoch', None, c.optional(c.integer(min=0)), 'derived: model_load_epoch when retrain, else 0'),
    Field('num_epoch', 100, c.integer(min=1), 'last epoch (exclusive of begin_epoch)'),
    Field('frequent', 50, c.integer(min=1), 'update the progress line every this many batches'),
    Field('seed', 0, c.integer(min=0), 'seed of parameters, data order and augmentation'),
    Field('deterministic', False, c.boolean(), 'bit-exact runs and resumes: MXNet\'s synchronous NaiveEngine '
          '(MKLDNN under the threaded engine differs in the last bits from run to run); slower'),
    Field('dtype', 'float32', c.choice('float32', 'float16', 'bfloat16'), 'mixed precision: float16 AMP '
          '(GPU) or bfloat16 AMP (CPU)'),
    # --- network ---
    Field('num_classes', None, c.optional(c.integer(min=2)), 'number of classes; null: from the data (the '
          "pack's classes.txt, 10 or 100 for CIFAR-10/100); a value that disagrees with the data is refused"),
    Field('pretrained', None, c.optional(c.string()), "the student's starting weights: 'zoo' (gluoncv's ImageNet "
          "weights of `network`), a gluoncv weights name (resnet18_v2), a .params file, a run of this project "
          "(model_dir/RUN) or a legacy Module checkpoint of the same architecture (PREFIX); a classifier of another class count is replaced by a new one, the rest must fit. "
          "null: random initialisation"),
    Field('pretrained_epoch', -1, c.integer(min=-1), 'epoch of a `pretrained` run of this project; -1: its best'),
    Field('pretrained_lr_mult', 1.0, c.number(min=0, strict=True), 'learning-rate factor of the parameters loaded '
          'from `pretrained` (fine-tuning: e.g. 0.1, the body learns slower than a new classifier, which learns at lr)'),
    # --- knowledge transfer (original keys) ---
    Field('kt', False, c.boolean(), 'train with a teacher (False: plain student)'),
    Field('kt_type', 'kd+mmd', c.kt_type(), "'+'-joined methods: kd, fitnet, at, mmd (alias nst), fsp, ofd, sp, rkd, "
          "pkt, kdsvd, dkd, dist, cc, vid, reviewkd, ab, ft, crd, cwd (symbols.transfer.METHODS)"),
    Field('teacher_prefix', None, c.optional(c.string()), 'teacher checkpoint '
          'prefix: a run of this project, a legacy Module checkpoint (prefix-symbol.json exists), or a '
          'gluoncv params file with teacher_source=gluoncv'),
    Field('teacher_epoch', -1, c.integer(min=-1), 'teacher checkpoint epoch; -1: the best (project runs), the '
          'latest (legacy checkpoints)'),
    Field('teacher_network', None, c.optional(c.string()), 'teacher network name for project '
          'and gluoncv teachers (legacy checkpoints carry their own symbol)'),
    Field('teacher_source', 'auto', c.choice('auto', 'project', 'legacy', 'gluoncv'), 'where the teacher '
          'comes from; auto, from what exists: legacy if <teacher_prefix>-symbol.json exists, gluoncv for a .params '
          'teacher_prefix or no teacher_prefix and a teacher_network with zoo weights, else project (a run)'),
    Field('teacher_symbol', None, c.tap_spec(), 'teacher taps per method: a tap name, a list aligned with '
          'kt_type (lists inside for several layer pairs; "fc1_output"/"logits" or null for kd), or a '
          'dict method -> taps'),
    Field('student_symbol', None, c.tap_spec(), 'student taps per method, same form as teacher_symbol'),
    Field('kt_weight', None, c.optional(c.number_or_list()), 'weight per method (number for one method, '
          'list aligned with kt_type); default: the paper\'s (KD 16, FitNet 100, AT 1000, NST 50, '
          'gaussian NST 100, FSP 1, OFD 1e-3) and the peers\' CIFAR-100 ones for the others (symbols.transfer)'),
    Field('kt_layer_weight', None, c.optional(c.dict_of_lists()), 'method -> weights of its layer pairs '
          '(default: equal, summing to 1)'),
    Field('kt_warmup_epochs', None, c.optional(c.number(min=0)), 'epochs over which a method that declares a '
          'warm-up (dkd, reviewkd: 20, for the peers\' 240-epoch CIFAR-100 runs) ramps its weight up, x min((epoch + '
          '1) / W, 1); null: each method\'s own; 0: none'),
    # (the options of each method follow here: `method_fields`, from symbols.transfer's registry)
    Field('teacher_train_bn', False, c.boolean(), 'run the teacher with BatchNorm in training mode (batch '
          'statistics) as the original did; its stored statistics are never changed'),
    # --- output ---
    Field('model_dir', 'model', c.string(), 'checkpoint folder'),
    Field('log_dir', 'log', c.string(), 'log folder (<prefix>.log and <prefix>.jsonl)'),
    Field('progress', True, c.boolean(), 'show progress bars'),
    Field('tensorboard', False, c.boolean(), 'write TensorBoard event files to log_dir/tensorboard/<model_prefix>/ '
          '(rank 0): per-step scalars every frequent batches (each loss term, lr, training accuracy, img/s) and '
          'per-epoch scalars (validation top-1/top-5, epoch time, each term); needs tensorboardX '
          "(pip install -c constraints.txt -e '.[tensorboard]')"),
]

# classification's keys by the job they do, for `train.py --keys` and docs/reference/config.md (a key
# not listed lands in "other": add it here); the methods' options follow Distillation, by method
KEY_GROUPS = [
    ('Task and run', ['task', 'model_prefix', 'model_dir', 'log_dir', 'model_load_prefix', 'model_load_epoch',
                      'retrain', 'overwrite', 'begin_epoch']),
    ('Data', ['dataset', 'data_dir', 'num_classes', 'image_size', 'resize', 'mean', 'std', 'augment', 'pad',
              'data_threads', 'num_examples', 'epoch_size']),
    ('Network', ['network', 'depth', 'pretrained', 'pretrained_epoch', 'pretrained_lr_mult']),
    ('Devices, workers and precision', ['gpu_list', 'kv_store', 'dtype', 'deterministic']),
    ('Optimisation', ['batch_size', 'optimizer', 'lr', 'wd', 'momentum', 'lr_step', 'lr_factor', 'lr_mode',
                      'warmup_epochs', 'num_epoch', 'seed']),
    ('Distillation', ['kt', 'kt_type', 'kt_weight', 'kt_layer_weight', 'kt_warmup_epochs', 'teacher_prefix',
                      'teacher_epoch', 'teacher_network', 'teacher_source', 'teacher_symbol', 'student_symbol',
                      'teacher_train_bn']),
    ('Logging', ['progress', 'frequent', 'tensorboard']),
]


def method_fields():
    """A Field of every option the registered transfer methods declare (symbols/transfer/registry.py),
    with its check made from the option's type and bounds."""
    from symbols.transfer import method_options
    return [Field(o.name, o.default, option_check(o), o.doc) for _, o in method_options()]


def option_check(option):
    """The config check of a method's `Option`."""
    if option.type == 'bool':
        check = c.boolean()
    elif option.type == 'choice':
        check = c.choice(*option.choices)
    elif option.type == 'int':
        check = c.integer(min=option.min, max=option.max)
    else:
        check = c.number(min=option.min, max=option.max, strict=option.strict, max_strict=option.max_strict)
    return c.optional(check) if option.optional else check


class Fields(Mapping):
    """{key: Field} of a task's config keys: the fixed `fields` (a list) with the options of the
    methods registered at the time of the look-up inserted after key `methods_after` (None: no
    method options); a method registered later, e.g. by a user's module, brings its options with it.
    A fixed key is found without the registry (which imports the loss blocks)."""

    def __init__(self, fields, methods_after=None):
        self.fixed = list(fields)
        self.methods_after = methods_after
        self.static = OrderedDict((f.name, f) for f in self.fixed)

    def _fields(self):
        if self.methods_after is None:
            return self.static
        split = [f.name for f in self.fixed].index(self.methods_after) + 1
        return OrderedDict((f.name, f) for f in self.fixed[:split] + method_fields() + self.fixed[split:])

    def __getitem__(self, key):
        if key in self.static:
            return self.static[key]
        return self._fields()[key]

    def __iter__(self):
        return iter(self._fields())

    def __len__(self):
        return len(self._fields())


FIELDS = Fields(_FIELDS, methods_after='kt_warmup_epochs')
# (classification's keys, which the other tasks' schemas share by name)


def defaults():
    """A fresh dict of every key's default value."""
    import copy
    return OrderedDict((k, copy.deepcopy(f.default)) for k, f in FIELDS.items())
