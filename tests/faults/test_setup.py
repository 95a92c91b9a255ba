"""init.sh on a user's mistake: an unknown option is refused (it ran the whole set-up), a PYTHON that
an existing environment does not have is said (it was ignored without a word), and a stale
VIRTUAL_ENV is named (the advice was PYTHON=..., which VIRTUAL_ENV overrides); nothing is installed."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def init_sh(args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHON', 'NST_VENV')}
    return subprocess.run(['bash', 'init.sh'] + args, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(base, **env))


def test_unknown_options_are_refused():
    for option in ('--bogus', '--dep', 'deps'):
        r = init_sh([option])
        assert r.returncode == 2 and r.stderr.strip() == (
            'init.sh: unknown option %s: the options are --deps (only the environment and packages) and --help'
            % option), r.stderr
    r = init_sh(['--help'])
    assert r.returncode == 0 and 'bash init.sh --deps' in r.stdout
    assert 'set -e' not in r.stdout, r.stdout          # (#18's tenth trial: the help ended with a line of the script)


def test_a_python_the_existing_environment_does_not_have_is_said(tmp_path):
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    fake = venv / 'bin' / 'python'
    fake.write_text('#!/bin/sh\necho 3.9\n')                # an environment made with another Python
    fake.chmod(0o755)
    r = init_sh(['--deps'], NST_VENV=str(venv), PYTHON='python3')
    assert r.returncode == 2 and 'is not used: %s exists with Python 3.9' % venv in r.stderr, r.stderr
    assert 'NST_VENV=.venv' in r.stderr and 'PYTHON=python3 bash init.sh' in r.stderr


def test_a_stale_virtual_env_is_named(tmp_path):
    r = init_sh(['--deps'], VIRTUAL_ENV=str(tmp_path / 'gone'))
    assert r.returncode == 2 and 'VIRTUAL_ENV=%s names no virtual environment' % (tmp_path / 'gone') in r.stderr
    assert "unset VIRTUAL_ENV" in r.stderr


def test_train_py_under_an_interpreter_without_the_packages_is_one_line():
    """#18's eighteenth trial: `tools.launch ... python train.py` with a bare `python` (no mxnet) printed a
    ModuleNotFoundError traceback from each process; it is one line naming the interpreter to use."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, '-S', 'train.py'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert 'mxnet are not installed for' in r.stderr and '.venv/bin/python train.py' in r.stderr, r.stderr
    # (trial 19: the job's server and scheduler printed a traceback; they end, leaving the why to the workers)
    import os
    for role in ('server', 'scheduler'):
        env = dict(os.environ, DMLC_ROLE=role, DMLC_NUM_WORKER='1', DMLC_NUM_SERVER='1', DMLC_PS_ROOT_URI='127.0.0.1',
                   DMLC_PS_ROOT_PORT='9')
        r = subprocess.run([sys.executable, '-S', 'train.py', 'kv_store=dist_sync'], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env=env)
        assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
