"""GPU support without a GPU: the compute-capability table and its messages (fake devices), the
CUDA library resolver (a fake site-packages tree; the real nvidia-*-cu11 wheels when NST_CUDA_SITE
names a folder they were installed into), python -m tools.doctor on the CPU build, and the
trainer's preflight with fake device data."""
import os
import subprocess
import sys
import types

import pytest

from core import gpu_libs, gpu_support
from core.gpu_support import Gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H100 = Gpu(0, 'NVIDIA H100 80GB HBM3', (9, 0))
L4 = Gpu(0, 'NVIDIA L4', (8, 9))
GTX1080 = Gpu(0, 'NVIDIA GeForce GTX 1080', (6, 1))
K80 = Gpu(0, 'Tesla K80', (3, 7))


@pytest.mark.parametrize('build', ['cu112', 'cu117'])
def test_capability_table(build):
    archs = gpu_support.BUILD_ARCHS[build]
    assert archs == ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
    expect = {(5, 0): (5, 0), (5, 2): (5, 0), (6, 1): (6, 0), (7, 0): (7, 0), (7, 5): (7, 0), (8, 0): (8, 0),
              (8, 6): (8, 6), (8, 9): (8, 6), (3, 7): None, (9, 0): None, (10, 0): None, (12, 0): None}
    for cc, code in expect.items():
        assert gpu_support.code_for(cc, archs) == code, cc


def test_hopper_refused_naming_it():
    msg = gpu_support.check_gpu_list([0], 'cu112', [H100])
    assert msg and 'NVIDIA H100 80GB HBM3' in msg and 'compute capability 9.0' in msg and 'Hopper' in msg
    assert '5.0, 6.0, 7.0, 8.0, 8.6' in msg and 'gpu_list=[]' in msg and 'no build of it runs on Hopper' in msg


def test_kepler_refused():
    msg = gpu_support.check_gpu_list([0], 'cu117', [K80])
    assert msg and 'Tesla K80' in msg and '3.7' in msg and 'Kepler' in msg and 'older than any' in msg


@pytest.mark.parametrize('gpu, code', [(L4, '8.6'), (GTX1080, '6.0')])
def test_ada_and_pascal_accepted(gpu, code):
    assert gpu_support.check_gpu_list([0], 'cu112', [gpu]) is None
    runs, line = gpu_support.verdict(gpu, 'cu112')
    assert runs and 'the %s code' % code in line


def test_gpu_list_messages():
    assert 'sees no GPU' in gpu_support.check_gpu_list([0], 'cpu', None, '1.9.1')
    assert 'gpu_list=[]' in gpu_support.check_gpu_list([0], 'cpu', None, '1.9.1')
    assert 'libcuda.so.1' in gpu_support.check_gpu_list([0], 'cu112', None, driver_error='libcuda.so.1 not found')
    assert 'no CUDA device' in gpu_support.check_gpu_list([0], 'cu112', [])
    assert 'only 1 GPU(s) are visible' in gpu_support.check_gpu_list([0, 1], 'cu112', [L4])
    mixed = [Gpu(0, 'NVIDIA H100', (9, 0)), Gpu(1, 'NVIDIA A100', (8, 0))]
    msg = gpu_support.check_gpu_list([0, 1], 'cu112', mixed)
    assert 'GPU 0 (NVIDIA H100' in msg and 'Usable here: gpu_list=[1]' in msg
    assert gpu_support.check_gpu_list([1], 'cu112', mixed) is None
    assert gpu_support.check_gpu_list([], 'cpu', None) is None


def test_driver_check():
    assert gpu_support.driver_check('10.2')[0] and gpu_support.driver_check('11.4')[1]
    assert gpu_support.driver_check('12.2') == (None, None) and gpu_support.driver_check(None) == (None, None)


