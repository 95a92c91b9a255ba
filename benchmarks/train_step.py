"""Seconds per training step: plain student, teacher forward, full distillation.

    python -m benchmarks.train_step --teacher cifar_resnet56 --student cifar_resnet20 \\
        --batch 128 --classes 100 --kt kd+mmd
    python -m benchmarks.train_step ... --all      # every registered method: a table of overheads

On random 32x32 data (224 for ImageNet networks), hybridized, on the CPU (or
--gpus), it times
  student_step_s: student forward + backward + SGD-momentum update (CE only);
  teacher_fwd_s:  teacher forward with the taps the methods read;
  kt_step_s:      teacher forward + the project's DistillBlock (student, CE,
                  KD with T=4, NST poly on the three stage outputs, ...) +
                  backward + update;
and prints one JSON object as its last line with those and
overhead = kt_step_s / (student_step_s + teacher_fwd_s). Each method runs at its registry
defaults, on the three stage taps of each network (logit methods on the logits; with --taps peer
on the layers RepDistiller distils: FitNet one hint layer, SP and FT the last stage, RKD, PKT,
CC and CRD the pooled vector); a method
with stages (FT, AB) is timed in its main training, after `finish_stage`; CRD gets the sample
indices and a memory bank of --num-samples rows.
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


# --taps peer: the layers RepDistiller (and mdistiller, for OFD and ReviewKD) distil for each method
# on its CIFAR ResNets (feat[2] for FitNet's hint, feat[-2] the last stage, feat[-1] the pooled vector);
# a method not listed takes the three stages as with --taps stages
PEER_TAPS = {'fitnet': ['stage2'], 'sp': ['stage3'], 'ft': ['stage3'], 'rkd': ['pool'], 'pkt': ['pool'],
             'cc': ['pool'], 'crd': ['pool'], 'at': ['stage1', 'stage2', 'stage3'],
             'mmd': ['stage1', 'stage2', 'stage3'], 'kdsvd': ['stage1', 'stage2', 'stage3'],
             'vid': ['stage1', 'stage2', 'stage3']}


def plan_for(kt, s_stages, t_stages, taps='stages'):
    """The transfer plan of `kt` at each method's default weight: feature methods on the three stage
    taps (FSP on the pairs of consecutive stages), or with taps='peer' on PEER_TAPS."""
    from symbols.transfer import parse_kt_type, default_weight, takes_taps
    plan = []
    for m in parse_kt_type(kt):
        if not takes_taps(m):                  # logit methods (kd, dkd, dist)
            pairs = []
        elif taps == 'peer' and m in PEER_TAPS:
            pairs = [(tap, tap) for tap in PEER_TAPS[m]]
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


def options_for(plan, num_samples):
    """The loss options of `plan`: each method's registry defaults (NST's poly kernel, as the
    original's default run), and the training-set size the methods that index samples need."""
    from symbols.transfer import METHODS
    options = {'num_samples': num_samples}
    for entry in plan:
        options.update(METHODS[entry['method']].defaults())
    if any(e['method'] == 'mmd' for e in plan):
        options['mmd_kernel'] = 'poly'
    return options


