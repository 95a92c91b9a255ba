"""CIFAR-10/100 from the official python pickle batches.

CIFAR-10: ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (folder
``cifar-10-batches-py``), labels under ``labels``; CIFAR-100: ``train`` and
``test`` (folder ``cifar-100-python``), labels under ``fine_labels``. Each
batch holds ``data``, uint8 (N, 3072) in channel-major 32x32 planes.
"""
import os
import pickle
from core.errors import DataError

import numpy as np

FOLDERS = {'cifar10': 'cifar-10-batches-py', 'cifar100': 'cifar-100-python'}
TRAIN = {'cifar10': ['data_batch_%d' % i for i in range(1, 6)], 'cifar100': ['train']}
TEST = {'cifar10': ['test_batch'], 'cifar100': ['test']}
LABEL_KEY = {'cifar10': 'labels', 'cifar100': 'fine_labels'}


class CifarError(DataError):
    """A CIFAR folder or pickle that cannot be read."""


def cifar_root(data_dir, variant):
    """data_dir itself or its official sub-folder, whichever holds the batches."""
    sub = os.path.join(data_dir, FOLDERS[variant])
    return sub if os.path.isdir(sub) else data_dir


def cifar_files(data_dir, variant, train=True):
    """The files of CIFAR `variant` under `data_dir`: its training and test files (`train` false: its test
    files alone)."""
    root = cifar_root(data_dir, variant)
    return [os.path.join(root, f) for f in (TRAIN[variant] if train else []) + TEST[variant]]


class _Unpickler(pickle.Unpickler):
    """pickle.Unpickler that also reads pickles written by numpy 2, whose arrays name the module
    numpy._core (numpy.core before numpy 2, and in the numpy this project runs on)."""

    def find_class(self, module, name):
        if module == 'numpy._core' or module.startswith('numpy._core.'):
            module = 'numpy.core' + module[len('numpy._core'):]
        return super(_Unpickler, self).find_class(module, name)


def _load_batch(path, variant):
    if not os.path.isfile(path):
        raise CifarError('CIFAR batch %s does not exist: unpack the official python version of %s into '
                         'data_dir' % (path, variant))
    try:
        with open(path, 'rb') as f:
            batch = _Unpickler(f, encoding='bytes').load()
    except (ImportError, AttributeError) as e:       # a class this Python or numpy does not have
        raise CifarError('CIFAR batch %s was pickled with objects this environment cannot rebuild (%s: %s): write '
                         'it again holding only a dict of numpy arrays and lists, or unpack the official archive'
                         % (path, type(e).__name__, e))
    except Exception as e:
        raise CifarError('CIFAR batch %s cannot be read (%s): it is truncated or not the python version; '
                         'unpack the official archive again' % (path, e))
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    key = LABEL_KEY[variant]
    if 'data' not in batch or key not in batch:
        raise CifarError('CIFAR batch %s lacks "data" or "%s": is it a %s batch?' % (path, key, variant))
    data = np.asarray(batch['data'], dtype=np.uint8)
    labels = np.asarray(batch[key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise CifarError('CIFAR batch %s has data of shape %s for %d labels; expected (N, 3072)'
                         % (path, data.shape, len(labels)))
    classes = 10 if variant == 'cifar10' else 100
    if labels.min() < 0 or labels.max() >= classes:
        raise CifarError('CIFAR batch %s has labels outside 0..%d' % (path, classes - 1))
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar(data_dir, variant, train=True):
    """((train_x, train_y), (test_x, test_y)); x uint8 NHWC, y int64 (`train` false: the training set
    empty, its files not read)."""
    root = cifar_root(data_dir, variant)
    out = []
    for names in (TRAIN[variant] if train else [], TEST[variant]):
        parts = [_load_batch(os.path.join(root, n), variant) for n in names]
        out.append((np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])) if parts else
                   (np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0,), np.int64)))
    return out[0], out[1]


def cifar_names(data_dir, variant):
    """The class names of CIFAR-10 (batches.meta: label_names) or CIFAR-100 (meta: fine_label_names)
    in data_dir, None when that file is missing or unreadable (it is optional for training)."""
    root = cifar_root(data_dir, variant)
    name, key = ('batches.meta', 'label_names') if variant == 'cifar10' else ('meta', 'fine_label_names')
    try:
        with open(os.path.join(root, name), 'rb') as f:
            meta = _Unpickler(f, encoding='bytes').load()
        names = meta.get(key.encode(), meta.get(key))
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception:                      # the names are a courtesy: a missing or odd file means none
        return None
