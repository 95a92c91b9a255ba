"""tensorboard=true: a run's scalars in TensorBoard event files, read back with TensorBoard's own
EventAccumulator and compared with the run's .jsonl records; a resumed (and an interrupted) run
continues the same folder with correct global steps; rank 0 only; a write failure is a warning."""
import errno
import glob
import os
import time

import pytest

import train
from core import monitor
from core.records import read_records
from tests.helpers import make_cifar, merged, tiny_train_args

pytestmark = pytest.mark.slow

STEPS, FREQUENT = 4, 3          # batches per epoch; the progress bar (and the scalars) every 3 and at the end


def accumulate(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(folder), size_guidance={'scalars': 0})      # 0: keep every event
    ea.Reload()
    return ea


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """(root, student arguments): generated CIFAR-10 and a teacher trained for one short epoch."""
    root = tmp_path_factory.mktemp('monitor')
    make_cifar(str(root / 'cifar'), 'cifar10', train=64, test=32)
    common = tiny_train_args(root, root / 'cifar', epoch_size=STEPS, frequent=FREQUENT) + ['network=cifar_resnet8']
    assert train.main(merged(common + ['model_prefix=teacher', 'epoch_size=2'])) == 0
    student = common + ['kt=true', 'kt_type=kd+mmd', 'teacher_prefix=%s' % (root / 'model' / 'teacher'),
                        'teacher_symbol=[null, stage3_pre]', 'student_symbol=[null, stage3_pre]', 'tensorboard=true']
    return root, student


