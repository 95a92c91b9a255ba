"""Config loading, presets, overrides and validation errors."""
import os
import subprocess
import sys

import pytest

from config import load_config, list_presets, ConfigError, PRESET_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cfg(*overrides, path=None):
    return load_config(path, overrides, check_data=False)


def test_default_config_is_fashion_mnist_kd_nst():
    c = cfg()
    assert c.dataset == 'fashion_mnist' and c.kt and c.kt_type == 'kd+mmd'
    assert [e['method'] for e in c.plan] == ['kd', 'mmd']
    assert [e['weight'] for e in c.plan] == [16.0, 50.0]
    assert c.plan[1]['pairs'] == [('stage3_pre', 'stage3_pre')]
    assert c.begin_epoch == 0 and c.model_load_prefix == c.model_prefix


@pytest.mark.parametrize('name', list_presets())
def test_every_preset_loads_and_validates(name):
    c = cfg(path=name)
    assert c.model_prefix
    if c.kt:
        assert c.plan


def test_paper_presets_carry_the_paper_settings():
    c = cfg(path='imagenet_inception_bn_kd_nst')
    assert (c.network, c.optimizer, c.lr, c.lr_step, c.num_epoch, c.wd) == \
        ('inception_bn', 'nag', 0.1, [30, 60, 90], 100, 1e-4)
    assert c.batch_size == 64 and len(c.gpu_list) == 8 and c.global_batch_size == 512
    assert c.plan[1]['pairs'] == [('in5b_bn', 'bn1_output')]
    c = cfg(path='cifar100_nst_gaussian')
    assert (c.lr, c.lr_step, c.num_epoch, c.batch_size, c.pad) == (0.2, [200, 300], 400, 128, 4)
    assert c.plan[0]['weight'] == 100 and c.mmd_kernel == 'gaussian'
    assert cfg(path='cifar10_fitnet').plan[0]['weight'] == 100
    assert cfg(path='cifar10_at').plan[0]['weight'] == 1000


def test_overrides_parse_yaml_values():
    assert cfg('lr=1e-3', 'model_prefix=nan').lr == 1e-3
    c = cfg('lr=0.05', 'gpu_list=[0,1]', 'kt_type=kd', 'kt_weight=8', 'retrain=true', 'model_load_epoch=3',
            'teacher_symbol=null', 'student_symbol=null')
    assert c.lr == 0.05 and c.gpu_list == [0, 1] and c.global_batch_size == 256
    assert c.plan == [{'method': 'kd', 'weight': 8.0, 'pairs': [], 'layer_weights': [1.0]}]
    assert c.begin_epoch == 3


def test_gpu_list_in_every_usual_spelling():
    for text, ids in (('[0,1]', [0, 1]), ('0,1', [0, 1]), ('3', [3]), ('[]', []), ('', [])):
        assert cfg('gpu_list=' + text).gpu_list == ids, text
    with pytest.raises(ConfigError, match="'gpu_list' \\(the command line\\).*distinct"):
        cfg('gpu_list=0,0')
    with pytest.raises(ConfigError, match="'gpu_list'.*GPU ids"):
        cfg('gpu_list=a,b')


def test_errors_say_where_the_value_was_set(tmp_path):
    y = tmp_path / 'c.yaml'
    y.write_text('lr: -1\n')
    with pytest.raises(ConfigError, match="'lr' \\(%s\\)" % str(y).replace('.', '\\.')):
        cfg(path=str(y))
    with pytest.raises(ConfigError, match="'lr' \\(the command line\\)"):
        cfg('lr=-2', path=str(y))


def test_network_family_and_depth_resolve_at_load_time():
    assert cfg('network=cifar_resnet', 'depth=56').network == 'cifar_resnet56'
    assert cfg('network=inception_bn', 'depth=50').network == 'inception_bn'     # as in the original cfgs.py
    assert cfg('teacher_network=resnet101_v1d').teacher_network == 'resnet101_v1d'   # a gluoncv name
    with pytest.raises(ConfigError, match="'network'.*unknown network 'cifar_resnet'.*depth 57.*cifar_resnet56"):
        cfg('network=cifar_resnet', 'depth=57')
    with pytest.raises(ConfigError, match="'teacher_network'.*not a gluoncv model-zoo name"):
        cfg('teacher_network=resnet_9000')


