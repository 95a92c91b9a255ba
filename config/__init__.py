"""Configuration: load `config/cfgs.py` or a preset, apply `key=value`
overrides, validate everything before any work starts.

    cfg = load_config()                                  # config/cfgs.py
    cfg = load_config('config/presets/cifar10_kd_nst.yaml', ['lr=0.05'])

A config file is either a Python file of plain assignments (like the
original `cfgs.py`) or a YAML mapping (read with `yaml.safe_load`). Keys not
set keep the defaults of `config/schema.py`. The result is a `Config`: a dict
with attribute access, validated, with derived values filled in
(`begin_epoch`, `model_load_prefix`) and the transfer plan resolved
(`cfg.plan`, see `resolve_plan`).
"""
import difflib
import importlib
import importlib.util
import os
import re
import runpy

from . import preset_files
from .checks import ConfigError, once_each
from .schema import FIELDS

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CFG = os.path.join(HERE, 'cfgs.py')
PRESET_DIR = preset_files.PRESET_DIR
NUMBER = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$')


class Config(dict):
    """A validated configuration: `cfg.lr` or `cfg['lr']`."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key)

    @property
    def num_devices(self):
        return max(1, len(self['gpu_list']))

    @property
    def global_batch_size(self):
        """batch_size per device times the device count (one worker)."""
        return self['batch_size'] * self.num_devices


def read_file(path, _seen=(), chain=None, origins=None, texts=None):
    """The key/value pairs a config file sets (no validation), and its path.

    `path` is a file, else a preset name (config/presets/) or ``cfgs.py`` (config/cfgs.py).
    A YAML file may name another file with ``base: FILE`` (relative to its own folder, else a
    preset or ``cfgs.py``): the base's values come first, the file's own override them. A file
    that sets ``model_load_prefix`` equal to its ``model_prefix`` (the original's
    ``model_load_prefix = model_prefix``) leaves it unset, so that it follows model_prefix wherever
    that is set later. `chain`, a list, gets the path of every file read, the file's own first;
    `origins`, a dict, gets for each key the path of the file whose value it keeps (a base's key
    that the file does not set is the base's); `texts`, a dict, the YAML values' texts as written
    (`_scalar_texts`). A ``.py`` file names its base as ``base = 'cfgs.py'``.
    """
    path = _find_file(path)
    if chain is not None:
        chain.append(path)
    if path.endswith(('.yaml', '.yml')):
        own_texts = {}
        values = _read_yaml(path, own_texts)
    elif path.endswith('.py'):
        own_texts = {}
        values = {k: _plain(v) for k, v in _run_python(path).items() if not k.startswith('_') and
                  not callable(v) and type(v).__name__ != 'module'}
        if not values:
            raise ConfigError('config file %s sets no key (it is empty); add assignments such as lr = 0.1, or '
                              'leave out --cfg to use config/cfgs.py' % path)
    else:
        raise ConfigError('config file %s: use a .py or .yaml file' % path)
    base = values.pop('base', None)
    merged = {}
    if base is not None:
        base_path = os.path.join(os.path.dirname(path), str(base))
        if not os.path.isfile(base_path):
            base_path = str(base)                # a preset name, or cfgs.py
        if os.path.abspath(_find_file(base_path, path)) in _seen + (os.path.abspath(path),):
            raise ConfigError('config file %s: its base chain loops back to %s' % (path, base_path))
        merged, _ = read_file(base_path, _seen + (os.path.abspath(path),), chain, origins, texts)
    if origins is not None:
        origins.update((k, path) for k in values)              # the file's own keys (a base's were set above)
    if texts is not None:
        for k in values:
            texts.pop(k, None)
        texts.update((k, t) for k, t in own_texts.items() if k in values)
    merged.update(values)
    return _follows(merged), path


def _plain(value):
    """A .py config's value as plain Python: numpy scalars and arrays (``lr = np.float32(0.05)``)
    as the numbers and lists they hold (a float as written: 0.05, not 0.0500000007), inside lists,
    tuples and dicts too."""
    if type(value).__module__ == 'numpy' and hasattr(value, 'tolist'):
        if getattr(value, 'ndim', 0):
            return [_plain(v) for v in value]
        if value.dtype.kind == 'f':
            return float(str(value))
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _find_file(path, base_of=None):
    """The config file `path` names: the file itself, else a preset, or config/cfgs.py for cfgs.py. A
    preset's bare name means the preset also where the folder the command runs in holds a folder, or a
    file that is no config file (.py, .yaml), of that name."""
    preset = preset_files.shadowed(path)
    if preset:
        return preset
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith(('.yaml', '.yml', '.py')) and not f.startswith('_'))
        raise ConfigError('config file %s is a folder: give a file in it%s' % (
            path, ', e.g. %s' % os.path.join(path, inside[0]) if inside else ' (it holds no .yaml or .py file)'))
    if path in ('cfgs', 'cfgs.py'):
        return DEFAULT_CFG
    # a preset of any task (a file's `base:` may name one; its own `task:` then says which)
    found = preset_files.find(path)
    if found is None:
        raise preset_files.unknown(path, 'config file %s: base' % base_of if base_of else 'config file')
    return found


def _follows(values):
    """`values` without a model_load_prefix that only repeats its model_prefix."""
    if values.get('model_load_prefix') is not None and values.get('model_load_prefix') == values.get('model_prefix'):
        values = dict(values)
        del values['model_load_prefix']
    return values


def describe_source(chain, listing='config/schema.py', sets_cfgs=False):
    """Where a configuration's values come from, for the log: the files read (`read_file`'s
    chain) over the defaults of the schema (`listing`, where its keys are); `sets_cfgs`: the files
    set every key config/cfgs.py sets (a .py config that does ``from config.cfgs import *``)."""
    if not chain:
        return 'the defaults of %s' % listing
    names = [os.path.relpath(p) if not os.path.relpath(p).startswith('..') else p for p in chain]
    text = names[0] + ''.join(' (base: %s)' % n for n in names[1:])
    if listing != 'config/schema.py' or sets_cfgs or os.path.abspath(chain[-1]) == os.path.abspath(DEFAULT_CFG) or \
            os.path.dirname(os.path.abspath(chain[0])) == os.path.abspath(PRESET_DIR):
        return text + ', keys it does not set from %s' % listing
    return (text + '; keys it does not set have the defaults of config/schema.py, not the values of '
            'config/cfgs.py (add `base: cfgs.py` to the file to start from those)')


class _UniqueKeyLoader(object):
    """yaml.SafeLoader that refuses a key given twice in one mapping and a key that is a list or
    mapping (built on first use). Merge keys (``<<: *defaults``) merge as YAML says: a key of the
    mapping itself then overrides the merged one (that is not "set twice")."""
    cls = None

    @classmethod
    def get(cls):
        if cls.cls is None:
            import yaml

            class Loader(yaml.SafeLoader):
                def construct_mapping(self, node, deep=False):
                    seen = {}
                    for key_node, _ in node.value:
                        if key_node.tag == 'tag:yaml.org,2002:merge':
                            continue
                        key = self.construct_object(key_node, deep=deep)
                        try:
                            hash(key)
                        except TypeError:
                            raise ConfigError('line %d: a key is a list or mapping; keys are names such as lr'
                                              % (key_node.start_mark.line + 1))
                        if key in seen:
                            raise ConfigError('key %r is set twice (lines %d and %d); keep one'
                                              % (key, seen[key], key_node.start_mark.line + 1))
                        seen[key] = key_node.start_mark.line + 1
                    return super(Loader, self).construct_mapping(node, deep)
            cls.cls = Loader
        return cls.cls


def _scalar_texts(node):
    """{key: the text as written} of a YAML mapping node's plain (unquoted) scalar values: what a
    key that takes text keeps (``model_prefix: off`` is the name 'off', not false; `coerce`)."""
    import yaml
    texts = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and isinstance(value_node, yaml.ScalarNode) and \
                    value_node.style is None and value_node.tag != 'tag:yaml.org,2002:null':
                texts[key_node.value] = value_node.value
    return texts


def yaml_problem(error):
    """One line for a YAML parser error: where (line and column, counted from 1) and what, e.g.
    "line 2, column 12: expected ',' or ']', but got ':' (while parsing a flow sequence)"."""
    mark = getattr(error, 'problem_mark', None)
    problem = getattr(error, 'problem', None)
    if mark is None or not problem:
        return ' '.join(str(error).split())
    context, where = getattr(error, 'context', None), getattr(error, 'context_mark', None)
    if context and where is not None:
        context += ' that starts at line %d, column %d' % (where.line + 1, where.column + 1)
    return 'line %d, column %d: %s%s' % (mark.line + 1, mark.column + 1, problem,
                                         ' (%s)' % context if context else '')


def _read_yaml(path, texts=None):
    """The mapping a YAML config file holds; `texts`, a dict, gets its values' texts as written
    (`_scalar_texts`)."""
    import yaml
    try:
        with open(path) as f:
            loader = _UniqueKeyLoader.get()(f)
            try:
                node = loader.get_single_node()
                values = None if node is None else loader.construct_document(node)
            finally:
                loader.dispose()
    except ConfigError as e:
        raise ConfigError('config file %s: %s' % (path, e))
    except yaml.YAMLError as e:
        raise ConfigError('config file %s is not valid YAML: %s' % (path, yaml_problem(e)))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError('config file %s cannot be read (%s)' % (path, e))
    if values is None:
        raise ConfigError('config file %s sets no key (it is empty); add lines such as "lr: 0.1", or leave out '
                          '--cfg to use config/cfgs.py' % path)
    if not isinstance(values, dict):
        raise ConfigError('config file %s must hold a mapping of key: value' % path)
    for key_node, _ in node.value:          # (a list or mapping as a key was refused by the loader)
        if key_node.tag not in ('tag:yaml.org,2002:str', 'tag:yaml.org,2002:merge'):
            kind = key_node.tag.rsplit(':', 1)[-1]
            raise ConfigError('config file %s line %d: key %s is not a name (YAML reads it as %s); keys are names '
                              'such as lr' % (path, key_node.start_mark.line + 1, key_node.value or "''",
                                              {'int': 'a number', 'float': 'a number', 'bool': 'true or false',
                                               'null': 'null', 'timestamp': 'a date'}.get(kind, 'a ' + kind)))
    if texts is not None:
        texts.update(_scalar_texts(node))
    return dict(values)


_RUN_CACHE = {}


def _run_python(path):
    """The namespace a .py config file leaves; ConfigError (with the line) if it does not run. A file
    runs once a process (a command reads its config more than once: a config that prints, or draws
    a random seed, does it once), again if it changed."""
    import traceback
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key in _RUN_CACHE:
        return dict(_RUN_CACHE[key])
    try:
        _RUN_CACHE[key] = runpy.run_path(path)
        return dict(_RUN_CACHE[key])
    except SyntaxError as e:
        raise ConfigError('config file %s has a Python syntax error at line %s: %s; fix that line'
                          % (path, e.lineno, e.msg))
    except (Exception, SystemExit) as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.abspath(f.filename) == os.path.abspath(path)]
        line = ' at line %d' % frames[-1].lineno if frames else ''
        raise ConfigError('config file %s raised %s%s: %s; a config file holds plain assignments such as '
                          'lr = 0.1' % (path, type(e).__name__, line, e))


def list_presets():
    """The names of the classification presets."""
    return preset_files.names('classification')


def given_file(path):
    """`path` as given by --cfg (a str or a path object): None if not given; ConfigError for an empty one (an
    unset shell variable, ``--cfg "$CFG"``), which would otherwise mean the default file without a word, or
    for one that is no file name."""
    if path is not None and not isinstance(path, str):
        if not isinstance(path, os.PathLike):
            raise ConfigError('the config must be a file name or a preset name (a str or a path), not %s %r'
                              % (type(path).__name__, path))
        path = os.fspath(path)
    if path is not None and not str(path).strip():
        raise ConfigError('--cfg is empty (%r; a shell variable that is not set?): name a config file or preset, or '
                          'leave --cfg out for config/cfgs.py' % path)
    return path


def given_overrides(overrides):
    """`overrides` as a list of 'key=value' strings; ConfigError for one string (a list of its characters
    otherwise) or an item that is no string."""
    if isinstance(overrides, str):
        raise ConfigError('overrides are a list of \'key=value\' strings; got the string %r: give [%r]'
                          % (overrides, overrides))
    overrides = list(overrides or ())
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError('override %r is no \'key=value\' string: give e.g. \'lr=0.05\'' % (item,))
    return overrides


def task_of(path=None, overrides=()):
    """The task (config key `task`) that config file or preset `path` with `overrides` trains:
    a `task=` override, else the file's own `task` (its `base:` files included; the voc_* presets
    are detection's), else classification. ConfigError for a file that cannot be read or an
    unknown task."""
    from .schema import TASK_NAMES
    task = None
    path = given_file(path)
    overrides = given_overrides(overrides)
    for text in overrides:
        if text.split('=', 1)[0].strip() == 'task':
            task = parse_override(text)[1]
            where = 'the command line'
    own = None
    if path:
        if preset_files.task_of_preset(path) in ('detection', 'segmentation'):
            own = preset_files.task_of_preset(path)
        elif task is None or os.path.isfile(path):   # (a folder given with task=...: that task's loader names it)
            own = read_file(path)[0].get('task')
    if task is not None and own is not None and own != task:
        raise ConfigError('config file %s is a %s config (task: %s) and the command line says task=%s: leave task= '
                          'out (a file of the task %s trains it)' % (path, own, own, task, task))
    if task is None and own is not None:
        task, where = own, path
    if task is None:
        return 'classification'
    if task not in TASK_NAMES:
        raise ConfigError('config key task (%s) is %r: train.py trains %s' % (where, task, ' or '.join(TASK_NAMES)))
    return task


def parse_override(text, fields=None):
    """'key=value' -> (key, value); value parsed as YAML (numbers, lists, true/null), then read as
    a config file's value is (`coerce`): the same text means the same in a file and here."""
    import yaml
    if '=' not in text:
        raise ConfigError('override %r must be key=value, e.g. lr=0.05 or gpu_list=[0,1]' % text)
    key, raw = text.split('=', 1)
    key = key.strip()
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader.get()) if raw.strip() else ''
    except (yaml.YAMLError, ConfigError) as e:
        if raw.strip().startswith(('[', '{')):
            raise ConfigError('override %s: %s opens a list or mapping that is not closed (%s): close it, and quote '
                              'the whole argument for the shell, e.g. \'gpu_list=[0, 1]\''
                              % (text, raw.strip(), str(e).splitlines()[0]))
        value = raw
    return key, coerce(key, value, raw, fields)


