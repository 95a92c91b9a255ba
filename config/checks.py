"""Value checks for config keys. Each check is a function `value -> value`
(possibly normalised) that raises `ConfigError` saying what is allowed.

A check that takes text (names, paths, tap names) has ``check.text = True``:
the loader then keeps a value such as ``model_prefix=123`` as the text the
user wrote instead of reading it as a number.
"""
import math
import os


from core.errors import ConfigError  # noqa: F401  (a bad configuration: names the key, what is allowed and
#                                                 what was given)


def _fail(what, value):
    raise ConfigError('must be %s; got %r' % (what, value))


def _allows(check, text):
    """Mark `check` with the values it allows, in a few words (the reference pages and --help show it)."""
    check.allowed = text
    return check


def _bounds(min, max, strict=False, max_strict=False, fmt='%g'):
    out = []
    if min is not None:
        out.append(('> ' if strict else '>= ') + fmt % min)
    if max is not None:
        out.append(('< ' if max_strict else '<= ') + fmt % max)
    return ' and '.join(out)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(min=None, max=None):
    def check(v):
        if not _is_int(v) or (min is not None and v < min) or (max is not None and v > max):
            rng = ' >= %d' % min if min is not None else ''
            rng += ' <= %d' % max if max is not None else ''
            _fail('an integer' + rng, v)
        return v
    check.what = 'integer'
    return _allows(check, ('whole number ' + _bounds(min, max, fmt='%d')).strip())


def number(min=None, max=None, strict=False, max_strict=False):
    def check(v):
        ok = _is_num(v) and math.isfinite(v)
        if ok and min is not None:
            ok = v > min if strict else v >= min
        if ok and max is not None:
            ok = v < max if max_strict else v <= max
        if not ok:
            rng = ''
            if min is not None:
                rng += (' > %g' if strict else ' >= %g') % min
            if max is not None:
                rng += (' < %g' if max_strict else ' <= %g') % max
            _fail('a finite number' + rng, v)
        return float(v)
    return _allows(check, ('number ' + _bounds(min, max, strict, max_strict)).strip())


def boolean():
    def check(v):
        if not isinstance(v, bool):
            _fail('True or False', v)
        return v
    return _allows(check, 'true or false')


def _text(check):
    check.text = True
    return check


def string():
    def check(v):
        if not isinstance(v, str) or not v:
            _fail('a non-empty string', v)
        return v
    return _allows(_text(check), 'text')


# the longest run name: a run's files add up to 40 characters to it (`.RUN-0001.tmp-PID.extra.params`,
# `replaced/RUN-<time>-N`), and a file name holds at most 255 bytes on the usual file systems
NAME_BYTES = 215


def name_like():
    def check(v):
        if not isinstance(v, str) or not v or '/' in v or '\\' in v or v.strip() != v:
            _fail('a run name without slashes or surrounding spaces (to keep the runs in another folder, set model_dir '
                  'and log_dir)', v)
        if len(v.encode('utf-8')) > NAME_BYTES:
            raise ConfigError('must be a run name of at most %d bytes (its files add up to 40 characters to it, and a '
                              'file name holds at most 255 bytes); got one of %d bytes (%s...): choose a shorter name'
                              % (NAME_BYTES, len(v.encode('utf-8')), v[:24]))
        return v
    return _allows(_text(check), 'a name without slashes')


def choice(*options):
    def check(v):
        if v not in options:
            _fail('one of %s' % ', '.join(repr(o) for o in options), v)
        return v
    return _allows(check, ' | '.join(str(o) for o in options))


def optional(inner):
    def check(v):
        if isinstance(v, bool) and not getattr(inner, 'allowed', '').startswith('true or false'):
            # (teacher_prefix=false, pretrained: no: YAML reads those words as booleans)
            raise ConfigError('must be %s; got %s: no value is written null (or ~), or leave the key out'
                              % (check.allowed, str(v).lower()))
        if isinstance(v, str) and v.strip().lower() in ('none', 'nil'):
            # (Python's None is no YAML word: 'none' would be read as a path or a name)
            raise ConfigError('must be %s; got %r, a string: no value is written null (or ~), or leave the key out'
                              % (check.allowed, v))
        return None if v is None else inner(v)
    check.text = getattr(inner, 'text', False)
    check.optional = True
    return _allows(check, '%s or null' % getattr(inner, 'allowed', 'a value'))


def list_of(inner):
    def check(v):
        if isinstance(v, tuple):
            v = list(v)
        if not isinstance(v, list):
            _fail('a list', v)
        out = []
        for i, item in enumerate(v):
            try:
                out.append(inner(item))
            except ConfigError as e:
                raise ConfigError('item %d %s' % (i, e))
        return out
    return _allows(check, 'list of %s' % getattr(inner, 'allowed', 'values'))


