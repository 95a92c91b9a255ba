"""Per-epoch run records (log/<model_prefix>.jsonl): a crash or a full disk while writing one never
makes the file unreadable, and readers skip a damaged line with one warning instead of crashing."""
import errno
import json
import logging
import os

import pytest

from core import records
from core.records import RecordsError, append_record, read_records


def lines(path):
    with open(path, 'rb') as f:
        return f.read().decode('utf-8').split('\n')


def damaged_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name == 'records']


def test_append_after_a_partial_last_line_starts_a_fresh_line(tmp_path, caplog):
    p = str(tmp_path / 'run.jsonl')
    with open(p, 'w') as f:                        # a crash cut the second record short
        f.write(json.dumps({'epoch': 0, 'val_top1': 0.5}) + '\n' + '{"epoch": 1, "val_to')
    append_record(p, {'epoch': 1, 'val_top1': 0.6})
    assert lines(p)[-2:] == [json.dumps({'epoch': 1, 'val_top1': 0.6}), '']
    with caplog.at_level(logging.WARNING):
        recs = read_records(p)
    assert [(r['epoch'], r['val_top1']) for r in recs] == [(0, 0.5), (1, 0.6)]
    (w,) = damaged_warnings(caplog)
    assert p in w.getMessage() and 'line 2' in w.getMessage()


def test_append_creates_the_file_and_its_folder_and_keeps_a_repeated_epochs_last_record(tmp_path):
    p = str(tmp_path / 'log' / 'run.jsonl')
    for epoch, v in [(0, 1), (1, 2), (1, 3), (2, 4)]:      # a resumed run repeats epoch 1
        append_record(p, {'epoch': epoch, 'v': v})
    assert [r['v'] for r in read_records(p)] == [1, 3, 4]
    assert len(lines(p)) == 5 and lines(p)[-1] == ''


def test_read_skips_every_damaged_line_with_one_warning_naming_the_file_and_lines(tmp_path, caplog):
    p = str(tmp_path / 'run.jsonl')
    with open(p, 'wb') as f:
        f.write(b'{"epoch": 0, "v": 0}\n'
                b'{"epoch": 1, "v": 1}{"epoch": 2, "v": 2}\n'     # a record appended to a partial one
                b'\n'                                            # blank lines are not damage
                b'[1, 2]\n'                                      # JSON, but not a record
                b'{"v": 3}\n'                                    # no epoch
                b'\xff\xfe\n'                                    # not UTF-8
                b'{"epoch": 3, "v": 3}\n'
                b'{"epoch": 4, "v"')                             # partial last line
    with caplog.at_level(logging.WARNING):
        recs = read_records(p)
    assert [r['v'] for r in recs] == [0, 3]
    (w,) = damaged_warnings(caplog)
    msg = w.getMessage()
    assert p in msg and 'lines 2, 4, 5, 6, 8' in msg


def test_undamaged_records_give_no_warning(tmp_path, caplog):
    p = str(tmp_path / 'run.jsonl')
    append_record(p, {'epoch': 0})
    with caplog.at_level(logging.WARNING):
        assert read_records(p) == [{'epoch': 0}]
    assert not damaged_warnings(caplog)


def test_a_full_disk_raises_an_oserror_naming_the_file(tmp_path):
    with pytest.raises(OSError) as e:               # /dev/full: every write fails with ENOSPC
        append_record('/dev/full', {'epoch': 0})
    assert isinstance(e.value, RecordsError) and e.value.errno == errno.ENOSPC
    assert '/dev/full' in str(e.value) and 'disk' in str(e.value)


