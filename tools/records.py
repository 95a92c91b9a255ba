"""Per-epoch training records (log/<model_prefix>.jsonl) as written by the trainer."""
import json
import os


def read_records(path):
    """Records of one run sorted by epoch; a repeated epoch (after a resume) keeps its last record."""
    by_epoch = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rec = json.loads(line)
                by_epoch[rec['epoch']] = rec
    return [by_epoch[e] for e in sorted(by_epoch)]


def find_runs(folder, prefix=''):
    """{model_prefix: records} for every <prefix>*.jsonl in `folder`."""
    runs = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith('.jsonl') and name.startswith(prefix):
            runs[name[:-6]] = read_records(os.path.join(folder, name))
    return runs