def _numbers(value):
    """Strings that spell a number become floats, inside lists and dicts too (YAML 1.1 reads 1e-5
    without a dot as a string)."""
    if isinstance(value, str) and NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def coerce(key, value, raw=None, fields=None):
    """A value of `key` (of the schema `fields`, default classification's) as the user meant it: a
    number where the key takes numbers (``lr: 1e-3``), the text as written where it takes text
    (``model_prefix=123``, ``model_prefix: 007``)."""
    field = (FIELDS if fields is None else fields).get(key)
    if field is None:
        return value
    if getattr(field.check, 'text', False):
        if isinstance(value, bool) and getattr(field.check, 'optional', False):
            return value                    # (teacher_prefix=false means no teacher: the check says to write null)
        if raw is not None and value is not None and not isinstance(value, (str, list, dict)):
            return raw.strip()              # (model_prefix=off, =2026-01-01, =12:30: the name as written)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value
    return _numbers(value)


# names other toolkits use for a key, for the "did you mean" of an unknown key
SYNONYMS = {'learning_rate': 'lr', 'weight_decay': 'wd', 'epochs': 'num_epoch', 'num_epochs': 'num_epoch',
            'gpus': 'gpu_list', 'gpu': 'gpu_list', 'devices': 'gpu_list', 'batch': 'batch_size', 'arch': 'network',
            'model': 'network', 'teacher': 'teacher_prefix', 'prefix': 'model_prefix', 'name': 'model_prefix',
            'resume': 'retrain', 'temperature': 'kd_t', 'method': 'kt_type', 'data': 'data_dir'}


