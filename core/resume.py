"""Resuming a run: which checkpoint of model_load_prefix an `Engine` starts from, and what it says.

`resume(engine)` restores model_load_prefix at model_load_epoch (-1: the latest checkpoint whose
parameters and optimizer state load and are finite; later damaged or non-finite ones of the same run
are moved aside, never trained over), sets the engine's first epoch and best score, claims the later
epochs of the run (rank 0), and warns of what the resume changes: another configuration or global
batch (`warn_of_changes`), records that are missing, another run's, or of epochs to be trained again
(`warn_of_missing_records`), files copied from another run (`load`).
"""
import glob
import json
import logging
import os

from . import checkpoint, runs, schedule
from .errors import TrainingError
from .project import from_another_folder, in_project

LOG = logging.getLogger('train')


def no_checkpoint_to_resume(cfg):
    """What to say when retrain=true finds no complete checkpoint of model_load_prefix."""
    there = in_project(cfg.model_dir, lambda d: checkpoint.epochs(d, cfg.model_load_prefix))
    if there:
        return 'retrain=true: ' + from_another_folder('model_dir', cfg.model_dir, there,
                                                      'the run %r' % cfg.model_load_prefix)
    if cfg.model_load_prefix != cfg.model_prefix:
        metas = glob.glob(os.path.join(cfg.model_dir, '*-[0-9][0-9][0-9][0-9].json'))
        there = sorted({os.path.basename(f)[:-len('-0001.json')] for f in metas})
        return ('model_load_prefix=%s: %s has no complete checkpoint of that run to start from (runs there: %s); '
                'give one of them' % (cfg.model_load_prefix, cfg.model_dir, ', '.join(there) or 'none'))
    return ('retrain=True with model_load_epoch=-1 but %s has no complete checkpoint of %r: nothing to resume. Start '
            'the run without retrain=true (add overwrite=true if incomplete files of it are there)'
            % (cfg.model_dir, cfg.model_load_prefix))


def intact_best(model_dir, prefix):
    """The epoch of run `prefix`'s best copy when its metadata reads and its parameters are the ones
    written with it (their CRC-32), else None."""
    try:
        meta = checkpoint.read_meta(model_dir, prefix, 'best')
        checkpoint.check_params_file(meta, checkpoint.paths(model_dir, prefix, 'best')['params'])
    except (checkpoint.CheckpointError, OSError):
        return None
    epoch = meta.get('epoch')
    return epoch if isinstance(epoch, int) and 'params_crc32' in meta else None      # (numbered from 1)


