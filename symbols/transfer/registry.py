"""The registry of transfer methods: one `Method` a method, declaring by name everything it needs.

A method is one loss block (symbols/transfer/<family>.py) plus one `register(Method(...))` that
declares:

- `name`, `paper`: the registry key (kt_type) and where the method comes from;
- `loss(options)`: its loss block, from a dict that holds every option the method declares;
  `make(options)` fills in the defaults of the options not given (`make({})`: the defaults);
- `inputs`: what the loss block is called with (`INPUTS`);
- `weight`: the default kt_weight, a number or `weight(options)` (NST's depends on its kernel);
- `options`: its typed config keys (`Option`: name, default, type and bounds, one line of meaning);
  config/schema.py and the docs read them from here;
- `connector`: the student tap goes through a Connector (1x1 conv + BN) to the teacher's channels;
- `margin(teacher, tap)`: a teacher hook: the per-channel margin (C,) the loss also takes for each
  teacher tap, computed from the teacher network once before training (OFD's, from the BatchNorm
  that produces the tap);
- `labels`: the loss also takes the ground-truth labels (B,), as its last input;
- `warmup_epochs`: 0, or W > 0 to scale the method's weight by min((epoch + 1) / W, 1) in the 0-based
  epoch (mdistiller's min(epoch / W, 1) with epochs from 1); config key kt_warmup_epochs replaces W;
- `relational`: the loss is batch-relational (its per-sample values are shares of a batch loss; under
  several devices each device's batch is its own);
- `heads`: the loss block owns trainable parameters (a `HeadLoss`), kept in the distillation block's
  `extras` (trained with the student, saved in `.extra.params`, restored on resume, not exported),
  built from the per-sample shapes of its inputs before initialisation;
- `indices`: the loss also takes each sample's index in the training set, (B,), after the labels
  (CRD's memory bank; the options then hold `num_samples`); state outputs (`HeadLoss.n_states`) are
  handed to its `update_state` after every optimizer step;
- `spatial`: the loss compares what each tap holds across its spatial positions (NST's selectivity,
  AT's attention map, CWD's per-channel softmax): a 1x1 tap leaves it nothing to compare (a term of
  0), which the distillation block refuses;
- `stages`: `Stage`s run before epoch 0 in plan order (FT's paraphraser, AB's initialisation),
  skipped on resume, each followed by the loss block's `finish_stage(name)`; the options
  `<stage>_epochs` and `<stage>_lr` (declared with the method) override a stage's epochs and lr.
"""
from collections import OrderedDict

INPUTS = OrderedDict([
    ('logits', 'student and teacher logits (B, K); the method takes no taps'),
    ('feature', 'per tap pair: the student and the teacher feature map (B, C, H, W)'),
    ('vector', 'per tap pair: the student and the teacher tap, each a vector (B, D) or a map '
               '(B, C, H, W) that the loss pools globally'),
    ('tensor', 'per tap pair: the student and the teacher tap, each of any per-sample shape (a map, or a '
               'vector: a detector\'s RoI class scores), which the loss flattens'),
    ('fsp', 'per tap pair of (a, b) taps: student a, student b, teacher a, teacher b maps'),
    ('layers', 'all of the method\'s tap pairs in one call, in order: student taps 1..n, then teacher '
               'taps 1..n (n >= 2), maps (B, C, H, W) or, for a loss that takes them, vectors (B, D); its '
               'term is scaled by the sum of the layer weights'),
])
TYPES = ('float', 'int', 'bool', 'choice')


class Option(object):
    """A config key of a method: `name`, `default`, `type` ('float', 'int', 'bool' or 'choice' of
    `choices`), bounds `min`/`max` (`strict`: min excluded; `max_strict`: max excluded), `optional`
    (None allowed: the method's own default then), and `doc`, one line of meaning."""

    def __init__(self, name, default, doc, type='float', min=None, max=None, strict=False, max_strict=False,
                 choices=(), optional=False):
        if type not in TYPES:
            raise ValueError('option %s: type %r is not one of %s' % (name, type, ', '.join(TYPES)))
        self.name, self.default, self.doc, self.type = name, default, doc, type
        self.min, self.max, self.strict, self.max_strict = min, max, strict, max_strict
        self.choices, self.optional = tuple(choices), optional

    def __repr__(self):
        return 'Option(%r, default=%r)' % (self.name, self.default)


