"""Start distributed training (parameter-server kvstore, kv_store=dist_sync) with MXNet's launcher
options, on Python 3.11 too.

On one machine (--launcher local) this tool starts the scheduler, the servers and the workers
itself and watches them: when any of them fails, it names the process and its error in one line,
stops every other process (SIGTERM, then SIGKILL after a grace period: a worker blocked in a
kvstore call never returns to Python) and exits with the failed process's status; Ctrl-C or
SIGTERM stop them all alike. (MXNet's own local launcher leaves the other workers waiting forever
for the dead one.) Other launchers (ssh, mpi, ...) run MXNet's tools/launch.py unchanged, with
`Thread.isAlive` (removed in Python 3.9, which its tracker calls) restored. E.g. on one machine:

    python -m tools.launch -n 2 -s 1 --launcher local \\
        python train.py kv_store=dist_sync

and on N machines listed in `hosts` (ssh access, same paths everywhere):

    python -m tools.launch -n N -s N -H hosts --launcher ssh \\
        python train.py kv_store=dist_sync

With --launcher local each process gets an equal share of the cores
(NST_LOCAL_WORKERS), so workers and servers do not oversubscribe them.
"""
import os
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from tools import cli


def launcher_path():
    import mxnet
    path = os.path.join(os.path.dirname(mxnet.__file__), 'tools', 'launch.py')
    if not os.path.isfile(path):
        raise cli.ToolError('this mxnet installation has no tools/launch.py: reinstall mxnet (bash init.sh --deps)')
    return path


def check_arguments(argv):
    """Parse `argv` as mxnet's launcher will (the same options, unknown ones left to the command)
    and check what it would only find out with a traceback; return the parsed options. Exit
    status 2 with one error line for a malformed option, UsageError for an ssh/mpi launch
    without an existing -H hostfile."""
    p = cli.parser('launch', __doc__)
    p.add_argument('-n', '--num-workers', required=True, type=cli.positive_int)
    p.add_argument('-s', '--num-servers', type=cli.nonnegative_int)
    p.add_argument('-H', '--hostfile')
    p.add_argument('--sync-dst-dir')
    p.add_argument('--launcher', default='ssh', choices=['local', 'ssh', 'mpi', 'sge', 'yarn'])
    p.add_argument('--env-server', action='append', default=[])
    p.add_argument('--env-worker', action='append', default=[])
    p.add_argument('--env', action='append', default=[])
    p.add_argument('--p3', action='store_true')
    p.add_argument('command', nargs='+')
    args, _ = p.parse_known_args(argv)
    # the command is everything from its first word on, as written (its own options included)
    takes_value = {'-n', '--num-workers', '-s', '--num-servers', '-H', '--hostfile', '--sync-dst-dir', '--launcher',
                   '--env-server', '--env-worker', '--env'}
    i = 0
    while i < len(argv) and argv[i].startswith('-'):
        i += 1 if '=' in argv[i] or argv[i] not in takes_value else 2
    args.command = argv[i:]
    if args.launcher in ('ssh', 'mpi'):
        if not args.hostfile:
            raise cli.UsageError('--launcher %s%s needs -H HOSTFILE listing the machines (one per line); to run on '
                                 'this machine use --launcher local' % (args.launcher, ' (the default)'
                                                                        if '--launcher' not in argv else ''))
        if not os.path.isfile(args.hostfile):
            raise cli.UsageError('-H: hostfile %s does not exist' % args.hostfile)
    given = [w.split('=', 1)[1].strip() for w in args.command if w.startswith('kv_store=')]
    if any(os.path.basename(w) == 'train.py' for w in args.command) and not (given and given[-1].startswith('dist')):
        raise cli.UsageError('the command trains %d workers of one job only with a parameter-server kvstore: add '
                             'kv_store=dist_sync (or dist_device_sync) to it%s; without one each worker '
                             'would train the same run alone' % (args.num_workers, ' (it says kv_store=%s)' % given[-1]
                                                                 if given else ''))
    return args


GRACE = 5.0           # seconds a process gets to stop on SIGTERM before SIGKILL
STOPPED_NOTICE = 10.0  # seconds a process is stopped (SIGSTOP) before the launcher says so


# the signals a process gets from its own fault (not a stop from outside)
CRASHES = (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL)


def _process_state(pid):
    """The state letter of process `pid` (R, S, T for stopped, ...), from /proc; None where unknown."""
    from core.env import proc_stat
    fields = proc_stat(pid)
    return fields[0] if fields else None


