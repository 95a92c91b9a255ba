"""The transfer plan of any task: for every method of kt_type its weight, its (student tap, teacher
tap) pairs and their layer weights, from the keys kt_type, kt_weight, teacher_symbol,
student_symbol and kt_layer_weight (the forms docs/configuration.md lists)."""
from .checks import ConfigError


# the names a logit method (kd, dkd, dist) may be given as its 'tap': the class scores themselves
LOGIT_NAMES = ('logits', 'fc1_output')


def _per_method(spec, methods, key, origin, example='stage3_pre', logits=LOGIT_NAMES):
    """Normalise teacher_symbol / student_symbol to {method: entry}; `example`: a tap of the task's
    networks for the messages; `logits`: the names of the class scores, which a logit method may be
    given."""
    from symbols.transfer import takes_taps
    if spec is None:
        return {}
    if isinstance(spec, dict):
        from symbols.transfer import canonical_method
        out = {}
        for k, v in spec.items():
            try:
                m = canonical_method(k)
            except ValueError as e:
                raise ConfigError('config key %r (%s): %s' % (key, origin, e))
            if m not in methods:
                raise ConfigError('config key %r (%s) gives taps for %r, which kt_type %r does not use'
                                  % (key, origin, k, '+'.join(methods)))
            out[m] = v
        return out
    if isinstance(spec, str):
        feature = [m for m in methods if takes_taps(m)]
        if len(feature) > 1:
            raise ConfigError('config key %r (%s) is one tap name but kt_type has %d feature methods %s: give '
                              'a list aligned with kt_type or a dict method -> taps' % (key, origin,
                                                                                        len(feature), feature))
        if not feature and spec not in logits:
            raise ConfigError('config key %r (%s) = %r names a tap, but kt_type %r has only logit methods, which take '
                              'the class scores: leave %s out (null)' % (key, origin, spec, '+'.join(methods), key))
        return {feature[0]: spec} if feature else {}
    if len(methods) == 1:
        # one method: the list is its layers ([a, b]), or a list aligned with kt_type ([[a, b]])
        if len(spec) == 1 and isinstance(spec[0], list):
            spec = spec[0]
        return {methods[0]: spec}
    if len(spec) != len(methods):
        raise ConfigError('config key %r (%s) has %d entries for the %d methods of kt_type %r: give one per '
                          'method, in order (null for the logit methods kd, dkd, dist), e.g. %s=%s' % (
                              key, origin, len(spec), len(methods), '+'.join(methods), key,
                              '[%s]' % ', '.join(example if takes_taps(m) else 'null' for m in methods)))
    return dict(zip(methods, spec))


def _tap_list(method, entry, key, origin):
    from symbols.transfer import METHODS
    if METHODS[method].inputs == 'fsp':                 # (a, b) tap pairs
        if entry is None:
            return []
        if isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry):
            entry = [entry]
        if not isinstance(entry, list) or not all(isinstance(p, list) and len(p) == 2 and
                                                  all(isinstance(x, str) for x in p) for p in entry):
            raise ConfigError('config key %r (%s): %s takes [a, b] tap pairs, e.g. [["stage1", "stage2"]]; '
                              'got %r' % (key, origin, method, entry))
        return [tuple(p) for p in entry]
    if entry is None:
        return []
    taps = [entry] if isinstance(entry, str) else list(entry)
    if not all(isinstance(t, str) for t in taps):
        from symbols.transfer import METHODS
        several = METHODS[method].inputs == 'layers'
        raise ConfigError('config key %r (%s): %s takes tap names (%s), with no null among them; got %r, e.g. %s=%s'
                          % (key, origin, method, 'two or more, one a stage' if several else 'one a pair', entry, key,
                             '[stage1_pre, stage2_pre, stage3_pre]' if several else 'stage3_pre'))
    return taps


def resolve_plan(cfg, origin='config', example='stage3_pre', logits=LOGIT_NAMES):
    """The transfer plan: a list of dicts, one per method, in kt_type order:
    {'method', 'weight', 'pairs': [(student_tap, teacher_tap), ...],
    'layer_weights': [...]}. For kd, pairs is empty (logits are used); for
    fsp a tap is an (a, b) tuple.

    A ConfigError that a new kt_type with the weights and taps of another causes (kt_type=at beside
    cfgs.py's kt_weight and taps for kd+mmd) also names, in the one message, every key to change with
    it and values that work: the fewest of kt_weight=null and a tap (`example`) for each feature
    method, a user fixing one key at a time would otherwise meet them one error at a time."""
    try:
        return _resolve_plan(cfg, origin, example, logits)
    except ConfigError as error:
        fix = _keys_that_go_with(cfg, origin, example, logits)
        if fix:
            raise ConfigError('%s. kt_type %r needs all of: %s' % (str(error).rstrip('.'), cfg.kt_type, fix))
        raise