def test_mxnet_build_from_metadata(tmp_path):
    for name, version in [('mxnet_cu117', '1.9.1')]:
        d = tmp_path / ('%s-%s.dist-info' % (name, version))
        d.mkdir()
        (d / 'METADATA').write_text('Metadata-Version: 2.1\nName: %s\nVersion: %s\n' % (name.replace('_', '-'), version))
    assert gpu_support.installed_build([str(tmp_path)]) == ('cu117', '1.9.1')
    assert gpu_support.installed_build([str(tmp_path / 'none')]) == (None, None)
    assert gpu_support.installed_build()[0] == 'cpu'          # this environment


def fake_site(root, skip=()):
    """A site-packages tree laid out like the nvidia-*-cu11 wheels, with empty files for libraries."""
    for soname, folder, _ in gpu_libs.CUDA_LIBS:
        if soname not in skip:
            lib = root / 'nvidia' / folder / 'lib'
            lib.mkdir(parents=True, exist_ok=True)
            (lib / soname).write_bytes(b'')
    return str(root)


def test_resolver_on_a_fake_site_packages(tmp_path):
    site = fake_site(tmp_path, skip=('libcudnn.so.8',))
    found = {s: (p, pkg) for s, p, pkg in gpu_libs.resolve([site])}
    assert set(found) == {s for s, _, _ in gpu_libs.CUDA_LIBS}
    assert found['libcudart.so.11.0'][0] == os.path.join(site, 'nvidia', 'cuda_runtime', 'lib', 'libcudart.so.11.0')
    assert found['libcudnn.so.8'] == (None, 'nvidia-cudnn-cu11')
    assert gpu_libs.locate('libnccl.so.2', [site]) == ('wheel', os.path.join(site, 'nvidia', 'nccl', 'lib',
                                                                              'libnccl.so.2'))
    # what each build's libmxnet.so links (read from the wheels): mxnet-cu117 also libcusparse.so.11
    cu112 = [s for s, _, _ in gpu_libs.resolve([site], 'cu112')]
    cu117 = [s for s, _, _ in gpu_libs.resolve([site], 'cu117')]
    assert set(cu117) - set(cu112) == {'libcusparse.so.11'} and len(cu112) == 10
    assert {'libcudart.so.11.0', 'libcublas.so.11', 'libcufft.so.10', 'libcusolver.so.11', 'libcurand.so.10',
            'libnvrtc.so.11.2', 'libnvToolsExt.so.1', 'libcudnn.so.8', 'libnccl.so.2'} <= set(cu112)


def run(code, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, env=e, timeout=300)


def test_preload_never_raises_and_is_a_no_op_for_the_cpu_build(tmp_path):
    site = fake_site(tmp_path)
    r = run('import sys; sys.path.append(%r)\n'
            'import core.compat, mxnet\n'
            'from core import gpu_libs\n'
            'assert gpu_libs.LOADED == [] and gpu_libs.FAILED == [], (gpu_libs.LOADED, gpu_libs.FAILED)\n'
            'assert gpu_libs.preload() == []\n'                        # the CPU build: nothing
            'gpu_libs.preload(force=True, build="cu117")\n'            # empty files: all fail, nothing raised
            'assert gpu_libs.LOADED == [] and len(gpu_libs.FAILED) == %d\n'
            'print("ok", mxnet.__version__)' % (site, len(gpu_libs.CUDA_LIBS)))
    assert r.returncode == 0 and 'ok 1.9.1' in r.stdout, r.stderr


@pytest.mark.skipif(not os.path.isdir(os.path.join(os.environ.get('NST_CUDA_SITE', '/nonexistent'), 'nvidia')),
                    reason='NST_CUDA_SITE names no folder holding the nvidia-*-cu11 wheels '
                           '(pip install --no-deps --target DIR <their pins in constraints.txt>)')