def measure(args, kt, ctx, student_step_s=None):
    """{student_step_s, teacher_fwd_s, kt_step_s, overhead, ...} of distillation `kt` (the plain
    student step is measured unless given)."""
    import mxnet as mx
    from mxnet import autograd, gluon, nd
    import symbols
    from core.engine import optimized
    from tasks.classification.distiller import DistillBlock, plan_taps, plan_takes_indices
    from tasks.classification.task import as_list
    size = symbols.input_size(args.student)
    x = nd.random.normal(shape=(args.batch, 3, size, size), ctx=ctx)
    y = nd.array([i % args.classes for i in range(args.batch)], ctx=ctx)
    index = nd.arange(args.batch, ctx=ctx)               # the samples' indices in the training set
    plan = plan_for(kt, stages(args.student), stages(args.teacher), getattr(args, 'taps', 'stages'))
    s_taps, t_taps = plan_taps(plan)
    init = mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)

    if student_step_s is None:             # plain student step
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
        student_step_s = timeit(student_step, args.steps)

    # teacher forward with taps
    teacher_net = symbols.get_network(args.teacher, args.classes, 3, prefix='teacher_')
    teacher = symbols.with_taps(teacher_net, t_taps)
    teacher.initialize(init, ctx=ctx)
    for prm in teacher_net.collect_params().values():
        prm.grad_req = 'null'
    teacher.hybridize(static_alloc=True, static_shape=True)

    def teacher_fwd():
        return as_list(teacher(x))

    # distillation step through the project's DistillBlock, after its methods' stages (as in training)
    student = symbols.get_network(args.student, args.classes, 3, prefix='student_')
    block = DistillBlock(student, plan, options_for(plan, args.num_samples), t_taps, prefix='distill_')
    student.initialize(init, ctx=ctx)
    t_out = teacher_fwd()
    s_out = as_list(block.student(x))
    s_shape = dict(zip(s_taps, [o.shape[1:] for o in s_out[1:]]))
    t_shape = dict(zip(t_taps, [o.shape[1:] for o in t_out[1:]]))
    margins = [nd.full((channels,), -1.0, ctx=ctx) for _, _, channels in block.connect(s_shape, t_shape)]
    block.extras.initialize(init, ctx=ctx)
    extra = [index] if plan_takes_indices(plan) else []
    block(x, y, t_out[0], *(t_out[1:] + margins + extra))
    for m, stage in block.stages():
        block.finish_stage(m, stage)
    block.hybridize(static_alloc=True, static_shape=True)
    params = dict(student.collect_params().items())
    params.update(block.extras.collect_params().items())
    params = {n: p for n, p in optimized(params).items() if p.grad_req != 'null'}
    tr_kt = gluon.Trainer(params, 'sgd', {'learning_rate': 0.01, 'momentum': 0.9})

    def kt_step():
        with autograd.pause():
            t = teacher_fwd()
        with autograd.record():
            out = block(x, y, t[0], *(t[1:] + margins + extra))
        out[0].backward()
        tr_kt.step(args.batch)
        block.after_step([out], [index])

    res = {'teacher': args.teacher, 'student': args.student, 'batch': args.batch, 'classes': args.classes,
           'kt': kt, 'taps': {'student': s_taps, 'teacher': t_taps}, 'device': str(ctx),
           'student_step_s': student_step_s, 'teacher_fwd_s': timeit(teacher_fwd, args.steps),
           'kt_step_s': timeit(kt_step, args.steps)}
    res['overhead'] = res['kt_step_s'] / (res['student_step_s'] + res['teacher_fwd_s'])
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--teacher', default='cifar_resnet56')
    p.add_argument('--student', default='cifar_resnet20')
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--classes', type=int, default=100)
    p.add_argument('--kt', default='kd+mmd')
    p.add_argument('--all', action='store_true', help='every registered method, one at a time: a table of overheads')
    p.add_argument('--num-samples', type=int, default=50000, help='training-set size for the methods that index '
                   'samples (CRD\'s memory bank; CIFAR: 50000)')
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--taps', choices=['stages', 'peer'], default='stages', help='feature methods on the three stage '
                   'taps (default), or on the layers RepDistiller distils for each method (PEER_TAPS)')
    p.add_argument('--gpus', type=int, nargs='*', default=[])
    args = p.parse_args(argv)

    import mxnet as mx
    ctx = mx.gpu(args.gpus[0]) if args.gpus else mx.cpu()
    if not args.all:
        res = measure(args, args.kt, ctx)
        print('student step %.4fs  teacher forward %.4fs  distillation step %.4fs  overhead %.3f'
              % (res['student_step_s'], res['teacher_fwd_s'], res['kt_step_s'], res['overhead']))
        print(json.dumps(res))
        return
    from symbols.transfer import METHODS
    rows, student_s = [], None
    print('| method | distillation step (s) | teacher forward (s) | overhead |')
    print('|---|---|---|---|')
    for name in METHODS:
        res = measure(args, name, ctx, student_s)
        student_s = res['student_step_s']
        rows.append(res)
        print('| %s | %.4f | %.4f | %.3f |' % (name, res['kt_step_s'], res['teacher_fwd_s'], res['overhead']),
              flush=True)
    print('student step %.4fs' % student_s)
    print(json.dumps(rows))


if __name__ == '__main__':
    main()