class TaskSchema(object):
    """What the one loader (`load`) needs of a task's configuration: its `fields` ({key: Field}),
    `synonyms` (a key other toolkits use -> the key here, or a sentence saying what to write),
    `find_file(path)` (a file or one of the task's presets), its `default_file` (None: the
    defaults), where every key is listed (`listing`), and `check_together(cfg, at, **options)`,
    the task's checks across keys, registered by the part that owns them (`at(*keys)` says where
    they were set). The engine's keys are checked for every task (`check_engine_keys`)."""

    def __init__(self, task, fields, synonyms, find_file, default_file, listing, check_together, label=''):
        self.task, self.fields, self.synonyms, self.find_file = task, fields, synonyms, find_file
        self.default_file, self.listing, self.check_together, self.label = (default_file, listing, check_together,
                                                                             label)

    def unknown(self, key, origin):
        """The error for a key the schema does not have: what to write instead, or the closest key."""
        said = self.synonyms.get(key) or self.synonyms.get(key.lower())
        if said is not None and ' ' in said:
            hint = ': %s' % said
        else:
            lower = [f for f in self.fields if f.lower() == key.lower()]       # 'LR' -> 'lr'
            close = [said] if said else lower or difflib.get_close_matches(key, self.fields, n=1)
            hint = ' (did you mean %r?)' % close[0] if close else ''
        return ConfigError('unknown %sconfig key %r in %s%s; %s lists every key' % (self.label, key, origin, hint,
                                                                                   self.listing))