class Process(object):
    """One process of the job: its role, index, the child, and the last lines it wrote on stderr
    (forwarded to ours as they come)."""

    def __init__(self, role, index, of, command, env):
        self.role, self.index, self.of, self.tail = role, index, of, []
        own_group = {'process_group': 0} if sys.version_info >= (3, 11) else {'start_new_session': True}
        self.child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, **own_group)
        self.reader = threading.Thread(target=self._forward, daemon=True)
        self.reader.start()

    # the lines forwarded that name no worker (errors, how to resume: every worker of the job says the same),
    # by the process that said them first: the same line from another process is forwarded once
    shown = {}

    def _forward(self):
        for raw in iter(self.child.stderr.readline, b''):
            line = raw.decode('utf-8', 'replace')
            mine = not line.strip() or line.startswith('[') or Process.shown.setdefault(line, self) is self
            if mine:
                sys.stderr.write(line)
                sys.stderr.flush()
            if line.strip():
                self.tail = (self.tail + [line.rstrip()])[-30:]

    @property
    def name(self):
        return '%s %d of %d (pid %d)' % (self.role, self.index, self.of, self.child.pid)

    def error(self):
        """The process's own account of its failure: its `error: ...` line, else the last line of a
        traceback, else its last line (with the command on the next line when it ends with one)."""
        for i in range(len(self.tail) - 1, -1, -1):
            if self.tail[i].startswith(('error:', 'config error:')):
                return self._with_command(i, self.tail[i].split('error:', 1)[1].strip())
        for i in range(len(self.tail) - 1, -1, -1):
            if self.tail[i] and not self.tail[i].startswith((' ', '[')):
                return self._with_command(i, self.tail[i].strip())
        return 'no message'

    def _with_command(self, i, text):
        """`text` (of line i of the tail), with the next line when `text` ends introducing it."""
        if text.endswith((' with', ':')) and i + 1 < len(self.tail):
            text += ' ' + self.tail[i + 1].strip()
        return text

    def signal(self, sig):
        try:
            os.killpg(self.child.pid, sig)
        except OSError:
            pass

    stopped_since = None        # when the process was first seen stopped (SIGSTOP, Ctrl-Z), if it is now

    def say_if_stopped(self, after=STOPPED_NOTICE):
        """Say once, `after` seconds into it, that the process is stopped (the job waits for it)."""
        state = _process_state(self.child.pid)
        if state not in ('T', 't'):
            self.stopped_since = None
            return
        now = time.time()
        if self.stopped_since is None:
            self.stopped_since = now
        elif self.stopped_since is not True and now - self.stopped_since >= after:
            self.stopped_since = True           # (said)
            print('launch: %s is stopped (SIGSTOP or Ctrl-Z), and the job waits for it: continue it with kill -CONT '
                  '%d, or stop the job with Ctrl-C' % (self.name, self.child.pid), file=sys.stderr)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _pairs(items, option):
    out = {}
    for item in items:
        if ':' not in item:
            raise cli.UsageError('%s %s: give NAME:VALUE' % (option, item))
        k, v = item.split(':', 1)
        out[k] = v
    return out