def resume(engine):
    """Restore model_load_prefix at model_load_epoch (-1: the latest checkpoint whose parameters
    and optimizer state are finite; later non-finite ones are moved aside, never trained over)."""
    cfg, task = engine.cfg, engine.task
    same_run = cfg.model_load_prefix == cfg.model_prefix
    if cfg.model_load_epoch == 0:
        have = checkpoint.epochs(cfg.model_dir, cfg.model_load_prefix)
        raise TrainingError('retrain=true resumes a checkpoint, and checkpoints are numbered from 1 (after the '
                            'first epoch): set model_load_epoch=-1 for the latest, or one of the epochs of %r in '
                            '%s: %s' % (cfg.model_load_prefix, cfg.model_dir,
                                        checkpoint.epochs_text(have) if have else 'none yet'))
    if cfg.model_load_epoch > 0:
        have = checkpoint.epochs(cfg.model_dir, cfg.model_load_prefix)
        if have and cfg.model_load_epoch not in have:
            raise TrainingError('model_load_epoch=%d: run %r has no checkpoint of that epoch in %s; its epochs: '
                                '%s' % (cfg.model_load_epoch, cfg.model_load_prefix, cfg.model_dir,
                                        checkpoint.epochs_text(have)))
        epoch, meta = cfg.model_load_epoch, load(engine, cfg.model_load_epoch)
    else:
        have = checkpoint.epochs(cfg.model_dir, cfg.model_load_prefix)
        if not have:
            raise TrainingError(no_checkpoint_to_resume(cfg))
        meta, skipped, stateless = None, [], []
        for epoch in reversed(have):
            try:
                meta = load(engine, epoch)
                break
            except checkpoint.CheckpointError as e:
                damaged = isinstance(e, (checkpoint.NonFiniteCheckpoint, checkpoint.DamagedCheckpoint))
                gone = not os.path.isfile(checkpoint.paths(cfg.model_dir, cfg.model_load_prefix, epoch)['meta'])
                if not damaged and not (engine.rank != 0 and gone):
                    raise
                if not damaged:          # (another worker of the job: rank 0 set the epoch aside meanwhile)
                    skipped.append(epoch)
                    continue
                if not os.path.isfile(checkpoint.paths(cfg.model_dir, cfg.model_load_prefix, epoch)['states']):
                    stateless.append(epoch)
                else:
                    LOG.warning('skipping epoch %d of %r: %s', epoch, cfg.model_load_prefix, e)
                skipped.append(epoch)
        if meta is None and stateless == skipped:     # (every .states deleted, to save space?)
            folders = [checkpoint.paths(cfg.model_dir, cfg.model_load_prefix, e)['states'] for e in stateless]
            folders = [f for f in folders if os.path.isdir(f)]
            raise TrainingError('no checkpoint of %r in %s (epochs %s) has its optimizer state (.states), which a '
                                'resume needs to go on exactly (%s): start a new run from its '
                                'weights, e.g. model_prefix=%s_more pretrained=%s pretrained_epoch=%d (the '
                                'optimizer starts afresh), or start over with overwrite=true'
                                % (cfg.model_load_prefix, cfg.model_dir, checkpoint.epochs_text(have),
                                   '%s %s a folder, not a file' % (', '.join(folders), 'is' if len(folders) == 1
                                                                   else 'are') if folders else
                                   'deleted to save space?',
                                   cfg.model_load_prefix, os.path.join(cfg.model_dir, cfg.model_load_prefix),
                                   have[-1]))
        if meta is None:
            best = intact_best(cfg.model_dir, cfg.model_load_prefix)
            raise TrainingError('no checkpoint of %r in %s (epochs %s) can be resumed: each holds NaN or Inf or '
                                'is damaged (the warnings above say which): %sstart over with overwrite=true (and, '
                                'after NaN, a lower lr)' % (
                                    cfg.model_load_prefix, cfg.model_dir, checkpoint.epochs_text(have),
                                    '' if best is None else
                                    'its best copy (epoch %d) is intact: start a new run from its weights, e.g. '
                                    'model_prefix=%s_more pretrained=%s pretrained_epoch=-1 (the optimizer starts '
                                    'afresh), or ' % (best, cfg.model_load_prefix,
                                                      os.path.join(cfg.model_dir, cfg.model_load_prefix))))
        for gone in stateless:        # (not `epoch`: the epoch resumed, read below)
            states = checkpoint.paths(cfg.model_dir, cfg.model_load_prefix, gone)['states']
            LOG.warning('skipping epoch %d of %r: its optimizer state %s is %s', gone, cfg.model_load_prefix, states,
                        'a folder, not a file' if os.path.isdir(states) else 'missing')
        if skipped and same_run and engine.rank == 0:
            kinds = ['%s %s' % (checkpoint.epochs_text(which), what) for what, which in (
                ('non-finite or damaged', [e for e in skipped if e not in stateless]),
                ('without an optimizer state (.states)', stateless)) if which]
            engine.aside = runs.move_aside(cfg.model_dir, cfg.model_prefix,
                                         runs.epoch_files(cfg.model_dir, cfg.model_prefix, skipped),
                                         'checkpoints after epoch %d (epoch %s)' % (epoch, '; '.join(kinds)))
    if same_run and engine.rank == 0:
        runs.claim_resume(cfg, epoch, task.best_metric)
    engine.begin_epoch = epoch
    # a branch (a new run from another run's epoch) has a best of its own epochs only
    engine.best = meta.get(task.best_key) if same_run else None
    if same_run:
        if engine.rank == 0:        # (rank 0 has claimed the epochs after it: the resume goes ahead)
            LOG.info('resumed run %r from its epoch-%d checkpoint in %s (%s)', cfg.model_load_prefix, epoch,
                     cfg.model_dir, task.describe_checkpoint(meta))
        warn_of_missing_records(engine, epoch, meta)
    else:
        LOG.info('run %r starts from epoch %d of run %r (from its epoch-%d checkpoint in %s, %s); run %r is '
                 'left as it is', cfg.model_prefix, epoch, cfg.model_load_prefix, epoch, cfg.model_dir,
                 task.describe_checkpoint(meta), cfg.model_load_prefix)


