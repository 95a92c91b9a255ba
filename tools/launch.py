"""Start distributed training with MXNet's own launcher (tools/launch.py of the
mxnet wheel, parameter-server kvstore), on Python 3.11 too.

The launcher's tracker (dmlc_tracker) calls `Thread.isAlive`, removed in
Python 3.9; this wrapper restores it as an alias of `is_alive` and runs the
launcher unchanged. Every option is mxnet's, e.g. on one machine:

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
import sys
import threading

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
    if args.launcher in ('ssh', 'mpi'):
        if not args.hostfile:
            raise cli.UsageError('--launcher %s%s needs -H HOSTFILE listing the machines (one per line); to run on '
                                 'this machine use --launcher local' % (args.launcher, ' (the default)'
                                                                        if '--launcher' not in argv else ''))
        if not os.path.isfile(args.hostfile):
            raise cli.UsageError('-H: hostfile %s does not exist' % args.hostfile)
    return args


@cli.command
def main(argv=None):
    """Run mxnet's launcher on `argv` after checking it; 2 with one error line on a wrong option."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = check_arguments(argv)
    path = launcher_path()
    if not hasattr(threading.Thread, 'isAlive'):
        threading.Thread.isAlive = threading.Thread.is_alive
    if args.launcher == 'local':
        n = args.num_workers
        s = args.num_servers if args.num_servers is not None else n
        os.environ.setdefault('NST_LOCAL_WORKERS', str(n + s))
    sys.argv = [path] + argv
    runpy.run_path(sys.argv[0], run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(main())
