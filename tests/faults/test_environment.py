"""Environment variables that the project or MXNet reads: a value that cannot work is one error line
per variable naming it, its value and a value that works, exit status 2, before MXNet is imported
(MXNet itself aborted with dmlc::ParamError, exit 134, or raised std::bad_alloc and then hung, and
NST_CPU_DEVICES was a ValueError or IndexError traceback); tools.doctor lists each as a problem and
exits 2 instead of saying the build is usable."""
import os
import subprocess
import sys

import pytest

from core.env import environment_problems

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES = [
    ({'OMP_NUM_THREADS': 'abc'}, ["OMP_NUM_THREADS='abc' is not a whole number >= 1: set e.g. OMP_NUM_THREADS=2"]),
    ({'OMP_NUM_THREADS': '0', 'MXNET_CPU_WORKER_NTHREADS': '-3'},
     ["OMP_NUM_THREADS='0'", "MXNET_CPU_WORKER_NTHREADS='-3' is not a whole number >= 1"]),
    ({'MXNET_ENGINE_TYPE': 'Bogus'}, ["MXNET_ENGINE_TYPE='Bogus' is not an MXNet engine: set one of "
                                      "ThreadedEnginePerDevice, ThreadedEngine, NaiveEngine"]),
    ({'NST_CPU_DEVICES': 'abc'}, ["NST_CPU_DEVICES='abc' is not a whole number >= 1: set e.g. NST_CPU_DEVICES=2"]),
    ({'NST_CPU_DEVICES': '0'}, ["NST_CPU_DEVICES='0'"]),
    # found by a new user: every MXNET_* number MXNet parses, not only the thread counts (it aborted, 134,
    # at import or at the first operator that reads it, tools.doctor included)
    ({'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN': 'abc'}, ["MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN='abc' is not a whole number"]),
    ({'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN': '1.5'}, ["MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN='1.5' is not a whole number"]),
    ({'MXNET_MKLDNN_ENABLED': '2'}, ["MXNET_MKLDNN_ENABLED='2' is not a flag"]),
    ({'MXNET_SUBGRAPH_BACKEND': 'XYZ'}, ["MXNET_SUBGRAPH_BACKEND='XYZ' is not a subgraph backend"]),
    ({'MXNET_GLUON_REPO': 'notaurl'}, ["MXNET_GLUON_REPO='notaurl' is not a URL"]),
    ({'DMLC_ROLE': 'server'}, ["DMLC_ROLE='server' (a parameter-server role) is set without DMLC_NUM_WORKER"]),
    # (#18's trial 19: a ps-lite traceback, 'Check notnull: ... DMLC_NUM_WORKER'; OpenMP's nested list read as
    # a malformed number without saying so)
    ({'DMLC_ROLE': 'bogus'}, ["DMLC_ROLE='bogus' is not a parameter-server role (worker, server or scheduler"]),
    ({'DMLC_ROLE': 'Worker'}, ["DMLC_ROLE='Worker' is not a parameter-server role (worker, server or scheduler, in "
                               "lower case)"]),
    ({'OMP_NUM_THREADS': '2,1'}, ["OMP_NUM_THREADS='2,1' is not a whole number >= 1 (MXNet reads it as one number, "
                                  "not an OpenMP list"]),
    ({'MXNET_MKLDNN_CACHE_NUM': 'abc'}, ["MXNET_MKLDNN_CACHE_NUM='abc' is not a whole number"]),
    # (#18's ninth trial: warned five times and ignored; a file as MXNET_HOME got advice to unzip into it)
    ({'NST_LOCAL_WORKERS': 'abc'}, ["NST_LOCAL_WORKERS='abc' is not a whole number >= 1"]),
    # (#18's tenth trial: MXNet printed its own C++ error and went on; libgomp likewise)
    ({'MXNET_USE_OPERATOR_TUNING': 'xyz'}, ["MXNET_USE_OPERATOR_TUNING='xyz' is neither 0, 1 nor a list of types"]),
    ({'OMP_PROC_BIND': 'garbage'}, ["OMP_PROC_BIND='garbage' is not an OpenMP binding"]),
    ({'MXNET_HOME': os.path.abspath(__file__)}, ["MXNET_HOME=%r is a file, not a folder" % os.path.abspath(__file__)]),
    # (#18's eleventh trial: a 'vector::reserve' traceback at the first step; libgomp's 'Thread creation
    # failed' and exit 1, the variable unnamed)
    ({'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN': '-5'}, ["MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN='-5' is negative"]),
    ({'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_FWD': '-1'}, ["MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_FWD='-1' is negative"]),
    ({'OMP_STACKSIZE': '64G'}, ["OMP_STACKSIZE='64G' gives every OpenMP thread a stack of 64 GiB"]),
    ({'OMP_STACKSIZE': '12Q'}, ["OMP_STACKSIZE='12Q' is not a stack size"]),
    ({'NST_SCHEDULER_WAIT': 'soon'}, ["NST_SCHEDULER_WAIT='soon' is not a number of seconds"]),
    # (#18's twelfth trial: an abort, 'terminate called', a SIGFPE (136) without a word, a bad_alloc traceback)
    ({'MXNET_CPU_WORKER_NTHREADS': '1000000'}, ["MXNET_CPU_WORKER_NTHREADS='1000000' asks MXNet's engine for more "
                                                "threads than it can start"]),
    ({'MXNET_CPU_TEMP_COPY': '0'}, ["MXNET_CPU_TEMP_COPY='0' is not a whole number >= 1"]),
    ({'MXNET_CPU_TEMP_COPY': '-1'}, ["MXNET_CPU_TEMP_COPY='-1' is not a whole number >= 1"]),
    ({'MXNET_CPU_PARALLEL_RAND_COPY': '0'}, ["MXNET_CPU_PARALLEL_RAND_COPY='0' is not a whole number >= 1"]),
    # (#18's fourteenth trial: libgomp's own error text, the value ignored)
    ({'OMP_DYNAMIC': 'maybe'}, ["OMP_DYNAMIC='maybe' is neither true nor false"]),
    ({'OMP_SCHEDULE': 'bogus'}, ["OMP_SCHEDULE='bogus' is not an OpenMP schedule"]),
    # (#18's trial 23: libgomp's own error text, the value ignored; GOMP_CPU_AFFINITY=a spun for good)
    ({'OMP_WAIT_POLICY': 'bogus', 'OMP_THREAD_LIMIT': 'abc'},
     ["OMP_THREAD_LIMIT='abc' is not a value libgomp reads", "OMP_WAIT_POLICY='bogus' is not a value libgomp reads"]),
    ({'GOMP_CPU_AFFINITY': 'a'}, ["GOMP_CPU_AFFINITY='a' is not a list of CPU numbers"]),
    # (#18's trial 21: warned of, then no two batches in a minute on 2 cores)
    ({'OMP_NUM_THREADS': '100000'}, ['OMP_NUM_THREADS=100000 is more than 16 times this machine\'s']),
]


