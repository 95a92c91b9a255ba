"""NST poly-kernel loss: this project's form against the original code's.

    python -m benchmarks.nst_poly [--repeat 20]

For each shape (batch, student CxHxW, teacher CxHxW) it times forward +
backward (w.r.t. the student map), hybridized, of
  ours:     symbols.transfer.NSTLoss('poly')  (Gram form chosen per shape)
  original: symbols.transfer.OriginalNSTPolyLoss (batch_dot of the C x C
            student-student and student-teacher matrices, no teacher term)
on the same inputs, checks that the student gradients agree and that the
values differ exactly by the teacher-teacher term, and prints both times and
their ratio. The last line is one JSON object with every shape's figures.
"""
import argparse
import json
import time

from core.env import configure_threads

configure_threads()

SHAPES = [
    ('imagenet', 64, (1024, 7, 7), (2048, 7, 7)),       # Inception-BN in5b_bn vs ResNet-101 bn1
    ('cifar_inception', 128, (336, 8, 8), (256, 8, 8)),  # small Inception-BN in5b_bn vs ResNet-1001 stage3_pre
    ('cifar_stage1', 128, (16, 32, 32), (16, 32, 32)),   # CIFAR ResNet first stage (channel form)
]


def bench(block, s, t, repeat):
    import mxnet as mx
    from mxnet import autograd
    block.hybridize(static_alloc=True, static_shape=True)
    x = s.copy()
    x.attach_grad()

    def step():
        with autograd.record():
            out = block(x, t)
        out.backward()
        return out
    for _ in range(3):
        step()
    mx.nd.waitall()
    tic = time.time()
    for _ in range(repeat):
        out = step()
    mx.nd.waitall()
    return (time.time() - tic) / repeat, out.asnumpy().astype('float64'), x.grad.asnumpy().astype('float64')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeat', type=int, default=20)
    p.add_argument('--tol', type=float, default=1e-5)
    args = p.parse_args(argv)
    import numpy as np
    import mxnet as mx
    from symbols.transfer import NSTLoss, OriginalNSTPolyLoss
    results = {}
    for name, batch, s_shape, t_shape in SHAPES:
        rng = np.random.RandomState(0)
        s = mx.nd.array(rng.randn(batch, *s_shape))
        t = mx.nd.array(rng.randn(batch, *t_shape))
        ours = NSTLoss('poly', 2, 0.0)
        t_ours, v_ours, g_ours = bench(ours, s, t, args.repeat)
        t_orig, v_orig, g_orig = bench(OriginalNSTPolyLoss(0.0), s, t, args.repeat)
        T = t.asnumpy().astype('float64').reshape(batch, t_shape[0], -1)
        T /= np.maximum(np.linalg.norm(T, axis=2, keepdims=True), 1e-12)
        tt = ((T @ T.transpose(0, 2, 1)) ** 2).mean(axis=(1, 2))
        grad_err = float(np.abs(g_ours - g_orig).max() / np.abs(g_orig).max())
        value_err = float(np.abs(v_ours - (v_orig + tt)).max() / np.abs(v_orig + tt).max())
        results[name] = {'batch': batch, 'student': list(s_shape), 'teacher': list(t_shape), 'form': ours.form,
                         'ours_s': t_ours, 'original_s': t_orig, 'ratio': t_orig / t_ours,
                         'grad_rel_err': grad_err, 'value_rel_err': value_err,
                         'equal': grad_err <= args.tol and value_err <= args.tol}
        print('%-16s batch %3d student %-13s teacher %-13s form %-7s ours %.4fs  original %.4fs  %.1fx faster  '
              'grad err %.1e  value err %.1e' % (name, batch, 'x'.join(map(str, s_shape)),
                                                 'x'.join(map(str, t_shape)), ours.form, t_ours, t_orig,
                                                 t_orig / t_ours, grad_err, value_err), flush=True)
    print(json.dumps(results))
    return 0 if all(r['equal'] for r in results.values()) else 1


if __name__ == '__main__':
    raise SystemExit(main())
