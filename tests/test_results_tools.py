"""Figures and the results table from tiny runs and fake records."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import train
from tests.helpers import make_cifar, tiny_train_args
from tools import results_table, plot_curves, tsne, heatmaps, features
from tools.records import find_runs, read_records


def fake_records(folder, name, errors, epochs=3):
    with open(os.path.join(folder, name + '.jsonl'), 'w') as f:
        for e in range(epochs):
            top1 = 1 - errors[0] / 100.0 - 0.01 * (epochs - 1 - e)
            f.write(json.dumps({'epoch': e, 'val_top1': top1, 'val_top5': 1 - errors[1] / 100.0,
                                'train_top1': top1 + 0.02}) + '\n')


def valid_png(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_table_mean_and_std_over_seeds(tmp_path):
    for seed, err in enumerate([10.0, 12.0, 14.0]):
        fake_records(str(tmp_path), 'repro_kd_s%d' % seed, (err, 1.0))
    fake_records(str(tmp_path), 'repro_student_s0', (20.0, 2.0))
    fake_records(str(tmp_path), 'repro_nst_poly_s0', (9.0, 1.0), epochs=2)      # unfinished: left out
    groups = results_table.group_runs(find_runs(str(tmp_path)), 'repro_', num_epoch=3)
    table = results_table.make_table(groups, 'S', 'T', {'val_top1': 0.9, 'val_top5': 0.99})
    lines = table.strip().split('\n')
    assert lines[2] == '| student alone | S | — | 20.00 | 2.00 | 1 |'
    assert lines[3] == '| KD | S | T | 12.00 ± 2.00 | 1.00 ± 0.00 | 3 |'
    assert lines[4] == '| teacher | T | — | 10.00 | 1.00 | 1 |' and len(lines) == 5


def test_records_keep_the_last_record_of_a_repeated_epoch(tmp_path):
    p = tmp_path / 'r.jsonl'
    p.write_text('\n'.join(json.dumps({'epoch': e, 'v': v}) for e, v in [(0, 1), (1, 2), (1, 3), (2, 4)]) + '\n')
    assert [r['v'] for r in read_records(str(p))] == [1, 3, 4]


def test_curves_png_has_one_series_per_method(tmp_path):
    for m in ('student', 'kd', 'nst_poly'):
        for seed in range(2):
            fake_records(str(tmp_path), 'repro_%s_s%d' % (m, seed), (10 + seed, 1.0), epochs=4)
    out = str(tmp_path / 'curves.png')
    n = plot_curves.plot(find_runs(str(tmp_path)), 'repro_', ['student', 'kd', 'nst_poly', 'kd_nst'], out)
    assert n == 3 and valid_png(out)[0] > 100


@pytest.fixture(scope='module')
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny')
    make_cifar(str(root / 'c'), 'cifar10', train=32, test=16)
    common = tiny_train_args(root, root / 'c', epoch_size=1)
    assert train.main(common + ['network=cifar_resnet14', 'model_prefix=t']) == 0
    assert train.main(common + ['network=cifar_resnet8', 'model_prefix=s']) == 0
    return root


@pytest.mark.slow
def test_tsne_and_heatmaps_from_tiny_runs(tiny_runs):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 255, size=(6, 3, 32, 32)).astype(np.uint8)
    maps = []
    for name in ('t', 's'):
        block, meta = features.load_tapped(str(tiny_runs / 'model' / name), ['stage3_pre'])
        out = features.tap_outputs(block, images, meta['mean'], meta['std'])
        assert out[0].shape == (6, 10) and out[1].shape == (6, 64, 8, 8)
        maps.append(out[1])
    out = str(tiny_runs / 'tsne.png')
    assert tsne.plot(maps[0], [('before', maps[1]), ('after', maps[1])], out) == 4
    assert valid_png(out)[0] > 100
    out = str(tiny_runs / 'heat.png')
    assert heatmaps.plot(images[:2], [('teacher', maps[0]), ('student', maps[1])], out, channels=2) == 8
    assert valid_png(out)[0] > 100


def test_selectivity_rows_are_unit_vectors():
    f = np.random.RandomState(1).randn(5, 7, 3, 3)
    s = tsne.selectivity(f)
    assert s.shape == (7, 45)
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0)


@pytest.mark.slow
def test_tsne_and_heatmap_commands_on_runs(tiny_runs, capsys):
    model, data = tiny_runs / 'model', str(tiny_runs / 'c')
    out = str(tiny_runs / 'tsne_cli.png')
    # teacher maps 16x16 (stage2_pre) are pooled to the students' 8x8
    assert tsne.main(['--teacher', '%s:stage2_pre' % (model / 't'), '--student', 'a=%s:stage3_pre' % (model / 's'),
                      '--student', 'b=%s:stage3_pre' % (model / 's'), '--data-dir', data, '--images', '5',
                      '--out', out]) == 0
    assert 'wrote' in capsys.readouterr().out and valid_png(out)[0] > 100
    out = str(tiny_runs / 'heat_cli.png')
    assert heatmaps.main(['--net', 'T=%s:stage3_pre' % (model / 't'), '--net', 'S=%s:stage3_pre' % (model / 's'),
                          '--data-dir', data, '--images', '2', '--channels', '2', '--out', out]) == 0
    assert '(8 panels)' in capsys.readouterr().out and valid_png(out)[0] > 100
    assert heatmaps.main(['--net', 'T=%s:nope' % (model / 't'), '--data-dir', data, '--out', out]) == 2
    assert "unknown tap 'nope'" in capsys.readouterr().err
    assert tsne.main(['--teacher', '%s:stage3_pre' % (model / 'missing'), '--student', 'a=%s:stage3_pre'
                      % (model / 's'), '--data-dir', data, '--out', out]) == 2
    assert 'no checkpoint' in capsys.readouterr().err
    # without --data-dir: the data the first run was trained on (its saved data_dir), not Fashion-MNIST's folder
    assert heatmaps.main(['--net', 'T=%s:stage3_pre' % (model / 't'), '--images', '2', '--channels', '1',
                          '--out', out]) == 0
    assert '(2 panels)' in capsys.readouterr().out
    assert heatmaps.main(['--net', 'T=%s:stage3_pre' % (model / 't'), '--images', '1', '--channels', '999',
                          '--out', out]) == 0
    assert '(64 panels); --channels 999: the tap has 64, all drawn' in capsys.readouterr().out
    # (trial 28: two networks were both cut to the fewer channels, and the note gave the other's count)
    assert heatmaps.main(['--net', 'T=%s:stage3_pre' % (model / 't'), '--net', 'S=%s:stage1' % (model / 's'),
                          '--images', '1', '--channels', '999', '--out', out]) == 0
    said = capsys.readouterr().out
    assert '(80 panels); --channels 999: T\'s tap has 64, S\'s tap has 16, all drawn' in said, said


def test_pool_to_is_adaptive_average_pooling():
    f = np.arange(2 * 3 * 6 * 4, dtype=np.float64).reshape(2, 3, 6, 4)
    p = features.pool_to(f, 3, 2)
    assert p.shape == (2, 3, 3, 2)
    np.testing.assert_allclose(p[1, 2, 1, 1], f[1, 2, 2:4, 2:4].mean())
    q = features.pool_to(f, 4, 3)                      # uneven bins overlap as in adaptive pooling
    np.testing.assert_allclose(q[0, 0, 1, 1], f[0, 0, 1:3, 1:3].mean())
    assert features.pool_to(f, 6, 4) is f


@pytest.mark.slow
def test_figure_commands_take_a_legacy_teacher(tiny_runs, capsys):
    import mxnet as mx
    from tests.helpers import legacy_resnet_symbol
    sym = legacy_resnet_symbol(num_classes=10, stride=4)              # bn1_output: 8 x 8 at 32 x 32
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[('data', (1, 3, 32, 32))], label_shapes=[('softmax_label', (1,))])
    mod.init_params(mx.init.Xavier(magnitude=2))
    legacy = str(tiny_runs / 'resnet-legacy')
    mx.model.save_checkpoint(legacy, 3, sym, *mod.get_params())
    data, student = str(tiny_runs / 'c'), str(tiny_runs / 'model' / 's')
    out = str(tiny_runs / 'tsne_legacy.png')
    assert tsne.main(['--teacher', legacy + ':bn1_output', '--student', 'S=%s:stage3_pre' % student,
                      '--data-dir', data, '--images', '4', '--out', out]) == 0
    assert valid_png(out)[0] > 100
    assert heatmaps.main(['--net', 'T=%s:bn1_output' % legacy, '--net', 'S=%s:stage3_pre' % student,
                          '--data-dir', data, '--images', '2', '--channels', '1', '--out', out]) == 0
    capsys.readouterr()
    assert heatmaps.main(['--net', 'T=%s:bn1_output' % legacy, '--data-dir', data, '--out', out]) == 2
    assert 'all legacy checkpoints' in capsys.readouterr().err


def test_every_reproduction_run_is_a_valid_configuration():
    """tools.reproduce's command line of each method loads and validates (a key given twice, an unknown
    key or a tap the ResNet-8/14 pair lacks would stop the protocol hours in), and covers every method."""
    from config import load_config
    from symbols.transfer import METHODS as REGISTRY, parse_kt_type
    from tools import reproduce
    covered = set()
    for method, overrides in reproduce.METHODS:
        args = reproduce.train_args(method, overrides, 0)
        assert args[:2] == ['--cfg', reproduce.PRESET]
        cfg = load_config(os.path.join(reproduce.ROOT, args[1]), args[2:], check_data=False)
        assert cfg.model_prefix == 'repro_%s_s0' % method and cfg.kt == (method != 'student')
        if cfg.kt:
            covered.update(parse_kt_type(cfg.kt_type))
    assert covered == set(REGISTRY), sorted(set(REGISTRY) - covered)
    assert {m for m, _ in reproduce.METHODS} <= set(results_table.LABELS)        # each has its table label


def test_reproduce_stopped_by_sigterm_stops_its_running_step(tmp_path):
    """`kill` (or `timeout`, a scheduler) sends SIGTERM to tools.reproduce alone: the training step it runs
    stops with it, instead of training on and holding the run's lock; the message says to run it again."""
    import signal
    import subprocess
    import sys
    import time
    pid_file = tmp_path / 'child.pid'
    step = "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(60)" % str(pid_file)
    parent = subprocess.Popen([sys.executable, '-c', 'from tools import reproduce; reproduce.python(["-c", %r])'
                               % step], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 128 + signal.SIGTERM
    err = parent.stderr.read()
    assert 'terminated (SIGTERM)' in err and 'run it again to resume' in err and 'Traceback' not in err, err
    time.sleep(0.2)
    from core.env import proc_stat
    state = proc_stat(child)
    assert state is None or state[0] == 'Z'                     # gone, or a zombie


def test_the_table_names_the_networks_the_records_name(tmp_path, capsys):
    """Found by a new user: tools.results_table left the network and teacher columns blank unless
    --student/--teacher were given; the records of every run now say them."""
    for method, teacher in (('student', None), ('kd', 'segT')):
        with open(str(tmp_path / ('seg_%s_s0.jsonl' % method)), 'w') as f:
            f.write(json.dumps({'epoch': 0, 'val_miou': 0.5, 'val_pixel_acc': 0.9, 'network': 'preact_resnet18',
                                'teacher': teacher, 'model_prefix': 'seg_%s_s0' % method}) + '\n')
    assert results_table.main(['--task', 'segmentation', '--records', str(tmp_path), '--prefix', 'seg_']) == 0
    out = capsys.readouterr().out
    assert '| student alone | preact_resnet18 | — | 50.00 |' in out and '| KD | preact_resnet18 | segT | 50.00 |' in out
    assert results_table.main(['--task', 'segmentation', '--records', str(tmp_path), '--prefix', 'seg_',
                               '--student', 'R18']) == 0
    assert '| KD | R18 | segT |' in capsys.readouterr().out


def test_best_compares_each_run_at_its_best_epoch(tmp_path, capsys):
    """--best: each run's record with the highest validation score up to the epoch compared (the
    first of equal ones), instead of that epoch's."""
    for seed, scores in enumerate(([0.5, 0.9, 0.7], [0.6, 0.6, 0.4])):
        with open(str(tmp_path / ('b_kd_s%d.jsonl' % seed)), 'w') as f:
            for epoch, v in enumerate(scores):
                f.write(json.dumps({'epoch': epoch, 'val_miou': v, 'val_pixel_acc': v + 0.05,
                                    'model_prefix': 'b_kd_s%d' % seed}) + '\n')
    argv = ['--task', 'segmentation', '--records', str(tmp_path), '--prefix', 'b_']
    assert results_table.main(argv) == 0
    assert '| KD |  |  | 55.00 ± 21.21 |' in capsys.readouterr().out            # the last epoch: 0.7, 0.4
    assert results_table.main(argv + ['--best']) == 0
    assert '| KD |  |  | 75.00 ± 21.21 | 80.00 ± 21.21 | 2 |' in capsys.readouterr().out   # 0.9, 0.6
    assert results_table.main(argv + ['--best', '--num-epoch', '1']) == 0
    assert '| KD |  |  | 55.00 ± 7.07 |' in capsys.readouterr().out            # up to epoch 1: 0.5, 0.6


def test_a_table_of_one_task_does_not_suggest_the_runs_of_another(tmp_path, capsys):
    """Found by a new user: --task segmentation on a folder of classification records suggested their
    prefixes; a detection table silently ignored --prefix/--num-epoch (it compares best checkpoints)."""
    for name, rec in (('c_kd_s0', {'val_top1': 0.5, 'val_top5': 0.9}), ('s_kd_s0', {'val_miou': 0.4,
                                                                                   'val_pixel_acc': 0.8})):
        with open(str(tmp_path / (name + '.jsonl')), 'w') as f:
            f.write(json.dumps(dict(rec, epoch=0, model_prefix=name)) + '\n')
    code = results_table.main(['--task', 'segmentation', '--records', str(tmp_path), '--prefix', 'c_'])
    err = capsys.readouterr().err
    assert code == 2 and "'c_'<method>_s<seed>" in err and 'are classification runs' in err and \
        'leave out --task segmentation' in err, err
    code = results_table.main(['--task', 'segmentation', '--records', str(tmp_path), '--prefix', 'x_'])
    err = capsys.readouterr().err
    assert code == 2 and "--prefix 's_' (1 run)" in err and "'c_'" not in err, err
    assert results_table.main(['--records', str(tmp_path), '--prefix', 's_']) == 2
    assert 'add --task segmentation' in capsys.readouterr().err
    for option in (['--prefix', 'c_'], ['--num-epoch', '3'], ['--records', str(tmp_path)]):
        code = results_table.main(['--task', 'detection', 'voc_baseline'] + option)
        err = capsys.readouterr().err
        assert code == 2 and 'a detection table compares the best checkpoint of each run' in err and \
            'leave out %s' % option[0] in err, err


def test_a_folder_of_copied_records_only_is_named_as_such(tmp_path, capsys):
    """#18's tenth trial: records files each holding another run's records were all left out, and the
    error then said the folder had no records at all."""
    for name, holds in (('x_kd_s0', 'a'), ('x_kd_s1', 'b')):
        with open(str(tmp_path / (name + '.jsonl')), 'w') as f:
            f.write(json.dumps({'epoch': 0, 'val_top1': 0.5, 'model_prefix': holds}) + '\n')
    assert results_table.main(['--records', str(tmp_path), '--prefix', 'x_']) == 2
    err = capsys.readouterr().err
    assert 'were all left out: each holds the records of another run' in err and 'no run records' not in err, err
