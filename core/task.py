"""The task interface: what a task (classification, detection, ...) gives the engine (core/engine.py).

The engine owns everything every task needs: devices, distributed training (kvstore, Horovod),
seeds, the learning-rate schedule, AMP, the run's folders, lock and log, resume, the optimizer
step, divergence checks, progress bars, records, TensorBoard, checkpoints and the best epoch. A
task supplies only what is its own, in this order:

    task = TaskClass(cfg, engine)
    task.prepare()                  data and checks; nothing written        (engine seeds after it)
    params = task.build()           networks; {name: Parameter} the optimizer updates
    task.saved_blocks()             (network, extra block or None): what a checkpoint holds
    task.check_checkpoint(meta, e)  refuse to resume a checkpoint of another configuration
    task.start(resumed)             hybridize, look at the teacher, stages before epoch 0
    for each epoch e (0-based; checkpoint e + 1):
        task.set_epoch(e)
        for each batch of task.batches(e), at most task.steps_per_epoch:
            losses, out = task.forward(batch)      under autograd.record: one loss NDArray a device
            task.after_step(step, out)             accumulate metrics on the devices (no host wait)
            every `frequent` steps: task.read()    {name: running mean}; NonFiniteLoss on NaN/Inf
        val = task.evaluate()                      {record key: value}, e.g. val_top1 or val_map
        task.checkpoint_meta(record)               what the checkpoint's metadata adds

Class attributes: `name`; `best_metric`, the record key whose highest value picks the best epoch
(val_top1, val_map); `best_key`, the key that carries the best value so far in records and
metadata; `fits`, what to do when a checkpoint does not fit the task's network; `diverged_fix`, what
to do when the training diverges.
"""


class Task(object):
    name = None
    best_metric = None
    best_key = None
    fits = 'resume with the configuration the run was trained with'
    diverged_fix = 'lower lr (or the kt_weight of a transfer term)'

    @classmethod
    def load_config(cls, path=None, overrides=(), check_data=True):
        """The task's validated config from file or preset `path` and `key=value` overrides; with
        `check_data` false, without the checks of the data (and checkpoints) it names, for a
        configuration to be read before they are in place (train.py --print-config)."""
        raise NotImplementedError

    @classmethod
    def final_lines(cls, record, cfg):
        """What train.py prints when the run has ended with epoch record `record`."""
        return ['final: epoch %d  %s %.4f' % (record['epoch'] + 1, cls.best_metric, record[cls.best_metric])]

    def __init__(self, cfg, engine):
        self.cfg, self.engine = cfg, engine
        self.steps_per_epoch = None       # set by prepare()
        self.samples_per_step = None      # images one worker trains on per step (for img/s)

    # ---------------------------------------------------------------- set-up
    # the engine's, for what drives an optimizer of its own (the stages of tasks.classification.stages)
    @property
    def amp(self):
        return self.engine.amp

    @property
    def step_batch(self):
        return self.engine.step_batch

    @property
    def ctx(self):
        return self.engine.ctx

    @classmethod
    def warnings(cls, cfg):
        """Texts of configuration warnings to log when the run starts."""
        return []

    @classmethod
    def locate_teacher(cls, cfg):
        """Check, without building a network, that the teacher of `cfg` (kt true) can be found as
        configured; the task's UserError naming what is missing. Tools that start several runs
        (tools.compare) call it for each before any of them trains."""

    @classmethod
    def tap_networks(cls, cfg):
        """(student, teacher): the networks whose taps `cfg`'s student_symbol and teacher_symbol name, as a
        run builds them, for tools that check tap names before any run trains (tools.compare); None for
        one this task cannot build without training data."""
        return None, None

    def prepare(self):
        """Read and check the data (and whatever else can be checked) before any network is built."""
        raise NotImplementedError

    def build(self):
        """Build the networks on `engine.ctx`; return {name: Parameter} the optimizer updates."""
        raise NotImplementedError

    def optimizer(self):
        """(optimizer name, {its parameters}) of the main training."""
        cfg = self.cfg
        return cfg.get('optimizer', 'sgd'), {'learning_rate': cfg.lr, 'wd': cfg.wd, 'momentum': cfg.momentum}

    def saved_blocks(self):
        """(network, extra block or None): the blocks a checkpoint holds."""
        raise NotImplementedError

    def check_checkpoint(self, meta, epoch):
        """Raise a UserError when checkpoint `epoch` (its metadata `meta`) is of another configuration."""

    def describe_checkpoint(self, meta):
        """A few words on a checkpoint's validation result, e.g. 'validation top-1 0.8123'."""
        return '%s %.4f' % (self.best_metric, meta.get(self.best_metric, 0))

    def start(self, resumed):
        """After the parameters are in place (built or resumed): hybridize, look at the teacher, run
        the stages that come before epoch 0."""

    def describe(self):
        """One log line: what trains on what."""
        return 'training %s' % self.name

    # ---------------------------------------------------------------- an epoch
    def set_epoch(self, epoch):
        """Called before each epoch (after the engine seeded it)."""

    def batches(self, epoch):
        """The batches of epoch `epoch` (the engine takes at most steps_per_epoch of them)."""
        raise NotImplementedError

    def forward(self, batch):
        """One step's forward, called under autograd.record: (losses, out), `losses` a list of one
        loss NDArray a device to back-propagate, `out` whatever after_step needs."""
        raise NotImplementedError

    def after_step(self, step, out):
        """After the optimizer step: accumulate the step's metrics (on the devices)."""

    def read(self):
        """{name: running mean since the epoch began}; raise core.errors.NonFiniteLoss for a NaN/Inf term."""
        return {}

    def progress_fields(self, stats):
        """{label: text} of the running means `read` gave, for the progress bar and the log line."""
        return dict((n, '%.4g' % v) for n, v in stats.items() if n != 'n')

    def evaluate(self):
        """{record key: value} of the validation after an epoch (the keys include best_metric)."""
        raise NotImplementedError

    def checkpoint_meta(self, record):
        """What a checkpoint's metadata holds besides the epoch's record."""
        return {}

    def epoch_line(self, epoch, stats, val):
        """The log line of a finished epoch (`epoch` 1-based)."""
        return 'epoch %d: %s' % (epoch, ' '.join('%s %.4f' % kv for kv in sorted(val.items())))
