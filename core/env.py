"""Threading defaults, applied before mxnet is imported.

MXNet on the CPU runs its operators on one OpenMP thread unless told
otherwise; measured here, a ResNet-20 step ran 1.8x faster on 2 cores with
OMP_NUM_THREADS=2. Values the user set are never changed, but they are checked first: MXNet
parses several of them when it is imported and aborts (OMP_NUM_THREADS=abc: dmlc::ParamError, exit
134) or misbehaves (MXNET_CPU_WORKER_NTHREADS=-3: std::bad_alloc, then a hang) on a bad one.
"""
import os
import re
import sys

# variables read as a count of threads or devices (a whole number >= 1)
COUNTS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS',
          'MXNET_GPU_WORKER_NTHREADS', 'MXNET_CPU_PRIORITY_NTHREADS', 'NST_CPU_DEVICES', 'NST_LOCAL_WORKERS')
ENGINES = ('ThreadedEnginePerDevice', 'ThreadedEngine', 'NaiveEngine')
TUNED_TYPES = ('float32', 'float16', 'float64', 'int8', 'uint8', 'int32', 'int64')
BINDINGS = ('true', 'false', 'master', 'primary', 'close', 'spread')
_WHOLE = re.compile(r'^\s*[1-9]\d*\s*$')
# MXNET_* variables MXNet reads as text; every other MXNET_* variable it reads (dmlc::GetEnv) is a
# number or a flag, and a value that does not parse aborts the process (dmlc::ParamError, exit 134),
# at import or at the first operator that reads it (MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN,
# MXNET_MKLDNN_CACHE_NUM, ...)
MXNET_TEXT = ('MXNET_ENGINE_TYPE', 'MXNET_HOME', 'MXNET_GLUON_REPO', 'MXNET_SUBGRAPH_BACKEND', 'MXNET_LIBRARY_PATH',
              'MXNET_GPU_MEM_POOL_TYPE', 'MXNET_USE_OPERATOR_TUNING', 'MXNET_PROFILER_MODE', 'MXNET_PROFILER_FILENAME',
              'MXNET_CUDA_LIB_CHECKING', 'MXNET_CUDNN_LIB_CHECKING', 'MXNET_STORAGE_FALLBACK_LOG_VERBOSE',
              'MXNET_CUDA_VERSION_CHECKING', 'MXNET_CUDNN_VERSION_CHECKING')
_INT = re.compile(r'^\s*[-+]?\d+\s*$')
# MXNET_* whole numbers that must be at least 1 (copies of a temporary space or of the random
# generator's state: 0 divides by zero, SIGFPE, and a negative one is a bad_alloc)
MXNET_POSITIVE = ('MXNET_CPU_TEMP_COPY', 'MXNET_GPU_TEMP_COPY', 'MXNET_CPU_PARALLEL_RAND_COPY',
                  'MXNET_GPU_PARALLEL_RAND_COPY', 'MXNET_GPU_CUDNN_DROPOUT_STATE_COPY')
# thread counts beyond which MXNet's engine cannot start its threads (it aborts: 'terminate called')
MAX_THREADS = 4096
# the OpenMP thread counts of the operators, and how many times the cores they may be (more: refused)
OPENMP_THREADS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
OVERSUBSCRIBED = 16
ENGINE_THREADS = ('MXNET_CPU_WORKER_NTHREADS', 'MXNET_GPU_WORKER_NTHREADS', 'MXNET_CPU_PRIORITY_NTHREADS')
# MXNET_* whole numbers that must not be negative (MXNet reserves a vector of that size: a negative
# one is a 'vector::reserve' traceback at the first training step)
MXNET_NONNEGATIVE = ('MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN', 'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_FWD',
                     'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_BWD', 'MXNET_EXEC_BULK_EXEC_MAX_NODE_INFERENCE')
