"""Which GPUs the installed MXNet build can run on: the table and the decisions, in pure Python.

The GPU wheels of MXNet 1.9.1 (``mxnet-cu112`` and ``mxnet-cu117``; read from the wheels) carry
machine code (SASS) for compute capabilities 5.0, 6.0, 7.0, 8.0 and 8.6 and no PTX, so the driver
cannot compile code for a newer GPU. Within one major version code for x.y runs on x.z with
z >= y (CUDA's binary compatibility rule), hence:

    5.x Maxwell, 6.x Pascal, 7.x Volta/Turing   the major's x.0 code
    8.0 Ampere (A100), 8.6/8.7 Ampere            8.0 / 8.6 code
    8.9 Ada (L4, L40, RTX 40xx)                  the 8.6 code
    9.0 Hopper, 10.x/12.x Blackwell              nothing: refused
    3.x Kepler and older                         nothing: refused

MXNet 1.9.1 is the last release, so no build of it runs on Hopper or newer. Nothing here touches
CUDA: the devices come from core/gpu_libs.py (the driver) or, in the tests, from fake data.
"""
import collections
import re

_ARCHS_19 = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
BUILD_ARCHS = {            # build -> compute capabilities with machine code in its libmxnet.so (no PTX)
    'cu112': _ARCHS_19,
    'cu117': _ARCHS_19,
}
CUDA_OF_BUILD = {'cu112': '11.2', 'cu117': '11.7'}

Gpu = collections.namedtuple('Gpu', 'index name capability')     # capability: (major, minor)


def family(cc):
    """The architecture's name for a compute capability (major, minor)."""
    major, minor = cc
    if cc == (7, 5):
        return 'Turing'
    if cc == (8, 9):
        return 'Ada'
    return {2: 'Fermi', 3: 'Kepler', 5: 'Maxwell', 6: 'Pascal', 7: 'Volta', 8: 'Ampere', 9: 'Hopper',
            10: 'Blackwell', 12: 'Blackwell'}.get(major, 'unknown architecture')


def fmt(cc):
    return '%d.%d' % tuple(cc)


def code_for(cc, archs):
    """The compute capability whose machine code runs on a GPU of capability `cc`, or None:
    the highest x.y of `archs` with x == cc's major and y <= cc's minor."""
    fits = [a for a in archs if a[0] == cc[0] and a[1] <= cc[1]]
    return max(fits) if fits else None


def table(build):
    """One line: what a GPU build has code for."""
    archs = BUILD_ARCHS[build]
    return ('compute capabilities %s only (machine code, no PTX): Maxwell to Ampere, and Ada (8.9) '
            'through the 8.6 code' % ', '.join(fmt(a) for a in archs))


def verdict(gpu, build):
    """(runs, one line about this GPU under this build)."""
    cc = tuple(gpu.capability)
    what = 'GPU %d (%s, compute capability %s, %s)' % (gpu.index, gpu.name, fmt(cc), family(cc))
    archs = BUILD_ARCHS.get(build)
    if archs is None:
        return True, '%s: no capability table for mxnet build %r; not checked' % (what, build)
    code = code_for(cc, archs)
    if code is not None:
        how = 'its own code' if code == cc else 'the %s code (same major version, lower minor)' % fmt(code)
        return True, '%s: runs mxnet-%s with %s' % (what, build, how)
    if cc > max(archs):
        fix = ('MXNet 1.9.1 is the last release and no build of it runs on %s or newer: train on the CPU '
               '(gpu_list=[]) or on a GPU of compute capability 5.0 to 8.9 (Maxwell to Ada)' % family(cc))
    else:
        fix = ('this GPU is older than any MXNet 1.9.1 build supports: train on the CPU (gpu_list=[]) or '
               'on a GPU of compute capability 5.0 to 8.9 (Maxwell to Ada)')
    return False, '%s cannot run mxnet-%s 1.9.1, which has GPU code for %s; %s' % (what, build, table(build), fix)