def load(engine, epoch):
    """Restore epoch `epoch` of model_load_prefix; return its metadata. Its warnings (copied files, a
    changed configuration) are given once it has loaded: not for an epoch skipped as damaged."""
    cfg, task = engine.cfg, engine.task
    meta = checkpoint.read_meta(cfg.model_dir, cfg.model_load_prefix, epoch)
    task.check_checkpoint(meta, epoch)
    net, extra = task.saved_blocks()
    saved, now, differ = changed_keys(meta, cfg)
    try:
        with engine.keys_left_to_first_step():
            meta = checkpoint.load(cfg.model_dir, cfg.model_load_prefix, epoch, net, engine.ctx, extra,
                                   engine.trainer, fits=task.fits)
    except checkpoint.CheckpointError as e:
        if 'does not fit' not in str(e) or not differ:
            raise
        # (the keys that differ say why, e.g. another dataset, after the task's general advice)
        advice = 'resume with its values'
        if 'num_classes' in differ and isinstance(saved.get('num_classes'), int):
            # (num_classes is the data's count when unset: a pack made again with other classes would be refused
            # at the count the checkpoint needs)
            advice = ('resume with data of its %d classes, the data it was trained on (packed again since? python -m '
                      'data.pack --overwrite keeps the earlier pack in DATA_DIR/replaced/), and num_classes=%d or '
                      'unset' % (saved['num_classes'], saved['num_classes']))
        raise type(e)('%s; the checkpoint was trained with %s (now %s): %s' % (
            e, ', '.join('%s=%s' % (k, shown(saved[k])) for k in differ),
            ', '.join('%s=%s' % (k, shown(now[k])) for k in differ), advice)) from None
    saved_by = meta.get('model_prefix')
    if saved_by is not None and saved_by != cfg.model_load_prefix:
        their = meta.get('epoch', epoch)          # (the epoch of that run the copy is)
        LOG.warning('checkpoint %s epoch %d was saved by run %r as its epoch %s (its metadata says '
                    'model_prefix=%r): its files were copied or renamed from that run. Training goes on as run '
                    '%r; to branch from %r without copying, start a new run: model_prefix=NEW retrain=true '
                    'model_load_prefix=%s model_load_epoch=%s'
                    % (cfg.model_load_prefix, epoch, saved_by, their, saved_by, cfg.model_prefix, saved_by,
                       saved_by, their))
    warn_of_changes(engine, meta, epoch)
    return meta


def shown(v):
    """A config value as the config writes it (null is a key's default)."""
    return 'null' if v is None else v


def changed_keys(meta, cfg):
    """(saved config, config now, [keys]) for checkpoint metadata `meta`: the keys that say what the run
    trains (not `RUN_KEYS`, num_epoch or batch_size) whose value differs from the run's now."""
    saved = meta.get('config') or {}
    now = json.loads(json.dumps(checkpoint.jsonable(cfg)))     # (tuples as the saved JSON has them: lists)
    return saved, now, [k for k in sorted(saved) if k in now and k not in runs.RUN_KEYS + ('num_epoch', 'batch_size')
                        and saved[k] != now[k] and not _same_path(k, saved[k], now[k], meta.get('cwd'))]


def _same_path(key, saved, now, saved_cwd):
    """Whether config key `key` names a file or folder (config.PATH_KEYS, pretrained) and both values
    name the same one: `saved` read from the folder the run was started in (`saved_cwd`, the
    metadata's cwd), `now` from this one (data_dir=data and data_dir=/abs/path/data alike)."""
    from config import PATH_KEYS
    if key not in PATH_KEYS + ('pretrained',):
        return False
    if not isinstance(saved, str) or not isinstance(now, str) or not saved or not now:
        return False
    if not os.path.isabs(saved):
        if not saved_cwd:
            return False
        saved = os.path.join(saved_cwd, saved)
    return os.path.realpath(saved) == os.path.realpath(now)