def run(args, env):
    return subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


@pytest.mark.parametrize('env, said', CASES)
def test_train_py_stops_on_a_variable_that_cannot_work(env, said):
    r = run(['train.py', '--print-config'], env)
    errors = [l for l in r.stderr.splitlines() if l.startswith('error:')]
    assert r.returncode == 2 and len(errors) == len(said), r.stderr
    assert 'Traceback' not in r.stderr and 'terminate called' not in r.stderr
    for line, text in zip(errors, said):
        assert 'environment variable ' + text in line, (line, text)


def test_tools_stop_too_and_the_doctor_lists_each_variable():
    r = run(['-m', 'tools.evaluate'], {'OMP_NUM_THREADS': 'abc'})
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        "error: environment variable OMP_NUM_THREADS='abc'"), r.stderr
    r = run(['-m', 'tools.doctor'], {'OMP_NUM_THREADS': 'abc', 'MXNET_ENGINE_TYPE': 'Bogus'})
    errors = [l for l in r.stderr.splitlines() if l.startswith('error: environment variable')]
    assert r.returncode == 2 and len(errors) == 2 and 'usable' not in r.stdout, (r.stdout, r.stderr)
    assert 'mxnet       not imported' in r.stdout and 'Traceback' not in r.stderr


def test_values_that_work_pass():
    assert environment_problems({'OMP_NUM_THREADS': '2', 'MKL_NUM_THREADS': ' 4 ', 'MXNET_ENGINE_TYPE': 'NaiveEngine',
                                 'NST_CPU_DEVICES': '2', 'MXNET_CPU_WORKER_NTHREADS': '1'}) == []
    assert environment_problems({'OMP_DYNAMIC': 'TRUE', 'OMP_SCHEDULE': 'nonmonotonic:dynamic,4'}) == []
    assert environment_problems({'OMP_STACKSIZE': '16M', 'GOMP_STACKSIZE': '2048', 'MXNET_MKLDNN_CACHE_NUM': '-1',
                                 'MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN': '0', 'NST_SCHEDULER_WAIT': '120'}) == []
    assert environment_problems({}) == []
    assert len(environment_problems({'OMP_NUM_THREADS': '4,2'})) == 1        # MXNet reads one whole number
    assert environment_problems({'MXNET_USE_OPERATOR_TUNING': 'float32,int8', 'OMP_PROC_BIND': 'spread,close'}) == []
    # every form this libgomp accepted without a word (measured)
    assert environment_problems({'OMP_WAIT_POLICY': ' ACTIVE ', 'OMP_NESTED': 'TRUE', 'OMP_DISPLAY_ENV': 'VERBOSE',
                                 'OMP_MAX_ACTIVE_LEVELS': '0', 'OMP_TARGET_OFFLOAD': 'MANDATORY', 'GOMP_SPINCOUNT': '10k',
                                 'GOMP_DEBUG': '1', 'OMP_PLACES': '{0:2}:2:1', 'GOMP_CPU_AFFINITY': '0,1 2-3 4-7:2'}) == []
    # (review: libgomp reads C's bases and spaces after '-', and '+2'; '1-0' and a Unicode digit it does not)
    assert environment_problems({'GOMP_CPU_AFFINITY': '0x0-0x1 0- 1', 'OMP_THREAD_LIMIT': '+2',
                                 'OMP_PLACES': 'threads (2)'}) == []
    assert environment_problems({'GOMP_CPU_AFFINITY': '0, 1'}) == []
    for key, value in (('GOMP_CPU_AFFINITY', '1-0'), ('OMP_MAX_ACTIVE_LEVELS', '\u00b2'), ('GOMP_CPU_AFFINITY', '0,,1')):
        assert len(environment_problems({key: value})) == 1, (key, value)
    for places in ('cores', 'threads(2)', '{0,1}'):
        assert environment_problems({'OMP_PLACES': places}) == []
    for key, value in (('OMP_THREAD_LIMIT', '0'), ('OMP_DEFAULT_DEVICE', '-1'), ('GOMP_SPINCOUNT', '1.5'),
                       ('GOMP_CPU_AFFINITY', '0-1:0'), ('GOMP_CPU_AFFINITY', ' '), ('OMP_PLACES', 'bogus')):
        assert len(environment_problems({key: value})) == 1, (key, value)       # libgomp: "Invalid value"


