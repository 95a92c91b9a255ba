"""Each method's distillation step here against the PyTorch peers' same method, side by side in
one run on the same machine: ours (`benchmarks.train_step --kt M`) and the peer's
(`benchmarks/peers.py --method M` under the peer environment's Python) alternate per round (the
order reversed every other round), so that a change of the machine's load hits both alike.

    bash benchmarks/peer_env.sh           # once: .peer-venv (CPU torch) and the peers' checkouts in .peers/
    python -m benchmarks.against_peers [--rounds 3] [--methods at,vid] [--steps 10]

Both sides: teacher ResNet-56, student ResNet-20 (CIFAR), batch 128, 100 classes, random 32x32
data, CPU. Printed: a markdown table of each side's median samples/s (batch / distillation step)
and ours / peer's. Both sides distil the layers the peer distils (`train_step --taps peer`:
RepDistiller's FitNet on one hint layer, SP and FT on the last stage, RKD, PKT, CC and CRD on
the pooled vector, AT, NST, KDSVD and VID on the three stages); see benchmarks/peers.py for which
peer code times what.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.side_by_side import ROOT, _step

PEER_PYTHON = os.path.join(ROOT, '.peer-venv', 'bin', 'python')


def peer_step(python, method, args):
    """Samples/s of the peer's step of `method` (a dict of the peer script's JSON)."""
    cmd = [python, os.path.join(ROOT, 'benchmarks', 'peers.py'), '--method', method, '--steps', str(args.steps),
           '--batch', str(args.batch), '--classes', str(args.classes)]
    for option in ('repdistiller', 'mdistiller'):
        if getattr(args, option):
            cmd += ['--' + option, getattr(args, option)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode:                 # (the peer's code fails on this machine: said in the table, the rest goes on)
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        return {'failed': lines[-1] if lines else 'exit status %d' % r.returncode}
    return json.loads(r.stdout.strip().splitlines()[-1])


def our_step(method, args):
    res = _step(ROOT, ['--teacher', 'cifar_resnet56', '--student', 'cifar_resnet20', '--batch', str(args.batch),
                       '--classes', str(args.classes), '--kt', method, '--steps', str(args.steps), '--taps', 'peer'],
                ('kt_step_s',))
    return {'samples_s': args.batch / res['kt_step_s']}


def table(rows):
    """Markdown of [(method, peer, ours samples/s [per round], peer's samples/s [per round])]."""
    lines = ['| method | peer (its code) | samples/s here | samples/s peer | here / peer |', '|---|---|---|---|---|']
    for method, peer, ours, theirs in rows:
        a = statistics.median(ours)
        if isinstance(theirs, str):
            lines.append('| %s | %s | %.1f | failed: %s | |' % (method, peer, a, theirs))
            continue
        b = statistics.median(theirs)
        lines.append('| %s | %s | %.1f | %.1f | %.2f |' % (method, peer, a, b, a / b))
    return '\n'.join(lines)


def main(argv=None):
    from benchmarks.peers import PEERS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--methods', help='comma-separated (default: every method a peer has)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--classes', type=int, default=100)
    p.add_argument('--peer-python', default=PEER_PYTHON, help='a Python with torch (default .peer-venv)')
    p.add_argument('--repdistiller', help='RepDistiller checkout (default .peers/RepDistiller)')
    p.add_argument('--mdistiller', help='mdistiller checkout (default .peers/mdistiller)')
    args = p.parse_args(argv)
    methods = args.methods.split(',') if args.methods else list(PEERS)
    unknown = [m for m in methods if m not in PEERS]
    if unknown:
        p.error('no peer for %s (methods with a peer: %s)' % (', '.join(unknown), ', '.join(PEERS)))
    if not os.path.isfile(args.peer_python):
        p.exit(2, 'error: no Python with torch at %s: run bash benchmarks/peer_env.sh, or give --peer-python\n'
               % args.peer_python)
    rows = []
    for method in methods:
        ours, theirs, peer = [], [], None
        for k in range(args.rounds):
            order = (0, 1) if k % 2 == 0 else (1, 0)
            for side in order:
                if side == 0:
                    ours.append(our_step(method, args)['samples_s'])
                elif not isinstance(theirs, str):
                    res = peer_step(args.peer_python, method, args)
                    if 'failed' in res:
                        theirs = res['failed']
                    else:
                        theirs.append(res['samples_s'])
                        peer = res['peer']
        peer = peer or PEERS[method][0]
        rows.append((method, peer, ours, theirs))
        print('%s: here %s, peer %s' % (method, ' '.join('%.1f' % v for v in ours), 'failed: ' + theirs
                                        if isinstance(theirs, str) else ' '.join('%.1f' % v for v in theirs)),
              flush=True)
    print(table(rows))


if __name__ == '__main__':
    sys.exit(main())
