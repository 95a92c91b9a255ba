"""Checkpoints: never a NaN checkpoint, the latest finite one is resumed, a damaged or partial
checkpoint is named, and a full disk never damages an earlier one."""
import errno
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import symbols
import train
from core import checkpoint
from tests.helpers import make_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.slow


def small_net():
    net = symbols.get_network('cifar_resnet8', 10)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    return net


def poison(params_file):
    """Rewrite a params file with NaN in its first array (as a diverged run would have saved it)."""
    arrays = mx.nd.load(params_file)
    name = sorted(arrays)[0]
    arrays[name][:] = np.nan
    mx.nd.save(params_file, arrays)


def test_save_refuses_non_finite_parameters_and_writes_nothing(tmp_path):
    net = small_net()
    checkpoint.save(str(tmp_path), 'run', 1, net, meta={'network': 'cifar_resnet8'}, best=True)
    before = {f: open(str(tmp_path / f), 'rb').read() for f in os.listdir(str(tmp_path))}
    list(net.collect_params().values())[3].data()[:] = np.inf
    with pytest.raises(checkpoint.NonFiniteCheckpoint, match='NaN or Inf.*epoch 2 was not saved'):
        checkpoint.save(str(tmp_path), 'run', 2, net, meta={'network': 'cifar_resnet8'}, best=True)
    assert {f: open(str(tmp_path / f), 'rb').read() for f in os.listdir(str(tmp_path))} == before


def test_parameters_that_diverge_after_the_last_loss_check_are_never_saved(cifar_setup, train_run, monkeypatch):
    """The loss is read every `frequent` steps; an update after the last read can make the
    parameters NaN. That epoch is not validated, logged as good or saved; exit 3."""
    from core.engine import Engine
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=diverge', 'frequent=50']
    assert train_run(argv)[0] == 0
    good = {k: open(v, 'rb').read() for k, v in checkpoint.paths(str(root / 'model'), 'diverge', 1).items()
            if os.path.isfile(v)}
    real = Engine.train_epoch

    def diverging(self, epoch):
        stats = real(self, epoch)
        list(self.task.student.collect_params().values())[0].data()[:] = np.nan      # the last update diverged
        return stats
    monkeypatch.setattr(Engine, 'train_epoch', diverging)
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 3 and 'parameters became NaN or Inf during epoch 2' in err and 'Last good checkpoint: epoch 1' in err
    assert checkpoint.epochs(str(root / 'model'), 'diverge') == [1]
    assert {k: open(v, 'rb').read() for k, v in checkpoint.paths(str(root / 'model'), 'diverge', 1).items()
            if os.path.isfile(v)} == good
    assert not os.path.exists(checkpoint.paths(str(root / 'model'), 'diverge', 2)['params'])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(cifar_setup, train_run):
    root, _, student = cifar_setup
    argv = student + ['kt_type=kd', 'model_prefix=nan']
    assert train_run(argv)[0] == 0
    good = checkpoint.paths(str(root / 'model'), 'nan', 1)
    before = {k: open(v, 'rb').read() for k, v in good.items() if os.path.isfile(v)}
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=1', 'num_epoch=2', 'lr=1e38', 'epoch_size=4'])
    assert code == 3 and 'NaN or Inf' in err and 'step' in err
    assert {k: open(v, 'rb').read() for k, v in good.items() if os.path.isfile(v)} == before
    assert not os.path.exists(checkpoint.paths(str(root / 'model'), 'nan', 2)['meta'])