# an OpenMP schedule libgomp reads: [[non]monotonic:]kind[,chunk]
_OMP_SCHEDULE = re.compile(r'^\s*((non)?monotonic:)?(static|dynamic|guided|auto)\s*(,\s*[1-9]\d*)?\s*$', re.I)
_STACK = re.compile(r'^\s*(\d+)\s*([bkmgBKMG]?)\s*$')
_NUMBER = re.compile(r'^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$')
# MXNET_* variables MXNet reads as a flag (dmlc: 0, 1, true or false; '2' aborts) or as a decimal number
MXNET_FLAGS = ('MXNET_MKLDNN_ENABLED', 'MXNET_MKLDNN_DEBUG', 'MXNET_USE_FUSION', 'MXNET_ENABLE_GPU_P2P',
               'MXNET_SAFE_ACCUMULATION', 'MXNET_EXEC_ENABLE_INPLACE', 'MXNET_ENFORCE_DETERMINISM',
               'MXNET_EXEC_BULK_EXEC_INFERENCE', 'MXNET_EXEC_BULK_EXEC_TRAIN', 'MXNET_BACKWARD_DO_MIRROR',
               'MXNET_SUBGRAPH_VERBOSE', 'MXNET_KVSTORE_USETREE', 'MXNET_KVSTORE_LOGTREE', 'MXNET_PROFILER_AUTOSTART',
               'MXNET_MKLDNN_QUANTIZE_FC_FUSION')
#: flags MXNet's Python code reads with int(): 0 or 1, never true/false (a ValueError traceback at import, or
#: at the first optimizer step)
MXNET_PYTHON_FLAGS = ('MXNET_UPDATE_ON_KVSTORE', 'MXNET_ENABLE_CYTHON', 'MXNET_ENFORCE_CYTHON')
MXNET_DECIMALS = ('MXNET_KVSTORE_TREE_LINK_USAGE_PENALTY',)
_FLAG = ('true', 'false', 'True', 'False', 'TRUE', 'FALSE', '0', '1')
SUBGRAPH_BACKENDS = ('', 'NONE', 'MKLDNN', 'MKLDNN_QUANTIZE', 'MKLDNN_QUANTIZE_FC', 'TensorRT')


_WORDS = lambda *words: (lambda v: v.lower() in words)
_WHOLE_AT_LEAST = lambda low: (lambda v: bool(re.match(r'^\+?[0-9]+$', v)) and int(v) >= low)
#: libgomp's variables besides those checked on their own: {name: (check of the stripped value, a valid
#: example)}; libgomp prints "Invalid value for environment variable ..." and ignores a value they refuse
LIBGOMP_VALUES = {
    'OMP_WAIT_POLICY': (_WORDS('active', 'passive'), 'passive (or active)'),
    'OMP_NESTED': (_WORDS('true', 'false'), 'false (or true)'),
    'OMP_CANCELLATION': (_WORDS('true', 'false'), 'false (or true)'),
    'OMP_DISPLAY_AFFINITY': (_WORDS('true', 'false'), 'false (or true)'),
    'OMP_DISPLAY_ENV': (_WORDS('true', 'false', 'verbose'), 'false (true or verbose)'),
    'OMP_TARGET_OFFLOAD': (_WORDS('default', 'mandatory', 'disabled'), 'default (mandatory or disabled)'),
    'OMP_MAX_ACTIVE_LEVELS': (_WHOLE_AT_LEAST(0), '1 (a whole number >= 0)'),
    'OMP_MAX_TASK_PRIORITY': (_WHOLE_AT_LEAST(0), '0 (a whole number >= 0)'),
    'OMP_DEFAULT_DEVICE': (_WHOLE_AT_LEAST(0), '0 (a whole number >= 0)'),
    'OMP_THREAD_LIMIT': (_WHOLE_AT_LEAST(1), '2 (a whole number >= 1)'),
    'GOMP_DEBUG': (_WHOLE_AT_LEAST(0), '0 (a whole number >= 0)'),
    'GOMP_SPINCOUNT': (lambda v: bool(re.match(r'^(\d+\s*[kKmMgGtT]?|infinite|infinity)$', v, re.I)),
                       '300000 (a whole number, with k, M, G or T, or infinite)'),
    'OMP_PLACES': (lambda v: bool(re.match(r'^((threads|cores|sockets|ll_caches|numa_domains)\s*(\(\s*\d+\s*\))?|'
                                           r'[\s{}\d,:!-]*\d[\s{}\d,:!-]*)$', v, re.I)),
                   'cores (threads, sockets, or CPU sets such as {0,1})'),
}
#: tqdm's parameters that its TQDM_<NAME> variables set, read with int() or float() when tqdm is imported
TQDM_NUMBERS = dict([(n, float) for n in ('mininterval', 'maxinterval', 'smoothing', 'delay', 'total', 'miniters')] +
                    [(n, int) for n in ('initial', 'unit_divisor', 'ncols', 'position', 'nrows')])
