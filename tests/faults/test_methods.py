"""Transfer methods whose declaration the data or the launch cannot serve stop before training
with one error naming the problem and the fix (exit 2): a method that needs each sample's index
(crd) on RecordIO packs, which do not supply it; a method with a stage or a per-sample memory
(ab, ft, crd) under several worker processes."""
import pytest

from core.trainer import TrainingError, check_methods_fit
from data import pack
from tests.helpers import make_jpeg_tree


def test_crd_on_a_pack_is_refused_before_training(tmp_path, train_run):
    make_jpeg_tree(str(tmp_path / 'train'), classes=3, per_class=4, size=(20, 20), seed=1)
    make_jpeg_tree(str(tmp_path / 'val'), classes=3, per_class=2, size=(20, 20), seed=2)
    assert pack.main(['--train', str(tmp_path / 'train'), '--val', str(tmp_path / 'val'),
                      '--out', str(tmp_path / 'pack')]) == 0
    common = ['dataset=imagenet', 'data_dir=%s' % (tmp_path / 'pack'), 'num_classes=3', 'image_size=16',
              'network=cifar_resnet8', 'gpu_list=[]', 'batch_size=2', 'progress=false', 'data_threads=1',
              'model_dir=%s' % (tmp_path / 'model'), 'log_dir=%s' % (tmp_path / 'log'), 'num_epoch=1',
              'epoch_size=1']
    assert train_run(common + ['model_prefix=teacher', 'kt=false'])[0] == 0
    code, err = train_run(common + ['model_prefix=crd', 'kt=true', 'kt_type=kd+crd', 'teacher_symbol=[null, pool]',
                                    'student_symbol=[null, pool]', 'teacher_prefix=%s' % (tmp_path / 'model' /
                                                                                          'teacher')])
    assert code == 2, err
    assert "needs each training sample's index" in err and 'imagenet RecordIO pack' in err, err
    assert 'cifar10/cifar100' in err and 'Traceback' not in err
    assert not (tmp_path / 'model' / 'crd-0001.params').exists()


def test_stage_and_memory_methods_under_several_workers_are_refused():
    plan = [{'method': m} for m in ('kd', 'mmd', 'ab')]
    check_methods_fit(plan, 1)
    with pytest.raises(TrainingError, match='ab has a stage before training .* not 2 workers under dist_'):
        check_methods_fit(plan, 2)
    check_methods_fit([{'method': m} for m in ('kd', 'mmd', 'cc', 'vid')], 8)