def load(schema, path=None, overrides=(), saved=None, **options):
    """The one loader of every task: read `path` (a file or a preset of the task, its `base:` chain
    first; None: the task's default file, or its defaults), apply `key=value` overrides (each key
    once), check every key's type and range, then the task's checks across keys (`options` go to
    them) and the engine's; ConfigError naming the key, where it was set and the fix on any problem.
    `saved` = (values, where) starts from a configuration saved with a checkpoint instead of a
    file (its keys that this schema no longer has are left out). The result's `source` says where
    its values came from."""
    chain, origins, texts = [], {}, {}
    path = given_file(path) or schema.default_file
    overrides = given_overrides(overrides)
    if saved is not None:
        values, origin = {k: v for k, v in saved[0].items() if k in schema.fields}, saved[1]
    elif path:
        values, origin = read_file(schema.find_file(path), chain=chain, origins=origins, texts=texts)
    else:
        values, origin = {}, 'the defaults'
    where = {k: origin for k in values}           # key -> where its value was set, for the messages
    where.update((k, f) for k, f in origins.items() if k in values)     # a base's key: the base file
    values = {k: coerce(k, v, texts.get(k), schema.fields) for k, v in values.items()}
    sets_cfgs = False          # (a .py file of the user's that does `from config.cfgs import *`)
    if chain and chain[0].endswith('.py') and os.path.abspath(chain[0]) != os.path.abspath(DEFAULT_CFG) and \
            schema.default_file == DEFAULT_CFG:
        try:
            sets_cfgs = set(read_file(DEFAULT_CFG)[0]) <= set(values)
        except ConfigError:
            pass
    for key, value in once_each(overrides, lambda text: parse_override(text, schema.fields)):
        values[key] = value
        where[key] = 'the command line'
    for key in values:
        if key not in schema.fields:
            raise schema.unknown(key, where[key])
    for key in PATH_KEYS + ('pretrained',):          # '~/data' and '$HOME/data' mean what a shell makes of them
        if isinstance(values.get(key), str) and values[key].startswith('~'):
            values[key] = os.path.expanduser(values[key])
        if isinstance(values.get(key), str) and '$' in values[key]:
            expanded = os.path.expandvars(values[key])
            if '$' in expanded:          # (a variable that is not set: said, not read as a folder name)
                raise ConfigError('config key %s=%r (%s) names an environment variable that is not set: set it, or '
                                  'write the path out' % (key, values[key], where.get(key, 'the config')))
            values[key] = expanded
    cfg = Config()
    for key, field in schema.fields.items():
        try:
            cfg[key] = field.check(values.get(key, field.default))
        except ConfigError as e:
            raise ConfigError('config key %r (%s) %s. Meaning: %s' % (key, where.get(key, origin), e, field.doc))

    def at(*keys):          # where the keys of a cross-key check were set
        return ' and '.join(sorted({where.get(k, origin) for k in keys}))
    schema.check_together(cfg, at, **options)
    check_engine_keys(cfg, at)
    cfg.source = origin if saved is not None else describe_source(chain, schema.listing, sets_cfgs)
    cfg.notes = transfer_notes(cfg, [k for k, w in where.items() if w == 'the command line'])
    if os.environ.get('DMLC_ROLE') == 'worker' and not str(cfg.get('kv_store', '')).startswith('dist'):
        cfg.notes.append('environment variable DMLC_ROLE=worker (with the other DMLC_* of a job) is set, and kv_store=%s '
                         'takes no part in a job: this run trains alone; unset the DMLC_* variables (left from '
                         'another job?), or start a job with python -m tools.launch ... kv_store=dist_sync'
                         % cfg.get('kv_store'))
    return cfg