_C_NUMBER = r'(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)'          # strtoul's base 0: hex, octal, decimal
_CPU_RANGE = re.compile(r'\s*%s(\s*-\s*%s(\s*:\s*%s)?)?\s*$' % (_C_NUMBER, _C_NUMBER, _C_NUMBER))


def _c_int(text):
    """A number as C's strtoul reads it in base 0: 0x... hexadecimal, 0... octal, else decimal."""
    if text.lower().startswith('0x'):
        return int(text, 16)
    return int(text, 8) if text.startswith('0') and len(text) > 1 else int(text)


def _cpu_list_ok(value):
    """Whether GOMP_CPU_AFFINITY `value` is a list libgomp reads: CPU numbers and ranges FIRST-LAST[:STRIDE]
    (numbers in C's bases, LAST >= FIRST, STRIDE >= 1), separated by spaces or commas."""
    if not value.strip():
        return False
    for item in re.split(r'(?<![-:\s])(?:\s*,\s*|\s+)(?![-:\s,])', value.strip()):   # (one comma at most between)
        m = _CPU_RANGE.match(item)
        if not m:
            return False
        if m.group(3) and (_c_int(m.group(3)) < _c_int(m.group(1)) or (m.group(5) and _c_int(m.group(5)) < 1)):
            return False
    return True


def _all_errors(options):
    """The warning filters among `options` (-W / PYTHONWARNINGS entries, action:message:category:module)
    that turn every module's warnings into errors."""
    out = []
    for option in options:
        parts = [p.strip() for p in option.split(':')]
        action, category, module = parts[0], (parts[2] if len(parts) > 2 else ''), (parts[3] if len(parts) > 3 else '')
        if action and 'error'.startswith(action) and not module and category in ('', 'Warning', 'DeprecationWarning'):
            out.append(option)
    return out


def in_a_job(argv=None):
    """Whether command line `argv` (default sys.argv) is one a distributed job's launcher starts for
    each of its processes: train.py with a kv_store=dist_* override (python -m tools.launch
    refuses a train.py command without one)."""
    argv = sys.argv if argv is None else argv
    given = [a.split('=', 1)[1].strip() for a in argv[1:] if a.startswith('kv_store=')]
    return bool(argv) and os.path.basename(argv[0]) == 'train.py' and bool(given) and given[-1].startswith('dist')


def job_role(environ=None):
    """What this process is in a job of several processes, from the variables its launcher set:
    'rank' (a Horovod rank: horovodrun sets HOROVOD_RANK, mpirun OMPI_COMM_WORLD_RANK), 'worker',
    'server' or 'scheduler' (a parameter-server job's DMLC_ROLE, as set), or None (no job)."""
    environ = os.environ if environ is None else environ
    if 'HOROVOD_RANK' in environ or 'OMPI_COMM_WORLD_RANK' in environ:
        return 'rank'
    return environ.get('DMLC_ROLE')


def _stack_problems(environ):
    """OMP_STACKSIZE (GOMP_STACKSIZE) that libgomp cannot parse, or one that no thread can be created
    with (the stack of every OpenMP thread, beyond this machine's memory: 'libgomp: Thread creation
    failed' and exit 1 at the first parallel operator)."""
    out = []
    for key in ('OMP_STACKSIZE', 'GOMP_STACKSIZE'):
        value = environ.get(key)
        if value is None:
            continue
        m = _STACK.match(value)
        if not m or int(m.group(1)) == 0:
            out.append('environment variable %s=%r is not a stack size: give a whole number with an optional unit '
                       'B, K, M or G (e.g. %s=16M; a plain number is in K), or unset it' % (key, value, key))
            continue
        size = int(m.group(1)) * {'b': 1, '': 1024, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3}[m.group(2).lower()]
        memory = _memory_bytes()
        if memory and size >= memory // 4:
            out.append('environment variable %s=%r gives every OpenMP thread a stack of %.3g GiB, too much for this '
                       'machine\'s %.3g GiB of memory: the first parallel operator would stop with "libgomp: Thread '
                       'creation failed"; set e.g. %s=16M, or unset it' % (key, value, size / 1024. ** 3,
                                                                          memory / 1024. ** 3, key))
    return out