def _keys_that_go_with(cfg, origin, example, logits):
    """'kt_weight=null teacher_symbol=... student_symbol=...': the two or more of these overrides that the
    plan of `cfg` needs to resolve (each one it needs: a key whose own value also resolves is left as it
    is), else ''. A feature method's tap is one the configuration already names on that side (else
    `example`); methods of other inputs (vectors, layers, pairs) get no advice: their taps are the
    network's to choose."""
    from symbols.transfer import METHODS, parse_kt_type, takes_taps
    try:
        methods = parse_kt_type(cfg.kt_type)
    except ValueError:
        return ''
    if any(METHODS[m].inputs not in ('logits', 'feature') for m in methods):
        return ''

    def named_tap(spec):                  # a tap the configuration already names on one side
        values = spec.values() if isinstance(spec, dict) else spec if isinstance(spec, list) else [spec]
        flat = [v for x in values for v in (x if isinstance(x, list) else [x])]
        return next((v for v in flat if isinstance(v, str) and v not in logits), example)

    def taps(spec):
        chosen = [named_tap(spec) if takes_taps(m) else None for m in methods]
        return chosen[0] if len(chosen) == 1 else chosen
    shown = lambda v: 'null' if v is None else '[%s]' % ', '.join(shown(x) for x in v) if isinstance(v, list) else v
    choices = [(k, v) for k, v in (('kt_weight', None), ('teacher_symbol', taps(cfg.teacher_symbol)),
                                   ('student_symbol', taps(cfg.student_symbol))) if cfg.get(k) != v]

    def resolves(keys):
        trial = type(cfg)(cfg)
        trial.update(keys)
        try:
            _resolve_plan(trial, origin, example, logits)
            return True
        except ConfigError:
            return False
    if not resolves(choices):
        return ''
    for choice in list(choices):          # (only the keys it needs)
        if resolves([c for c in choices if c != choice]):
            choices.remove(choice)
    return ' '.join('%s=%s' % (k, shown(v)) for k, v in choices) if len(choices) > 1 else ''


def _resolve_plan(cfg, origin, example, logits):
    from symbols.transfer import METHODS, canonical_method, parse_kt_type, default_weight, takes_taps
    methods = parse_kt_type(cfg.kt_type)
    t_spec = _per_method(cfg.teacher_symbol, methods, 'teacher_symbol', origin, example, logits)
    s_spec = _per_method(cfg.student_symbol, methods, 'student_symbol', origin, example, logits)
    weights = cfg.kt_weight
    if weights is None:
        weights = [default_weight(m, cfg) for m in methods]
    elif isinstance(weights, float):
        if len(methods) != 1:
            raise ConfigError('config key kt_weight (%s) is one number but kt_type %r has %d methods: give a '
                              'list of %d weights, or kt_weight=null for each method\'s default weight'
                              % (origin, cfg.kt_type, len(methods), len(methods)))
        weights = [weights]
    elif len(weights) != len(methods):
        raise ConfigError('config key kt_weight (%s) has %d weights for the %d methods of kt_type %r: give %d '
                          'weights in kt_type order, or kt_weight=null for each method\'s default weight'
                          % (origin, len(weights), len(methods), cfg.kt_type, len(methods)))
    layer_w = {}
    for k, v in (cfg.kt_layer_weight or {}).items():          # (a method's name, as for the taps' dicts)
        try:
            m = canonical_method(k)
        except ValueError as e:
            raise ConfigError('config key kt_layer_weight (%s): %s' % (origin, e))
        if m not in methods:
            raise ConfigError('config key kt_layer_weight (%s) gives layer weights for %r, which kt_type %r does not '
                              'use: give them for its methods (%s), or leave %r out'
                              % (origin, k, cfg.kt_type, ', '.join(methods), k))
        layer_w[m] = v
    plan = []
    for method, weight in zip(methods, weights):
        if not takes_taps(method):              # logit methods (kd, dkd, dist) read no taps
            for key, spec in (('teacher_symbol', t_spec), ('student_symbol', s_spec)):
                given = spec.get(method)
                if isinstance(given, str) and given not in logits:    # (a list: a config's taps of other methods)
                    raise ConfigError('config key %s (%s) gives %s the tap(s) %r, but it takes the class scores: '
                                      'give null at its place (e.g. %s=[null, %s] for kt_type=%s+...)'
                                      % (key, origin, method, given, key, example, method))
            pairs = []
        else:
            t_taps = _tap_list(method, t_spec.get(method), 'teacher_symbol', origin)
            s_taps = _tap_list(method, s_spec.get(method), 'student_symbol', origin)
            if not t_taps or not s_taps:
                which = 'teacher_symbol' if not t_taps else 'student_symbol'
                inputs = METHODS[method].inputs
                shown = ('[["stage1", "stage2"]]' if inputs == 'fsp' else '["stage1", "stage2", "stage3"]'
                         if inputs == 'layers' else '"pool"' if inputs == 'vector' and example == 'stage3_pre'
                         else '"%s"' % example)      # (a vector method reads classification's pooled feature)
                raise ConfigError('config key %s (%s) gives no taps for method %r of kt_type %r, e.g. %s = '
                                  '{%r: %s}' % (which, origin, method, cfg.kt_type, which, method, shown))
            if len(t_taps) != len(s_taps):
                raise ConfigError('method %r (%s): student_symbol lists %d taps and teacher_symbol %d; they '
                                  'pair up one to one' % (method, origin, len(s_taps), len(t_taps)))
            pairs = list(zip(s_taps, t_taps))
        lw = layer_w.get(method)
        if lw is None:
            lw = [1.0 / max(1, len(pairs))] * max(1, len(pairs))
        elif len(lw) != max(1, len(pairs)):
            raise ConfigError('config key kt_layer_weight (%s) has %d weights for the %d layer pairs of %r'
                              % (origin, len(lw), len(pairs), method))
        plan.append({'method': method, 'weight': float(weight), 'pairs': pairs, 'layer_weights': lw})
    return plan



__all__ = ['resolve_plan']
