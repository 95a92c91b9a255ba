"""What MXNet 1.9.1 needs from older numpy and Python, put back before mxnet is imported.

MXNet 1.9.1 (the last 1.x release) was written for numpy <= 1.23 and Python
<= 3.11. numpy 1.23.5, with which it works unchanged, has no wheels for
Python 3.12, so there the pin is numpy 1.26.4 (constraints.txt), and numpy 1.24
and Python 3.12 each removed one thing that mxnet uses while it is imported.
This module restores exactly these, each only when it is missing, so with
Python <= 3.11 and numpy 1.23.5 it changes nothing (`RESTORED` stays empty):

``numpy.bool``
    The alias of the builtin ``bool`` that numpy 1.24 removed. mxnet reads it
    on import in ``mxnet/numpy/utils.py`` (line 37, ``bool = onp.bool``) and
    later in ``mxnet/numpy/multiarray.py`` (lines 150, 591, 719, 725: boolean
    indexing of ``mx.np`` arrays), ``mxnet/ndarray/numpy/_op.py`` (line 377)
    and ``mxnet/symbol/numpy/_symbol.py`` (line 1260). Restored as the builtin
    ``bool``, which is what it was. (numpy 2 defines ``numpy.bool`` again, as
    ``numpy.bool_``; it is then present and left alone.)

``numpy.float``, ``numpy.int``
    The aliases of the builtins ``float`` and ``int``, removed by numpy 1.24
    too. gluoncv 0.10.5 uses them where this project goes: the anchors of
    every Faster R-CNN (``model_zoo/rcnn/rpn/anchor.py`` lines 96, 97, 105,
    so tools.detection), ``utils/metrics/coco_detection.py`` (lines 199, 201)
    and ``model_zoo/hrnet.py`` (line 539). Restored as the builtins.

``distutils``
    Removed from the standard library in Python 3.12. mxnet imports
    ``distutils.version`` on import: ``mxnet/numpy_op_fallback.py`` (line 20,
    ``StrictVersion``) and ``mxnet/numpy_dispatch_protocol.py`` (lines 47 and
    67, ``LooseVersion``). setuptools (installed on 3.12 by setup.py) carries a
    copy, which its ``distutils-precedence.pth`` normally makes importable as
    ``distutils``; when that hook did not run (``python -S``, a site directory
    without .pth processing), importing setuptools installs the same copy.

Imported first by every package of the project that leads to mxnet (``core``,
``data``, ``symbols``, ``tools``, ``benchmarks``) and by tests/conftest.py, so
every entry point (train.py, ``python -m data.*``, ``python -m tools.*``,
``python -m benchmarks.*``, the tests, ``import symbols``) has it before
mxnet; init.sh also writes ``import core.compat`` into a .pth file of the
environment, for mxnet imported by programs outside the project (horovodrun,
mxnet's tools/im2rec.py, Horovod's build). Importing this module imports
neither numpy nor mxnet: it restores when mxnet is first imported, just
before mxnet's own ``__init__`` runs (at once if mxnet is already imported).
So numpy still loads after core/env.py's thread settings (its OpenBLAS reads
them only when it loads), and a process that never imports mxnet is not
touched.

With a GPU build of mxnet installed (mxnet-cu112, mxnet-cu117), the same moment also loads the
CUDA libraries of the nvidia-*-cu11 wheels (core/gpu_libs.py), which libmxnet.so links but the
dynamic loader would not find in site-packages; with the CPU build it only reads mxnet's package
metadata.

Nothing of numpy 2 is restored: mxnet 1.9.1 declares ``numpy<2``, and with
numpy 2.2 its import also needs ``PZERO``, ``NZERO``, ``NINF``, ``PINF``,
``NAN``, ``NaN``, ``Inf``, ``alltrue``, ``sometrue``, ``msort``, ``round_`` and
``product`` (mxnet/numpy/utils.py, numpy/fallback.py, numpy_dispatch_protocol.py,
gluon/contrib/estimator/event_handler.py), then
``ndarray.tostring`` (``mx.recordio.pack_img``) from numpy 2.3 on. Python 3.13
has only numpy 2 wheels, so init.sh refuses it.
"""
import importlib.abc
import sys
import warnings

ALIASES = {'bool': bool, 'float': float, 'int': int}     # numpy's removed aliases of builtins


