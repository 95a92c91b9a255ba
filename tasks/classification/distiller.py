"""The student side of one training step as a single HybridBlock.

    DistillBlock(x, label, t_logits, t_feat_1, ..., margin_1, ...[, index])
        -> (total, logits, ce, term_1, ..., term_M, state_1, ...)

`total` (B,) = ce + sum_m f_m * weight_m * sum_p layer_weight_mp * loss_mp, the
per-sample objective (averaged over the batch by `Trainer.step`); `ce` and
each `term_m` (B,) are the unweighted per-sample values, for logging; f_m is
the method's warm-up factor (1 unless `set_epoch` applied a declared
warm-up). The whole step (student forward, connectors, losses) hybridizes
into one graph.

The plan comes from `config.resolve_plan`: for every method its weight and
its (student tap, teacher tap) pairs. What each loss is called with follows
from its registry declaration (`symbols.transfer.Method`), never from its
name:

    inputs 'logits'   loss(student logits, teacher logits)            once
    inputs 'feature'  loss(student map [-> connector], teacher map)   per pair
    inputs 'vector'   loss(student tap, teacher tap)                  per pair
    inputs 'fsp'      loss(s_a, s_b, t_a, t_b)                        per (a, b) pair
    inputs 'layers'   loss(s_1, ..., s_n, t_1, ..., t_n)              once, all pairs

followed by the OFD margin when `margin`, by the labels when `labels` and by the samples'
indices in the training set (B,) when `indices` (the block then takes `index` as its last
input).

A loss declared with `heads` (trainable parameters: CC's embeddings, VID's regressors,
ReviewKD's fusion modules) lives in `extras` beside the connectors instead of in this
block, so whatever trains, saves, restores and leaves out the connectors does the same for
it; `connect` builds its heads from the per-sample shapes of the inputs it will be called
with, before `extras` is initialised. Such a loss may return state outputs after its value
(`HeadLoss.n_states`: CRD's embeddings for its memory bank); they follow the terms in the
block's outputs, and `after_step` hands them to the loss's `update_state` after the optimizer
step.

Stages (`Method.stages`, e.g. FT's paraphraser, AB's initialisation): `set_stage(m, stage)`
makes the block compute method m's stage loss instead, `(stage_total,)` with
stage_total (B,) = sum_p layer_weight_p * stage.block(loss_p)(inputs_p) (student taps then
teacher taps when the stage trains the student, the teacher taps alone otherwise);
`stage_parameters` lists what it trains, `finish_stage` freezes what it must not change later.
"""
import mxnet as mx
from mxnet import gluon
from mxnet.gluon import HybridBlock

import symbols
from symbols.transfer import METHODS, Connector, PairingError, warmup_factor


def plan_taps(plan):
    """Unique (student taps, teacher taps) the plan needs, in first-use order."""
    s_taps, t_taps = [], []

    def add(lst, tap):
        for t in (tap if isinstance(tap, tuple) else (tap,)):
            if t not in lst:
                lst.append(t)
    for entry in plan:
        for s, t in entry['pairs']:
            add(s_taps, s)
            add(t_taps, t)
    return s_taps, t_taps


def loss_options(cfg, num_samples=None):
    """What the loss blocks' `make(options)`, the stages and the warm-ups read: every option the
    registered methods declare (symbols/transfer/registry.py), kt_warmup_epochs, and the number of
    training samples (the rows of a memory bank indexed by sample, e.g. CRD's)."""
    from symbols.transfer import method_options
    options = {o.name: cfg[o.name] for _, o in method_options()}
    options['kt_warmup_epochs'] = cfg.kt_warmup_epochs
    options['num_samples'] = num_samples
    return options


def plan_takes_indices(plan):
    """Whether a method of the plan takes the samples' indices (registry `indices`)."""
    return any(METHODS[e['method']].indices for e in plan)


class Extras(HybridBlock):
    """Training-only trainable blocks, saved beside the student (`.extra.params`) and left out
    of the export: connectors (named `<method>_<pair>`) and the loss blocks whose methods
    declare `heads` (named `loss_<method>_<call>`, as in `DistillBlock`)."""


