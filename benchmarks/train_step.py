"""Seconds per training step: plain student, teacher forward, full distillation.

    python -m benchmarks.train_step --teacher cifar_resnet56 --student cifar_resnet20 \\
        --batch 128 --classes 100 --kt kd+mmd

On random 32x32 data (224 for ImageNet networks), hybridized, on the CPU (or
--gpus), it times
  student_step_s: student forward + backward + SGD-momentum update (CE only);
  teacher_fwd_s:  teacher forward with the taps the methods read;
  kt_step_s:      teacher forward + the project's DistillBlock (student, CE,
                  KD with T=4, NST poly on the three stage outputs, ...) +
                  backward + update;
and prints one JSON object as its last line with those and
overhead = kt_step_s / (student_step_s + teacher_fwd_s).
"""
import argparse
import json
import time

from core.env import configure_threads

configure_threads()

# the three stage outputs each family offers (pre-ReLU where it has them)
STAGES = {
    'inception_bn_small': ['in3b_bn', 'in4d_bn', 'in5b_bn'],
    'inception_bn': ['in3b_bn', 'in4d_bn', 'in5b_bn'],
    'preact_resnet18': ['stage2', 'stage3', 'bn1'],
}


def stages(name):
    import symbols
    if name in STAGES:
        return STAGES[name]
    taps = symbols.tap_names(symbols.get_network(name, 10))
    pre = [t for t in ('stage1_pre', 'stage2_pre', 'stage3_pre') if t in taps]
    return pre if len(pre) == 3 else ['stage1', 'stage2', 'stage3']


def plan_for(kt, s_stages, t_stages):
    from symbols.transfer import parse_kt_type, default_weight
    plan = []
    for m in parse_kt_type(kt):
        if m == 'kd':
            pairs = []
        elif m == 'fsp':
            pairs = [((s_stages[0], s_stages[1]), (t_stages[0], t_stages[1])),
                     ((s_stages[1], s_stages[2]), (t_stages[1], t_stages[2]))]
        else:
            pairs = list(zip(s_stages, t_stages))
        plan.append({'method': m, 'weight': default_weight(m), 'pairs': pairs,
                     'layer_weights': [1.0 / max(1, len(pairs))] * max(1, len(pairs))})
    return plan


def timeit(fn, steps, warmup=3):
    import mxnet as mx
    for _ in range(warmup):
        fn()
    mx.nd.waitall()
    tic = time.time()
    for _ in range(steps):
        fn()
    mx.nd.waitall()
    return (time.time() - tic) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--teacher', default='cifar_resnet56')
    p.add_argument('--student', default='cifar_resnet20')
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--classes', type=int, default=100)
    p.add_argument('--kt', default='kd+mmd')
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--gpus', type=int, nargs='*', default=[])
    args = p.parse_args(argv)

    import mxnet as mx
    from mxnet import autograd, gluon, nd
    import symbols
    from tasks.classification.distiller import DistillBlock, plan_taps
    from tasks.classification.task import as_list
    ctx = mx.gpu(args.gpus[0]) if args.gpus else mx.cpu()
    size = symbols.input_size(args.student)
    x = nd.random.normal(shape=(args.batch, 3, size, size), ctx=ctx)
    y = nd.array([i % args.classes for i in range(args.batch)], ctx=ctx)
    plan = plan_for(args.kt, stages(args.student), stages(args.teacher))
    s_taps, t_taps = plan_taps(plan)
    init = mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)

    # plain student step
    plain = symbols.get_network(args.student, args.classes, 3, prefix='plain_')
    plain.initialize(init, ctx=ctx)
    plain.hybridize(static_alloc=True, static_shape=True)
    ce = gluon.loss.SoftmaxCrossEntropyLoss()
    tr_plain = gluon.Trainer(plain.collect_params(), 'sgd', {'learning_rate': 0.01, 'momentum': 0.9})

    def student_step():
        with autograd.record():
            loss = ce(plain(x), y)
        loss.backward()
        tr_plain.step(args.batch)

    # teacher forward with taps
    teacher_net = symbols.get_network(args.teacher, args.classes, 3, prefix='teacher_')
    teacher = symbols.with_taps(teacher_net, t_taps)
    teacher.initialize(init, ctx=ctx)
    for prm in teacher_net.collect_params().values():
        prm.grad_req = 'null'
    teacher.hybridize(static_alloc=True, static_shape=True)

    def teacher_fwd():
        return as_list(teacher(x))

    # distillation step through the project's DistillBlock
    student = symbols.get_network(args.student, args.classes, 3, prefix='student_')
    block = DistillBlock(student, plan, {'kd_t': 4.0, 'mmd_kernel': 'poly'}, t_taps, prefix='distill_')
    student.initialize(init, ctx=ctx)
    t_out = teacher_fwd()
    s_out = as_list(block.student(x))
    s_shape = dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]]))
    t_shape = dict(zip(t_taps, [o.shape[1:] for o in t_out[1:]]))
    margins = [nd.full((channels,), -1.0, ctx=ctx) for _, _, channels in block.connect(s_shape, t_shape)]
    block.extras.initialize(init, ctx=ctx)
    block(x, y, t_out[0], *(t_out[1:] + margins))
    block.hybridize(static_alloc=True, static_shape=True)
    params = student.collect_params()
    params.update(block.extras.collect_params())
    tr_kt = gluon.Trainer(params, 'sgd', {'learning_rate': 0.01, 'momentum': 0.9})

    def kt_step():
        with autograd.pause():
            t = teacher_fwd()
        with autograd.record():
            out = block(x, y, t[0], *(t[1:] + margins))
        out[0].backward()
        tr_kt.step(args.batch)

    res = {'teacher': args.teacher, 'student': args.student, 'batch': args.batch, 'classes': args.classes,
           'kt': args.kt, 'taps': {'student': s_taps, 'teacher': t_taps}, 'device': str(ctx),
           'student_step_s': timeit(student_step, args.steps), 'teacher_fwd_s': timeit(teacher_fwd, args.steps),
           'kt_step_s': timeit(kt_step, args.steps)}
    res['overhead'] = res['kt_step_s'] / (res['student_step_s'] + res['teacher_fwd_s'])
    print('student step %.4fs  teacher forward %.4fs  distillation step %.4fs  overhead %.3f'
          % (res['student_step_s'], res['teacher_fwd_s'], res['kt_step_s'], res['overhead']))
    print(json.dumps(res))


if __name__ == '__main__':
    main()