def run_local(args):
    """The job on this machine: scheduler, servers and workers started and watched here; returns
    the exit status (that of the first process that failed, 128 + the signal that stopped us)."""
    n = args.num_workers
    s = args.num_servers if args.num_servers is not None else n
    if s < 1:
        raise cli.UsageError('-s 0: a dist_* kvstore needs at least one server process; give -s 1%s'
                             % (' (or -s %d, one per worker)' % n if n > 1 else ''))
    env = dict(os.environ, DMLC_NUM_WORKER=str(n), DMLC_NUM_SERVER=str(s), DMLC_PS_ROOT_URI='127.0.0.1',
               DMLC_PS_ROOT_PORT=str(_free_port()), DMLC_JOB_CLUSTER='local', NST_LAUNCHER_PID=str(os.getpid()))
    env.setdefault('NST_LOCAL_WORKERS', str(n + s))
    env.update(_pairs(args.env, '--env'))
    roles = [('scheduler', 0, 1, {})] + \
        [('server', i, s, _pairs(args.env_server, '--env-server')) for i in range(s)] + \
        [('worker', i, n, _pairs(args.env_worker, '--env-worker')) for i in range(n)]
    procs, stopped = [], []

    def stop(signum, frame):
        stopped.append(signum)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                                                          signal.SIGUSR1, signal.SIGUSR2)}
    try:
        for role, index, of, extra in roles:
            procs.append(Process(role, index, of, args.command, dict(env, DMLC_ROLE=role, DMLC_TASK_ID=str(index),
                                                                     **extra)))
        workers = [p for p in procs if p.role == 'worker']
        failed = None
        while failed is None and not stopped:
            if all(p.child.poll() == 0 for p in workers):
                break
            for p in procs:
                p.say_if_stopped()
            # the process that failed first; of several seen in one poll, a worker (the others then fail
            # because of it), and one that said why
            now = [p for p in procs if p.child.poll() not in (None, 0)]
            if now:
                failed = sorted(now, key=lambda p: (p.role != 'worker', not any(
                    l.startswith(('error:', 'config error:')) for l in p.tail)))[0]
            time.sleep(0.2)
        if failed is None and not stopped:
            _wait(procs, 60)                     # the servers and the scheduler end once the workers have
            return 0
        others = [p for p in procs if p.child.poll() is None]
        if stopped:
            what = {signal.SIGINT: 'interrupted', signal.SIGHUP: 'hung up (SIGHUP)', signal.SIGQUIT: 'quit (SIGQUIT)',
                    signal.SIGUSR1: 'stopped (SIGUSR1)', signal.SIGUSR2: 'stopped (SIGUSR2)'}.get(
                        stopped[0], 'terminated (SIGTERM)')
            print('launch: %s; stopping all %d processes' % (what, len(others)), file=sys.stderr)
            for p in others:                    # each stops as it does on Ctrl-C / SIGTERM (epochs kept, lock
                # released); one blocked in the kvstore gets SIGKILL after GRACE (SIGUSR2, which train.py does
                # not handle, goes on as SIGTERM)
                p.signal(signal.SIGTERM if stopped[0] == signal.SIGUSR2 else stopped[0])
            _wait(others, GRACE)
        else:
            failed.reader.join(2)               # its last lines, for its error (the others still run)
            if failed.role != 'worker' and failed.child.returncode > 0 and failed.error() == 'no message':
                # (a server or the scheduler that ended without a word, e.g. under an interpreter without mxnet:
                # a worker says why a moment later)
                deadline = time.time() + 3
                while time.time() < deadline and not any(p.child.poll() not in (None, 0) for p in workers):
                    time.sleep(0.1)
                said = [p for p in workers if p.child.poll() not in (None, 0)]
                if said:
                    failed = said[0]
                    failed.reader.join(2)
                    others = [p for p in procs if p.child.poll() is None]
            status = failed.child.returncode
            how = 'exited with status %d' % status if status > 0 else 'was killed by signal %d (%s)' % (
                -status, _signal_name(-status))
            print('error: %s %s: %s; %s'
                  % (failed.name, how, failed.error() if status > 0 else
                     'it aborted (SIGABRT); its last lines are above' if status == -signal.SIGABRT else
                     'it crashed (%s); its last lines are above' % _signal_name(-status) if -status in CRASHES else
                     'no message (it was killed)' if status == -signal.SIGKILL else
                     'a signal from outside the job stopped it',
                     'stopped the other %d processes of the job' % len(others) if others else
                     'the other processes of the job had ended'), file=sys.stderr)
        if stopped:
            return 128 + stopped[0]
        return failed.child.returncode if failed.child.returncode > 0 else 128 - failed.child.returncode
    finally:
        _stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_name(number):
    """'SIGTERM' for 15, ...; 'an unknown signal' for a number no signal has."""
    return cli.signal_name(number) or 'an unknown signal'


def _wait(procs, seconds):
    """Wait until every process of `procs` has ended, or `seconds` have passed."""
    deadline = time.time() + seconds
    while any(p.child.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.1)


def _stop_all(procs):
    """SIGTERM to every process still running, SIGKILL to those still there after GRACE seconds."""
    if all(p.child.poll() is not None for p in procs):
        return
    for p in procs:
        if p.child.poll() is None:
            p.signal(signal.SIGTERM)
    _wait(procs, GRACE)
    for p in procs:
        if p.child.poll() is None:
            p.signal(signal.SIGKILL)
            p.child.wait()


@cli.command
def main(argv=None):
    """Run mxnet's launcher on `argv` after checking it; 2 with one error line on a wrong option."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = check_arguments(argv)
    # this launch as a user types it, for the commands its workers print (a resume): the job's own command
    # goes after it
    exe = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith('..') else sys.executable
    before = os.environ.get('NST_LAUNCH')
    os.environ['NST_LAUNCH'] = ' '.join(shlex.quote(a) for a in [exe, '-m', 'tools.launch'] +
                                        argv[:len(argv) - len(args.command)])
    try:
        return _launch(args, argv)
    finally:                              # (called in-process, e.g. by a test: the variable is not left behind)
        if before is None:
            os.environ.pop('NST_LAUNCH', None)
        else:
            os.environ['NST_LAUNCH'] = before


def _launch(args, argv):
    if args.launcher == 'local':
        return run_local(args)
    path = launcher_path()
    if not hasattr(threading.Thread, 'isAlive'):
        threading.Thread.isAlive = threading.Thread.is_alive
    sys.argv = [path] + argv
    runpy.run_path(sys.argv[0], run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(main())
