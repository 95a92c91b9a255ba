"""The benchmark scripts run what they claim to time (their figures are measured by hand, not here)."""
import json
import math

from benchmarks import train_step


def test_train_step_times_every_registered_method(capsys):
    """`--all` times every method of the registry, FT and AB after their stages, CRD with its sample
    indices and memory bank: one table row each and a finite overhead."""
    from symbols.transfer import METHODS
    train_step.main(['--all', '--teacher', 'cifar_resnet14', '--student', 'cifar_resnet8', '--batch', '4',
                     '--classes', '10', '--steps', '1', '--num-samples', '64'])
    out = capsys.readouterr().out
    rows = json.loads(out.strip().splitlines()[-1])
    assert [r['kt'] for r in rows] == list(METHODS)
    assert all(math.isfinite(r['overhead']) and r['overhead'] > 0 for r in rows), rows
    assert {r['kt']: r['taps']['student'] for r in rows}['kd'] == []
    assert sum(line.startswith('| ') for line in out.splitlines()) == len(METHODS) + 1     # header and rows


def test_side_by_side_methods_times_each_method_in_both_trees(capsys):
    """`benchmarks.side_by_side methods`: each method in this tree and another commit, alternating, one
    table row each with both overheads and the ratio of the distillation steps."""
    from benchmarks import side_by_side
    assert side_by_side.main(['--against', 'HEAD', '--rounds', '1', '--methods', 'kd,at', 'methods', '--teacher',
                              'cifar_resnet8', '--student', 'cifar_resnet8', '--batch', '4', '--classes', '10',
                              '--steps', '1']) == 0
    out = capsys.readouterr().out
    rows = [l for l in out.splitlines() if l.startswith('| kd |') or l.startswith('| at |')]
    assert len(rows) == 4, out                                     # as measured, then in the table
    got = json.loads(out.strip().splitlines()[-1])
    assert got['what'] == 'methods' and set(got['median']) == {'kd', 'at'}
    assert all(math.isfinite(got['median'][m][tree]['overhead']) for m in ('kd', 'at') for tree in ('this', 'other'))


def test_every_method_has_a_peer_and_the_peer_script_needs_torch(tmp_path):
    """benchmarks/peers.py names the peer code timed for every registered method, and says how to get
    a Python with torch when run without one (this environment has none)."""
    import subprocess
    import sys
    from benchmarks.peers import PEERS
    from symbols.transfer import METHODS
    assert set(PEERS) == set(METHODS)
    try:
        import torch  # noqa: F401
        return                                               # (a torch here: nothing to refuse)
    except ImportError:
        pass
    r = subprocess.run([sys.executable, 'benchmarks/peers.py', '--method', 'at'], capture_output=True, text=True,
                       cwd=str(__import__('pathlib').Path(__file__).resolve().parents[1]))
    assert r.returncode == 2 and 'bash benchmarks/peer_env.sh' in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_against_peers_alternates_the_two_sides_and_tables_the_medians(tmp_path, monkeypatch, capsys):
    """`benchmarks.against_peers`: ours and the peer's step alternate, the order reversed every other
    round; the table holds each side's median samples/s and their ratio."""
    from benchmarks import against_peers
    calls, peer_values = [], iter([10.0, 30.0, 20.0])
    fake = tmp_path / 'python'
    log = tmp_path / 'peer-calls'
    fake.write_text('#!/bin/sh\necho "$@" >> %s\necho \'{"peer": "P", "samples_s": \'$(cat %s)\'}\'\n'
                    % (log, tmp_path / 'value'))
    fake.chmod(0o755)

    def ours(method, args):
        calls.append('ours')
        return {'samples_s': 40.0}

    def peer(python, method, args):
        calls.append('peer')
        (tmp_path / 'value').write_text(str(next(peer_values)))
        return against_peers.__dict__['_peer_step_real'](python, method, args)

    monkeypatch.setattr(against_peers, '_peer_step_real', against_peers.peer_step, raising=False)
    monkeypatch.setattr(against_peers, 'our_step', ours)
    monkeypatch.setattr(against_peers, 'peer_step', peer)
    against_peers.main(['--methods', 'at', '--rounds', '3', '--peer-python', str(fake)])
    out = capsys.readouterr().out
    assert calls == ['ours', 'peer', 'peer', 'ours', 'ours', 'peer']
    assert '| at | P | 40.0 | 20.0 | 2.00 |' in out, out
    assert '--method at' in log.read_text()


def test_a_peer_step_that_fails_is_said_in_the_table_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    """RepDistiller's CRD once failed on a CPU-only torch (its memory calls .cuda()): the table says so
    for that method, and the methods after it are still timed."""
    from benchmarks import against_peers
    fake = tmp_path / 'python'
    fake.write_text('#!/bin/sh\ncase "$*" in *"--method at"*) echo "AssertionError: no CUDA" >&2; exit 1;; esac\n'
                    'echo \'{"peer": "P", "samples_s": 10.0}\'\n')
    fake.chmod(0o755)
    monkeypatch.setattr(against_peers, 'our_step', lambda method, args: {'samples_s': 20.0})
    against_peers.main(['--methods', 'at,kd', '--rounds', '2', '--peer-python', str(fake)])
    out = capsys.readouterr().out
    assert '| at | RepDistiller | 20.0 | failed: AssertionError: no CUDA | |' in out, out
    assert '| kd | P | 20.0 | 10.0 | 2.00 |' in out, out