def test_latest_resume_skips_non_finite_checkpoints(cifar_setup, train_run):
    """A NaN checkpoint left by an older version (or copied in): model_load_epoch=-1 resumes the
    latest finite epoch and moves the NaN one aside; an explicit epoch names the problem."""
    root, common, _ = cifar_setup
    model = str(root / 'model')
    argv = common + ['network=cifar_resnet8', 'model_prefix=poisoned', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    poison(checkpoint.paths(model, 'poisoned', 2)['params'])
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=2', 'num_epoch=3'])
    assert code == 2 and 'poisoned-0002.params holds NaN or Inf' in err and 'earlier epoch' in err
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1', 'num_epoch=3'])
    assert code == 0, err
    assert 'skipping epoch 2' in err and "resumed run 'poisoned' from its epoch-1 checkpoint" in err
    assert checkpoint.epochs(model, 'poisoned') == [1, 2, 3]
    aside = [d for d in os.listdir(os.path.join(model, 'replaced')) if d.startswith('poisoned-')]
    assert len(aside) == 1 and 'poisoned-0002.params' in os.listdir(os.path.join(model, 'replaced', aside[0]))
    for e in (1, 2, 3):
        arrays = mx.nd.load(checkpoint.paths(model, 'poisoned', e)['params'])
        assert all(np.isfinite(a.asnumpy()).all() for a in arrays.values())


def test_load_network_refuses_non_finite_weights(tmp_path):
    checkpoint.save(str(tmp_path), 'run', 1, small_net(), meta={'network': 'cifar_resnet8', 'num_classes': 10,
                                                                'in_channels': 3})
    poison(checkpoint.paths(str(tmp_path), 'run', 1)['params'])
    with pytest.raises(checkpoint.NonFiniteCheckpoint, match='run-0001.params holds NaN or Inf'):
        checkpoint.load_network(str(tmp_path / 'run'), 1, mx.cpu())


def test_full_disk_keeps_previous_checkpoints(tmp_path, monkeypatch):
    net = small_net()
    checkpoint.save(str(tmp_path), 'run', 1, net, meta={'network': 'cifar_resnet8'}, best=True)
    before = sorted(os.listdir(str(tmp_path)))
    saved = {f: open(str(tmp_path / f), 'rb').read() for f in before}

    def full(path):
        with open(path, 'wb') as f:
            f.write(b'partial')
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(net, 'save_parameters', full)
    with pytest.raises(checkpoint.CheckpointError, match='No space left.*earlier checkpoints are intact'):
        checkpoint.save(str(tmp_path), 'run', 2, net, meta={'network': 'cifar_resnet8'}, best=True)
    assert sorted(os.listdir(str(tmp_path))) == before          # no partial or temporary files
    assert {f: open(str(tmp_path / f), 'rb').read() for f in before} == saved
    assert checkpoint.epochs(str(tmp_path), 'run') == [1]


def test_truncated_params_file(cifar_setup, train_run):
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=trunc']
    assert train_run(argv)[0] == 0
    p = checkpoint.paths(str(root / 'model'), 'trunc', 1)['params']
    data = open(p, 'rb').read()
    open(p, 'wb').write(data[:len(data) // 3])
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=1', 'num_epoch=2'])
    assert code == 2 and 'truncated or corrupt' in err and p in err
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=7', 'num_epoch=8'])
    assert code == 2 and 'no checkpoint' in err and 'its epochs: 1\n' in err, err
    code, err = train_run(argv + ['retrain=true', 'num_epoch=1'])     # (trial 20: 'nothing to train', exit 0)
    assert code == 2 and 'numbered from 1' in err, err
    code, err = train_run(argv + ['retrain=true', 'num_epoch=8'])               # model_load_epoch left at 0
    assert code == 2 and 'numbered from 1' in err and 'model_load_epoch=-1' in err and "'trunc' in %s: 1" % (root / 'model') in err, err


def test_a_damaged_latest_checkpoint_is_skipped_by_a_resume_from_the_latest(cifar_setup, train_run):
    """Found by a new user (#18's ninth trial): with the latest epoch's params truncated (or its .states
    missing), model_load_epoch=-1 said 'use another epoch' and model_load_epoch=N then said 'would overwrite
    its later epochs: resume from the latest with -1', a loop. The latest usable epoch is resumed now,
    and the damaged epoch is moved aside (as a NaN one is), nothing deleted."""
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=dmg', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    model = str(root / 'model')
    p = checkpoint.paths(model, 'dmg', 2)['params']
    data = open(p, 'rb').read()
    open(p, 'wb').write(data[:len(data) // 3])
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1', 'num_epoch=3'])
    assert code == 0 and 'skipping epoch 2' in err and 'truncated or corrupt' in err, err
    assert "resumed run 'dmg' from its epoch-1 checkpoint" in err, err
    assert checkpoint.epochs(model, 'dmg') == [1, 2, 3]
    moved = [f for d, _, fs in os.walk(os.path.join(model, 'replaced')) for f in fs if f.startswith('dmg-0002')]
    assert 'dmg-0002.params' in moved, moved


def test_every_epoch_damaged_offers_the_intact_best_copy_and_the_advice_works(cifar_setup, train_run):
    """#18's fourteenth trial: with every epoch's parameters damaged but the best copy intact, the only
    advice was to start over; it offers a new run from the best copy's weights, and that works."""
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=alldmg', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    model = str(root / 'model')
    for epoch in (1, 2):
        p = checkpoint.paths(model, 'alldmg', epoch)['params']
        data = open(p, 'rb').read()
        os.remove(p)                                   # (a new file: the best copy may share the old one's bytes)
        open(p, 'wb').write(data[:len(data) // 3])
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1', 'num_epoch=3'])
    line = err.strip().splitlines()[-1]
    assert code == 2 and 'its best copy (epoch ' in line and 'pretrained_epoch=-1' in line, err
    # (#18's trial 20: the epoch named was one past the best copy's)
    import json
    best = json.load(open(checkpoint.paths(model, 'alldmg', 'best')['meta']))['epoch']
    assert 'its best copy (epoch %d) is intact' % best in line, (best, line)
    advice = line.split('e.g. ')[1].split(' (the optimizer')[0].split()
    code, err = train_run(common + ['network=cifar_resnet8', 'num_epoch=1'] + advice)
    assert code == 0 and checkpoint.epochs(model, 'alldmg_more') == [1], err


def test_connectors_are_checkpointed_and_resumed(cifar_setup, train_run):
    """FitNet/OFD connectors train with the student, live in .extra.params, and come back on resume."""
    root, _, student = cifar_setup
    argv = student + ['kt_type=kd+fitnet+ofd', 'kt_weight=[16, 100, 0.001]',
                      'teacher_symbol=[null, stage2_pre, stage3_pre]', 'student_symbol=[null, stage2_pre, stage3_pre]',
                      'model_prefix=conn']
    assert train_run(argv)[0] == 0
    extra = checkpoint.paths(str(root / 'model'), 'conn', 1)['extra']
    names = sorted(mx.nd.load(extra).keys())
    assert any(n.startswith('fitnet_0.conv') for n in names) and any(n.startswith('ofd_0.bn') for n in names)
    assert not [n for n in mx.nd.load(checkpoint.paths(str(root / 'model'), 'conn', 1)['params']) if 'conv' in n
                and n.startswith(('fitnet', 'ofd'))]
    assert train_run(argv + ['retrain=true', 'model_load_epoch=1', 'num_epoch=2'])[0] == 0
    assert checkpoint.epochs(str(root / 'model'), 'conn') == [1, 2]


def test_resume_with_another_network_or_method_is_refused_by_name(cifar_setup, train_run):
    """A resume that changes the network or kt_type names both values instead of a shape error."""
    root, common, student = cifar_setup
    argv = student + ['model_prefix=switch', 'kt_type=kd', 'kt_weight=null']
    assert train_run(argv)[0] == 0
    code, err = train_run(argv[:-2] + ['kt_type=dist', 'kt_weight=null', 'retrain=true', 'model_load_epoch=-1',
                                       'num_epoch=2'])
    assert code == 2 and 'kt_type=kd (this run: dist)' in err, err
    code, err = train_run([a for a in argv if not a.startswith('network=')] +
                          ['network=cifar_resnet14', 'retrain=true', 'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 2 and 'network=cifar_resnet8 (this run: cifar_resnet14)' in err, err
    assert checkpoint.epochs(str(root / 'model'), 'switch') == [1]            # nothing touched


def test_resume_on_a_training_set_of_another_size_names_the_memory_bank(cifar_setup, train_run, tmp_path):
    """CRD's memory bank has a row per training image: resuming it on another training set (here 80
    images instead of 64) is one error saying to resume on the data the run started with, not a
    network/num_classes hint; the checkpoint is untouched."""
    from tests.helpers import make_cifar
    root, _, student = cifar_setup
    argv = student + ['model_prefix=bank', 'kt_type=crd', 'kt_weight=null', 'teacher_symbol=pool',
                      'student_symbol=pool', 'crd_nce_k=16', 'crd_feat_dim=8']
    assert train_run(argv)[0] == 0
    extra = checkpoint.paths(str(root / 'model'), 'bank', 1)['extra']
    with open(extra, 'rb') as f:
        before = f.read()
    make_cifar(str(tmp_path / 'cifar'), 'cifar10', train=80, test=32)
    code, err = train_run(argv + ['data_dir=%s' % (tmp_path / 'cifar'), 'retrain=true', 'model_load_epoch=-1',
                                  'num_epoch=2'])
    assert code == 2 and 'Traceback' not in err, err
    assert 'memory_s' in err and 'training data the run started with' in err and 'num_classes' not in err, err
    with open(extra, 'rb') as f:
        assert f.read() == before
    assert checkpoint.epochs(str(root / 'model'), 'bank') == [1]


def test_missing_optimizer_state_names_the_file_and_an_earlier_epoch(cifar_setup, train_run):
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=nostates', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    p = checkpoint.paths(str(root / 'model'), 'nostates', 2)['states']
    os.remove(p)
    code, err = train_run(argv[:-1] + ['num_epoch=3', 'retrain=true', 'model_load_epoch=2'])
    assert code == 2 and p in err and 'model_load_epoch=1' in err and 'Traceback' not in err, err


def test_a_checkpoint_copied_from_another_run_is_resumed_with_a_warning_naming_that_run(cifar_setup, train_run):
    """`cp model/orig-0001.* model/copy-0001.*` then resuming copy was silent, although the metadata
    says model_prefix=orig."""
    import shutil
    root, common, _ = cifar_setup
    model = root / 'model'
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=orig'])[0] == 0
    for f in os.listdir(str(model)):
        if f.startswith('orig-0001.'):
            shutil.copy(str(model / f), str(model / f.replace('orig-', 'copy-', 1)))
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=copy', 'retrain=true',
                                    'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 0, err
    assert "checkpoint copy epoch 1 was saved by run 'orig'" in err and 'model_load_prefix=orig' in err
    assert checkpoint.epochs(str(model), 'copy') == [1, 2]
    assert checkpoint.read_meta(str(model), 'copy', 2)['model_prefix'] == 'copy'


def test_a_full_disk_in_a_first_checkpoint_leaves_nothing_half_written(tmp_path, cifar_setup, train_run):
    """Found by a new user: the disk filled up while the optimizer state of epoch 1 was written;
    epoch 1's params stayed (an incomplete checkpoint using the space), and the run could then
    neither start again ('already exists ... resume it') nor resume ('no complete checkpoint')."""
    class FullTrainer(object):
        def save_states(self, path):
            with open(path, 'wb') as f:
                f.write(b'partial')
            raise OSError(errno.ENOSPC, 'No space left on device')
    with pytest.raises(checkpoint.CheckpointError, match='run-0001.states.*No space left'):
        checkpoint.save(str(tmp_path), 'run', 1, small_net(), trainer=FullTrainer(), meta={'network': 'x'}, best=True)
    assert os.listdir(str(tmp_path)) == []
    root, common, _ = cifar_setup
    (root / 'model' / 'inc-0001.params').write_bytes(b'left by an older version')
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=inc'])
    assert code == 2 and 'only incomplete checkpoint files (inc-0001.params' in err and 'nothing to resume' in err
    assert 'overwrite=true' in err and '\n  resume: ' not in err
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=inc', 'retrain=true', 'model_load_epoch=-1'])
    assert code == 2 and 'nothing to resume' in err and 'without retrain=true' in err


def test_a_params_file_of_another_network_is_named_on_resume(cifar_setup, train_run):
    """#18.4: a checkpoint whose .params holds another network (a resnet14's file under a resnet8's
    metadata, as `cp` leaves it) was a Gluon 'Set ignore_extra=True' ValueError traceback on resume:
    now one error naming what the metadata says and the parameters that differ; nothing written."""
    import shutil
    root, common, _ = cifar_setup
    model = root / 'model'
    assert train_run(common + ['network=cifar_resnet14', 'model_prefix=big'])[0] == 0
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=mixed'])[0] == 0
    shutil.copy(str(model / 'big-0001.params'), str(model / 'mixed-0001.params'))
    before = sorted(os.listdir(str(model)))
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=mixed', 'retrain=true',
                                    'model_load_epoch=1', 'num_epoch=2'])
    assert code == 2 and 'Traceback' not in err and 'ignore_extra' not in err, err
    assert 'mixed-0001.json says network=cifar_resnet8' in err and 'are not in this network (stage' in err, err
    assert 'copy the .params and .json of one checkpoint together' in err, err
    assert sorted(os.listdir(str(model))) == before
    # a resume of the resnet14 run as a resnet8 (model_load_prefix): the metadata's network is named
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=branch', 'model_load_prefix=big',
                                    'retrain=true', 'model_load_epoch=1', 'num_epoch=2'])
    assert code == 2 and 'network=cifar_resnet14 (this run: cifar_resnet8)' in err, err


def test_a_checkpoint_of_another_class_count_is_named_as_such(cifar_setup, train_run, tmp_path):
    """Found by a new user: a 3-class checkpoint of the same network copied into a 10-class run was
    said to be 'a params file that does not belong with its metadata'; the cause is the class count."""
    import shutil
    root, common, _ = cifar_setup
    model = root / 'model'
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=ten'])[0] == 0
    net = symbols.get_network('cifar_resnet8', 3)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    checkpoint.save(str(tmp_path), 'three', 1, net, meta={'network': 'cifar_resnet8', 'num_classes': 3,
                                                           'in_channels': 3, 'model_prefix': 'three'})
    for kind in ('params', 'meta'):
        shutil.copy(checkpoint.paths(str(tmp_path), 'three', 1)[kind], checkpoint.paths(str(model), 'ten', 1)[kind])
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=ten', 'retrain=true', 'model_load_epoch=1',
                                    'num_epoch=2'])
    assert code == 2 and 'Traceback' not in err, err
    assert 'it was trained for 3 classes (its classifier output has 3 outputs), this network has 10' in err, err
    assert 'does not belong with it' not in err


def test_optimizer_state_copied_from_another_run_is_named(cifar_setup, train_run):
    """Found by a new user (#18's eleventh trial): another run's .states copied over a checkpoint's was
    resumed without a word (the .params had a checksum in the metadata, the .states none)."""
    import shutil
    root, common, _ = cifar_setup
    model = str(root / 'model')
    for name, lr in (('sta', 'lr=0.1'), ('stb', 'lr=0.05')):   # (other states: the same settings give the same bytes)
        assert train_run(common + ['network=cifar_resnet8', 'model_prefix=%s' % name, 'num_epoch=2', lr])[0] == 0
    shutil.copy(checkpoint.paths(model, 'sta', 2)['states'], checkpoint.paths(model, 'stb', 2)['states'])
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=stb', 'num_epoch=3', 'retrain=true',
                                    'model_load_epoch=2', 'lr=0.05'])
    assert code == 2 and 'stb-0002.states is not the optimizer state written with its metadata' in err, err
    assert 'Traceback' not in err


def test_every_optimizer_state_deleted_offers_a_new_run_from_the_weights(cifar_setup, train_run):
    """Found by a new user (#18's twelfth trial): with every .states deleted (to save space) a resume said
    that each epoch held NaN or was damaged, and offered only overwrite=true."""
    import glob
    root, common, _ = cifar_setup
    model = str(root / 'model')
    argv = common + ['network=cifar_resnet8', 'model_prefix=nost', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    for f in glob.glob(os.path.join(model, 'nost-*.states')):
        os.remove(f)
    code, err = train_run(argv[:-1] + ['num_epoch=3', 'retrain=true', 'model_load_epoch=-1'])
    assert code == 2 and "no checkpoint of 'nost' in %s (epochs 1, 2) has its optimizer state" % model in err, err
    assert 'NaN' not in err.split('error:')[-1]
    advice = 'model_prefix=nost_more pretrained=%s pretrained_epoch=2' % os.path.join(model, 'nost')
    assert advice in err
    code, err = train_run(common + ['network=cifar_resnet8'] + advice.split() + ['num_epoch=1'])
    assert code == 0, err                                          # the advice works


def test_a_checkpoint_renamed_to_another_epoch_is_named(cifar_setup, train_run):
    """Found by a new user (#18's fourteenth trial): `s7-0001.*` renamed `s7-0005.*` was resumed as epoch 5
    (epoch 1's weights on epoch 6's schedule), the warning blaming the log folder."""
    import glob
    import shutil
    root, common, _ = cifar_setup
    model = str(root / 'model')
    assert train_run(common + ['network=cifar_resnet8', 'model_prefix=renum'])[0] == 0
    for f in glob.glob(os.path.join(model, 'renum-0001.*')):
        shutil.move(f, f.replace('-0001.', '-0005.'))
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=renum', 'num_epoch=6', 'retrain=true',
                                    'model_load_epoch=-1'])
    assert code == 2 and 'is epoch 5 by its file names but epoch 1 by its metadata' in err, err
    assert 'renum-0001.*' in err and 'Traceback' not in err


