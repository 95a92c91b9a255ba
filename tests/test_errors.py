"""The one error hierarchy (core/errors.py): every error the project raises for a user derives from
UserError, each kind exists once, and the entry points print exactly those as one line (exit 2,
Diverged 3) while anything else, a bug, keeps its traceback."""
import errno
import importlib
import inspect
import os
import pkgutil

import pytest

from core import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# raised inside one module and turned into a user error before it leaves the trainer (with the
# step and term it happened at), and the signal SIGTERM becomes
INTERNAL = {'core.errors.NonFiniteLoss', 'tasks.classification.stages.StageDiverged',
            'core.interrupt.Terminated', 'core.interrupt.HungUp', 'core.interrupt.Quit',
            'core.interrupt.Stopped'}     # (SIGTERM, SIGHUP, ... as a KeyboardInterrupt: a signal, not an error)


def project_classes():
    """{qualified name: class} of every exception class defined in the project's packages."""
    found = {}
    for package in ('core', 'config', 'data', 'symbols', 'tasks', 'tools'):
        pkg = importlib.import_module(package)
        names = [package] + [package + '.' + m.name for m in pkgutil.walk_packages(pkg.__path__, '')
                             if not m.name.startswith('_')]
        for name in names:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for cls_name, cls in vars(module).items():
                if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == name:
                    found['%s.%s' % (name, cls_name)] = cls
    return found


def test_every_project_error_is_a_user_error_and_each_kind_exists_once():
    classes = project_classes()
    assert 'core.errors.CheckpointError' in classes and 'data.voc.VOCError' in classes
    outside = sorted(n for n, c in classes.items() if not issubclass(c, errors.UserError) and n not in INTERNAL)
    assert outside == []
    by_name = {}
    for n, c in classes.items():
        by_name.setdefault(n.rsplit('.', 1)[1], []).append(n)
    twice = {k: v for k, v in by_name.items() if len(v) > 1}
    assert twice == {}                           # one CheckpointError, one Diverged, ...
    import core.engine
    import symbols.legacy
    assert core.engine.Diverged is errors.Diverged
    assert symbols.legacy.CheckpointError is errors.CheckpointError


def test_a_tool_prints_user_errors_and_lets_bugs_through(capsys):
    from tools.cli import command

    def tool(exc):
        @command
        def main(argv=None):
            raise exc
        return main
    assert tool(errors.ConfigError('config key x is wrong: set y'))() == 2
    assert capsys.readouterr().err.strip() == 'error: config key x is wrong: set y'
    assert tool(errors.Diverged('the loss became NaN'))() == 3
    assert tool(OSError(errno.ENOSPC, 'No space left on device', '/full/f'))() == 2
    assert 'error: /full/f: the disk is full' in capsys.readouterr().err
    for bug in (ValueError('a bug'), KeyError('k'), OSError(errno.EBADF, 'Bad file descriptor')):
        with pytest.raises(type(bug)):          # no longer printed as if it were the user's mistake
            tool(bug)()


def test_train_py_lets_a_bug_through(monkeypatch, tmp_path):
    import tasks
    import train
    from tests.helpers import make_cifar, tiny_train_args
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=16, test=8)
    argv = tiny_train_args(tmp_path, tmp_path / 'cifar')

    def bug(cfg):
        raise ValueError('a bug in the trainer')
    monkeypatch.setattr(tasks, 'run', lambda cfg, name: bug(cfg))
    with pytest.raises(ValueError, match='a bug in the trainer'):
        train.main(argv)

    def tap_error(cfg):
        raise errors.NetworkError('tap x: no such tap')
    monkeypatch.setattr(tasks, 'run', lambda cfg, name: tap_error(cfg))
    assert train.main(argv) == 2