def test_output_that_the_terminal_cannot_encode_is_escaped_not_a_traceback(tmp_path):
    """Found by a new user: on an ASCII terminal (PYTHONIOENCODING=ascii), a run whose data_dir holds
    an 'ä' exported fine and then died printing its summary (UnicodeEncodeError traceback)."""
    r = run(['-m', 'tools.export', '--prefix', str(tmp_path / 'p\u00e4ck' / 'run'), '--out', str(tmp_path / 'd')],
            {'PYTHONIOENCODING': 'ascii', 'LC_ALL': 'C'})
    assert r.returncode == 2 and 'Traceback' not in r.stderr and 'p\\xe4ck' in r.stderr, r.stderr


@pytest.mark.parametrize('args', [['train.py', '--keys'], ['-m', 'tools'], ['-m', 'tools.doctor']])
def test_output_piped_into_head_ends_quietly(args):
    """Found by a new user: `python train.py --keys teacher | head -3` ended in a BrokenPipeError traceback;
    so did `python -m tools | head -1` once in three (#18's eleventh trial)."""
    p = subprocess.Popen([sys.executable] + args, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.readline()
    p.stdout.close()                                  # as `head` does once it has its lines
    err = p.stderr.read()
    assert p.wait(timeout=120) in (0, 2) and 'Traceback' not in err, err     # (the doctor: 2 for a problem)


def test_the_data_commands_stop_too_and_warnings_as_errors_are_named():
    """Found by a new user (#18's ninth trial): data.pack and data.fashion_mnist (and init.sh through
    them) aborted on OMP_NUM_THREADS=abc or MXNET_MKLDNN_ENABLED=2 (exit 134); PYTHONWARNINGS=error
    stopped train.py with a DeprecationWarning traceback from MXNet's import."""
    for args, env in ((['-m', 'data.pack', '--train', 'a', '--val', 'b', '--out', 'c'], {'OMP_NUM_THREADS': 'abc'}),
                      (['-m', 'data.pack', '--train', 'a', '--val', 'b', '--out', 'c'], {'MXNET_MKLDNN_ENABLED': '2'}),
                      (['-m', 'data.fashion_mnist', '--out', 'c'], {'OMP_NUM_THREADS': 'abc'})):
        r = run(args, env)
        errors = [l for l in r.stderr.splitlines() if l.startswith('error: environment variable')]
        assert r.returncode == 2 and len(errors) == 1 and 'terminate called' not in r.stderr, r.stderr
    for env, what in (({'PYTHONWARNINGS': 'error'}, 'every warning'),      # (the category named: trial 10)
                      ({'PYTHONWARNINGS': 'ignore,error::DeprecationWarning'}, 'every DeprecationWarning')):
        r = run(['train.py', '--print-config'], env)
        assert r.returncode == 2 and 'turns %s into an error' % what in r.stderr and 'Traceback' not in r.stderr, \
            r.stderr
    assert environment_problems({'PYTHONWARNINGS': 'error:::mymodule,ignore'}) == []
    assert len(environment_problems({}, warnoptions=['error'])) == 1


@pytest.mark.skipif(not os.path.exists('/dev/full'), reason='no /dev/full on this system')
def test_output_to_a_full_disk_is_one_error_line():
    """Found by a new user (#18's tenth trial): `train.py --keys > /dev/full`, `tools.doctor` and
    `python -m tools` were OSError tracebacks (ENOSPC at a print)."""
    for args in (['train.py', '--keys'], ['-m', 'tools.doctor'], ['-m', 'tools']):
        with open('/dev/full', 'w') as full:
            r = subprocess.run([sys.executable] + args, cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True,
                               timeout=300)
        assert r.returncode == 2 and 'Traceback' not in r.stderr, (args, r.stderr)
        errors = [l for l in r.stderr.splitlines() if l.startswith('error:')]
        assert errors == ['error: cannot write the output (the disk is full: free some space and run again)'], \
            (args, r.stderr)


JOB = {'DMLC_NUM_WORKER': '1', 'DMLC_NUM_SERVER': '1', 'DMLC_PS_ROOT_URI': '127.0.0.1'}


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def test_parameter_server_roles_left_from_another_job_are_refused_and_a_lone_worker_stops(tmp_path):
    """Found by a new user (#18's eleventh trial): with a whole set of DMLC_* variables left in the
    shell, DMLC_ROLE=server or scheduler turned tools.evaluate, tools.doctor and train.py into a
    parameter server waiting for its job for good, deaf to SIGTERM; a worker of a dist kvstore waited
    for a scheduler that was not there. Only train.py with kv_store=dist_* (what tools.launch starts)
    takes a server's or the scheduler's role; a worker gives up on a scheduler that does not answer."""
    job = dict(JOB, DMLC_PS_ROOT_PORT=_free_port())
    for role in ('server', 'scheduler'):
        for args in (['-m', 'tools.evaluate', '--prefix', 'model/none'], ['-m', 'tools.doctor'],
                     ['train.py', '--print-config']):
            r = run(args, dict(job, DMLC_ROLE=role))
            assert r.returncode == 2 and "DMLC_ROLE=%r" % role in r.stderr, (args, r.stderr)
            assert 'this command takes no part in a job' in r.stderr and 'Traceback' not in r.stderr
    assert environment_problems(dict(job, DMLC_ROLE='server'), argv=['/x/train.py', 'kv_store=dist_sync']) == []
    assert environment_problems(dict(job, DMLC_ROLE='worker'), argv=['/x/evaluate.py']) == []
    # a worker of a dist kvstore whose scheduler does not answer: one error line after NST_SCHEDULER_WAIT
    from tests.helpers import make_cifar
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=16, test=16)
    r = run(['train.py', '--cfg', 'cifar10_student', 'kv_store=dist_sync', 'data_dir=%s' % (tmp_path / 'cifar'),
             'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'gpu_list=[]', 'batch_size=8'],
            dict(job, DMLC_ROLE='worker', NST_SCHEDULER_WAIT='1'))
    assert r.returncode == 2 and 'no scheduler answers at 127.0.0.1:%s' % job['DMLC_PS_ROOT_PORT'] in r.stderr, \
        r.stderr[-2000:]
    assert 'Traceback' not in r.stderr


def test_a_server_of_a_job_whose_scheduler_never_answers_stops_and_ends_on_sigterm():
    """train.py as a job's server (tools.launch's command) waits for its scheduler in Python: SIGTERM
    ends it at once, and without a scheduler it stops with one line."""
    import signal
    import time
    job = dict(JOB, DMLC_PS_ROOT_PORT=_free_port(), DMLC_ROLE='server')
    r = run(['train.py', 'kv_store=dist_sync'], dict(job, NST_SCHEDULER_WAIT='1'))
    assert r.returncode == 2 and 'no scheduler answers' in r.stderr and 'this server of a distributed job' in r.stderr
    for signum in (signal.SIGTERM, signal.SIGUSR1):       # (SIGUSR1: a job scheduler's notice, as SIGTERM)
        p = subprocess.Popen([sys.executable, 'train.py', 'kv_store=dist_sync'], cwd=ROOT, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, **job))
        time.sleep(3)
        p.send_signal(signum)
        assert p.wait(timeout=30) == -signum