# the keys of distillation beside the methods' own options
TRANSFER_KEYS = ('kt_type', 'kt_weight', 'kt_layer_weight', 'kt_warmup_epochs', 'teacher_prefix', 'teacher_epoch',
                 'teacher_symbol', 'student_symbol', 'teacher_network', 'teacher_source')


def transfer_notes(cfg, given):
    """Warnings of a run's distillation settings, in any task: keys `given` on the command line that
    the run does not use (any of them with kt=false, a method's option when kt_type does not name the
    method, taps beside logit-only methods), and a method's weight warm-up longer than the run."""
    if 'kt' not in cfg:
        return []
    return _unused_transfer_keys(cfg, given) + (_long_warmups(cfg) if cfg.kt and cfg.get('plan') else [])


def _long_warmups(cfg):
    from symbols.transfer import METHODS, warmup_epochs
    out = []
    for entry in cfg.plan:
        if entry['method'] not in METHODS:
            continue
        w = warmup_epochs(entry['method'], cfg.kt_warmup_epochs)
        if w > cfg.num_epoch:
            out.append('%s warms its weight up over %g epochs (x min((epoch+1)/%g, 1)) but num_epoch=%d: it reaches '
                       'at most %.0f%% of its kt_weight %g in this run; set kt_warmup_epochs to a part of the run'
                       % (entry['method'], w, w, cfg.num_epoch, 100.0 * cfg.num_epoch / w, entry['weight']))
    return out


