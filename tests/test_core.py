"""LR schedule, threading defaults, the teacher's batch-statistics mode."""
import math

import numpy as np
import mxnet as mx

from core.env import configure_threads, cpu_count
from core.schedule import learning_rate
from tasks.classification.teacher import BatchStatsGuard
import symbols


def test_step_schedule_like_the_original():
    lr = lambda e: learning_rate(e, 0.1, 'step', [30, 60, 90], 0.1, 100)
    assert lr(0) == 0.1 and lr(29.99) == 0.1
    assert math.isclose(lr(30), 0.01) and math.isclose(lr(60.5), 0.001) and math.isclose(lr(99), 1e-4)


def test_cosine_and_warmup():
    lr = lambda e: learning_rate(e, 0.2, 'cosine', (), 0.1, 10, warmup_epochs=2)
    assert lr(0) == 0 and math.isclose(lr(1), 0.1) and math.isclose(lr(2), 0.2)
    assert math.isclose(lr(6), 0.1) and lr(10) < 1e-12


def test_threading_defaults_respect_user_values(monkeypatch):
    for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS', 'NST_LOCAL_WORKERS'):
        monkeypatch.delenv(k, raising=False)
    got = configure_threads()
    assert got['OMP_NUM_THREADS'] == str(cpu_count())
    monkeypatch.setenv('OMP_NUM_THREADS', '7')
    assert configure_threads()['OMP_NUM_THREADS'] == '7'
    monkeypatch.delenv('OMP_NUM_THREADS')
    assert configure_threads(local_workers=cpu_count() * 4)['OMP_NUM_THREADS'] == '1'


def test_teacher_batch_statistics_leave_stored_statistics_unchanged():
    net = symbols.get_network('cifar_resnet8', 10, prefix='teacher_')
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(2.0, 3.0, shape=(8, 3, 32, 32))
    net(x)
    stats = {n: p for n, p in net.collect_params().items() if 'running' in n}
    for p in stats.values():
        p.set_data(mx.nd.random.uniform(0.5, 1.5, p.shape))
    before = {n: p.data().asnumpy().copy() for n, p in stats.items()}
    tapped = symbols.with_taps(net, ['stage3_pre'])
    tapped.hybridize(static_alloc=True, static_shape=True)
    guard = BatchStatsGuard(tapped)
    with mx.autograd.record():                 # as in training: recorded student, paused teacher
        with mx.autograd.pause():
            out = guard(tapped, x)[0].asnumpy()   # copy: static_alloc reuses output buffers
    inference = tapped(x)[0].asnumpy()
    mx.nd.waitall()
    for n, p in stats.items():
        np.testing.assert_array_equal(p.data().asnumpy(), before[n], err_msg=n)
    # batch statistics give other values than the stored ones
    assert np.abs(out - inference).max() > 1e-3


def test_labels_out_of_range_are_counted_on_the_device_and_raised_at_read():
    import pytest
    from tasks.classification.evaluate import evaluate
    from tasks.classification.metrics import Running, LabelOutOfRange
    logits = mx.nd.array(np.eye(3)[[0, 1, 2, 0]])
    r = Running(['ce'], num_classes=3)
    r.update(0, 0, logits, mx.nd.array([0, 1, 2, 0]), [mx.nd.ones((4,))])
    assert r.read()['top1'] == 1.0
    r.update(0, 1, logits, mx.nd.array([0, 3, 2, -1]), [mx.nd.ones((4,))])
    r.update(0, 2, logits, mx.nd.array([0, 1.5, 2, 0]), [mx.nd.ones((4,))])
    with pytest.raises(LabelOutOfRange, match='3 training label'):
        r.read()
    net = lambda x: x
    ok = mx.io.NDArrayIter(logits.asnumpy(), np.array([0, 1, 2, 0]), batch_size=2)
    assert evaluate(net, ok, [mx.cpu()], 3)['top1'] == 1.0
    bad = mx.io.NDArrayIter(logits.asnumpy(), np.array([0, 1, 2, 5]), batch_size=2)
    with pytest.raises(LabelOutOfRange, match='1 validation label.*0..2'):
        evaluate(net, bad, [mx.cpu()], 3)


def test_an_mxnet_error_is_reported_by_its_reason_line():
    """Found by a new user: a full disk while checkpointing said 'cannot write F (Traceback (most
    recent call last):': MXNet's C++ traceback, not its reason."""
    import mxnet as mx
    from core.checkpoint import reason
    e = mx.base.MXNetError('Traceback (most recent call last):\n  File "../3rdparty/dmlc-core/src/io/local_filesys.cc", '
                           'line 38\nMXNetError: Check failed: std: :fwrite(ptr, 1, size, fp_) == size: FileStream.'
                           'Write incomplete')
    assert reason(e) == 'MXNetError: Check failed: std: :fwrite(ptr, 1, size, fp_) == size: FileStream.Write incomplete'
    assert reason(OSError(28, 'No space left on device')) == '[Errno 28] No space left on device'


def test_loss_warning_names_the_terms_of_a_diverged_but_finite_detector():
    """#18's sixteenth trial: a detector whose losses reached 3e6 (rcnn_cls) was recorded as its best
    epoch without a word; the detection task warns with `core.health.loss_warning`."""
    from core.health import loss_warning
    said = loss_warning({'rpn_cls': 33441.3, 'rcnn_cls': 3286246.75, 'rcnn_box': 0.3}, 'this epoch')
    assert said and 'rcnn_cls 3.29e+06, rpn_cls 3.34e+04' in said and 'rcnn_box' not in said and 'lower lr' in said
    assert loss_warning({'rpn_cls': 0.69, 'rcnn_cls': float('nan')}, 'this epoch') is None