def test_copies_of_another_run_s_epoch_and_edited_epochs_in_the_metadata(cifar_setup, train_run, capsys):
    """#18's trial 23: `s2-0002.*` copied as `cp-0001.*` was resumed as epoch 1 (s2's epoch-2 weights on
    the schedule's first epoch, the lr warning computed for the wrong epoch); `s2-0002.*` copied as
    `s2-0009.*` was evaluated as "epoch 2" without a word; a metadata epoch of "three", -3 or true
    was printed or resumed as it stood."""
    import json
    import shutil
    from tools import evaluate
    from tests.helpers import run_tool, one_error
    root, common, _ = cifar_setup
    model = str(root / 'model')
    argv = common + ['network=cifar_resnet8', 'model_prefix=orig23', 'num_epoch=2']
    assert train_run(argv)[0] == 0

    def copy(src, dst):
        for kind in ('meta', 'params', 'states'):
            shutil.copy(checkpoint.paths(model, 'orig23', src)['meta' if kind == 'meta' else kind],
                        checkpoint.paths(model, dst[0], dst[1])[kind])
    copy(2, ('cp23', 1))
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=cp23', 'num_epoch=3', 'retrain=true',
                                    'model_load_epoch=-1'])
    one_error(code, err, "is epoch 1 by its file names but epoch 2 of run 'orig23' by its metadata",
              'model_prefix=NEW retrain=true model_load_prefix=orig23 model_load_epoch=2', 'cp23-0002.*')
    assert checkpoint.epochs(model, 'cp23') == [1]
    copy(2, ('cp23b', 2))                            # the same epoch: resumes, warned of as a copy
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=cp23b', 'num_epoch=3', 'retrain=true',
                                    'model_load_epoch=-1'])
    assert code == 0 and "was saved by run 'orig23' as its epoch 2" in err, err
    copy(2, ('orig23', 9))
    code, out, err = run_tool(evaluate.main, ['--prefix', os.path.join(model, 'orig23'), '--epoch', '9'], capsys)
    assert code == 0 and "checkpoint orig23 epoch 9 says it is epoch 2 (its metadata)" in err, err
    meta_path = checkpoint.paths(model, 'orig23', 9)['meta']
    for said in ('three', -3, True, 0):
        meta = json.load(open(meta_path))
        meta['epoch'] = said
        json.dump(meta, open(meta_path, 'w'))
        code, out, err = run_tool(evaluate.main, ['--prefix', os.path.join(model, 'orig23'), '--epoch', '9'], capsys)
        one_error(code, err, 'says epoch %s, not a whole number >= 1' % json.dumps(said), 'orig23-0009.json')
    code, err = train_run(argv + ['num_epoch=10', 'retrain=true', 'model_load_epoch=9'])
    one_error(code, err, 'says epoch 0, not a whole number >= 1')          # (-1 sets it aside as damaged)


