"""What this CPU can run that MXNet's CPU kernels depend on.

MXNet 1.9.1's bfloat16 AMP on the CPU runs only through oneDNN's bfloat16
kernels, which oneDNN builds for its `avx512_core` instruction set and up
(AVX-512 F, BW, VL and DQ; native bfloat16 from `avx512_core_bf16` on). On a
CPU without them (AVX2-only machines, e.g. many AMD EPYC and older Intel parts)
the first bfloat16 convolution fails with "could not create a primitive
descriptor iterator". oneDNN also obeys DNNL_MAX_CPU_ISA, which caps the
instruction set it uses below what the CPU has (its names, in capitals).
"""
import os

# the /proc/cpuinfo flags of oneDNN's avx512_core, the least it runs bfloat16 on
BFLOAT16_FLAGS = ('avx512f', 'avx512bw', 'avx512vl', 'avx512dq')
# DNNL_MAX_CPU_ISA values below avx512_core (oneDNN reads the exact names; others do not cap)
ISA_BELOW_AVX512_CORE = ('SSE41', 'AVX', 'AVX2', 'AVX2_VNNI', 'AVX512_MIC', 'AVX512_MIC_4OPS')


def cpu_flags(path='/proc/cpuinfo'):
    """The instruction-set flags of the first CPU in `path` (a set of lower-case names), or None
    where the file cannot be read (not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        return None
    return None


def bfloat16_problem(flags=None, environ=None):
    """None when oneDNN can run bfloat16 here, else what is missing, as one phrase.

    `flags`: the CPU's flags (default: `cpu_flags()`; None when unknown: assumed able);
    `environ`: the environment (default os.environ), read for DNNL_MAX_CPU_ISA."""
    environ = os.environ if environ is None else environ
    flags = cpu_flags() if flags is None else flags
    cap = environ.get('DNNL_MAX_CPU_ISA', '')
    if cap in ISA_BELOW_AVX512_CORE:
        return ('DNNL_MAX_CPU_ISA=%s caps oneDNN below AVX512_CORE, which its bfloat16 kernels need'
                % cap)
    if flags is None:
        return None
    missing = [f for f in BFLOAT16_FLAGS if f not in flags]
    if missing:
        return ('this CPU has no AVX-512 (%s missing), which oneDNN\'s bfloat16 kernels need'
                % ' '.join(missing))
    return None