def test_event_files_hold_the_records_and_continue_over_an_interruption_and_a_resume(setup, monkeypatch, capsys):
    root, args = setup
    run = args + ['model_prefix=tb']
    assert train.main(merged(run + ['num_epoch=2'])) == 0

    # killed in epoch 2 after its batches (their scalars are written), before its record and checkpoint
    from core import engine
    check = engine.Engine._check_finite

    def interrupt(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return check(self, epoch)
    monkeypatch.setattr(engine.Engine, '_check_finite', interrupt)
    assert train.main(merged(run + ['num_epoch=3', 'retrain=true', 'model_load_epoch=-1'])) == 130
    monkeypatch.undo()
    resumed = time.time()
    assert train.main(merged(run + ['num_epoch=3', 'retrain=true', 'model_load_epoch=-1'])) == 0

    folder = root / 'log' / 'tensorboard' / 'tb'
    assert len(glob.glob(str(folder / 'events.out.tfevents.*'))) == 3          # one file per start, same folder
    ea = accumulate(folder)
    records = read_records(str(root / 'log' / 'tb.jsonl'))
    assert [r['epoch'] for r in records] == [0, 1, 2]

    # per epoch: every number of each record, at the global step of the epoch's end (but the run's num_epoch,
    # which the record names and no curve needs)
    numbers = sorted(k for k, v in records[0].items() if isinstance(v, (int, float)) and k not in ('epoch', 'num_epoch'))
    assert records[0]['num_epoch'] == 2 and records[2]['num_epoch'] == 3
    assert {'val_top1', 'val_top5', 'time', 'train_ce', 'train_kd', 'train_mmd', 'lr'} <= set(numbers)
    tags = set(ea.Tags()['scalars'])
    assert {t for t in tags if t.startswith('epoch/')} == {'epoch/' + k for k in numbers}
    for k in numbers:
        events = ea.Scalars('epoch/' + k)
        assert [e.step for e in events] == [STEPS * (r['epoch'] + 1) for r in records], k
        for e, r in zip(events, records):
            assert e.value == pytest.approx(r[k], rel=1e-6, abs=1e-6), (k, r['epoch'])

    # per step: each term, accuracy, lr and speed at the progress bar's cadence; the interrupted
    # attempt's epoch-2 steps are replaced by the resumed run's (TensorBoard's restart purge)
    assert {t for t in tags if t.startswith('train/')} == {'train/' + k for k in
                                                            ('ce', 'kd', 'mmd', 'top1', 'top5', 'lr', 'img_per_s')}
    per_epoch = [s for s in range(1, STEPS + 1) if s % FREQUENT == 0 or s == STEPS]
    for tag in ('train/ce', 'train/kd', 'train/mmd', 'train/top1', 'train/lr', 'train/img_per_s'):
        events = ea.Scalars(tag)
        assert [e.step for e in events] == [STEPS * ep + s for ep in range(3) for s in per_epoch], tag
        assert all(e.wall_time >= resumed for e in events if e.step > 2 * STEPS), tag
    for r in records:                            # the bar's last values of an epoch are the epoch's
        end = STEPS * (r['epoch'] + 1)
        for term in ('ce', 'kd', 'mmd', 'top1', 'top5'):
            value = [e.value for e in ea.Scalars('train/' + term) if e.step == end]
            assert value == [pytest.approx(r['train_' + term], rel=1e-6, abs=1e-6)], (term, r['epoch'])

    # overwrite=true moves the old run's events aside with its logs, and the new run starts clean
    capsys.readouterr()
    assert train.main(merged(run + ['num_epoch=1', 'overwrite=true'])) == 0
    moved = glob.glob(str(root / 'model' / 'replaced' / 'tb-*' / 'tb' / 'events.out.tfevents.*'))
    assert len(moved) == 3
    ea = accumulate(folder)
    assert [e.step for e in ea.Scalars('epoch/val_top1')] == [STEPS]


def test_only_rank_0_writes_events_and_nothing_without_the_key(tmp_path):
    from types import SimpleNamespace
    from config.schema import FIELDS
    assert FIELDS['tensorboard'].default is False
    cfg = SimpleNamespace(tensorboard=True, log_dir=str(tmp_path), model_prefix='r')
    assert type(monitor.create(cfg, rank=1)) is monitor.Monitor
    off = SimpleNamespace(tensorboard=False, log_dir=str(tmp_path), model_prefix='r')
    assert type(monitor.create(off, rank=0)) is monitor.Monitor
    on = monitor.create(cfg, rank=0)
    assert isinstance(on, monitor.TensorBoard)
    on.start(0)
    on.close()
    assert os.listdir(str(tmp_path / 'tensorboard' / 'r'))


class FillsUp(object):
    """An events file on a disk that fills up after `room` flushes: from then on every flush (and
    the close) fails with ENOSPC and what was buffered is lost."""

    def __init__(self, path, room):
        self.f, self.room, self.buffer = open(path, 'wb'), room, []

    def write(self, data):
        self.buffer.append(data)

    def flush(self):
        self.room -= 1
        if self.room < 0:
            raise OSError(errno.ENOSPC, 'No space left on device')
        self.f.write(b''.join(self.buffer))
        self.f.flush()
        self.buffer = []

    def close(self):
        try:
            self.flush()
        finally:
            self.f.close()


@pytest.mark.parametrize('room', [0, 3])
def test_a_full_disk_while_writing_events_is_one_warning_and_training_goes_on(setup, monkeypatch, capsys, room):
    """room 0: the disk is full when the events file is opened; 3: it fills up during training."""
    root, args = setup
    import tensorboardX.record_writer
    monkeypatch.setattr(tensorboardX.record_writer, 'open_file', lambda path: FillsUp(path, room))
    capsys.readouterr()
    assert train.main(merged(args + ['model_prefix=full%d' % room, 'num_epoch=2'])) == 0
    err = capsys.readouterr().err
    warnings = [l for l in err.splitlines() if l.startswith('train WARNING cannot write TensorBoard events')]
    assert len(warnings) == 1 and 'No space left on device' in warnings[0] and 'training goes on' in warnings[0], err
    assert 'Traceback' not in err
    assert [r['epoch'] for r in read_records(str(root / 'log' / ('full%d.jsonl' % room)))] == [0, 1]
    assert os.path.isfile(str(root / 'model' / ('full%d-0002.params' % room)))
    if room:                                  # what was written before the disk filled up reads back
        ea = accumulate(root / 'log' / 'tensorboard' / ('full%d' % room))
        assert [e.step for e in ea.Scalars('train/ce')] == [3, 4]       # flushes 2 and 3; the epoch's 4th fails
        assert not [t for t in ea.Tags()['scalars'] if t.startswith('epoch/')]


def test_tensorboard_without_tensorboardX_is_one_error_before_any_work(setup, monkeypatch, capsys):
    root, args = setup
    monkeypatch.setitem(__import__('sys').modules, 'tensorboardX', None)       # import fails
    capsys.readouterr()
    assert train.main(merged(args + ['model_prefix=nolib'])) == 2
    err = capsys.readouterr().err
    assert err.count('error: ') == 1 and "'tensorboard'" in err and 'tensorboardX' in err
    assert "pip install -c constraints.txt -e '.[tensorboard]'" in err and 'Traceback' not in err
    assert not glob.glob(str(root / 'model' / 'nolib*')) and not os.path.exists(str(root / 'log' / 'nolib.log'))