def test_a_latest_epoch_without_its_optimizer_state_resumes_the_one_before_and_trains_it_again(cifar_setup,
                                                                                              train_run):
    """#18's seventeenth trial: with epoch 2's .states deleted, a resume loaded epoch 1's weights but
    said 'from its epoch-2 checkpoint' and trained epoch 3 only (a loop variable reused): epoch 2 was
    never trained again."""
    from core.records import read_records
    root, common, _ = cifar_setup
    argv = common + ['network=cifar_resnet8', 'model_prefix=nost2', 'num_epoch=2']
    assert train_run(argv)[0] == 0
    model = str(root / 'model')
    os.remove(checkpoint.paths(model, 'nost2', 2)['states'])
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1', 'num_epoch=3'])
    assert code == 0 and "resumed run 'nost2' from its epoch-1 checkpoint" in err, err
    assert checkpoint.epochs(model, 'nost2') == [1, 2, 3]
    assert [r['epoch'] for r in read_records(str(root / 'log' / 'nost2.jsonl'))] == [0, 1, 2]


def test_messages_name_a_long_run_of_epochs_as_a_range():
    """#18's trial 18: a refusal listed every epoch of a 40-epoch run; runs of consecutive epochs are
    written first..last in every message that names epochs."""
    from core.checkpoint import epochs_text
    assert epochs_text(range(1, 41)) == '1..40'
    assert epochs_text([9, 1, 3, 4, 5]) == '1, 3..5, 9'
    assert epochs_text([2, 3]) == '2, 3' and epochs_text([]) == 'none'


