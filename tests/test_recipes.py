"""docs/recipes.md, run: every command of every recipe, in order, as written, in a working folder
that holds what the page assumes (an image folder `photos/`, the default run's Fashion-MNIST pack and
teacher, gluoncv's resnet50_v2 weights placed where the page says, a VOCdevkit), with tiny sizes
added (a key the command sets is replaced, not repeated). No network: the gluoncv repository is
pointed at a port where nothing answers, so a download attempt would fail the recipe."""
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import make_fashion_mnist, make_jpeg_tree, merged
from tests.voc_synth import CLASSES, make_voc

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, 'docs', 'recipes.md')
TINY = ['batch_size=4', 'epoch_size=2', 'num_epoch=1', 'data_threads=1', 'progress=false']
MINE = ['image_size=64']      # ImageNet-style networks on 40x36 photos (bn1 2x2: NST needs a spatial map)
DETECTION = ['gpu_list=[]', 'short=96', 'max_size=120', 'rpn_channel=32', 'scales=[2,4,8]', 'num_sample=16',
             'roi_size=7', 'rpn_train_pre_nms=300', 'rpn_train_post_nms=64', 'rpn_test_pre_nms=200',
             'rpn_test_post_nms=20', 'train_sets=2007:trainval', 'val_sets=2007:test',
             'classes=[%s]' % ','.join(CLASSES), 'num_epoch=1', 'epoch_size=2', 'progress=false', 'num_workers=0']


def recipes():
    """[(title, [command, ...])] of the page, in order."""
    text = open(PAGE).read()
    out = []
    for section in re.split(r'\n## ', text)[1:]:
        title = section.split('\n', 1)[0]
        commands = [line.strip() for block in re.findall(r'```bash\n(.*?)```', section, re.S)
                    for line in block.splitlines() if line.strip() and not line.strip().startswith('#')]
        out.append((title, commands))
    return out


def tiny(command):
    """The command's words with `python` as this interpreter and the tiny sizes added."""
    words = command.split()
    words = [sys.executable if w == 'python' else w for w in words]
    if 'train.py' not in words and 'tools.compare' not in words:
        return words
    if any('voc_' in w for w in words):
        return merged(words + DETECTION)
    extra = TINY + (MINE if 'data_dir=datasets/mine' in words else [])
    if 'tools.compare' in words:
        return merged(words + ['--epochs', '1'] + [e for e in extra if not e.startswith('num_epoch=')])
    if 'retrain=true' in words:                          # the resume recipe: one epoch further
        extra = [e for e in extra if not e.startswith('num_epoch=')] + ['num_epoch=2']
    return merged(words + extra)


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """A folder laid out as the page assumes, and the environment to run in it."""
    import mxnet as mx
    import symbols
    from symbols import pretrained
    work = tmp_path_factory.mktemp('recipes')
    os.symlink(os.path.join(ROOT, 'train.py'), str(work / 'train.py'))
    make_jpeg_tree(str(work / 'photos' / 'train'), classes=4, per_class=6, size=(40, 36), seed=1)
    make_jpeg_tree(str(work / 'photos' / 'val'), classes=4, per_class=3, size=(40, 36), seed=2)
    make_fashion_mnist(str(work / 'datasets' / 'fashion_mnist'))
    make_voc(str(work / 'datasets' / 'VOCdevkit'), size=96)
    env = dict(os.environ, MXNET_HOME=str(work / 'mxhome'), MXNET_GLUON_REPO='http://127.0.0.1:9/')
    # "gluoncv's ImageNet weights", placed as the page says (random: the recipes are tested, not the weights)
    net = symbols.get_network('preact_resnet50', 1000)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    os.makedirs(str(work / 'mxhome' / 'models'))
    net.save_parameters(str(work / 'mxhome' / 'models' / pretrained.file_name('resnet50_v2')))
    # the default run's teacher (init.sh trains it)
    r = subprocess.run([sys.executable, 'train.py', 'network=cifar_resnet14', 'kt=false',
                        'model_prefix=fmnist_resnet14_teacher'] + TINY, cwd=str(work), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return work, env


def test_the_page_names_the_weights_file_gluoncv_expects():
    from symbols import pretrained
    text = open(PAGE).read()
    assert '`%s`' % pretrained.file_name('resnet50_v2') in text and pretrained.url_of('resnet50_v2') in text


def test_every_recipe_runs_as_written(workdir):
    work, env = workdir
    ran = []
    for title, commands in recipes():
        assert commands, 'recipe %r has no command' % title
        for command in commands:
            r = subprocess.run(tiny(command), cwd=str(work), env=env, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0 and 'Traceback' not in r.stderr, '%s\n$ %s\n%s\n%s' % (
                title, command, r.stdout[-3000:], r.stderr[-3000:])
            ran.append((command, r))
    by = dict((c.split()[2] if c.startswith('python -m') else c, r) for c, r in ran)
    assert len(ran) >= 12
    # what the steps promise: the class count from the pack, a new classifier, the comparison's table,
    # the ONNX file scored by onnxruntime equal to the MXNet evaluation
    assert (work / 'datasets' / 'mine' / 'classes.txt').read_text().count('\n') == 4
    log = (work / 'log' / 'mine_teacher.log').read_text()
    assert 'student starts from %s' % (work / 'mxhome' / 'models') in log and 'is new, for 4 classes' in log
    table = (work / 'results' / 'mine' / 'table.md').read_text()
    for label in ('KD', 'NST', 'KD + NST'):
        assert '| %s |' % label in table, table
    assert (work / 'results' / 'mine' / 'curves.png').stat().st_size > 0
    assert (work / 'deploy' / 'mine.onnx').is_file()
    scored = by['tools.evaluate'].stdout
    assert '(onnxruntime): top-1' in scored and 'top-5' not in scored, scored