def _unused_transfer_keys(cfg, given):
    import difflib
    from symbols.transfer import method_options, parse_kt_type, takes_taps
    owner = dict((o.name, m) for m, o in method_options())
    if not cfg.kt:
        unused = [k for k in given if k in TRANSFER_KEYS or k in owner]
        return ['kt=false: %s given on the command line %s not used (no teacher is read); add kt=true to distil'
                % (', '.join(sorted(unused)), 'is' if len(unused) == 1 else 'are')] if unused else []
    try:
        methods = parse_kt_type(cfg.kt_type)
    except ValueError:
        return []
    out = []
    if not any(takes_taps(m) for m in methods):
        def names(spec):
            items = spec if isinstance(spec, (list, tuple)) else [spec]
            return [t for t in items if isinstance(t, str) and t not in ('logits', 'rcnn_logits')]
        taps = sorted(set(names(cfg.get('teacher_symbol')) + names(cfg.get('student_symbol'))))
        if taps:
            out.append('teacher_symbol / student_symbol name the tap(s) %s, which kt_type %r does not read (its methods '
                       'take the class scores): they have no effect' % (', '.join(taps), cfg.kt_type))
    for k in sorted(given):
        if k in owner and owner[k] not in methods:
            ours = [o for o, m in owner.items() if m in methods]
            close = difflib.get_close_matches(k, ours, n=1)
            out.append('%s is an option of %s, which kt_type %r does not use: it has no effect%s'
                       % (k, owner[k], cfg.kt_type, ' (did you mean %s?)' % close[0] if close else ''))
    return out


# keys a run derives or sets for the command that started it (a resume, a move aside)
DERIVED = ('begin_epoch', 'retrain', 'model_load_epoch', 'model_load_prefix', 'overwrite', 'plan')
# keys that hold paths, read relative to the folder the run was started in when they are not found here
PATH_KEYS = ('data_dir', 'voc_root', 'sbd_root', 'model_dir', 'log_dir', 'teacher_prefix', 'backbone_prefix')


# the keys naming a run's data folders (a moved folder is named again on the command line)
DATA_KEYS = ('data_dir', 'voc_root', 'sbd_root')


