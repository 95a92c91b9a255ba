"""Tasks: what the engine (core/engine.py) trains. A task is one folder here with a `Task` subclass
(core/task.py); `TASKS` names them as the config key `task` does.

    classification   a student on labels, with a teacher and transfer losses (train.py's default)
    detection        Faster R-CNN on PASCAL VOC from a backbone of this project (paper §5.3)
    segmentation     DeepLabV3 / V3+ on PASCAL VOC (and SBD) on a backbone of this project
"""
import importlib

# task name -> (module, class): imported only when used (detection needs gluoncv's model code)
TASKS = {'classification': ('tasks.classification.task', 'ClassificationTask'),
         'detection': ('tasks.detection.task', 'DetectionTask'),
         'segmentation': ('tasks.segmentation.task', 'SegmentationTask')}


def get(name):
    """The Task class of task `name`."""
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)


def run(cfg, name='classification'):
    """Train `cfg` as task `name` through the engine; the last epoch's record ({} if none ran)."""
    from core.engine import run as engine_run
    return engine_run(cfg, get(name))