def _memory_bytes():
    """This machine's memory and swap in bytes (Linux), None where /proc/meminfo is not there."""
    try:
        with open('/proc/meminfo') as f:
            fields = dict(line.split(':', 1) for line in f if ':' in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in ('MemTotal', 'SwapTotal') if k in fields)
    except (OSError, ValueError):
        return None


def environment_problems(environ=None, warnoptions=None, argv=None):
    """One sentence for each variable this project or MXNet reads whose value cannot work: its
    name, its value and a value that works (`warnoptions`: the interpreter's -W options; `argv`:
    the command, default sys.argv, which decides whether a parameter-server role can be its)."""
    environ = os.environ if environ is None else environ
    out = []
    try:
        os.getcwd()
    except FileNotFoundError:
        out.append('the folder this command runs in was deleted (or moved away) after you changed into it: every '
                   'relative path would fail; cd to an existing folder (e.g. the project folder) and run it again')
    optimize = environ.get('PYTHONOPTIMIZE', '').strip()
    level = max(sys.flags.optimize if environ is os.environ else 0,
                int(optimize) if optimize.isdigit() else (1 if optimize else 0))
    if level >= 2:
        out.append('PYTHONOPTIMIZE=2 (or python -OO) strips docstrings, from which MXNet\'s import builds its '
                   'operators\' documentation: the command would stop with a traceback; use PYTHONOPTIMIZE=1 (-O), or '
                   'unset it')
    errors = _all_errors([o for o in environ.get('PYTHONWARNINGS', '').split(',') if o.strip()] +
                         list(warnoptions or []))
    if errors:
        category = (errors[0].split(':') + ['', ''])[2].strip()
        what = 'every %s' % category if category and category != 'Warning' else 'every warning'
        out.append('warning filter %r (PYTHONWARNINGS or -W) turns %s into an error, and MXNet and gluoncv '
                   'warn on their own (numpy\'s deprecated names, at import): the command would stop with a '
                   'traceback; unset it, or limit it to your own module (e.g. PYTHONWARNINGS=error:::mymodule)'
                   % (errors[0], what))
    for key in COUNTS:
        value = environ.get(key)
        if value is None:
            continue
        if not _WHOLE.match(value):             # (MXNet reads OMP_NUM_THREADS as one whole number)
            nested = ',' in value and all(_WHOLE.match(v) for v in value.split(','))
            out.append('environment variable %s=%r is not a whole number >= 1%s: set e.g. %s=2, or unset it'
                       % (key, value, ' (MXNet reads it as one number, not an OpenMP list of nested levels)'
                          if nested else '', key))
        elif key in OPENMP_THREADS and int(value) > OVERSUBSCRIBED * cpu_count():
            out.append('environment variable %s=%s is more than %d times this machine\'s %d core(s): every operator '
                       'would share the cores among that many threads, and training would crawl; set at most the cores (%s=%d), or unset it'
                       % (key, value, OVERSUBSCRIBED, cpu_count(), key, cpu_count()))
        elif key in ENGINE_THREADS and int(value) > MAX_THREADS:
            out.append('environment variable %s=%r asks MXNet\'s engine for more threads than it can start (MXNet would '
                       'abort); set at most %d (the cores: %d), or unset it'
                       % (key, value, MAX_THREADS, cpu_count()))
    for key in sorted(environ):
        if not key.startswith('MXNET_') or key in MXNET_TEXT or key in COUNTS:
            continue
        value = environ[key]
        if key in MXNET_PYTHON_FLAGS:
            if not _INT.match(value):
                out.append('environment variable %s=%r is not 0 or 1: MXNet\'s Python code reads it with int() and would '
                           'stop with a ValueError; set %s=0 or 1, or unset it' % (key, value, key))
        elif key in MXNET_FLAGS:
            if value.strip() not in _FLAG:
                out.append('environment variable %s=%r is not a flag: MXNet reads it as 0, 1, true or false and '
                           'would abort (dmlc::ParamError); set %s=0 or 1, or unset it' % (key, value, key))
        elif not (_NUMBER if key in MXNET_DECIMALS else _INT).match(value):
            out.append('environment variable %s=%r is not a %s: MXNet reads it as one and would abort '
                       '(dmlc::ParamError); set one (MXNet\'s docs/static_site/src/pages/api/faq/env_var.md lists '
                       'each) or unset it' % (key, value, 'number' if key in MXNET_DECIMALS else 'whole number'))
        elif key in MXNET_POSITIVE and int(value) < 1:
            out.append('environment variable %s=%r is not a whole number >= 1: MXNet keeps that many copies and would '
                       'stop (%s); set %s=1, or unset it' % (key, value, 'SIGFPE' if int(value) == 0 else 'bad_alloc',
                                                              key))
        elif key in MXNET_NONNEGATIVE and int(value) < 0:
            out.append('environment variable %s=%r is negative: MXNet sizes a buffer by it and would stop at the first '
                       'step (vector::reserve); set a whole number >= 0 (MXNet\'s default is 15), or unset it'
                       % (key, value))
    out += _stack_problems(environ)
    backend = environ.get('MXNET_SUBGRAPH_BACKEND')
    if backend is not None and backend not in SUBGRAPH_BACKENDS:
        out.append('environment variable MXNET_SUBGRAPH_BACKEND=%r is not a subgraph backend of this MXNet (an export '
                   'would fail binding its check): set one of %s, or unset it'
                   % (backend, ', '.join(b for b in SUBGRAPH_BACKENDS if b)))
    repo = environ.get('MXNET_GLUON_REPO')
    if repo is not None and not re.match(r'^(https?|file)://', repo.strip()):
        out.append('environment variable MXNET_GLUON_REPO=%r is not a URL: gluoncv downloads weights from it; set '
                   'e.g. MXNET_GLUON_REPO=https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/, or unset it'
                   % repo)
    tuning = environ.get('MXNET_USE_OPERATOR_TUNING')
    if tuning is not None and tuning.strip() not in ('0', '1') and not all(
            t.strip() in TUNED_TYPES for t in tuning.split(',') if t.strip()):
        out.append('environment variable MXNET_USE_OPERATOR_TUNING=%r is neither 0, 1 nor a list of types (%s): '
                   'MXNet would print an error and go on; set MXNET_USE_OPERATOR_TUNING=1, or unset it'
                   % (tuning, ', '.join(TUNED_TYPES)))
    bind = environ.get('OMP_PROC_BIND')
    if bind is not None and not all(b.strip().lower() in BINDINGS for b in bind.split(',')):
        out.append('environment variable OMP_PROC_BIND=%r is not an OpenMP binding: set one of %s (or a '
                   'comma-separated list of them), or unset it' % (bind, ', '.join(BINDINGS)))
    for key in sorted(k for k in environ if k.startswith('TQDM_')):
        kind = TQDM_NUMBERS.get(key[len('TQDM_'):].lower())
        if kind is not None:
            try:
                kind(environ[key])
            except ValueError:
                out.append('environment variable %s=%r is not %s: tqdm (the progress bars) reads it as one and would '
                           'stop with a ValueError; set a number, or unset it'
                           % (key, environ[key], 'a whole number' if kind is int else 'a number'))
    library = environ.get('MXNET_LIBRARY_PATH')
    if library and (not os.path.isfile(library) or not os.path.isabs(library)):      # (empty: MXNet ignores it)
        out.append('environment variable MXNET_LIBRARY_PATH=%r is %s: MXNet would warn through the root logger (every '
                   'message printed twice after it) and load its own library; unset it, or give the absolute path '
                   'of a libmxnet.so' % (library, 'not absolute' if os.path.isfile(library) else 'not a file'))
    if environ.get('PYTHONINSPECT'):
        out.append('environment variable PYTHONINSPECT=%r makes Python open its interactive prompt after the command '
                   '(and print a SystemExit traceback when it ends with a status): unset it (python -i does the same '
                   'for one command)' % environ['PYTHONINSPECT'])
    home = environ.get('MXNET_HOME')
    if home and os.path.exists(home) and not os.path.isdir(home):
        out.append('environment variable MXNET_HOME=%r is a file, not a folder: MXNet and gluoncv keep weights in '
                   'MXNET_HOME/models; set it to a folder, or unset it (~/.mxnet)' % home)
    role = environ.get('DMLC_ROLE')
    if role and role not in ('server', 'scheduler', 'worker'):
        out.append('environment variable DMLC_ROLE=%r is not a parameter-server role (worker, server or scheduler, '
                   'in lower case): MXNet would stop at import; unset DMLC_ROLE (left from another job?): python -m '
                   'tools.launch sets it for each process it starts' % role)
    elif role in ('server', 'scheduler', 'worker'):
        missing = [k for k in ('DMLC_NUM_WORKER', 'DMLC_NUM_SERVER', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT')
                   if not environ.get(k)]
        if missing:
            out.append('environment variable DMLC_ROLE=%r (a parameter-server role) is set without %s: MXNet would stop '
                       'at import; unset DMLC_ROLE (left from another job?): python -m tools.launch sets it, with the '
                       'others, for each process it starts' % (role, ', '.join(missing)))
        elif role != 'worker' and not in_a_job(argv):
            out.append('environment variable DMLC_ROLE=%r (with DMLC_PS_ROOT_URI=%s, DMLC_PS_ROOT_PORT=%s) makes '
                       'MXNet\'s import serve a distributed job as its %s and wait for the job\'s other processes, '
                       'for good, and this command takes no part in a job (only `train.py ... kv_store=dist_sync` '
                       'started by python -m tools.launch does): unset DMLC_ROLE (left from another job?)'
                       % (role, environ.get('DMLC_PS_ROOT_URI'), environ.get('DMLC_PS_ROOT_PORT'), role))
    dynamic = environ.get('OMP_DYNAMIC')
    if dynamic is not None and dynamic.strip().lower() not in ('true', 'false'):
        out.append('environment variable OMP_DYNAMIC=%r is neither true nor false: libgomp would print an error and '
                   'ignore it; set OMP_DYNAMIC=false, or unset it' % dynamic)
    for key, (valid, example) in sorted(LIBGOMP_VALUES.items()):
        value = environ.get(key)
        if value is not None and not valid(value.strip()):
            out.append('environment variable %s=%r is not a value libgomp reads: it would print an error and ignore '
                       'it; set e.g. %s=%s, or unset it' % (key, value, key, example))
    affinity = environ.get('GOMP_CPU_AFFINITY')
    if affinity is not None and not _cpu_list_ok(affinity):
        out.append('environment variable GOMP_CPU_AFFINITY=%r is not a list of CPU numbers and ranges (e.g. "0 1" or '
                   '0-3 or 0-7:2): libgomp would print an error, and on some values spin at start-up for good; set '
                   'e.g. GOMP_CPU_AFFINITY=0-%d, or unset it' % (affinity, cpu_count() - 1))
    schedule = environ.get('OMP_SCHEDULE')
    if schedule is not None and not _OMP_SCHEDULE.match(schedule):
        out.append('environment variable OMP_SCHEDULE=%r is not an OpenMP schedule: libgomp would print an error and '
                   'ignore it; set e.g. OMP_SCHEDULE=static or dynamic,4, or unset it' % schedule)
    wait = environ.get('NST_SCHEDULER_WAIT')
    if wait is not None and not (_NUMBER.match(wait) and float(wait) >= 0):
        out.append('environment variable NST_SCHEDULER_WAIT=%r is not a number of seconds >= 0: set e.g. '
                   'NST_SCHEDULER_WAIT=60, or unset it' % wait)
    engine = environ.get('MXNET_ENGINE_TYPE')
    if engine is not None and engine not in ENGINES:
        out.append('environment variable MXNET_ENGINE_TYPE=%r is not an MXNet engine: set one of %s (e.g. '
                   'MXNET_ENGINE_TYPE=ThreadedEnginePerDevice), or unset it' % (engine, ', '.join(ENGINES)))
    return out


SCHEDULER_WAIT = 60.0          # seconds a job's process waits for its scheduler (NST_SCHEDULER_WAIT)


def wait_for_scheduler(environ=None, seconds=None):
    """For a server or worker of a parameter-server job (DMLC_ROLE): wait until its scheduler
    (DMLC_PS_ROOT_URI:DMLC_PS_ROOT_PORT) accepts a connection, at most `seconds`; None then, or one
    sentence saying that none answers. MXNet itself would wait for it for good, deaf to SIGTERM and
    Ctrl-C; this wait is in Python, so both stop it."""
    import socket
    import time
    environ = os.environ if environ is None else environ
    if environ.get('DMLC_ROLE') not in ('server', 'worker'):
        return None
    if seconds is None:
        seconds = float(environ.get('NST_SCHEDULER_WAIT') or SCHEDULER_WAIT)
    host, port = environ.get('DMLC_PS_ROOT_URI'), environ.get('DMLC_PS_ROOT_PORT', '')
    try:
        address = (host, int(port))
    except ValueError:
        return 'environment variable DMLC_PS_ROOT_PORT=%r is not a port number: the launcher sets it; unset the ' \
               'DMLC_* variables (left from another job?), or start the job with python -m tools.launch' % port
    deadline = time.time() + seconds
    while True:
        try:
            socket.create_connection(address, timeout=2).close()
            return None
        except OSError:
            if time.time() >= deadline:
                break
            time.sleep(0.5)
    return ('no scheduler answers at %s:%s (DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT) after %.0f s, and this %s of a '
            'distributed job (DMLC_ROLE=%s) would wait for it for good: start the job with python -m tools.launch, '
            'which starts its scheduler, or unset the DMLC_* variables (left from another job?)'
            % (host, port, seconds, environ['DMLC_ROLE'], environ['DMLC_ROLE']))


def end_with_launcher():
    """In a process `tools.launch --launcher local`, `tools.compare` or `tools.reproduce` started
    (NST_LAUNCHER_PID: the launcher's process id, an ancestor of this one), a helper thread that sends
    this process SIGTERM once the launcher is gone (killed with SIGKILL, it could not stop its
    processes): a worker or a compared run then stops as on SIGTERM (its finished epochs kept, its
    lock released), a server or the scheduler ends. Nothing happens in other processes."""
    import signal
    import stat as stat_module
    import threading
    import time
    pid = os.environ.get('NST_LAUNCHER_PID', '')
    if not pid.isdigit():
        return

    def alive():
        try:
            os.kill(int(pid), 0)
            return True
        except ProcessLookupError:
            return False
        except OSError:
            return True                     # (there, another user's: not ours to judge)

    def watch():
        while alive():
            time.sleep(1.0)
        # output that went to the launcher through a pipe goes nowhere now (a write would fail, and the stop's
        # own message with it); output into a file (a compared run's log) stays
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue
            if stat_module.S_ISFIFO(mode) or stat_module.S_ISSOCK(mode):
                os.dup2(null, fd)
        os.kill(os.getpid(), signal.SIGTERM)
    ancestor, up = os.getppid(), 0
    while ancestor > 1 and ancestor != int(pid) and up < 8:    # (the launcher, or a shell it started)
        stat = proc_stat(ancestor)
        ancestor, up = (int(stat[1]) if stat else 0), up + 1
    if ancestor != int(pid):
        return                              # (a variable left from another job)
    threading.Thread(target=watch, name='end-with-launcher', daemon=True).start()


def serve_if_parameter_server():
    """In a server or the scheduler of a parameter-server job (DMLC_ROLE set by the launcher, the
    command being train.py with a dist kvstore): import MXNet, which serves the job and exits the
    process when the job ends. SIGTERM and Ctrl-C keep their default action (end the process): a
    server holds no files of the run, and MXNet's loop never returns to Python to handle them.
    A server first waits for its scheduler (`wait_for_scheduler`), exit status 2 if none answers.
    Nothing happens in other processes."""
    import signal
    from .interrupt import STOPS
    role = os.environ.get('DMLC_ROLE')
    if role not in ('server', 'scheduler'):
        return
    for sig in (signal.SIGINT,) + tuple(STOPS):      # (every signal core.interrupt gave a Python handler)
        signal.signal(sig, signal.SIG_DFL)
    import importlib.util
    if importlib.util.find_spec('mxnet') is None:
        sys.exit(2)           # (an interpreter without mxnet: its workers say so, as train.py does)
    problem = wait_for_scheduler()
    if problem:
        sys.stderr.write('error: %s\n' % problem)
        sys.exit(2)
    import mxnet  # noqa: F401  (serves the job, then exits)


def printable_streams():
    """stdout and stderr write what their encoding cannot hold as escapes (a path with an 'ä' on an
    ASCII terminal, PYTHONIOENCODING=ascii) instead of raising UnicodeEncodeError after the work; a
    stream the shell closed (`>&-`, `2>&-`: Python then has None for it, and the first write or
    flush failed) writes to /dev/null (the run's log file still gets everything)."""
    for fd, name in ((1, 'stdout'), (2, 'stderr')):
        if getattr(sys, name) is None:
            try:
                os.fstat(fd)                  # (the fd is taken by another file: leave it alone)
            except OSError:
                null = os.open(os.devnull, os.O_WRONLY)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
                setattr(sys, name, open(fd, 'w', buffering=1, closefd=False))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors='backslashreplace')
        except (AttributeError, ValueError):      # not a TextIOWrapper (captured by a test, redirected)
            pass


