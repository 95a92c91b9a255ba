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
