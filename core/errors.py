"""The project's one error hierarchy.

Every mistake a user can make (a config key, a data folder, a run name, a checkpoint, a network
tap, a tool's argument) raises a subclass of `UserError`, whose message names the problem and the
fix. The entry points (train.py, `python -m data.*`, `python -m tools.*`) print exactly these as
one line and exit with status 2 (`Diverged`: 3); anything else is a bug and shows its traceback.

    UserError
    ├── ConfigError          config keys, presets, overrides          (config/)
    ├── DataError            packs, CIFAR pickles, VOC folders        (data/)
    ├── NetworkError         networks, taps, teachers, detectors      (symbols/, tasks/)
    ├── CheckpointError      checkpoint files: missing, damaged, not fitting
    │   └── NonFiniteCheckpoint
    ├── RunError             run names, locks, folders                (core/runs)
    ├── TrainingError        what is found while setting up or training
    │   └── Diverged         a loss or the parameters became NaN/Inf (exit 3)
    └── ToolError            a tool's own arguments and outputs       (tools/)

The second base of some classes (ValueError, IOError, RuntimeError) is kept from before the
hierarchy, so that code catching those still catches them; entry points catch `UserError`.
This module imports nothing of the project: every package may import it.
"""


class UserError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
    """A config key, preset or override that cannot be used as given."""


class DataError(UserError, IOError):
    """A data folder, pack, pickle or annotation that cannot be read or does not fit the config."""


class NetworkError(UserError, ValueError):
    """A network, tap, teacher or detector that cannot be built or paired as configured."""


class CheckpointError(UserError, IOError):
    """A checkpoint that cannot be written or read, or does not fit; says which file and why."""


class NonFiniteCheckpoint(CheckpointError):
    """Parameters or optimizer state with NaN/Inf: not written, or refused when read."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint file that is truncated, corrupt or missing beside the others of its epoch."""


class RunError(UserError, RuntimeError):
    """A run that cannot start or resume under its name (another run's files, a lock, a folder).
    `resume`: the message is followed by the command that resumes the run."""

    def __init__(self, message, resume=False):
        super(RunError, self).__init__(message)
        self.resume = resume


class TrainingError(UserError, RuntimeError):
    """A problem found before or during training, explained for the user."""


class Diverged(TrainingError):
    """Training stopped because a loss or the parameters became NaN/Inf (exit status 3); every
    earlier checkpoint is kept."""


class ToolError(UserError):
    """A failure a tool reports as one error line (exit status 2)."""


# --------------------------------------------------------------------------- internal signals
# Not a user's mistake by itself: raised inside a training step where the term and step are known,
# and turned by the engine into `Diverged`, with the epoch, before it leaves the engine.
class NonFiniteLoss(FloatingPointError):
    """Loss term `term` became NaN/Inf at 0-based `step` of 0-based `epoch` (the message counts both
    from 1, as checkpoints do)."""

    def __init__(self, term, step, epoch=None, fix=None):
        self.term, self.step, self.epoch, self.fix = term, step, epoch, fix
        where = 'step %d' % (step + 1) if epoch is None else 'epoch %d, step %d' % (epoch + 1, step + 1)
        if fix is None:
            fix = 'lower lr' if term == 'ce' else 'lower lr or the %s weight (kt_weight)' % term
        super(NonFiniteLoss, self).__init__(
            'the %s loss became NaN or Inf at %s; training stopped, and nothing of that epoch was saved: %s'
            % (term, where, fix))


EXIT_STATUS = {Diverged: 3}


def exit_status(error):
    """The exit status of an entry point that stops on `error` (a UserError)."""
    for cls, code in EXIT_STATUS.items():
        if isinstance(error, cls):
            return code
    return 2


__all__ = ['UserError', 'ConfigError', 'DataError', 'NetworkError', 'CheckpointError', 'NonFiniteCheckpoint',
           'RunError', 'TrainingError', 'Diverged', 'ToolError', 'NonFiniteLoss', 'exit_status']