def test_a_write_cut_short_is_undone_and_earlier_lines_are_kept(tmp_path, monkeypatch):
    p = str(tmp_path / 'run.jsonl')
    append_record(p, {'epoch': 0, 'v': 0})
    before = open(p, 'rb').read()
    real_write = os.write

    def half_then_full(fd, data):                  # the disk fills up in the middle of the line
        real_write(fd, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(records.os, 'write', half_then_full)
    with pytest.raises(RecordsError) as e:
        append_record(p, {'epoch': 1, 'v': 1})
    assert e.value.errno == errno.ENOSPC and p in str(e.value)
    monkeypatch.undo()
    assert open(p, 'rb').read() == before
    append_record(p, {'epoch': 1, 'v': 1})
    assert [r['v'] for r in read_records(p)] == [0, 1]


def test_append_writes_the_line_in_one_write_and_syncs_it(tmp_path, monkeypatch):
    p = str(tmp_path / 'run.jsonl')
    with open(p, 'w') as f:
        f.write('{"epoch": 0}')                     # no final newline
    calls = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(records.os, 'write', lambda fd, data: calls.append(('write', data)) or real_write(fd, data))
    monkeypatch.setattr(records.os, 'fsync', lambda fd: calls.append(('fsync',)) or real_fsync(fd))
    append_record(p, {'epoch': 1})
    assert calls == [('write', b'\n{"epoch": 1}\n'), ('fsync',)]


def test_numpy_scalars_are_written_as_numbers(tmp_path):
    import numpy as np
    p = str(tmp_path / 'run.jsonl')
    append_record(p, {'epoch': np.int64(0), 'val_top1': np.float32(0.5)})
    assert read_records(p) == [{'epoch': 0, 'val_top1': 0.5}]


def test_an_unreadable_records_path_is_a_records_error(tmp_path):
    for path, what in ((tmp_path / 'missing.jsonl', 'does not exist'), (tmp_path, 'folder')):
        with pytest.raises(RecordsError) as e:
            read_records(str(path))
        assert str(path) in str(e.value) and what in str(e.value)


def test_tools_records_read_damaged_files(tmp_path, caplog):
    from tools.records import find_runs
    with open(str(tmp_path / 'x_kd_s0.jsonl'), 'w') as f:
        f.write('{"epoch": 0, "v": 1}\n{"epo\n{"epoch": 1, "v": 2}\n')
    with caplog.at_level(logging.WARNING):
        runs = find_runs(str(tmp_path), 'x_')
    assert [r['v'] for r in runs['x_kd_s0']] == [1, 2]
    assert len(damaged_warnings(caplog)) == 1


def test_a_byte_order_mark_is_not_a_damaged_line(tmp_path, caplog):
    """Found by a new user (#18's twelfth trial): a records file saved by an editor with a UTF-8 BOM lost its
    first record as 'damaged'."""
    path = tmp_path / 'r.jsonl'
    path.write_bytes(b'\xef\xbb\xbf' + b'{"epoch": 0, "val_top1": 0.5}\n{"epoch": 1, "val_top1": 0.6}\n')
    assert [r['epoch'] for r in read_records(str(path))] == [0, 1] and not damaged_warnings(caplog)


def test_an_epoch_recorded_twice_is_said(tmp_path, caplog):
    """Found by a new user (#18's fourteenth trial): a record pasted into a file (the same epoch twice, the
    last with another score) changed a table's mean without a word. The last record is still the one
    used, with a warning naming the epoch and the line."""
    path = tmp_path / 'r.jsonl'
    path.write_text('{"epoch": 0, "val_top1": 0.5}\n{"epoch": 1, "val_top1": 0.6}\n{"epoch": 1, "val_top1": 0.99}\n')
    assert read_records(str(path))[-1]['val_top1'] == 0.99
    said = [r.getMessage() for r in damaged_warnings(caplog)]
    assert len(said) == 1 and 'epoch(s) 2 recorded more than once (again at line(s) 3' in said[0], said


def test_a_value_that_is_not_a_number_is_written_as_strict_json(tmp_path):
    """#18's seventeenth trial: a segmentation record held bare NaN (a class without pixels has no
    IoU), which strict JSON readers (node's JSON.parse) refuse; it is null now, read back as NaN."""
    import json
    import math
    path = str(tmp_path / 'r.jsonl')
    import numpy as np
    append_record(path, {'epoch': 0, 'val_miou': 0.5, 'iou_bird': float('nan'), 'val_top1': np.float32('inf')})
    line = open(path).read()
    strict = json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert strict['iou_bird'] is None and strict['val_top1'] is None, line
    rec, = read_records(path)
    assert math.isnan(rec['iou_bird']) and math.isnan(rec['val_top1']) and rec['val_miou'] == 0.5


def test_hand_edited_records_are_read_as_far_as_they_can_be_and_said(tmp_path, caplog):
    """(trial 26) A note field named val_... hid every record of its run ("measurement is not a number"
    for each); val_top1 written as a percentage (97.5) was tabled as -4783 % error; an epoch written
    1.0 or "1" was "not a complete JSON record"."""
    p = str(tmp_path / 'run.jsonl')
    with open(p, 'w') as f:
        f.write('{"epoch": 0, "val_top1": 0.5, "val_top1_extra": {"a": 1}}\n'
                '{"epoch": 1, "val_top1": 97.5, "val_top1_extra": {"a": 2}}\n'
                '{"epoch": 2, "val_top1": 0.6, "val_top1_extra": "x"}\n'
                '{"epoch": 3.0, "val_top1": 0.6}\n'
                '{"epoch": "4", "val_top1": 0.6}\n'
                '{"epoch": 5, "val_top1": "0.7"}\n'
                '{"epoch": 6, "val_top1": NaN}\n')
    with caplog.at_level(logging.WARNING):
        recs = read_records(p)
    assert [r['epoch'] for r in recs] == [0, 2, 6] and all('val_top1_extra' not in r for r in recs)
    said = caplog.text
    assert 'ignored field val_top1_extra, which no record gives as a number' in said
    assert "line 2 (val_top1=97.5): skipped record whose accuracy is not a fraction between 0 and 1" in said
    assert "lines 4 (epoch=3.0), 5 (epoch='4'): skipped records whose \"epoch\" is not a whole number" in said
    assert "line 6 (val_top1='0.7'): skipped record whose measurement is not a number" in said
    assert 'damaged' not in said
    # (a note whose name ends like an accuracy is no accuracy; a measurement the trainer writes is no note)
    with open(p, 'w') as f:
        f.write('{"epoch": 0, "val_top1": 0.9, "paper_top1": null, "note_top1": "see wiki", "paper_map": 70.1}\n'
                '{"epoch": 1, "val_top1": "0.91"}\n')
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        recs = read_records(p)
    assert [r['epoch'] for r in recs] == [0] and recs[0]['paper_map'] == 70.1
    assert "line 2 (val_top1='0.91'): skipped record whose measurement is not a number" in caplog.text
    assert 'ignored field' not in caplog.text


def run_records(folder, name, epochs, num_epoch=None, **fields):
    for e in range(epochs):
        rec = dict(epoch=e, val_top1=0.5 + 0.01 * e, val_top5=0.9, model_prefix=name, **fields)
        if num_epoch is not None:
            rec['num_epoch'] = num_epoch
        append_record(os.path.join(str(folder), name + '.jsonl'), rec)


def test_results_table_says_finished_shorter_runs_and_escapes_cells(tmp_path, caplog, capsys):
    """(trial 26) KD runs that finished at num_epoch=2 beside a 3-epoch baseline were left out with
    "let them finish (resume ...)", which then said "nothing to train"; --student 'R8 | 2k' broke the
    table's cells; --out log/RUN.jsonl wrote a markdown table where the next table read a damaged run."""
    import re
    from tools import results_table
    run_records(tmp_path, 'p_kd_s0', 2, num_epoch=2)
    run_records(tmp_path, 'p_kd_s1', 2, num_epoch=2)
    run_records(tmp_path, 'p_student_s0', 3, num_epoch=3)
    run_records(tmp_path, 'p_at_s0', 2, num_epoch=5)                  # (stopped: its num_epoch is 5)
    run_records(tmp_path, 'p_fitnet_s0', 1, num_epoch=5)              # (stopped after one epoch)
    argv = ['--records', str(tmp_path), '--prefix', 'p_']
    with caplog.at_level(logging.WARNING):
        assert results_table.main(argv + ['--student', 'R8 | 2k', '--teacher', 'R14\nnew']) == 0
    said = caplog.text
    assert 'left out 2 run(s) that finished at their num_epoch, before epoch 3' in said
    assert 'p_kd_s0 (num_epoch 2)' in said and 'Pass --num-epoch 2' in said
    assert 'stopped before epoch 3' in said and 'p_at_s0 (last epoch 2)' in said and 'p_fitnet_s0 (last epoch 1)' in said
    assert 'Pass --num-epoch 1' not in said                          # (the finished runs' epoch, not a stopped one's)
    table = capsys.readouterr().out
    rows = [l for l in table.splitlines() if l.startswith('|')]
    assert len(rows) == 3 and 'R8 \\| 2k' in table                  # (the student alone: 3 epochs)
    assert results_table.main(argv + ['--num-epoch', '2', '--student', 'R8 | 2k', '--teacher', 'R14\nnew']) == 0
    rows = [l for l in capsys.readouterr().out.splitlines() if l.startswith('|')]
    assert len(rows) == 5 and sum('| R14 new |' in r for r in rows) == 2                # KD and AT at epoch 2
    assert {r.replace('\\|', '').count('|') for r in rows} == {rows[0].count('|')}     # every row its cells
    assert results_table.main(argv + ['--out', str(tmp_path / 'p_kd_s9.jsonl')]) == 2
    assert re.search(r"\.jsonl names a run's records.*--out table\.md", capsys.readouterr().err)
    assert not (tmp_path / 'p_kd_s9.jsonl').exists()
