"""The student side of one training step as a single HybridBlock.

    DistillBlock(x, label, t_logits, t_feat_1, ..., margin_1, ...)
        -> (total, logits, ce, term_1, ..., term_M)

`total` (B,) = ce + sum_m weight_m * sum_p layer_weight_mp * loss_mp, the
per-sample objective (averaged over the batch by `Trainer.step`); `ce` and
each `term_m` (B,) are the unweighted per-sample values, for logging. The
whole step (student forward, connectors, losses) hybridizes into one graph.

The plan comes from `config.resolve_plan`: for every method its weight and
its (student tap, teacher tap) pairs.
"""
from mxnet import gluon
from mxnet.gluon import HybridBlock

import symbols
from symbols.transfer import METHODS, Connector, PairingError


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


class Extras(HybridBlock):
    """Training-only trainable blocks (connectors), saved beside the student."""


class DistillBlock(HybridBlock):
    def __init__(self, student, plan, loss_options, teacher_taps, **kwargs):
        super(DistillBlock, self).__init__(**kwargs)
        self.plan = plan
        s_taps, t_taps = plan_taps(plan)
        if list(t_taps) != list(teacher_taps):
            raise ValueError('teacher taps %s differ from the plan\'s %s' % (teacher_taps, t_taps))
        self.s_index = {t: i for i, t in enumerate(s_taps)}
        self.t_index = {t: i for i, t in enumerate(t_taps)}
        self.terms = [e['method'] for e in plan]
        self.margin_slots = []             # (method index, pair index) of each margin input
        with self.name_scope():
            self.student = symbols.with_taps(student, s_taps)
            self.ce = gluon.loss.SoftmaxCrossEntropyLoss()
            self.extras = Extras(prefix='extras_')
            for m, entry in enumerate(plan):
                spec = METHODS[entry['method']]
                for p, _ in enumerate(entry['pairs'] or [None]):
                    self.register_child(spec.make(loss_options), self._loss_name(m, p))
                    if spec.margin:
                        self.margin_slots.append((m, p))
        self.connected = set()             # (method index, pair index) with a connector in `extras`

    def _loss_name(self, m, p):
        return 'loss_%s_%d' % (self.plan[m]['method'], p)

    def _connector_name(self, m, p):
        return '%s_%d' % (self.plan[m]['method'], p)

    def connect(self, s_shapes, t_shapes):
        """Fit the plan to the taps' per-sample shapes ({tap: shape}): check that feature
        methods get feature maps, add a Connector where a method needs one, and return
        [(teacher tap, channels)] of the OFD margins `hybrid_forward` takes, in input order."""
        margins = []
        for m, entry in enumerate(self.plan):
            spec = METHODS[entry['method']]
            for p, (s, t) in enumerate(entry['pairs']):
                if spec.inputs == 'feature' and (len(s_shapes[s]) != 3 or len(t_shapes[t]) != 3):
                    raise PairingError('%s pairs feature maps, but student tap %r has shape %s and teacher tap '
                                       '%r has shape %s' % (entry['method'], s, s_shapes[s], t, t_shapes[t]))
                if spec.connector:
                    self.add_connector(m, p, t_shapes[t][0], s_shapes[s][0])
                if spec.margin:
                    margins.append((t, t_shapes[t][0]))
        return margins

    def add_connector(self, m, p, out_channels, in_channels):
        """A Connector for pair p of method m (FitNet, OFD), trained with the student."""
        with self.extras.name_scope():
            conn = Connector(out_channels, in_channels, prefix='%s%d_' % (self.plan[m]['method'], p))
        self.extras.register_child(conn, self._connector_name(m, p))
        self.connected.add((m, p))
        return conn

    def hybrid_forward(self, F, x, label, t_logits, *rest):
        n_t = len(self.t_index)
        t_feats, margins = rest[:n_t], rest[n_t:]
        outs = self.student(x)
        if not self.s_index:                       # no taps: a single output
            logits, s_feats = (outs[0] if isinstance(outs, (list, tuple)) else outs), []
        else:
            logits, s_feats = outs[0], [outs[i + 1] for i in range(len(self.s_index))]
        ce = self.ce(logits, label)
        total = ce
        terms = []
        margin_of = dict(zip(self.margin_slots, margins))
        for m, entry in enumerate(self.plan):
            method = entry['method']
            kind = METHODS[method].inputs
            term = None
            for p, weight in enumerate(entry['layer_weights']):
                loss = self._children[self._loss_name(m, p)]
                if kind == 'logits':
                    value = loss(logits, t_logits)
                else:
                    s_tap, t_tap = entry['pairs'][p]
                    if kind == 'fsp':
                        value = loss(s_feats[self.s_index[s_tap[0]]], s_feats[self.s_index[s_tap[1]]],
                                     t_feats[self.t_index[t_tap[0]]], t_feats[self.t_index[t_tap[1]]])
                    else:
                        s = s_feats[self.s_index[s_tap]]
                        if (m, p) in self.connected:
                            s = self.extras._children[self._connector_name(m, p)](s)
                        t = t_feats[self.t_index[t_tap]]
                        value = loss(s, t, margin_of[(m, p)]) if (m, p) in margin_of else loss(s, t)
                term = value * weight if term is None else term + value * weight
            terms.append(term)
            total = total + entry['weight'] * term
        return (total, logits, ce) + tuple(terms)