def test_docstrings_stripped_are_refused_and_oversubscribed_threads_warned_of():
    """Found by a new user (#18's twelfth trial): PYTHONOPTIMIZE=2 (python -OO) made MXNet's import a
    TypeError traceback; OMP_NUM_THREADS=64 on 2 cores trained 70 times slower without a word."""
    from core.env import cpu_count
    for args, env in ((['train.py', '--print-config'], {'PYTHONOPTIMIZE': '2'}),
                      (['-OO', '-m', 'tools.evaluate', '--prefix', 'model/none'], {})):
        r = run(args, env)
        assert r.returncode == 2 and 'PYTHONOPTIMIZE=2 (or python -OO) strips docstrings' in r.stderr, r.stderr
        assert 'Traceback' not in r.stderr
    many = str(4 * cpu_count() + 1)
    r = run(['train.py', '--keys', 'lr'], {'OMP_NUM_THREADS': many})
    assert r.returncode == 0 and r.stderr.count('warning: OMP_NUM_THREADS=%s is far more than' % many) == 1, r.stderr


def test_a_job_s_worker_variables_left_in_the_shell_are_warned_of(monkeypatch):
    """#18's trial 19: DMLC_ROLE=worker and the job's other variables in the shell, with kv_store=device,
    trained alone without a word (every line prefixed '[worker 0]')."""
    from config import load_config
    for key, value in dict(DMLC_ROLE='worker', DMLC_NUM_WORKER='2', DMLC_NUM_SERVER='1', DMLC_PS_ROOT_URI='127.0.0.1',
                           DMLC_PS_ROOT_PORT='9091').items():
        monkeypatch.setenv(key, value)
    cfg = load_config(None, [], check_data=False)
    assert any('DMLC_ROLE=worker' in n and 'this run trains alone' in n for n in cfg.notes), cfg.notes
    import logging
    from core.runlog import setup_logging, teardown_logging
    setup_logging(cfg, 0, to_file=False)
    try:
        assert not any('[worker' in getattr(h.formatter, '_fmt', '') for h in logging.getLogger().handlers)
    finally:
        teardown_logging()


