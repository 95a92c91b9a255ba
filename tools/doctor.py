"""python -m tools.doctor: which MXNet build is installed and whether it can train here, on one screen.

Reports the MXNet build (cpu / cu112 / cu117) and version, Python and numpy, the OpenMP/MKL
threads in force (core/env.py's defaults unless you set them), for a GPU build each CUDA library
and where it resolves from (the nvidia-*-cu11 wheels, the system, or missing), the NVIDIA driver
and every visible GPU with its compute capability and whether this build has code for it
(core/gpu_support.py). Exit status 0 when the installed build is usable here (the CPU build
always is; a GPU build when its libraries load and at least one GPU can run it), else 2 with
`error: ...` lines that say what to do.
"""
import os
import shutil
import subprocess
import sys

from core.env import configure_threads
from core import gpu_libs, gpu_support

THREAD_KEYS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS', 'MXNET_ENGINE_TYPE')


def _nvidia_smi():
    exe = shutil.which('nvidia-smi')
    if not exe:
        return 'not found'
    try:
        r = subprocess.run([exe, '--query-gpu=index,name,driver_version', '--format=csv,noheader'],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return '%s failed: %s' % (exe, e)
    text = (r.stdout.strip() or r.stderr.strip()).replace('\n', '; ')
    return '%s: %s' % (exe, text or 'exit status %d' % r.returncode)


def main(argv=None):
    from tools import cli
    cli.parser('doctor', __doc__).parse_args(argv)          # no options: anything else is one error line
    user_set = {k for k in THREAD_KEYS if k in os.environ}
    from core.env import environment_problems
    problems = environment_problems()
    threads = configure_threads(check=False)
    rows, errors, notes = [], list(problems), []

    def row(key, text):
        rows.append('%-11s %s' % (key, text))

    builds = gpu_support.mxnet_builds()
    build, version = gpu_support.installed_build()
    gpu_build = build not in (None, 'cpu')
    if build is None:
        row('MXNet', 'not installed')
        errors.append('mxnet is not installed: run bash init.sh (CPU) or NST_GPU=1 bash init.sh (GPU)')
    else:
        kind = 'CPU build' if build == 'cpu' else 'GPU build for CUDA %s' % gpu_support.CUDA_OF_BUILD.get(
            build, build[2:])
        row('MXNet', '%s %s (%s)' % ([b[2] for b in builds if b[0] == build][0], version, kind))
    if len(builds) > 1:
        errors.append('%s are installed together and share one package folder: rerun init.sh (it keeps one)'
                      % ' and '.join('%s %s' % (b[2], b[1]) for b in builds))
    row('Python', '%s (%s)' % (sys.version.split()[0], sys.executable))
    try:
        import numpy
        row('numpy', numpy.__version__)
    except ImportError as e:
        row('numpy', 'cannot be imported: %s' % e)
        errors.append('numpy cannot be imported: rerun init.sh')
    from core.cpu import bfloat16_problem
    bf16 = bfloat16_problem()
    row('bfloat16', 'CPU AMP (dtype=bfloat16) runs here' if bf16 is None else 'NO: %s; train with dtype=float32' % bf16)
    values = dict(threads, MXNET_ENGINE_TYPE=os.environ.get('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice'))
    row('threads', ' '.join('%s=%s%s' % (k, values[k], '' if k in user_set else '*') for k in THREAD_KEYS)
        + '   (* the default of core/env.py or MXNet)')

    # CUDA libraries and the driver
    if gpu_build:
        for soname, path, package in gpu_libs.resolve(build=build):
            where, text = gpu_libs.locate(soname)
            row('CUDA libs' if soname == gpu_libs.CUDA_LIBS[0][0] else '', '%-19s %s: %s' % (soname, where, text))
            if where == 'missing':
                errors.append('%s is missing: pip install -c constraints.txt %s (NST_GPU=1 bash init.sh does)'
                              % (soname, package))
    else:
        row('CUDA libs', 'none needed (CPU build)')
    drv = gpu_libs.driver_gpus()
    if drv.gpus is None:
        row('driver', drv.error)
    else:
        row('driver', '%s, CUDA %s' % (drv.path, drv.version or 'version unknown'))
    row('nvidia-smi', _nvidia_smi())

    # GPUs
    usable = []
    if not drv.gpus:
        row('GPUs', 'none visible' + ('' if gpu_build else '; gpu_list=[] trains on the CPU'))
    for g in drv.gpus or []:
        if gpu_build:
            runs, line = gpu_support.verdict(g, build)
            row('GPU %d' % g.index, ('ok: ' if runs else 'NO: ') + line)
            if runs:
                usable.append(g.index)
        else:
            row('GPU %d' % g.index, '%s, compute capability %s (%s); this CPU build does not use it'
                % (g.name, gpu_support.fmt(g.capability), gpu_support.family(g.capability)))
    if gpu_build:
        problem, note = gpu_support.driver_check(drv.version)
        if problem:
            errors.append(problem)
        if note:
            notes.append(note)
        if drv.gpus is None:
            errors.append('%s; libmxnet.so of mxnet-%s needs the NVIDIA driver (libcuda.so.1) even to import. '
                          'Install the driver, or on a machine without an NVIDIA GPU the CPU build: bash init.sh '
                          '(NST_GPU unset)' % (drv.error, build))
        elif not drv.gpus:
            errors.append('the driver reports no CUDA device (CUDA_VISIBLE_DEVICES=%r)'
                          % os.environ.get('CUDA_VISIBLE_DEVICES'))
        elif not usable:
            errors.append('no visible GPU can run mxnet-%s 1.9.1, which has code for %s; train on the CPU with '
                          'gpu_list=[]' % (build, gpu_support.table(build)))
        elif len(usable) < len(drv.gpus):
            notes.append('only GPUs %s can run this build: list only those in gpu_list' % usable)
    elif drv.gpus:
        notes.append('this machine has NVIDIA GPUs but the CPU build of mxnet is installed: '
                     'NST_GPU=1 bash init.sh installs the GPU build')

    # MXNet itself (after core.compat loaded the CUDA libraries of a GPU build)
    if problems:
        row('mxnet', 'not imported: with the environment variables named below it would abort or misbehave')
    elif build is not None and not (gpu_build and errors):
        try:
            import mxnet as mx
            feats = mx.runtime.Features()
            on = [f for f in ('CUDA', 'CUDNN', 'NCCL', 'CUDA_RTC', 'MKLDNN', 'OPENMP', 'BLAS_OPEN', 'BLAS_MKL')
                  if feats.is_enabled(f)]
            row('mxnet', 'imports from %s; features %s' % (os.path.dirname(mx.__file__), ' '.join(on)))
        except Exception as e:        # a broken install is what this tool reports, whatever it raises
            row('mxnet', 'import failed: %s' % e)
            errors.append('mxnet does not import: %s' % e)
        else:
            if gpu_build:
                try:
                    row('', 'mx.context.num_gpus() = %d' % mx.context.num_gpus())
                except Exception as e:
                    last = str(e).strip().splitlines()[-1]
                    row('', 'mx.context.num_gpus() failed: %s' % last)
                    errors.append('mxnet imports but cannot use the GPUs through the driver: %s' % last)

    print('\n'.join(rows))
    for n in notes:
        print('note: %s' % n)
    if errors:
        for e in errors:
            print('error: %s' % e, file=sys.stderr)
        return 2
    print('usable: %s' % ('GPUs %s (gpu_list=%s) and the CPU' % (usable, usable) if gpu_build
                          else 'CPU training (gpu_list=[])'))
    return 0


if __name__ == '__main__':
    from tools.cli import output_written
    sys.exit(output_written(main))