def of_checkpoint(meta, where, overrides=(), check_data=True, **options):
    """The configuration a checkpoint was trained with (`meta`: its metadata, whose `config` the
    engine writes; `where`: the checkpoint, for the messages; `check_data`: its data checked, 'validation':
    a classification run's validation files alone), with `overrides` applied and checked
    by its task's schema (a key the schema no longer has is left out, and so are what the run derived or
    did, DERIVED; a relative path that is not found from here is read from the folder the run was
    started in, the metadata's `cwd`); None for a checkpoint written before the metadata kept its configuration."""
    saved = meta.get('config')
    if not isinstance(saved, dict):
        return None
    # what the run derived or did (a resume) is not part of its configuration here
    values = {k: v for k, v in saved.items() if k not in DERIVED}
    if str(values.get('kv_store', '')).startswith('dist') or values.get('kv_store') == 'horovod':
        values['kv_store'] = 'device'     # (a run of a distributed job, read here by one process: a tool, a branch)
    overrides = given_overrides(overrides)
    given_keys = {o.split('=', 1)[0].strip() for o in overrides}
    if values.get('dataset') in ('fashion_mnist', 'cifar10', 'cifar100'):
        # (what an older version accepted and did not use, kept in the saved configuration: as the run used it)
        if values.get('resize') is not None and 'resize' not in given_keys:
            values['resize'] = None
        for key in ('mean', 'std'):
            if values.get('dataset') == 'fashion_mnist' and isinstance(values.get(key), list) and \
                    len(values[key]) > 1 and key not in given_keys:
                values[key] = values[key][:1]
    if values.get('gpu_list') and 'gpu_list' not in given_keys:
        # (devices are this machine's: a checkpoint trained on GPUs is read here on its CPU if they cannot be used)
        from core.devices import gpu_list_problem
        problem = gpu_list_problem(values['gpu_list'])
        if problem:
            import logging
            logging.getLogger('train').warning('%s was trained with gpu_list=%s, which this machine cannot use: it '
                                               'runs on the CPU here (give gpu_list=... to choose the devices; '
                                               'python -m tools.doctor says what the GPUs here can run)'
                                               % (where, values['gpu_list']))
            values['gpu_list'] = []
    started_in = meta.get('cwd')
    for key in PATH_KEYS:                           # relative to the folder the run was started in
        value = values.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value) and started_in and \
                not os.path.exists(value) and os.path.exists(os.path.join(started_in, value)):
            values[key] = os.path.join(started_in, value)
    saved_as = (values, 'the configuration saved with %s' % where)
    given = {o.split('=', 1)[0].strip() for o in overrides}
    gone = [k for k in DATA_KEYS if k not in given and isinstance(values.get(k), str) and values[k] and
            not os.path.exists(values[k])]
    if check_data and gone:           # (a checkpoint from another machine, or data moved since)
        raise ConfigError('%s=%s comes from the configuration saved with %s and is not on this machine (the '
                          'checkpoint was copied from another machine, or the data moved since): give its new '
                          'folder: %s=NEW' % (gone[0], values[gone[0]], where, gone[0]))
    try:
        if values.get('task') == 'segmentation':
            from .segmentation import segmentation_schema, check_data as check_folders
            cfg = load(segmentation_schema(), None, overrides, saved=saved_as)
            if check_data:
                check_folders(cfg)
            return cfg
        if values.get('task', 'classification') == 'detection':
            from .detection import DETECTION
            return load(DETECTION, None, overrides, saved=saved_as, **options)
        cfg = load(CLASSIFICATION, None, overrides, saved=saved_as)
        if check_data:
            check_data_files(cfg, validation_only=check_data == 'validation')
        return cfg
    except ConfigError as e:
        from .classification import ClassCountError
        if isinstance(e, ClassCountError) and 'num_classes' not in given:  # the network's classes, not a setting
            if not any(k in given for k in DATA_KEYS + ('dataset',)):      # its own run's data: the .json disagrees
                raise ConfigError('%s predicts %d classes (its metadata\'s num_classes) but the data of its own run '
                                  'has %d (%s): the data was packed again since (python -m data.pack --overwrite keeps '
                                  'the earlier pack in DATA_DIR/replaced/), or the metadata was edited or copied from '
                                  'another run; give data of %d classes (data_dir=...), or copy the .json written with '
                                  'these parameters' % (where, e.configured, e.found, e.said, e.configured))
            raise ConfigError('%s predicts %d classes but the data has %d (%s): a checkpoint is scored on data of its '
                              'classes; leave out data_dir (its run\'s data), or give data of those %d classes'
                              % (where, e.configured, e.found, e.said, e.configured))
        moved = [k for k in DATA_KEYS if k not in given and values.get(k) and
                 ('%s=' % k in str(e) or 'key %s ' % k in str(e))]
        if not moved:
            raise
        raise ConfigError('%s; %s=%s comes from the configuration saved with %s: if the data moved since that run was '
                          'trained, give its new folder: %s=NEW' % (e, moved[0], values[moved[0]], where, moved[0]))


def load_config(path=None, overrides=(), check_data=True):
    """Read, override and validate a classification configuration (config/cfgs.py by default);
    raise ConfigError on any problem. The result's `source` says where its values came from.
    `check_data`: the data files checked ('validation': the validation set's alone)."""
    cfg = load(CLASSIFICATION, path, overrides)
    if check_data:
        check_data_files(cfg, validation_only=check_data == 'validation')
    return cfg