def warn_of_changes(engine, meta, epoch):
    """Warnings for a resume that changes what the later epochs train with: another value of a
    key that says what the run trains (lr, crop_size, the teacher, ...; not `RUN_KEYS`, nor
    num_epoch, which a resume extends) or another global batch (devices, workers or batch_size),
    legitimate but worth a line in the log."""
    saved, now, differ = changed_keys(meta, engine.cfg)
    cfg = engine.cfg
    if differ:
        LOG.warning('resuming epoch %d with %s; epoch %d was trained with %s: the later epochs train otherwise '
                    '(give the checkpoint\'s values to go on as the run was)', epoch,
                    ', '.join('%s=%s' % (k, shown(now[k])) for k in differ), epoch,
                    ', '.join('%s=%s' % (k, shown(saved[k])) for k in differ))
    mode, trained_for = cfg.get('lr_mode', 'step'), saved.get('num_epoch')
    if mode in ('cosine', 'poly') and isinstance(trained_for, int) and trained_for != cfg.num_epoch:
        as_trained = schedule.from_config(type(cfg)(cfg, num_epoch=trained_for))
        longer = cfg.num_epoch > trained_for
        before, now_lr = as_trained(epoch), engine.lr_at(epoch)
        LOG.warning('resuming with num_epoch=%d; epochs 1..%d followed a %s lr schedule set for num_epoch=%d: the '
                    'schedule is %s to the new length, so the lr %s from %.3g (its value at epoch %d as trained) to '
                    '%.3g; to %s a run without that, use lr_mode=step or start a new run from its weights '
                    '(pretrained=)', cfg.num_epoch, epoch, mode, trained_for, 'stretched' if longer else 'shrunk',
                    'rises again' if now_lr > before else 'drops at once', before, epoch, now_lr,
                    'extend' if longer else 'shorten')
    if meta.get('global_batch') and meta['global_batch'] != engine.global_batch:
        LOG.warning('resuming epoch %d with a global batch of %d (%d device(s) x batch_size=%d x %d worker(s)); '
                    'its epoch %d was trained with %d: the lr is not rescaled', epoch, engine.global_batch,
                    len(engine.ctx), cfg.get('batch_size', 1), engine.workers, epoch, meta['global_batch'])


def warn_of_missing_records(engine, epoch, meta):
    """A warning when the records of the epochs before a resume are not in log_dir (a run folder
    copied or moved without its log_dir): its curves and tables would start at the resumed epoch.
    Records of another run are set aside, unless the checkpoint resumed was saved by that run too
    (`meta`: its metadata), the whole run renamed: then they are this run's, under its new name;
    records of epochs to be trained again (their checkpoint never written) are rewound."""
    from .records import read_records
    try:
        records = read_records(engine.jsonl) if os.path.isfile(engine.jsonl) else []
    except (OSError, ValueError, KeyError):
        records = []
    cfg = engine.cfg
    foreign = sorted({r['model_prefix'] for r in records if r.get('model_prefix') not in (None, cfg.model_prefix)})
    if foreign == [meta.get('model_prefix')] and engine.rank == 0:     # the run renamed, records and all
        LOG.warning('the records in %s and the checkpoint resumed are of run %r: the run was renamed %r, and '
                    'its records go on under that name', engine.jsonl, foreign[0], cfg.model_prefix)
        runs.rename_records(engine.jsonl, cfg.model_prefix)
        records = read_records(engine.jsonl)
        foreign = []
    if foreign:            # another run's records (copied or renamed): not this run's to go on with
        if engine.rank == 0:
            runs.move_aside(cfg.model_dir, cfg.model_prefix, [engine.jsonl],
                            'records of run %r found as those of %r (copied or renamed?)'
                            % (foreign[0], cfg.model_prefix))
        records = []
    again = sorted(r['epoch'] + 1 for r in records if r['epoch'] >= epoch)
    if again and engine.rank == 0:     # epochs whose checkpoint was not written (killed between the two)
        why = ('record(s) of epoch(s) %s of run %r, which has no checkpoint of them, will be written again as '
               'these epochs are trained again; the records file as it was'
               % (checkpoint.epochs_text(again), cfg.model_prefix))
        dest = engine.aside
        if dest:
            LOG.warning('%s: kept in %s', why, dest)
        else:
            dest = runs.move_aside(cfg.model_dir, cfg.model_prefix, [], why)
        runs.rewind_records(engine.jsonl, epoch, dest)
    have = {r['epoch'] for r in records}
    missing = [e + 1 for e in range(epoch) if e not in have]
    if missing:
        LOG.warning('the records of epoch(s) %s of run %r are not in %s (its checkpoints were copied or moved '
                    'without their log_dir?): its curves and tables will lack them; copy the run\'s .jsonl '
                    'there before resuming to keep them', checkpoint.epochs_text(missing), engine.cfg.model_prefix,
                    engine.jsonl)