def _shared_record():
    """What was put back in this process ('numpy.bool', ..., 'distutils'): one list per process, kept
    on the hook (init.sh's .pth line installs the hook from a copy of this module that it then forgets,
    so the project's own ``import core.compat`` is a second copy, which must report the same)."""
    for finder in sys.meta_path:
        if type(finder).__name__ == '_BeforeMxnet' and isinstance(getattr(finder, 'restored', None), list):
            return finder.restored
    recorded = getattr(sys.modules.get('mxnet'), '_compat_restored', None)     # mxnet imported already
    return recorded if isinstance(recorded, list) else []


RESTORED = _shared_record()


def _restore_numpy_aliases():
    import numpy
    for name, builtin in ALIASES.items():
        with warnings.catch_warnings():          # numpy <= 1.23 warns on the deprecated aliases
            warnings.simplefilter('ignore')
            present = hasattr(numpy, name)
        if not present:
            setattr(numpy, name, builtin)
            RESTORED.append('numpy.' + name)


def _restore_distutils():
    import importlib.util
    if sys.version_info < (3, 12) or 'distutils' in sys.modules or importlib.util.find_spec('distutils'):
        return
    try:
        import setuptools  # noqa: F401  (importing it makes its copy importable as distutils)
    except ImportError:
        setuptools = None
    if setuptools is None or importlib.util.find_spec('distutils') is None:
        raise ImportError('mxnet 1.9.1 imports distutils, which Python %d.%d no longer has: '
                          'install setuptools (pip install setuptools; init.sh does) and leave '
                          'SETUPTOOLS_USE_DISTUTILS unset' % sys.version_info[:2])
    RESTORED.append('distutils')


def _preload_cuda(spec):
    """A GPU build of mxnet: load the CUDA libraries of the nvidia-*-cu11 wheels before libmxnet.so
    (core/gpu_libs.py); the CPU build: nothing. Returns what could not be loaded (None: CPU build)."""
    import os
    try:
        from . import gpu_libs, gpu_support
        origin = getattr(spec, 'origin', None)
        where = [os.path.dirname(os.path.dirname(origin))] if origin else None
        build, _ = gpu_support.installed_build(where)
        if build is None or build == 'cpu':
            return None
        gpu_libs.preload(build=build)
        return list(gpu_libs.FAILED)
    except Exception as e:                       # never stop mxnet's import here; tools.doctor tells
        warnings.warn('core.compat: preloading the CUDA libraries failed: %s' % e)
        return None


def restore():
    """Put back what mxnet 1.9.1 uses and this numpy or Python lacks (idempotent)."""
    _restore_numpy_aliases()
    _restore_distutils()


class _BeforeMxnet(importlib.abc.MetaPathFinder):
    """Runs `restore()` when mxnet is imported, before mxnet's ``__init__``.

    It finds nothing itself: it asks the finders after it for mxnet, wraps the
    loader of what they found, and leaves ``sys.meta_path`` once mxnet is
    being loaded (a find_spec('mxnet') without an import, as some packages do
    to test for mxnet, leaves it in place). ``restored`` is the module's `RESTORED`, for later copies of the
    module.
    """

    def __init__(self):
        self.restored = RESTORED

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'mxnet':
            return None
        for finder in sys.meta_path:
            find = getattr(finder, 'find_spec', None)
            spec = find(fullname, path, target) if finder is not self and find else None
            if spec is not None:
                break
        else:
            return None
        exec_module = getattr(spec.loader, 'exec_module', None)
        if exec_module is None:
            return spec

        def restore_then_exec(module):
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            restore()
            failed = _preload_cuda(spec)
            module._compat_restored = RESTORED       # for copies of this module imported after mxnet
            try:
                exec_module(module)
            except OSError as e:
                if 'libcuda.so' in str(e):
                    raise ImportError('this is a GPU build of mxnet, which needs the NVIDIA driver (%s): install '
                                      'the driver, or on a machine without an NVIDIA GPU the CPU build (bash init.sh '
                                      'without NST_GPU); python -m tools.doctor checks it all' % e) from e
                if failed is None:                   # the CPU build
                    raise
                raise ImportError('the GPU build of mxnet cannot load its CUDA libraries (%s): %s; run '
                                  'NST_GPU=1 (or cu117) bash init.sh to install them, python -m tools.doctor '
                                  'to see what is missing' % ('; '.join('%s %s' % (f[0], f[2]) for f in failed)
                                                              or 'all preloaded', e)) from e
        spec.loader.exec_module = restore_then_exec
        return spec


if 'mxnet' in sys.modules:
    restore()
elif not any(type(f).__name__ == '_BeforeMxnet' for f in sys.meta_path):     # also the .pth line's copy
    sys.meta_path.insert(0, _BeforeMxnet())