def test_a_resume_past_a_damaged_or_incomplete_epoch_says_why_and_warns_only_of_the_epoch_it_loads(
        cifar_setup, train_run):
    """#18's trial 19: a truncated or missing .states printed the schedule warnings of that epoch, then
    skipped it ('non-finite or damaged' for a missing file); a deleted .params or .json dropped its
    epoch without a reason."""
    import glob
    root, common, _ = cifar_setup
    model = str(root / 'model')
    argv = common + ['network=cifar_resnet8', 'model_prefix=skip', 'num_epoch=3', 'lr_mode=cosine']
    assert train_run(argv)[0] == 0
    os.remove(os.path.join(model, 'skip-0003.states'))
    code, err = train_run(argv[:-2] + ['num_epoch=4', 'lr_mode=cosine', 'retrain=true', 'model_load_epoch=-1'])
    assert code == 0, err
    assert 'skipping epoch 3' in err and 'checkpoints after epoch 2 (epoch 3 without an optimizer state' in err, err
    assert 'epochs 1..3 followed' not in err and 'epochs 1..2 followed' in err, err    # epoch 2's warning alone
    assert err.count('lr rises again') == 1, err
    for gone in ('skip-0004.params', 'skip-0003.json'):
        os.remove(os.path.join(model, gone))
    code, err = train_run(argv[:-2] + ['num_epoch=4', 'lr_mode=cosine', 'retrain=true', 'model_load_epoch=-1'])
    assert code == 0, err
    assert "resuming 'skip' from epoch 2, its latest complete epoch (epoch 3 has no .json; epoch 4 has no .params: " \
           "deleted, or its writing was interrupted)" in err, err
    assert sorted(glob.glob(os.path.join(model, 'skip-000[34].json'))), 'epochs 3 and 4 trained again'