def test_real_nvidia_wheels_resolve_and_load():
    """Every library libmxnet.so links, but the driver's, resolves in the real wheels and loads."""
    site = os.environ['NST_CUDA_SITE']
    r = run('import ctypes\n'
            'from core import gpu_libs\n'
            'assert all(p for _, p, _ in gpu_libs.resolve([%r])), gpu_libs.resolve([%r])\n'
            'gpu_libs.preload([%r], build="cu117")\n'
            'assert not gpu_libs.FAILED and len(gpu_libs.LOADED) == %d, gpu_libs.FAILED\n'
            'c = ctypes.CDLL("libcudnn.so.8"); c.cudnnGetVersion.restype = ctypes.c_size_t\n'
            'assert 8000 <= c.cudnnGetVersion() < 9000\n'
            'print("loaded", len(gpu_libs.LOADED))' % (site, site, site, len(gpu_libs.CUDA_LIBS)))
    assert r.returncode == 0 and 'loaded' in r.stdout, r.stderr


def test_doctor_on_the_cpu_build():
    r = subprocess.run([sys.executable, '-m', 'tools.doctor'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    import numpy
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'mxnet 1.9.1 (CPU build)' in out and 'numpy       %s' % numpy.__version__ in out
    assert sys.version.split()[0] in out and 'OMP_NUM_THREADS=' in out and 'MKL_NUM_THREADS=' in out
    assert 'none needed (CPU build)' in out and 'usable: CPU training' in out


def fake_gpu_machine(monkeypatch, gpus, build='cu112'):
    monkeypatch.setattr(gpu_support, 'mxnet_builds', lambda path=None: [(build, '1.9.1', 'mxnet-' + build)])
    monkeypatch.setattr(gpu_support, 'installed_build', lambda path=None: (build, '1.9.1'))
    monkeypatch.setattr(gpu_libs, 'driver_gpus', lambda: gpu_libs.DriverInfo('12.2', gpus, None, '/usr/lib/libcuda.so.1'))
    monkeypatch.setattr(gpu_libs, 'locate', lambda soname, paths=None: ('wheel', '/site/nvidia/x/lib/' + soname))


def test_doctor_with_fake_gpus(monkeypatch, capsys):
    from tools import doctor
    fake_gpu_machine(monkeypatch, [H100])
    assert doctor.main([]) == 2
    out, err = capsys.readouterr()
    assert 'GPU build for CUDA 11.2' in out and 'NO: GPU 0 (NVIDIA H100' in out and 'libcudnn.so.8' in out
    assert 'error: no visible GPU can run mxnet-cu112' in err
    fake_gpu_machine(monkeypatch, [L4], build='cu117')
    assert doctor.main([]) == 0
    out, _ = capsys.readouterr()
    assert 'ok: GPU 0 (NVIDIA L4, compute capability 8.9, Ada): runs mxnet-cu117 with the 8.6 code' in out
    assert 'usable: GPUs [0]' in out


def test_trainer_preflight_with_fake_devices(monkeypatch):
    import mxnet as mx
    from core import devices as trainer
    cfg = types.SimpleNamespace(gpu_list=[0])
    fake_gpu_machine(monkeypatch, [H100])
    with pytest.raises(trainer.TrainingError) as e:
        trainer.contexts(cfg)
    assert 'NVIDIA H100 80GB HBM3' in str(e.value) and '9.0' in str(e.value) and 'gpu_list=[]' in str(e.value)
    with pytest.raises(trainer.TrainingError):
        trainer.contexts(cfg, local_rank=0)                     # under Horovod too
    fake_gpu_machine(monkeypatch, [Gpu(0, 'Tesla K80', (3, 7)), Gpu(1, 'NVIDIA L4', (8, 9))])
    assert trainer.contexts(types.SimpleNamespace(gpu_list=[1])) == [mx.gpu(1)]
    with pytest.raises(trainer.TrainingError, match='Tesla K80.*Usable here: gpu_list=\\[1\\]'):
        trainer.contexts(types.SimpleNamespace(gpu_list=[0, 1]))
    fake_gpu_machine(monkeypatch, [], build='cpu')
    with pytest.raises(trainer.TrainingError, match='sees no GPU'):
        trainer.contexts(cfg)
