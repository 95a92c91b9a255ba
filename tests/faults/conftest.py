"""Shared fixtures of the fault tests: tiny generated CIFAR-10 pickles and a teacher trained on them
once per test session; `train_run` calls train.py's main and returns (exit code, stderr)."""
import pytest

import train
from tests.helpers import make_cifar, merged, tiny_train_args


@pytest.fixture(scope='session')
def cifar_setup(tmp_path_factory):
    """(root, common train.py arguments, student arguments with the teacher) on generated CIFAR-10."""
    root = tmp_path_factory.mktemp('faults')
    make_cifar(str(root / 'cifar'), 'cifar10', train=64, test=32)
    common = tiny_train_args(root, root / 'cifar', frequent=1)
    assert train.main(common + ['network=cifar_resnet8', 'model_prefix=teacher']) == 0
    student = common + ['network=cifar_resnet8', 'kt=true', 'teacher_prefix=%s' % (root / 'model' / 'teacher')]
    return root, common, student


@pytest.fixture
def train_run(capsys):
    """train.main(argv) -> (exit code, stderr); a key given twice in argv counts once, the last
    (`merged`: the tests append to common arguments)."""
    def run(argv):
        capsys.readouterr()
        code = train.main(merged(argv))
        return code, capsys.readouterr().err
    return run