def device_ids():
    """GPU ids: a list ([0, 1]), one id (0) or the command-line style '0,1' ('' or [] is the CPU)."""
    def check(v):
        if _is_int(v):
            v = [v]
        elif isinstance(v, str):
            text = v.strip().strip('[]')
            try:
                v = [int(x) for x in text.split(',') if x.strip()]
            except ValueError:
                _fail("a list of GPU ids such as [0, 1] (or '0,1')", v)
        v = list_of(integer(min=0))(v)
        if len(set(v)) != len(v):
            _fail('a list of distinct GPU ids', v)
        return v
    return _allows(check, "GPU ids, e.g. [0, 1] or '0,1'; [] for the CPU")


def increasing_ints():
    def check(v):
        v = list_of(integer(min=1))(v)
        if any(b <= a for a, b in zip(v, v[1:])):
            _fail('a list of increasing epochs', v)
        return v
    return _allows(check, 'increasing epochs, e.g. [30, 60]')


def number_or_list():
    def check(v):
        if _is_num(v):
            return number(min=0)(v)
        return list_of(number(min=0))(v)
    return _allows(check, 'number >= 0, or a list of them')


def kt_type():
    def check(v):
        from symbols.transfer import parse_kt_type
        if not isinstance(v, str):
            _fail("a '+'-joined string of methods such as 'kd+mmd'", v)
        try:
            parse_kt_type(v)
        except ValueError as e:
            raise ConfigError(str(e))
        return v
    return _allows(check, "methods joined by +, e.g. kd+mmd")


def _tap_item(v):
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, str) or
                                            (isinstance(x, (list, tuple)) and all(isinstance(y, str) for y in x))
                                            for x in v):
        return [list(x) if isinstance(x, (list, tuple)) else x for x in v]
    _fail('a tap name, a list of tap names, or a list of [a, b] pairs (fsp)', v)


def tap_spec():
    def check(v):
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, dict):
            return {str(k): _tap_item(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [_tap_item(x) for x in v]
        _fail('a tap name, a list aligned with kt_type, or a dict method -> taps', v)
    return _allows(_text(check), 'tap name, list aligned with kt_type, or method -> taps')


def dict_of_lists():
    def check(v):
        if not isinstance(v, dict):
            _fail('a dict method -> list of layer weights', v)
        return {str(k): list_of(number(min=0))(x) for k, x in v.items()}
    return _allows(check, 'method -> list of numbers >= 0')


def once_each(overrides, parse):
    """(key, value) of each command-line override in order, parsed by `parse`;
    ConfigError when a key is given a second time (the first one is yielded before that)."""
    given = {}
    for text in overrides:
        key, value = parse(text)
        if key in given:
            raise ConfigError('key %r is given twice on the command line (%s and %s): keep one'
                              % (key, given[key], text))
        given[key] = text
        yield key, value


def _project_run(prefix):
    """Whether `prefix` (model_dir/RUN) has checkpoints of this project (RUN-NNNN.json, RUN-best.json)."""
    import os
    import re
    folder, name = os.path.split(prefix)
    try:
        return any(re.match(r'^%s-(\d{4}|best)\.json$' % re.escape(name), f) for f in os.listdir(folder or '.'))
    except OSError:
        return False


def resolved_source(source, prefix, network=None):
    """What a weights source of `auto` stands for (teacher_source, backbone_source), from what
    exists: 'legacy' when `prefix`-symbol.json exists (a Module checkpoint) and no checkpoint of this
    project has that name (an export written beside a run does not make it legacy), 'gluoncv' for a
    `prefix` that is a .params file, or no `prefix` and a `network` with gluoncv zoo weights,
    else 'project' (a run of this project); any other source as given."""
    import os
    if source != 'auto':
        return source
    if prefix and os.path.isfile(prefix + '-symbol.json') and not _project_run(prefix):
        return 'legacy'
    if prefix and prefix.endswith('.params'):
        import re
        m = re.match(r'^(.*)-(\d{4}|best)(\.extra)?\.params$', prefix)
        if m and os.path.isfile('%s-%s.json' % (m.group(1), m.group(2))):
            return 'project'                    # a checkpoint file of a run (the run's check names it)
        return 'gluoncv'
    if not prefix and network:
        from symbols.pretrained import ZOO_WEIGHTS
        from gluoncv.model_zoo import model_store
        if network in ZOO_WEIGHTS or network in model_store._model_sha1:
            return 'gluoncv'
    return 'project'


def same_run(prefix_a, prefix_b):
    """Whether run prefixes model_dir/RUN `prefix_a` and `prefix_b` name the same run: the same name in
    the same folder, through symbolic links too."""
    def where(p):
        folder, name = os.path.split(p)
        return os.path.realpath(folder or '.'), name
    return where(prefix_a) == where(prefix_b)