def check_gpu_list(ids, build, gpus, version='', driver_error=None):
    """None when every GPU of `ids` can run this build, else the one message that says why not
    and what works.

    `build`: 'cpu', a key of BUILD_ARCHS, another 'cuNNN' (not checked against a table) or None
    (unknown: only the count is checked); `gpus`: the visible GPUs (list of Gpu, index = CUDA
    ordinal) or None when the driver could not be asked (`driver_error` says why)."""
    ids = list(ids)
    if not ids:
        return None
    if build == 'cpu':
        return ('gpu_list=%s but this MXNet build sees no GPU: %s is the CPU build. Set gpu_list=[] '
                'to train on the CPU, or install the GPU build with NST_GPU=1 bash init.sh '
                '(then python -m tools.doctor checks the GPUs)' % (ids, ('mxnet ' + version).strip()))
    if gpus is None:
        return ('gpu_list=%s but this MXNet build sees no GPU: the NVIDIA driver could not be asked (%s). '
                'Set gpu_list=[] to train on the CPU, or install the NVIDIA driver (python -m tools.doctor '
                'says more)' % (ids, driver_error or 'libcuda.so.1 not found'))
    if not gpus:
        return ('gpu_list=%s but this MXNet build sees no GPU: the driver reports no CUDA device (check '
                'CUDA_VISIBLE_DEVICES). Set gpu_list=[] to train on the CPU' % ids)
    have = len(gpus)
    missing = [i for i in ids if i >= have]
    if missing:
        return ('gpu_list=%s names GPU %s but only %d GPU(s) are visible (ids 0..%d); fix gpu_list'
                % (ids, ', '.join(map(str, missing)), have, have - 1))
    if build not in BUILD_ARCHS:
        return None
    bad = []
    for i in ids:
        runs, line = verdict(gpus[i], build)
        if not runs:
            bad.append(line)
    if not bad:
        return None
    usable = [i for i, g in enumerate(gpus) if verdict(g, build)[0]]
    tail = ' Usable here: gpu_list=%s.' % usable if usable else ''
    return 'gpu_list=%s: %s.%s' % (ids, ' '.join(bad), tail)


_DIST = re.compile(r'^mxnet(?:-(cu\d+)[a-z]*|-mkl|-native)?$')


def mxnet_builds(path=None):
    """[(build, version, distribution name)] of the installed MXNet distributions ('cpu' or
    'cuNNN'), read from the package metadata without importing mxnet. `path`: the folders to
    look in (default sys.path)."""
    from importlib import metadata
    found = []
    kw = {'path': list(path)} if path is not None else {}
    for dist in metadata.distributions(**kw):
        name = (dist.metadata.get('Name') or '').lower().replace('_', '-')
        m = _DIST.match(name)
        if m and (name, dist.version) not in [(f[2], f[1]) for f in found]:
            found.append((m.group(1) or 'cpu', dist.version, name))
    return found


def installed_build(path=None):
    """(build, version) of the installed MXNet, a GPU build first if two share the folder;
    (None, None) without one."""
    builds = mxnet_builds(path)
    builds.sort(key=lambda b: b[0] == 'cpu')
    return builds[0][:2] if builds else (None, None)


def driver_check(cuda_version):
    """(problem, note) about the driver's CUDA version ('11.4', or None if unknown) for the CUDA
    11.8 libraries of the nvidia-*-cu11 wheels; each None or one line."""
    if not cuda_version:
        return None, None
    v = tuple(int(x) for x in cuda_version.split('.')[:2])
    if v < (11, 0):
        return ('the NVIDIA driver supports CUDA %s only; the CUDA 11 libraries of the GPU build need a driver '
                'for CUDA 11.0 or newer (R450.80.02 or later): update the driver' % cuda_version), None
    if v < (11, 8):
        return None, ('the driver supports CUDA %s, older than the CUDA 11.8 libraries installed: they run '
                      'under CUDA minor-version compatibility, but kernels MXNet compiles at run time with '
                      'nvrtc 11.8 (operator fusion) can be refused; if one fails, set MXNET_USE_FUSION=0 or '
                      'update the driver (R520 or later)' % cuda_version)
    return None, None
