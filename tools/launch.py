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


def launcher_path():
    import mxnet
    path = os.path.join(os.path.dirname(mxnet.__file__), 'tools', 'launch.py')
    if not os.path.isfile(path):
        raise SystemExit('error: this mxnet installation has no tools/launch.py')
    return path


def main(argv=None):
    if not hasattr(threading.Thread, 'isAlive'):
        threading.Thread.isAlive = threading.Thread.is_alive
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--launcher' in argv and argv[argv.index('--launcher') + 1] == 'local':
        n = int(argv[argv.index('-n') + 1]) if '-n' in argv else 1
        s = int(argv[argv.index('-s') + 1]) if '-s' in argv else n
        os.environ.setdefault('NST_LOCAL_WORKERS', str(n + s))
    sys.argv = [launcher_path()] + argv
    runpy.run_path(sys.argv[0], run_name='__main__')


if __name__ == '__main__':
    main()