def quiet_stdout():
    """Point stdout at /dev/null after a broken pipe (output piped into `head`, which stopped reading),
    so that Python's flush at exit is quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def check_environment():
    """Before MXNet is imported: stop with one `error: ...` line per unusable variable and exit
    status 2 (a traceback or an abort later otherwise). Makes the output streams printable first."""
    printable_streams()
    problems = environment_problems(warnoptions=sys.warnoptions)
    if problems:
        for text in problems:
            sys.stderr.write('error: %s\n' % text)
        sys.exit(2)


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def count_local_workers(default=1, warn=True):
    """The training processes sharing this machine: NST_LOCAL_WORKERS (set by tools/launch.py
    --launcher local) or HOROVOD_LOCAL_SIZE (set by horovodrun), else `default`. A value that is
    not a positive whole number is ignored (with a warning on stderr when `warn`)."""
    for key in ('NST_LOCAL_WORKERS', 'HOROVOD_LOCAL_SIZE'):
        text = os.environ.get(key, '').strip()
        if text:
            if text.isdigit() and int(text) > 0:
                return int(text)
            if warn:
                import sys
                sys.stderr.write('warning: %s=%r is not a positive whole number; ignored (%d local process(es) '
                                 'assumed)\n' % (key, text, default))
            return default
    return default


def process_cores():
    """The cores this process may use: its CPU affinity, shared evenly among the local workers."""
    return max(1, cpu_count() // count_local_workers(warn=False))


_SAID_OVERSUBSCRIBED = []          # (the warning once a process)


def configure_threads(local_workers=1, check=True):
    """Set OMP/MKL/engine thread counts for this machine unless already set; with `check`, first
    stop (exit 2) on a variable that cannot work (`check_environment`).

    `local_workers`: processes sharing this machine (dist training on one
    host), each gets its share of the cores. Returns the values in force.
    """
    if check:
        check_environment()
    local_workers = count_local_workers(local_workers)
    threads = max(1, cpu_count() // max(1, local_workers))
    defaults = {
        'OMP_NUM_THREADS': str(threads),
        'MKL_NUM_THREADS': str(threads),
        # one engine worker per CPU device: intra-op parallelism comes from OpenMP
        'MXNET_CPU_WORKER_NTHREADS': '1',
        # MXNet's multi-line "Storage type fallback detected" note (MXNET_MKLDNN_ENABLED=0: an operator
        # runs on the plain storage), which says nothing a user can act on
        'MXNET_STORAGE_FALLBACK_LOG_VERBOSE': '0',
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    omp = os.environ['OMP_NUM_THREADS'].strip()
    if omp.isdigit() and int(omp) > 4 * cpu_count() and not _SAID_OVERSUBSCRIBED:
        _SAID_OVERSUBSCRIBED.append(omp)
        sys.stderr.write('warning: OMP_NUM_THREADS=%s is far more than this machine\'s %d core(s): each operator\'s '
                         'threads then wait for each other and training runs many times slower; set '
                         'OMP_NUM_THREADS=%d, or unset it\n' % (omp, cpu_count(), threads))
    return {k: os.environ[k] for k in defaults}


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (Linux): [0] the state ('R', 'S', 'Z', ...),
    [11] utime and [12] stime in clock ticks, [19] the start time in clock ticks since boot; None
    where the process or /proc is not there."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
