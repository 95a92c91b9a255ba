"""The CUDA libraries of a GPU build of MXNet, found in the nvidia-*-cu11 wheels, and the driver.

libmxnet.so of ``mxnet-cu112`` / ``mxnet-cu117`` 1.9.1 links the CUDA libraries below without
bundling them. ``NST_GPU=1 bash init.sh`` installs them from PyPI (the ``gpu`` extra of setup.py,
pinned in constraints.txt) into ``site-packages/nvidia/<name>/lib``, where the dynamic loader does
not look. `preload()` loads them there with ctypes (RTLD_GLOBAL) before libmxnet.so is loaded;
core/compat.py calls it when mxnet is first imported, and only when a GPU build of mxnet is
installed (the CPU build needs none of this, and nothing is done then). A library missing from
the wheels is left to the system's loader (a CUDA toolkit, LD_LIBRARY_PATH). The driver's
libcuda.so.1 comes with the NVIDIA driver, never from a wheel.

Checked against the real wheels (tests/test_gpu.py): every soname below is in the wheel named,
and each wheel library finds its own dependencies through its RUNPATH ($ORIGIN...), except that
libcudnn's sub-libraries look for nvrtc in ``nvidia/nvrtc/lib`` while the wheel installs
``nvidia/cuda_nvrtc/lib``: preloading libnvrtc first covers that.
"""
import ctypes
import os
import sys

# (soname, folder under site-packages/nvidia, pip package), in load order: dependencies first.
# libcublasLt is not linked by libmxnet.so; libcublas and libcusolver need it.
CUDA_LIBS = (
    ('libcudart.so.11.0', 'cuda_runtime', 'nvidia-cuda-runtime-cu11'),
    ('libnvToolsExt.so.1', 'nvtx', 'nvidia-nvtx-cu11'),
    ('libnvrtc.so.11.2', 'cuda_nvrtc', 'nvidia-cuda-nvrtc-cu11'),
    ('libcublasLt.so.11', 'cublas', 'nvidia-cublas-cu11'),
    ('libcublas.so.11', 'cublas', 'nvidia-cublas-cu11'),
    ('libcusparse.so.11', 'cusparse', 'nvidia-cusparse-cu11'),     # mxnet-cu117 only (ONLY_FOR)
    ('libcufft.so.10', 'cufft', 'nvidia-cufft-cu11'),
    ('libcurand.so.10', 'curand', 'nvidia-curand-cu11'),
    ('libcusolver.so.11', 'cusolver', 'nvidia-cusolver-cu11'),
    ('libcudnn.so.8', 'cudnn', 'nvidia-cudnn-cu11'),
    ('libnccl.so.2', 'nccl', 'nvidia-nccl-cu11'),
)
ONLY_FOR = {'libcusparse.so.11': ('cu117',)}      # linked by these builds only (read from the wheels)
DRIVER_LIB = 'libcuda.so.1'

LOADED = []       # [(soname, path)] preloaded in this process
FAILED = []       # [(soname, path or None, reason)]: not in a wheel or not loadable


def nvidia_roots(paths=None):
    """The ``nvidia`` folders of the wheels, in `paths` (default sys.path) order."""
    roots = []
    for entry in (sys.path if paths is None else paths):
        d = os.path.join(entry or os.getcwd(), 'nvidia')
        if os.path.isdir(d) and os.path.realpath(d) not in [os.path.realpath(r) for r in roots]:
            roots.append(d)
    return roots


def needed(build=None):
    """The entries of CUDA_LIBS a build ('cu112', 'cu117'; None: all) links."""
    return [lib for lib in CUDA_LIBS if build is None or build in ONLY_FOR.get(lib[0], (build,))]


def resolve(paths=None, build=None):
    """[(soname, path in a wheel or None, pip package)] for every library `build` needs."""
    roots = nvidia_roots(paths)
    out = []
    for soname, folder, package in needed(build):
        found = None
        for root in roots:
            p = os.path.join(root, folder, 'lib', soname)
            if os.path.isfile(p):
                found = p
                break
        out.append((soname, found, package))
    return out


def preload(paths=None, force=False, build=None):
    """Load the wheels' CUDA libraries `build` needs (RTLD_GLOBAL) when a GPU build of mxnet is
    installed (`force`: whatever is installed; `build` None: the installed one). Never raises: what
    failed is in FAILED. Returns LOADED."""
    if build is None:
        from .gpu_support import installed_build
        build, _ = installed_build(paths)
        if not force and (build is None or build == 'cpu'):
            return LOADED
    done = {s for s, _ in LOADED}
    for soname, path, package in resolve(paths, None if build in (None, 'cpu') else build):
        if soname in done:
            continue
        if path is None:
            FAILED.append((soname, None, 'not in %s (pip install %s)' % (package, package)))
            continue
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            LOADED.append((soname, path))
        except OSError as e:
            FAILED.append((soname, path, str(e)))
    return LOADED


def locate(soname, paths=None):
    """(where, path) of one library: 'wheel' (its file), 'system' (the loader found it; the file
    it mapped, if known) or 'missing' (the loader's message). 'system' and 'missing' dlopen it."""
    for s, path, _ in resolve(paths):
        if s == soname and path:
            return 'wheel', path
    try:
        ctypes.CDLL(soname)
    except OSError as e:
        return 'missing', str(e)
    return 'system', _mapped(soname)


def _mapped(soname):
    stem = '/' + soname.split('.so')[0] + '.so'
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                if stem in line:
                    return line.split(None, 5)[-1].strip()
    except OSError:
        pass
    return '(found by the dynamic loader)'


class DriverInfo(object):
    def __init__(self, version=None, gpus=None, error=None, path=None):
        self.version, self.gpus, self.error, self.path = version, gpus, error, path


def driver_gpus():
    """The NVIDIA driver and its visible GPUs (honours CUDA_VISIBLE_DEVICES), asked through
    libcuda.so.1's driver API without mxnet. `gpus` is None when the driver cannot be asked."""
    from .gpu_support import Gpu
    try:
        cuda = ctypes.CDLL(DRIVER_LIB)
    except OSError as e:
        return DriverInfo(error='%s not found: no NVIDIA driver on this machine (%s)' % (DRIVER_LIB, e))
    path = _mapped(DRIVER_LIB)
    v = ctypes.c_int(0)
    version = None
    if cuda.cuDriverGetVersion(ctypes.byref(v)) == 0:
        version = '%d.%d' % (v.value // 1000, (v.value % 1000) // 10)
    rc = cuda.cuInit(0)
    if rc == 100:                                   # CUDA_ERROR_NO_DEVICE
        return DriverInfo(version, [], None, path)
    if rc != 0:
        return DriverInfo(version, None, 'cuInit failed with CUDA error %d' % rc, path)
    n = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(n)) != 0:
        return DriverInfo(version, None, 'cuDeviceGetCount failed', path)
    gpus = []
    for i in range(n.value):
        dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGet(ctypes.byref(dev), i)
        cuda.cuDeviceGetName(name, 256, dev)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)     # COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)     # COMPUTE_CAPABILITY_MINOR
        gpus.append(Gpu(i, name.value.decode(errors='replace'), (major.value, minor.value)))
    return DriverInfo(version, gpus, None, path)