def test_a_job_s_worker_ends_with_argparse_s_status_not_a_traceback():
    """A review of #18's trial-19 fixes: a worker of a job (DMLC_ROLE=worker) given a malformed option, or
    --help, printed a SystemExit traceback and ended with status 1."""
    job = dict(DMLC_ROLE='worker', DMLC_NUM_WORKER='1', DMLC_NUM_SERVER='1', DMLC_PS_ROOT_URI='127.0.0.1',
               DMLC_PS_ROOT_PORT='9')
    r = run(['train.py', '--bogus'], job)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and 'SystemExit' not in r.stderr, r.stderr
    r = run(['train.py', '--help'], job)
    assert r.returncode == 0 and 'Traceback' not in r.stderr and 'usage' in r.stdout.lower(), r.stderr


@pytest.mark.parametrize('variable', ['HOROVOD_SIZE', 'OMPI_COMM_WORLD_SIZE'])
def test_a_rank_of_a_horovodrun_or_mpirun_job_without_kv_store_horovod_is_refused(monkeypatch, variable):
    """Found this session: `horovodrun -np 2 python train.py` without kv_store=horovod started two
    runs of the same name: one was refused (its lock held), the other trained alone."""
    from config import ConfigError, load_config
    rank = variable.replace('SIZE', 'RANK')
    monkeypatch.setenv(variable, '2')
    monkeypatch.setenv(rank, '1')
    with pytest.raises(ConfigError, match=r"one of 2 processes of a job \(%s=2.*kv_store='device'.*add "
                                          r"kv_store=horovod" % variable):
        load_config(None, [], check_data=False)
    monkeypatch.delenv(rank)                # (#18's trial 22: left in the shell, no launcher named)
    with pytest.raises(ConfigError, match=r'%s=2 is set without %s.*left from another job.*unset %s'
                                          % (variable, rank, variable)):
        load_config(None, [], check_data=False)
    monkeypatch.setenv(variable, '1')                         # (one process: nothing to refuse)
    load_config(None, [], check_data=False)