class Method(object):
    """One registered transfer method (see the module docstring for every field)."""

    def __init__(self, name, inputs, weight, loss, paper, options=(), connector=False, margin=None, labels=False,
                 warmup_epochs=0, relational=False, heads=False, indices=False, stages=(), spatial=False):
        if inputs not in INPUTS:
            raise ValueError('method %s: inputs %r is not one of %s' % (name, inputs, ', '.join(INPUTS)))
        self.name, self.inputs, self.weight, self.loss, self.paper = name, inputs, weight, loss, paper
        self.options = tuple(options)
        self.connector, self.margin, self.labels = connector, margin, labels
        self.warmup_epochs, self.relational, self.heads = warmup_epochs, relational, heads
        self.indices, self.stages, self.spatial = indices, tuple(stages), spatial
        declared = {o.name for o in self.options}
        for stage in self.stages:
            missing = {stage.name + '_epochs', stage.name + '_lr'} - declared
            if missing:
                raise ValueError('method %s: stage %s needs the options %s' % (name, stage.name, sorted(missing)))

    def defaults(self):
        """{option: default} of every option the method declares."""
        return OrderedDict((o.name, o.default) for o in self.options)

    def make(self, options):
        """The loss block for the config's (or any) options dict: the method's options not given in
        `options` take their defaults; other keys (num_samples, ...) pass through."""
        full = self.defaults()
        full.update(options)
        return self.loss(full)

    def default_weight(self, options=None):
        """The default kt_weight of the method under `options` (defaults where not given)."""
        if callable(self.weight):
            full = self.defaults()
            full.update(options or {})
            return float(self.weight(full))
        return self.weight

    def __repr__(self):
        return 'Method(%r)' % self.name


METHODS = OrderedDict()
ALIASES = {'nst': 'mmd'}


def register(method):
    """Add `method` to METHODS (a name may be registered once; an option name belongs to one
    method); returns it."""
    if method.name in METHODS:
        raise ValueError('method %r is registered already' % method.name)
    owners = {o.name: m.name for m in METHODS.values() for o in m.options}
    for o in method.options:
        if o.name in owners:
            raise ValueError('option %r of method %r is already an option of %r' % (o.name, method.name,
                                                                                  owners[o.name]))
    METHODS[method.name] = method
    return method


def method_options():
    """[(method name, Option)] of every registered method, in registry order."""
    return [(m.name, o) for m in METHODS.values() for o in m.options]


def canonical_method(name):
    """'nst' -> 'mmd'; unknown names raise ValueError listing the methods."""
    name = ALIASES.get(name, name)
    if name not in METHODS:
        raise ValueError('unknown transfer method %r; available: %s (nst is an alias of mmd)'
                         % (name, ', '.join(METHODS)))
    return name


def parse_kt_type(kt_type):
    """'kd+mmd' -> ['kd', 'mmd'] (aliases resolved, duplicates rejected)."""
    parts = [p.strip() for p in str(kt_type).split('+')]
    if not any(parts):
        raise ValueError('kt_type is empty; use e.g. "kd", "mmd" or "kd+mmd"')
    if not all(parts):
        raise ValueError('kt_type %r has an empty method name (a "+" at an end, or two together): join method names '
                         'with single "+", e.g. %r' % (kt_type, '+'.join(p for p in parts if p)))
    names = [canonical_method(p) for p in parts]
    if len(set(names)) != len(names):
        raise ValueError('kt_type %r names a method twice' % kt_type)
    return names


def default_weight(method, options=None):
    """The default weight of `method` under the config's `options` (a dict or Config; the method's
    option defaults where absent): the paper's (NST 50 for linear/poly, 100 for Gaussian), else the
    peers'."""
    m = METHODS[canonical_method(method)]
    given = {o.name: options[o.name] for o in m.options if options is not None and o.name in options}
    return m.default_weight(given)


def takes_taps(method):
    """Whether `method` reads network taps (everything but the logit methods)."""
    return METHODS[canonical_method(method)].inputs != 'logits'


def warmup_epochs(method, override=None):
    """The warm-up of `method` in epochs: 0 for a method that declares none; for one that
    declares W > 0, `override` (config key kt_warmup_epochs) when given, else W."""
    w = METHODS[canonical_method(method)].warmup_epochs
    return w if not w or override is None else override


def warmup_factor(method, epoch, override=None):
    """The factor on `method`'s weight in the 0-based `epoch`: min((epoch + 1) / W, 1) with W its
    warm-up (`warmup_epochs`), 1 without one."""
    w = warmup_epochs(method, override)
    return 1.0 if not w else min((epoch + 1) / float(w), 1.0)
