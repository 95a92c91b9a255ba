"""The docs cannot go stale: the generated reference pages equal what the code says, every command
line shown in README.md and docs/ parses (train.py's options, config files and keys through the
task's loader; each tool's --help), and every `key=value` they mention is a key of a schema."""
import glob
import importlib
import os
import re
import shlex

import pytest

import train
from config import CLASSIFICATION, load, task_of
from config.detection import DETECTION
from config.segmentation import segmentation_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'),
                                                                recursive=True))
SCHEMAS = {'classification': CLASSIFICATION, 'detection': DETECTION, 'segmentation': segmentation_schema()}
# `key=value` spans of the docs that are not config keys: environment variables are upper case and
# not matched; these are the options of other programs shown in the docs
NOT_CONFIG = {'pip', 'numpy', 'horovod', 'mxnet', 'python_version'}


def _page(path):
    return os.path.relpath(path, ROOT)


def commands():
    """[(page, command words)] of every shell line in the ```bash blocks of the pages."""
    out = []
    for path in PAGES:
        text = open(path).read()
        for block in re.findall(r'```(?:bash|sh|shell)\n(.*?)```', text, re.S):
            for line in block.replace('\\\n', ' ').splitlines():
                line = re.sub(r'(^|\s)#.*$', '', line).strip()         # a comment
                if not line:
                    continue
                for part in re.split(r'\s*(?:&&|\|\||;)\s*', line):
                    if part:
                        out.append((_page(path), shlex.split(part)))
    return out


def _train_args(words):
    """The train.py arguments of a command line (itself, or under tools.launch / horovodrun), or None."""
    for i, w in enumerate(words):
        if w.endswith('train.py'):
            return words[i + 1:]
    return None


def _tool(words):
    """'tools.X' (or data.X, benchmarks.X) of a `python -m X ...` line and its arguments, or None."""
    if len(words) > 2 and words[0].endswith('python') and words[1] == '-m':
        return words[2], words[3:]
    return None


@pytest.fixture
def launched(monkeypatch):
    """As under a launcher: kv_store=dist_sync / horovod pass their checks; bfloat16 too."""
    import core.cpu
    monkeypatch.setenv('DMLC_ROLE', 'worker')
    monkeypatch.setenv('HOROVOD_RANK', '0')
    monkeypatch.setattr(core.cpu, 'bfloat16_problem', lambda *a, **k: None)
    # kv_store=horovod imports horovod.mxnet to check it is built; a stand-in here (the real one would
    # load libmxnet.so with RTLD_GLOBAL into this test process: tests/test_dist.py says why not)
    import sys
    import types
    monkeypatch.setitem(sys.modules, 'horovod.mxnet', types.ModuleType('horovod.mxnet'))


def test_the_generated_pages_are_what_the_code_says():
    from tools import docs
    assert docs.main(['--check']) == 0, 'run python -m tools.docs'


def test_every_train_command_in_the_docs_parses(launched, capsys):
    checked = 0
    for page, words in commands():
        args = _train_args(words)
        if args is None:
            continue
        parsed = train.build_parser(add_help=False)
        parsed.add_argument('-h', '--help', action='store_true')
        try:
            ns = parsed.parse_intermixed_args(args)
        except SystemExit:
            pytest.fail('%s: %s does not parse: %s' % (page, ' '.join(words), capsys.readouterr().err))
        if ns.help or ns.keys is not None:
            continue
        task = task_of(ns.cfg, ns.overrides)
        cfg = load(SCHEMAS[task], ns.cfg, ns.overrides)     # a ConfigError names the page's mistake
        assert cfg.task == task, (page, words)
        checked += 1
    assert checked >= 5


def test_every_tool_command_in_the_docs_exists_and_takes_its_keys(capsys):
    keys = set(CLASSIFICATION.fields) | set(DETECTION.fields) | set(SCHEMAS["segmentation"].fields)
    seen = set()
    for page, words in commands():
        tool = _tool(words)
        if tool is None or tool[0] in ('pytest', 'pip', 'venv'):
            continue
        module, args = tool
        if module not in seen:
            seen.add(module)
            mod = importlib.import_module(module)
            assert hasattr(mod, 'main'), (page, module)
            with pytest.raises(SystemExit) as e:
                mod.main(['--help'])
            assert e.value.code == 0, (page, module, capsys.readouterr().err)
        if _train_args(words) is not None:
            continue                            # tools.launch: its train.py command is checked above
        for prev, a in zip([''] + args, args):
            if re.match(r'^[a-z][a-z0-9_]*=', a) and not (prev.startswith('-') and '=' not in prev):
                assert a.split('=', 1)[0] in keys, '%s: %s names no config key (%s)' % (page, a, ' '.join(words))
    assert {'tools.evaluate', 'data.pack'} <= seen


def test_every_config_key_the_docs_mention_exists():
    keys = set(CLASSIFICATION.fields) | set(DETECTION.fields) | set(SCHEMAS["segmentation"].fields)
    for path in PAGES:
        text = open(path).read()
        for span in re.findall(r'`([^`\n]+)`', text):
            for key in re.findall(r'(?:^|\s)([a-z][a-z0-9_]*)=(?!=)', span):
                assert key in keys or key in NOT_CONFIG, '%s: `%s` names no config key %r' % (_page(path), span,
                                                                                             key)