def test_job_role_names_what_a_launcher_made_this_process():
    """One reading of the launchers' variables (train.py's job check, the stop handling's and the
    Horovod config check use it): a Horovod or MPI rank first, then a parameter-server role."""
    from core.env import job_role
    assert job_role({}) is None
    assert job_role({'DMLC_ROLE': 'server'}) == 'server'
    assert job_role({'DMLC_ROLE': 'worker', 'HOROVOD_RANK': '1'}) == 'rank'
    assert job_role({'OMPI_COMM_WORLD_RANK': '0'}) == 'rank'
    assert job_role({'HOROVOD_SIZE': '2'}) is None                 # a size alone is a leftover, not a rank


def test_int_read_flags_libraries_and_an_interactive_prompt_after_the_command():
    """#18's trial 24: MXNET_UPDATE_ON_KVSTORE=true passed the check and stopped the first step with a
    ValueError traceback (MXNet's Python code reads it with int()), MXNET_ENABLE_CYTHON=true the
    import; MXNET_ENFORCE_DETERMINISM=true (a flag MXNet reads as one) was refused as no number;
    MXNET_LIBRARY_PATH=/nonexistent printed every log line twice; PYTHONINSPECT=1 ended a finished
    command with a SystemExit traceback."""
    for key in ('MXNET_UPDATE_ON_KVSTORE', 'MXNET_ENABLE_CYTHON', 'MXNET_ENFORCE_CYTHON'):
        assert environment_problems({key: 'true'}) == [
            "environment variable %s='true' is not 0 or 1: MXNet's Python code reads it with int() and would stop "
            "with a ValueError; set %s=0 or 1, or unset it" % (key, key)]
        assert environment_problems({key: '0'}) == []
    assert environment_problems({'MXNET_ENFORCE_DETERMINISM': 'true'}) == []
    assert 'is not a file' in environment_problems({'MXNET_LIBRARY_PATH': '/nonexistent'})[0]
    assert environment_problems({'MXNET_LIBRARY_PATH': ''}) == []                # (MXNet ignores it empty)
    for args in (['train.py', '--print-config'], ['-m', 'tools.doctor']):
        r = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONINSPECT='1'))
        assert r.returncode == 2 and "PYTHONINSPECT='1' makes Python open its interactive prompt" in r.stderr
        assert 'Traceback' not in r.stderr and '>>>' not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, '-i', '-m', 'tools.doctor'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)                  # (python -i: the command's own end)
    assert r.returncode in (0, 2) and 'Traceback' not in r.stderr and '>>>' not in r.stderr, r.stderr


def test_progress_bar_variables_and_a_deleted_working_folder(tmp_path):
    """#18's trial 25: TQDM_MININTERVAL=abc stopped train.py and tools.evaluate with a ValueError inside
    tqdm; a command started in a folder deleted meanwhile stopped with a FileNotFoundError traceback
    (train.py) or 'it does not exist: check the path' (tools.evaluate, of a prefix that existed)."""
    assert environment_problems({'TQDM_MININTERVAL': 'abc'}) == [
        "environment variable TQDM_MININTERVAL='abc' is not a number: tqdm (the progress bars) reads it as one and "
        "would stop with a ValueError; set a number, or unset it"]
    assert 'a whole number' in environment_problems({'TQDM_NCOLS': '1.5'})[0]
    assert environment_problems({'TQDM_NCOLS': '-5', 'TQDM_DISABLE': '1', 'TQDM_MININTERVAL': '0.5'}) == []
    gone = tmp_path / 'gone'
    gone.mkdir()
    for args in (['train.py', '--print-config'], ['-m', 'tools.evaluate', '--prefix', str(tmp_path / 'model' / 'x')]):
        command = 'cd %s && rmdir %s && PYTHONPATH=%s %s %s' % (gone, gone, ROOT, sys.executable, ' '.join(
            [os.path.join(ROOT, args[0]) if args[0].endswith('.py') else args[0]] + args[1:]))
        r = subprocess.run(['bash', '-c', command], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith('error: the folder this command runs in was deleted')
        gone.mkdir()