def test_checkpoint_files_that_are_folders_empty_or_alone_are_named_as_such(cifar_setup, train_run, tmp_path):
    """#18's trial 21: a .states that was a folder was 'missing', a 0-byte one had 'a checksum that
    differs', a .params that was a folder 'did not exist', and a run with one epoch was told to resume
    'an earlier epoch that has one'; a lock path that was a folder was an IsADirectoryError traceback."""
    import shutil
    root, common, _ = cifar_setup
    model = root / 'model'
    argv = common + ['network=cifar_resnet8', 'model_prefix=lone']
    assert train_run(argv)[0] == 0
    resume = argv + ['retrain=true', 'model_load_epoch=1', 'num_epoch=2']
    states = model / 'lone-0001.states'
    kept = states.read_bytes()
    states.write_bytes(b'')
    code, err = train_run(resume)
    assert code == 2 and 'lone-0001.states is empty (0 bytes' in err and 'checksum' not in err, err
    assert "no earlier epoch of 'lone' has one: start a new run from its weights" in err, err
    states.unlink()
    states.mkdir()
    code, err = train_run(resume)
    assert code == 2 and 'lone-0001.states is a folder, not a file' in err, err
    # (#18's trial 22: the latest epoch's .states a folder, resumed from the latest: 'is missing')
    code, err = train_run(argv + ['retrain=true', 'model_load_epoch=-1', 'num_epoch=2'])
    assert code == 2 and 'lone-0001.states is a folder, not a file' in err, err
    states.rmdir()
    states.write_bytes(kept)
    params = model / 'lone-0001.params'
    shutil.move(str(params), str(tmp_path / 'p'))
    params.mkdir()
    r = subprocess.run([sys.executable, '-m', 'tools.evaluate', '--prefix', str(model / 'lone'), '--epoch', '1'],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'lone-0001.params is a folder, not a file' in r.stderr, r.stderr
    params.rmdir()
    shutil.move(str(tmp_path / 'p'), str(params))
    (model / 'folder.lock').mkdir()
    code, err = train_run(common + ['network=cifar_resnet8', 'model_prefix=folder'])
    assert code == 2 and 'folder.lock, the lock file of run \'folder\', is a folder: remove it' in err, err
    assert 'Traceback' not in err and 'taking over' not in err, err


def test_a_resume_onto_other_data_names_the_keys_that_changed(cifar_setup, train_run, tmp_path):
    """#18's trial 21: resuming a run on another dataset (other classes) was told to 'check
    network/num_classes'; the keys that changed are named, with the checkpoint's values."""
    root, common, _ = cifar_setup
    make_cifar(str(tmp_path / 'c100'), 'cifar100', train=64, test=32)
    argv = common + ['network=cifar_resnet8', 'model_prefix=moved']
    assert train_run(argv)[0] == 0
    code, err = train_run(argv + ['dataset=cifar100', 'num_classes=100', 'data_dir=%s' % (tmp_path / 'c100'),
                                  'retrain=true', 'model_load_epoch=1', 'num_epoch=2'])
    assert code == 2 and 'does not fit this network' in err, err
    assert 'the checkpoint was trained with' in err and 'dataset=cifar10' in err and 'num_classes=10' in err and \
        'now ' in err and 'dataset=cifar100' in err, err


def test_a_checkpoint_trained_on_gpus_is_evaluated_on_this_machine_s_devices(cifar_setup, tmp_path, capsys):
    """#18's trial 25: tools.evaluate of a checkpoint whose saved configuration says gpu_list=[0, 1, 2, 3]
    (trained on a GPU machine) was refused here ('this MXNet build sees no GPU ... Set gpu_list=[] to
    train on the CPU'), while tools.export and a student's teacher_prefix took it."""
    import json
    import shutil
    from tools import evaluate
    from tests.helpers import run_tool
    root, _, _ = cifar_setup
    model = tmp_path / 'model'
    model.mkdir()
    for kind in ('meta', 'params'):
        shutil.copy(checkpoint.paths(str(root / 'model'), 'teacher', 1)[kind],
                    checkpoint.paths(str(model), 'teacher', 1)[kind])
    meta_path = checkpoint.paths(str(model), 'teacher', 1)['meta']
    meta = json.load(open(meta_path))
    meta['config']['gpu_list'] = [0, 1, 2, 3]
    json.dump(meta, open(meta_path, 'w'))
    code, out, err = run_tool(evaluate.main, ['--prefix', str(model / 'teacher'), '--epoch', '1'], capsys)
    assert code == 0 and 'top-1' in out, err
    assert 'was trained with gpu_list=[0, 1, 2, 3], which this machine cannot use: it runs on the CPU here' in err


def test_a_teacher_params_file_of_another_network_names_teacher_network(cifar_setup, train_run, tmp_path):
    """#18's trial 25: teacher_prefix=a ResNet-8 .params with teacher_network=cifar_resnet20 said
    'check network/num_classes'; the key to fix is teacher_network."""
    import shutil
    root, common, _ = cifar_setup
    params = tmp_path / 'r8.params'
    shutil.copy(checkpoint.paths(str(root / 'model'), 'teacher', 1)['params'], str(params))
    code, err = train_run(common + ['network=cifar_resnet8', 'kt=true', 'kt_type=kd', 'kt_weight=null', 'model_prefix=tn25',
                                    'teacher_prefix=%s' % params, 'teacher_network=cifar_resnet20'])
    errors = [l for l in err.splitlines() if l.startswith('error:')]
    assert code == 2 and len(errors) == 1 and 'check teacher_network (cifar_resnet20 here)' in errors[0], err
