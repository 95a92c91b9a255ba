"""The devices a run trains on: `gpu_list`, checked against what this MXNet build can run, else CPUs."""
import os

import mxnet as mx

from . import gpu_libs, gpu_support
from .errors import TrainingError


def cpu_device_count():
    """NST_CPU_DEVICES: how many CPU devices a CPU run splits each batch over (default 1)."""
    return int(os.environ.get('NST_CPU_DEVICES', '1') or 1)


def contexts(cfg, local_rank=None):
    """The devices of `gpu_list` (checked against the GPUs this MXNet build can run on), else CPU(s).

    Under Horovod (`local_rank` given) a process drives one device:
    gpu_list[local_rank], or one CPU."""
    ids = list(cfg.gpu_list)
    if local_rank is not None:
        if not ids:
            return [mx.cpu()]
        if local_rank >= len(ids):
            raise TrainingError('Horovod process %d on this machine has no GPU: gpu_list=%s lists %d; start at '
                                'most %d processes a machine' % (local_rank, ids, len(ids), len(ids)))
        ids = [ids[local_rank]]
    if not ids:
        return [mx.cpu(i) for i in range(cpu_device_count())]
    problem = gpu_list_problem(ids)
    if problem:
        raise TrainingError(problem)
    return [mx.gpu(i) for i in ids]


def gpu_list_problem(ids):
    """Why GPUs `ids` cannot run this MXNet build here (one message naming what works), or None.
    Before any CUDA work: the build, the driver's GPUs and their compute capabilities against the
    build's table (core/gpu_support.py), so a GPU this build has no code for is named."""
    if not ids:
        return None
    build, version = gpu_support.installed_build()
    driver = gpu_libs.driver_gpus() if build != 'cpu' else gpu_libs.DriverInfo(gpus=[])
    gpus = driver.gpus
    if gpus is None and build != 'cpu':
        try:           # the driver could not be asked directly: count what mxnet sees (no capabilities)
            gpus = [gpu_support.Gpu(i, 'GPU %d' % i, None) for i in range(mx.context.num_gpus())] or None
        except mx.base.MXNetError:
            gpus = None
        if gpus is not None:
            build = None          # capabilities unknown: check the count only
    return gpu_support.check_gpu_list(ids, build, gpus, version or '', driver.error)
