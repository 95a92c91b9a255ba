"""The project folder, and relative paths a command run from another folder reads wrongly.

A config's relative `data_dir`, `model_dir` or `teacher_prefix` is read from the folder the command
runs in; run from elsewhere it names nothing, while the project folder holds it. `in_project` finds
that case and `from_another_folder` says it.
"""
import os

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_project(path, found):
    """The project folder's copy of a relative `path` when the command runs from another folder and
    `found(that path)` holds (a relative data_dir or teacher_prefix read from the wrong folder), else
    None."""
    if not path or os.path.isabs(path) or os.path.realpath(os.getcwd()) == os.path.realpath(PROJECT):
        return None
    there = os.path.join(PROJECT, path)
    return there if found(there) else None


def from_another_folder(key, path, there, what):
    """The message for `in_project`'s finding: config key `key`=`path` read from the wrong folder."""
    return ('%s=%r is relative to the folder you run from (%s), and %s is in the project folder: run from %s, or give '
            '%s=%s' % (key, path, os.getcwd(), what, PROJECT, key, there))


def working_folder():
    """The folder the command runs in, or None when it was deleted (or moved away) meanwhile: what a
    checkpoint's metadata records to read its relative paths later."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None