class DistillBlock(HybridBlock):
    """See the module doc. `task_loss(logits, label)` -> (B,): the task's own loss (default the
    softmax cross-entropy of classification)."""

    def __init__(self, student, plan, loss_options, teacher_taps, task_loss=None, **kwargs):
        super(DistillBlock, self).__init__(**kwargs)
        self.plan = plan
        s_taps, t_taps = plan_taps(plan)
        if list(t_taps) != list(teacher_taps):
            raise ValueError('teacher taps %s differ from the plan\'s %s' % (teacher_taps, t_taps))
        self.s_index = {t: i for i, t in enumerate(s_taps)}
        self.t_index = {t: i for i, t in enumerate(t_taps)}
        self.terms = [e['method'] for e in plan]
        self.margin_slots = []             # (method index, pair index) of each margin input
        self.factors = [1.0] * len(plan)   # warm-up factor of each method (`set_epoch`)
        self.warmup_override = loss_options.get('kt_warmup_epochs')   # None: each method's own
        self.takes_indices = plan_takes_indices(plan)
        self.state_slots = []              # (method index, call index, state outputs) of the losses with state
        self._stage = None                 # (method index, Stage) while `set_stage` has one
        with self.name_scope():
            # None: the task runs the student itself and hands its logits and taps in (detection)
            self.student = symbols.with_taps(student, s_taps) if student is not None else None
            if student is not None:              # (a task that runs its student hands in its loss: `distil`)
                self.ce = task_loss if task_loss is not None else gluon.loss.SoftmaxCrossEntropyLoss()
            self.extras = Extras(prefix='extras_')
            for m, entry in enumerate(plan):
                spec = METHODS[entry['method']]
                for p in range(self._calls(m)):
                    if spec.heads:               # trainable: kept, trained and saved with the connectors
                        with self.extras.name_scope():
                            loss = spec.make(loss_options)
                        self.extras.register_child(loss, self._loss_name(m, p))
                    else:
                        self.register_child(spec.make(loss_options), self._loss_name(m, p))
                    if spec.margin:
                        self.margin_slots.append((m, p))
                    n_states = getattr(self._loss(m, p), 'n_states', 0)
                    if n_states:
                        self.state_slots.append((m, p, n_states))
        self.connected = set()             # (method index, pair index) with a connector in `extras`

    def _calls(self, m):
        """How many times method m's loss is called: once for 'logits' and 'layers', else per pair."""
        if METHODS[self.plan[m]['method']].inputs in ('logits', 'layers'):
            return 1
        return len(self.plan[m]['pairs'])

    def set_epoch(self, epoch):
        """Apply the declared warm-ups for the 0-based `epoch`: a method with
        `warmup_epochs` W > 0 gets weight x min((epoch + 1) / W, 1) (mdistiller's DKD:
        min(epoch / 20, 1) with epochs from 1); config key kt_warmup_epochs replaces W. Call it before each epoch's first step;
        the graph is rebuilt only when a factor changes. Returns the factors."""
        factors = [warmup_factor(e['method'], epoch, self.warmup_override) for e in self.plan]
        if factors != self.factors:
            self.factors = factors
            self._clear_cached_op()
        return list(factors)

    # ------------------------------------------------------------------ stages
    def stages(self):
        """[(method index, Stage)] the plan's methods declare, in plan order."""
        return [(m, stage) for m, e in enumerate(self.plan) for stage in METHODS[e['method']].stages]

    def set_stage(self, m=None, stage=None):
        """Make the forward compute method m's `stage` loss, `(stage_total,)`; no arguments: the
        training step again."""
        self._stage = None if stage is None else (m, stage)
        self._clear_cached_op()

    @property
    def staging(self):
        """Whether a stage is set (`set_stage`): the forward then gives `(stage_total,)`."""
        return self._stage is not None

    @property
    def current_stage(self):
        """(method index, Stage) of the stage set (`set_stage`), None in the training step."""
        return self._stage

    def stage_blocks(self, m, stage):
        """The stage's block of each loss call of method m."""
        return [stage.block(self._loss(m, p)) for p in range(self._calls(m))]

    def stage_parameters(self, m, stage):
        """{name: Parameter} the stage trains: its blocks' parameters and, when it trains the
        student, the student's parameters that method m's student taps depend on (not the
        classifier, nor layers past the taps); frozen ones (grad_req 'null') left out."""
        params = {}
        for block in self.stage_blocks(m, stage):
            params.update(block.collect_params())
        if stage.trains == 'student':
            params.update(self.student_tap_parameters(self.student_taps(m)))
        return {n: p for n, p in params.items() if p.grad_req != 'null'}

    def student_taps(self, m):
        """The student taps method m reads, in plan order (an FSP pair's two taps each)."""
        return [t for s, _ in self.plan[m]['pairs'] for t in (s if isinstance(s, tuple) else (s,))]

    def student_tap_parameters(self, taps):
        """{name: Parameter} of the student that its `taps` depend on (traced on its graph)."""
        outs = self.student(mx.sym.var('data'))
        used = mx.sym.Group([outs[self.s_index[t] + 1] for t in taps])
        names = set(used.list_arguments()) | set(used.list_auxiliary_states())
        return {n: p for n, p in self.student.collect_params().items() if n in names}

    def finish_stage(self, m, stage):
        """After `stage` of method m ran (or, on resume, had run): each loss's `finish_stage`."""
        for p in range(self._calls(m)):
            self._loss(m, p).finish_stage(stage.name)
        self._clear_cached_op()

    # ------------------------------------------------------------------ state outputs
    @property
    def n_terms(self):
        return len(self.plan)

    def after_step(self, outs, indices=None):
        """After the optimizer step: hand each loss with state outputs the states of every
        device (`outs`: the block's outputs per device; `indices`: the index input per device)."""
        if not self.state_slots:
            return
        k, rebuild = 3 + self.n_terms, False
        for m, p, n in self.state_slots:
            states = [list(out[k:k + n]) for out in outs]
            rebuild |= bool(self._loss(m, p).update_state(indices if METHODS[self.plan[m]['method']].indices else None,
                                                          states))
            k += n
        if rebuild:
            self._clear_cached_op()

    def _loss_name(self, m, p):
        return 'loss_%s_%d' % (self.plan[m]['method'], p)

    def _loss(self, m, p):
        """The loss block of call p of method m (in `extras` when the method declares heads)."""
        owner = self.extras if METHODS[self.plan[m]['method']].heads else self
        return owner._children[self._loss_name(m, p)]

    def _connector_name(self, m, p):
        return '%s_%d' % (self.plan[m]['method'], p)

    def connect(self, s_shapes, t_shapes):
        """Fit the plan to the taps' per-sample shapes ({tap: shape}): check that feature
        methods get feature maps, add a Connector where a method needs one, build the heads of
        the losses that declare them, and return [(method, teacher tap, channels)] of the margins
        (a method's declared teacher hook, OFD's) `hybrid_forward` takes, in input order. Initialise
        `extras` afterwards."""
        margins = []
        for m, entry in enumerate(self.plan):
            spec = METHODS[entry['method']]
            if spec.inputs == 'layers' and len(entry['pairs']) < 2:
                raise PairingError('%s relates consecutive layers: give it two or more taps per net, e.g. '
                                   '[stage1, stage2, stage3]; got %d' % (entry['method'], len(entry['pairs'])))
            for p, (s, t) in enumerate(entry['pairs']):
                if spec.inputs == 'feature' and (len(s_shapes[s]) != 3 or len(t_shapes[t]) != 3):
                    raise PairingError('%s pairs feature maps, but student tap %r has shape %s and teacher tap '
                                       '%r has shape %s' % (entry['method'], s, s_shapes[s], t, t_shapes[t]))
                if spec.inputs in ('vector', 'layers') and (len(s_shapes[s]) not in (1, 3) or
                                                            len(t_shapes[t]) not in (1, 3)):
                    raise PairingError('%s pairs vectors (B, D) or maps (B, C, H, W), but student tap %r has shape '
                                       '%s and teacher tap %r has shape %s'
                                       % (entry['method'], s, s_shapes[s], t, t_shapes[t]))
                if spec.spatial:
                    flat = [(role, tap, shape) for role, tap, shape in (('student', s, s_shapes[s]),
                                                                       ('teacher', t, t_shapes[t]))
                            if len(shape) == 3 and shape[1] * shape[2] == 1]
                    if flat:
                        role, tap, shape = flat[0]
                        raise PairingError('%s compares its taps across their spatial positions, and the %s tap %r is '
                                           '1x1 here (shape %s): its term would be 0; give it an earlier tap with a '
                                           'spatial map, or train at a larger image size'
                                           % (entry['method'], role, tap, tuple(shape)))
                if spec.connector:
                    self.add_connector(m, p, t_shapes[t][0], s_shapes[s][0])
                if spec.margin:
                    margins.append((entry['method'], t, t_shapes[t][0]))
            if spec.heads:
                for p, shapes in enumerate(self._call_shapes(m, s_shapes, t_shapes)):
                    self._loss(m, p).build(*shapes)
        return margins

    def _call_shapes(self, m, s_shapes, t_shapes):
        """[per-sample shapes of the inputs of each loss call of method m], as `hybrid_forward`
        passes them (a connected student map has the teacher's channels; labels and indices: ())."""
        spec = METHODS[self.plan[m]['method']]
        extra = [()] * (int(spec.labels) + int(spec.indices))
        return [list(shapes) + extra for shapes in self._tap_shapes(m, s_shapes, t_shapes)]

    def _tap_shapes(self, m, s_shapes, t_shapes):
        entry = self.plan[m]
        inputs = METHODS[entry['method']].inputs
        if inputs == 'logits':
            return [()]
        if inputs == 'layers':
            return [[s_shapes[s] for s, _ in entry['pairs']] + [t_shapes[t] for _, t in entry['pairs']]]
        calls = []
        for p, (s_tap, t_tap) in enumerate(entry['pairs']):
            if isinstance(s_tap, tuple):           # 'fsp': (a, b) taps per net
                calls.append([s_shapes[x] for x in s_tap] + [t_shapes[x] for x in t_tap])
                continue
            s = tuple(s_shapes[s_tap])
            if (m, p) in self.connected:
                s = (t_shapes[t_tap][0],) + s[1:]
            calls.append([s, t_shapes[t_tap]])
        return calls

    def add_connector(self, m, p, out_channels, in_channels):
        """A Connector for pair p of method m (FitNet, OFD), trained with the student."""
        with self.extras.name_scope():
            conn = Connector(out_channels, in_channels, prefix='%s%d_' % (self.plan[m]['method'], p))
        self.extras.register_child(conn, self._connector_name(m, p))
        self.connected.add((m, p))
        return conn

    def _student(self, x):
        outs = self.student(x)
        if not self.s_index:                       # no taps: a single output
            return (outs[0] if isinstance(outs, (list, tuple)) else outs), []
        return outs[0], [outs[i + 1] for i in range(len(self.s_index))]

    def hybrid_forward(self, F, x, label, t_logits, *rest):
        if self._stage is not None:
            return (self._stage_total(x, rest[:len(self.t_index)]),)
        logits, s_feats = self._student(x)
        return self.distil(logits, s_feats, self.ce(logits, label), label, t_logits, *rest)

    def distil(self, logits, s_feats, task_loss, label, t_logits, *rest):
        """(total, logits, task_loss, term_1, ..., term_M, states...) of the student's `logits` and taps
        `s_feats` (in `s_index` order), its own loss `task_loss` (B,), the teacher's `t_logits` and `rest`
        = (teacher taps, margins, [indices]) as `hybrid_forward` takes them; total = task_loss +
        sum_m factor_m weight_m term_m. A task that runs its student itself (detection) calls this."""
        n_t, n_m = len(self.t_index), len(self.margin_slots)
        t_feats, margins = rest[:n_t], rest[n_t:n_t + n_m]
        index = rest[n_t + n_m] if self.takes_indices else None
        total = task_loss
        terms, states = [], []
        margin_of = dict(zip(self.margin_slots, margins))
        for m, entry in enumerate(self.plan):
            spec = METHODS[entry['method']]
            term = None
            for p, (args, weight) in enumerate(self._loss_inputs(m, spec, logits, t_logits, s_feats, t_feats)):
                if (m, p) in margin_of:
                    args.append(margin_of[(m, p)])
                if spec.labels:
                    args.append(label)
                if spec.indices:
                    args.append(index)
                value = self._loss(m, p)(*args)
                if isinstance(value, (list, tuple)):       # a loss with state outputs (HeadLoss.n_states)
                    value, extra = value[0], value[1:]
                    states.extend(extra)
                term = value * weight if term is None else term + value * weight
            terms.append(term)
            total = total + (self.factors[m] * entry['weight']) * term
        return (total, logits, task_loss) + tuple(terms) + tuple(states)

    def _stage_total(self, x, t_feats):
        """sum over method m's loss calls of layer weight x the stage block's loss (B,)."""
        m, stage = self._stage
        entry = self.plan[m]
        spec = METHODS[entry['method']]
        if stage.trains == 'student':
            logits, s_feats = self._student(x)
            calls = self._loss_inputs(m, spec, logits, None, s_feats, t_feats)
        else:                                      # the teacher's taps alone; the student does not run
            teacher = [t_feats[self.t_index[t]] for _, t in entry['pairs']]
            if spec.inputs == 'layers':
                calls = [(teacher, sum(entry['layer_weights']))]
            else:
                calls = [([t], w) for t, w in zip(teacher, entry['layer_weights'])]
        total = None
        for block, (args, weight) in zip(self.stage_blocks(m, stage), calls):
            value = block(*args) * weight
            total = value if total is None else total + value
        return total

    def _loss_inputs(self, m, spec, logits, t_logits, s_feats, t_feats):
        """[(loss inputs, layer weight)] of method m, one item per loss call, from its declared inputs."""
        entry = self.plan[m]
        if spec.inputs == 'logits':
            return [([logits, t_logits], entry['layer_weights'][0])]
        if spec.inputs == 'layers':
            return [([s_feats[self.s_index[s]] for s, _ in entry['pairs']] +
                     [t_feats[self.t_index[t]] for _, t in entry['pairs']], sum(entry['layer_weights']))]
        calls = []
        for p, ((s_tap, t_tap), weight) in enumerate(zip(entry['pairs'], entry['layer_weights'])):
            if isinstance(s_tap, tuple):           # 'fsp': (a, b) taps per net
                args = [s_feats[self.s_index[x]] for x in s_tap] + [t_feats[self.t_index[x]] for x in t_tap]
            else:
                s = s_feats[self.s_index[s_tap]]
                if (m, p) in self.connected:
                    s = self.extras._children[self._connector_name(m, p)](s)
                args = [s, t_feats[self.t_index[t_tap]]]
            calls.append((args, weight))
        return calls