def test_one_method_takes_a_flat_or_an_aligned_tap_list():
    flat = cfg('kt_type=at', 'kt_weight=1000', 'teacher_symbol=[stage1, stage2]',
               'student_symbol=[stage1, stage2]').plan
    aligned = cfg('kt_type=at', 'kt_weight=1000', 'teacher_symbol=[[stage1, stage2]]',
                  'student_symbol=[[stage1, stage2]]').plan
    assert flat == aligned and flat[0]['pairs'] == [('stage1', 'stage1'), ('stage2', 'stage2')]
    pairs = [(('stage1', 'stage2'), ('stage1', 'stage2')), (('stage2', 'stage3'), ('stage2', 'stage3'))]
    for spec in ('[[stage1, stage2], [stage2, stage3]]', '[[[stage1, stage2], [stage2, stage3]]]'):
        assert cfg('kt_type=fsp', 'kt_weight=1', 'teacher_symbol=' + spec,
                   'student_symbol=' + spec).plan[0]['pairs'] == pairs
    with pytest.raises(ConfigError, match='fsp takes \\[a, b\\] tap pairs'):
        cfg('kt_type=fsp', 'kt_weight=1', 'teacher_symbol=[[a, b, c]]', 'student_symbol=[[a, b]]')


def test_several_layer_pairs_and_nst_alias():
    c = cfg('kt_type=kd+nst', 'teacher_symbol={nst: [stage1_pre, stage2_pre, stage3_pre]}',
            'student_symbol={mmd: [stage1_pre, stage2_pre, stage3_pre]}')
    assert len(c.plan[1]['pairs']) == 3 and c.plan[1]['layer_weights'] == [1 / 3.0] * 3


@pytest.mark.parametrize('override,message', [
    ('lrr=0.1', "unknown config key 'lrr'.*did you mean 'lr'"),
    ('lr=-1', "'lr'.*a finite number > 0"),
    ('lr=abc', "'lr'.*a finite number"),
    ('batch_size=0', "'batch_size'.*integer >= 1"),
    ('momentum=1.5', "'momentum'"),
    ('dataset=mnist', "'dataset'.*one of"),
    ('mmd_kernel=rbf', "'mmd_kernel'.*'linear', 'poly', 'gaussian'"),
    ('kt_type=kd+foo', 'unknown transfer method'),
    ('kt_weight=[1,2,3]', 'kt_weight.*3 weights for the 2 methods'),
    ('kt_weight=5', 'kt_weight.*one number but kt_type'),
    ('lr_step=[30,20]', 'increasing'),
    ('gpu_list=[-1]', "'gpu_list'.*item 0"),
    ('teacher_symbol=[null]', 'teacher_symbol.*1 entries for the 2 methods'),
    ('student_symbol=null', 'student_symbol.*no taps for method'),
    ('kv_store=dist_sync', 'distributed launch'),
    ('dtype=float16', 'float16 AMP needs GPUs'),
    ('model_prefix=a/b', "'model_prefix'"),
])
def test_validation_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        cfg(override)


def test_missing_data_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match='missing data file.*train.rec.*init.sh'):
        load_config(None, ['data_dir=%s' % tmp_path])
    with pytest.raises(ConfigError, match='missing data file.*data_batch_1'):
        load_config('cifar10_student', ['data_dir=%s' % tmp_path])
    (tmp_path / 'train.rec').write_bytes(b'')       # data_dir given as a file of the pack: name its folder
    with pytest.raises(ConfigError) as e:
        load_config(None, ['dataset=imagenet', 'data_dir=%s' % (tmp_path / 'train.rec')])
    assert str(e.value).endswith('is a file: data_dir is the folder that holds the data, data_dir=%s' % tmp_path)


def test_yaml_and_py_config_files(tmp_path):
    y = tmp_path / 'c.yaml'
    y.write_text('base: %s\nlr: 0.3\n' % os.path.join(PRESET_DIR, 'cifar10_kd.yaml'))
    c = cfg(path=str(y))
    assert c.lr == 0.3 and c.kt_type == 'kd' and c.dataset == 'cifar10'
    p = tmp_path / 'c.py'
    p.write_text('network = "wrn16_2"\nkt = False\nimport os\n')
    assert cfg(path=str(p)).network == 'wrn16_2'
    bad = tmp_path / 'bad.yaml'
    bad.write_text('network: cifar_resnet8\nkt_weight: [16, 50\nlr: 0.1\n')      # a list left open
    with pytest.raises(ConfigError) as e:
        cfg(path=str(bad))
    assert str(e.value).endswith("not valid YAML: line 3, column 3: expected ',' or ']', but got ':' (while parsing "
                                 "a flow sequence that starts at line 2, column 12)"), str(e.value)
    assert '\n' not in str(e.value)
    with pytest.raises(ConfigError, match='does not exist'):
        cfg(path=str(tmp_path / 'none.yaml'))


def test_train_py_exits_non_zero_with_one_clear_error(tmp_path):
    r = subprocess.run([sys.executable, 'train.py', 'lr=-3', 'data_dir=%s' % tmp_path], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith('config error:') and "'lr'" in r.stderr
    assert 'Traceback' not in r.stderr
