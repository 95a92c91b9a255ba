"""core/compat.py (mxnet 1.9.1 on numpy >= 1.24 and Python >= 3.12), the numpy
pin per Python, and init.sh refusing a Python the project does not work with.

The compat checks run in fresh interpreters: this one has imported mxnet long ago."""
import os
import shutil
import site
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code, *flags, **kw):
    return subprocess.run([sys.executable] + list(flags) + ['-c', code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)


# numpy as from 1.24 on: no `numpy.bool`, `numpy.float`, `numpy.int` (1.20-1.23 serve them with a warning;
# 2.x defines numpy.bool again, as numpy.bool_)
WITHOUT_NUMPY_BOOL = '''
import sys, warnings
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != '_BeforeMxnet']   # from init.sh's .pth
sys.modules.pop('core.compat', None)
import numpy
for name in ('bool', 'float', 'int'):
    numpy.__dict__.pop(name, None)
    getattr(numpy, '__deprecated_attrs__', {}).pop(name, None)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert not hasattr(numpy, name), name
'''
USE_MXNET = '''
import mxnet as mx
mx.npx.set_np()
x = mx.np.array([1., 2., 3.])
assert x[x > 1.5].asnumpy().tolist() == [2., 3.]     # boolean indexing: mxnet/numpy/multiarray.py reads numpy.bool
'''


def test_mxnet_fails_without_numpy_bool_and_compat_restores_it():
    bare = python(WITHOUT_NUMPY_BOOL + USE_MXNET)
    assert bare.returncode != 0 and "has no attribute 'bool'" in bare.stderr, bare.stderr[-800:]
    fixed = python(WITHOUT_NUMPY_BOOL + 'import core.compat\n' + USE_MXNET +
                   'assert numpy.bool is bool and core.compat.RESTORED[0] == "numpy.bool", core.compat.RESTORED\n')
    assert fixed.returncode == 0, fixed.stderr[-1500:]


def test_gluoncv_faster_rcnn_anchors_fail_without_numpy_float_and_compat_restores_it():
    """gluoncv's RPN anchors (every detector of tools.detection) read numpy.float, gone since numpy 1.24."""
    anchors = ('from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator\n'
               'g = RPNAnchorGenerator(16, 16, (0.5, 1, 2), (8, 16), (8, 8))\n'
               'assert g.anchors.shape == (1, 1, 8, 8, 24), g.anchors.shape\n')
    bare = python(WITHOUT_NUMPY_BOOL + 'numpy.bool = bool\n' + anchors)
    assert bare.returncode != 0 and "has no attribute 'float'" in bare.stderr, bare.stderr[-800:]
    fixed = python(WITHOUT_NUMPY_BOOL + 'import core.compat\n' + anchors +
                   'assert numpy.float is float and numpy.int is int, core.compat.RESTORED\n'
                   'assert sorted(core.compat.RESTORED) == ["numpy.bool", "numpy.float", "numpy.int"]\n')
    assert fixed.returncode == 0, fixed.stderr[-1500:]


def test_compat_imports_nothing_and_changes_nothing_that_is_present():
    """Importing it loads neither numpy nor mxnet (numpy's OpenBLAS must load after core/env.py's thread
    settings); on mxnet's import it adds numpy.bool, .float and .int only where numpy lacks them, and leaves the
    rest alone. The project's `import core.compat` is a second copy of the module (init.sh's .pth line installed the
    hook from a copy it then forgot), and reports what the hook restored."""
    r = python('''
import sys, warnings
import core.compat
assert 'numpy' not in sys.modules and 'mxnet' not in sys.modules
import numpy
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    before = {name: getattr(numpy, name, None) for name in ('bool', 'float', 'int')}
import mxnet
assert not any(type(f).__name__ == '_BeforeMxnet' for f in sys.meta_path)
for name, builtin in (('bool', bool), ('float', float), ('int', int)):
    if before[name] is None:
        assert getattr(numpy, name) is builtin and 'numpy.' + name in core.compat.RESTORED, (name, core.compat.RESTORED)
    else:
        assert numpy.__dict__.get(name, before[name]) is before[name] and 'numpy.' + name not in core.compat.RESTORED
print(numpy.__version__, core.compat.RESTORED)
''')
    assert r.returncode == 0, r.stderr[-1500:]
    version, restored = r.stdout.split(' ', 1)
    if sys.version_info < (3, 12) and tuple(int(v) for v in version.split('.')[:2]) < (1, 24):
        assert restored.strip() == '[]'      # the pinned numpy 1.23.5 on Python <= 3.11: a no-op


def test_mxnet_imported_outside_the_project_gets_compat_too():
    """init.sh's .pth: horovodrun (which imports horovod.mxnet to see what was built), mxnet's own tools and
    Horovod's build import mxnet without going through a project package."""
    r = python('import sys, mxnet; print("core.compat" in sys.modules)')
    assert r.returncode == 0 and r.stdout.split() == ['True'], r.stderr[-1500:]


def test_compat_makes_distutils_importable_without_setuptools_hook():
    """`python -S` skips site-packages' .pth files, setuptools' distutils hook among them: on Python 3.12+
    mxnet then finds no distutils unless compat installs setuptools' copy."""
    path = [ROOT] + site.getsitepackages()
    head = 'import sys; sys.path[:0] = %r\n' % path
    if sys.version_info >= (3, 12):
        bare = python(head + 'import numpy; numpy.bool = bool; import mxnet', '-S')     # numpy.bool fails first
        assert bare.returncode != 0 and "No module named 'distutils'" in bare.stderr, bare.stderr[-800:]
    fixed = python(head + 'import core.compat, mxnet\nprint(core.compat.RESTORED)', '-S')
    assert fixed.returncode == 0, fixed.stderr[-1500:]
    assert ('distutils' in fixed.stdout) == (sys.version_info >= (3, 12))


def test_installed_numpy_is_the_pin_for_this_python():
    from importlib.metadata import version
    from packaging.requirements import Requirement
    with open(os.path.join(ROOT, 'constraints.txt')) as f:
        reqs = [Requirement(line.split("#")[0].strip()) for line in f if line.strip() and not line.startswith('#')]
    pins = [str(r.specifier) for r in reqs if r.name == 'numpy' and (r.marker is None or r.marker.evaluate())]
    assert pins == ['==' + version('numpy')]
    assert version('numpy').startswith('1.')


def unsupported_pythons():
    """(label, command) for interpreters init.sh must refuse: stand-ins that report 3.13 and 3.9,
    and the real python3.13 when there is one."""
    found = [('fake 3.13', None, '3.13'), ('fake 3.9', None, '3.9')]
    for name in ('python3.13', 'python3.14', 'python3.9'):
        exe = shutil.which(name)
        if exe and subprocess.run([exe, '-c', ''], capture_output=True).returncode == 0:
            found.append((name, exe, name[len('python'):]))
    pyenv = shutil.which('pyenv')
    if pyenv and not any(label == 'python3.13' for label, _, _ in found):
        r = subprocess.run([pyenv, 'root'], capture_output=True, text=True)
        versions = os.path.join(r.stdout.strip(), 'versions')
        for v in sorted(os.listdir(versions)) if r.returncode == 0 and os.path.isdir(versions) else ():
            exe = os.path.join(versions, v, 'bin', 'python3.13')
            if v.startswith('3.13') and os.access(exe, os.X_OK):
                found.append(('python3.13', exe, '3.13'))
                break
    return found


@pytest.mark.parametrize('label,exe,version', unsupported_pythons(), ids=lambda v: v if isinstance(v, str) else '')
def test_init_refuses_an_unsupported_python_at_once(tmp_path, label, exe, version):
    work = tmp_path / 'clone'
    work.mkdir()
    for name in ('init.sh', 'setup.py', 'constraints.txt'):
        shutil.copy(os.path.join(ROOT, name), str(work / name))
    if exe is None:
        exe = str(tmp_path / 'python')
        with open(exe, 'w') as f:
            f.write('#!/bin/sh\necho "Python %s"\n' % version)
        os.chmod(exe, 0o755)
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'NST_VENV')}
    env['PYTHON'] = exe
    start = time.time()
    r = subprocess.run(['bash', str(work / 'init.sh'), '--deps'], cwd=str(work), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert time.time() - start < 10
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'is Python %s;' % version in lines[0], r.stderr
    assert 'Python 3.10, 3.11 and 3.12' in lines[0] and 'PYTHON=python3.11 bash init.sh' in lines[0]
    assert sorted(os.listdir(str(work))) == ['constraints.txt', 'init.sh', 'setup.py']    # nothing created
    assert r.stdout == ''


@pytest.mark.parametrize('codes,status', [((0, 0), 0), ((5, 0), 1), ((0, 5), 1), ((1, 0), 1), ((0, 2), 1)])
def test_ci_runs_the_suite_on_311_and_312_and_fails_if_either_fails(tmp_path, codes, status):
    """.ci/run with stand-ins for init.sh and the two environments' pytest: both always run, with the
    README's command first; any non-zero pytest status fails CI, 5 (no test ran) included."""
    os.makedirs(str(tmp_path / '.ci'))
    shutil.copy(os.path.join(ROOT, '.ci', 'run'), str(tmp_path / '.ci' / 'run'))
    log = tmp_path / 'log'
    with open(str(tmp_path / 'init.sh'), 'w') as f:
        f.write('echo "init ${NST_VENV:-.venv} ${PYTHON:-default} $*" >> %s\n' % log)
    for venv, code in zip(('.venv', '.venv312'), codes):
        os.makedirs(str(tmp_path / venv / 'bin'))
        exe = str(tmp_path / venv / 'bin' / 'python')
        with open(exe, 'w') as f:
            f.write('#!/bin/sh\necho "pytest %s $*" >> %s\nexit %d\n' % (venv, log, code))
        os.chmod(exe, 0o755)
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'NST_VENV', 'PYTHON')}
    r = subprocess.run(['bash', str(tmp_path / '.ci' / 'run')], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == status, r.stderr
    assert log.read_text().splitlines() == ['init .venv default --deps', 'pytest .venv -m pytest -q',
                                            'init .venv312 python3.12 --deps', 'pytest .venv312 -m pytest -q']


def test_the_environments_pth_line_leaves_the_name_core_to_other_programs(tmp_path):
    """init.sh's .pth line installs the hook at every start of this Python, then forgets the package
    `core`: a program with its own `core` (or another checkout of this project) gets its own."""
    (tmp_path / 'core').mkdir()
    (tmp_path / 'core' / '__init__.py').write_text('MINE = True\n')
    r = subprocess.run([sys.executable, '-c', 'import sys, core\n'
                        'print(getattr(core, "MINE", False), any(type(f).__name__ == "_BeforeMxnet" '
                        'for f in sys.meta_path))'], cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['True', 'True'], r.stdout      # its own core, and the hook from the .pth line
