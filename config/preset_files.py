"""The preset files of every task, by name: config/presets/NAME.yaml (classification; also .py),
presets/detection/NAME.yaml and presets/segmentation/NAME.yaml; files starting with _ are bases,
not presets. One place that finds them, lists them and names the closest to a misspelt one."""
import difflib
import os
from collections import OrderedDict

from .checks import ConfigError

PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'presets')
FOLDERS = OrderedDict([('classification', PRESET_DIR), ('segmentation', os.path.join(PRESET_DIR, 'segmentation')),
                       ('detection', os.path.join(PRESET_DIR, 'detection'))])
SUFFIXES = {'classification': ('.yaml', '.yml', '.py'), 'segmentation': ('.yaml',), 'detection': ('.yaml',)}


def names(task='classification'):
    """The names of `task`'s presets, sorted."""
    folder = FOLDERS[task]
    if not os.path.isdir(folder):
        return []
    return sorted(f.rsplit('.', 1)[0] for f in os.listdir(folder)
                  if f.endswith(SUFFIXES[task]) and not f.startswith('_'))


def task_of_preset(name):
    """The task whose preset `name` (not an existing file; a path's base name counts) is, else None."""
    if not name or os.path.isfile(name):
        return None
    base = os.path.splitext(os.path.basename(name))[0]
    return next((task for task in FOLDERS if base in names(task)), None)


def find(path, tasks=tuple(FOLDERS)):
    """The file of preset `path` (a name, with or without its suffix, or a base file's name) in the
    folders of `tasks`, else None."""
    for task in tasks:
        alt = os.path.join(FOLDERS[task], path)
        for cand in (alt,) + tuple(alt + s for s in SUFFIXES[task]):
            if os.path.isfile(cand):
                return cand
    return None


def shadowed(path, tasks=tuple(FOLDERS)):
    """The preset file a bare preset name `path` means where the working folder holds a folder, or a
    file that is no config file (.py, .yaml), of that name (it would be refused), else None."""
    config_file = os.path.isfile(path) and path.endswith(('.py', '.yaml', '.yml'))
    if config_file or os.sep in path or not os.path.exists(path):
        return None
    return find(path, tasks)


def unknown(path, what='config file', tasks=tuple(FOLDERS)):
    """The ConfigError for `what` `path`, neither a file nor a preset: the closest preset name of any
    task, then the presets of `tasks` by task (for a path that exists but is no file, e.g.
    /dev/null or a pipe: that it is no file)."""
    if os.path.exists(path):
        return ConfigError('%s %s is not a file (a device, a pipe or a socket): give a .yaml or .py config file, or '
                           'a preset\'s name' % (what, path))
    base = os.path.splitext(os.path.basename(path))[0]
    close = difflib.get_close_matches(base, [n for task in FOLDERS for n in names(task)], n=1, cutoff=0.7)
    hint = ' (did you mean %s, a %s preset?)' % (close[0], task_of_preset(close[0])) if close else ''
    listed = '; '.join('%s: %s' % (task, ', '.join(names(task))) for task in tasks if names(task))
    return ConfigError('%s %s does not exist%s; the presets (%s), or cfgs.py (the default run)'
                       % (what, path, hint, listed) if len(tasks) > 1 else
                       '%s %s does not exist%s; %s presets: %s' % (what, path, hint, tasks[0], ', '.join(names(tasks[0]))))