def checkpoint_files(model_dir, prefix):
    """The checkpoint metadata files of run `prefix` in `model_dir` (a run of a name refused now that was
    trained before stays usable)."""
    import glob
    return glob.glob(os.path.join(glob.escape(str(model_dir or '.')), glob.escape(prefix) + '-*.json'))


def check_engine_keys(cfg, at):
    """The checks across the keys the engine reads for every task (dtype, kv_store, gpu_list);
    `at(*keys)` says where they were set."""
    if cfg.dtype == 'float16' and not cfg.gpu_list:
        raise ConfigError('config key dtype (%s): float16 AMP needs GPUs (MXNet 1.9.1 has no CPU float16 '
                          'AMP); use dtype=bfloat16 on the CPU or set gpu_list' % at('dtype', 'gpu_list'))
    if cfg.dtype == 'bfloat16' and not cfg.gpu_list:
        from core.cpu import bfloat16_problem
        problem = bfloat16_problem()
        if problem:
            raise ConfigError('config key dtype=bfloat16 (%s): %s; use dtype=float32 on this machine'
                              % (at('dtype'), problem))
    if cfg.kv_store == 'horovod':
        from core.env import job_role
        launched = job_role() == 'rank'
        try:
            # (outside a launch, only whether it is installed: importing horovod.mxnet loads libmxnet.so
            # globally, whose libjpeg then breaks PIL's JPEG encoder in this process)
            if launched:
                importlib.import_module('horovod.mxnet')
            elif importlib.util.find_spec('horovod.mxnet') is None:
                raise ImportError('no module named horovod.mxnet')
        except ImportError as e:
            raise ConfigError('config key kv_store=horovod (%s): horovod.mxnet is not available (%s); build it '
                              'with NST_HOROVOD=1 bash init.sh' % (at('kv_store'), e))
        if not launched:
            raise ConfigError('config key kv_store=horovod (%s) needs a Horovod launch: horovodrun -np N '
                              'python train.py kv_store=horovod (see the README)' % at('kv_store'))
    ranks = [(k, os.environ[k], rank) for k, rank in (('HOROVOD_SIZE', 'HOROVOD_RANK'),
                                                      ('OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK'),
                                                      ('PMI_SIZE', 'PMI_RANK'))
             if os.environ.get(k, '').strip().isdigit() and int(os.environ[k]) > 1]
    if ranks and cfg.kv_store != 'horovod' and not cfg.kv_store.startswith('dist'):
        size, value, rank = ranks[0]
        if rank not in os.environ:          # (no rank of its own: the size is a leftover in the shell)
            raise ConfigError('environment variable %s=%s is set without %s, as no launcher sets it (left from '
                              'another job?): unset %s, or start the job with horovodrun and kv_store=horovod'
                              % (size, value, rank, size))
        raise ConfigError('this process is one of %s processes of a job (%s=%s: horovodrun or mpirun started it) but '
                          'kv_store=%r (%s): each would train the same run alone; add kv_store=horovod to the '
                          'command, or run train.py without horovodrun' % (value, size, value, cfg.kv_store,
                                                                           at('kv_store')))
    prefix = cfg.get('model_prefix')
    if isinstance(prefix, str) and prefix.startswith('.') and not checkpoint_files(cfg.get('model_dir'), prefix):
        raise ConfigError('config key model_prefix=%r (%s): a run name that starts with a dot would hide the run\'s '
                          'files (and . and .. name folders): choose another name' % (prefix, at('model_prefix')))
    if cfg.kv_store.startswith('dist') and 'DMLC_ROLE' not in os.environ:
        raise ConfigError('config key kv_store=%r (%s) needs a distributed launch: start training with '
                          'tools/launch.py (see the README), or use kv_store=device' % (cfg.kv_store, at('kv_store')))


# classification's checks and the transfer plan of every task, in modules of their own (imported here: the
# names callers take from config)
from .classification import warnings_of, check_classification, check_data_files  # noqa: E402
from .plan import resolve_plan  # noqa: E402

CLASSIFICATION = TaskSchema('classification', FIELDS, SYNONYMS, _find_file, DEFAULT_CFG, 'config/schema.py',
                            check_classification)


__all__ = ['Config', 'ConfigError', 'load_config', 'check_classification', 'resolve_plan', 'list_presets',
           'parse_override', 'coerce', 'FIELDS', 'TaskSchema', 'load', 'CLASSIFICATION', 'task_of', 'describe_source', 'warnings_of']
