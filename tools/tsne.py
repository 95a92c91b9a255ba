"""t-SNE of neuron-selectivity patterns (the NST paper's Figure 5).

A neuron (channel) of a layer is one point: its activation maps over K input
images, each L2-normalised over H*W, concatenated. Teacher and student
neurons are embedded together, in two colours, for a student before and
after NST. scikit-learn's exact-gradient t-SNE ('exact', fine for a few
hundred points) does the embedding.

    python -m tools.tsne --teacher model/T:stage3_pre \
        --student "student alone=model/S_plain:stage3_pre" --student "with NST=model/S_nst:stage3_pre" \
        [--data-dir DIR] [--images 64] [--epoch best] --out tsne.png

PREFIX is a run of this project (as in --prefix of tools.evaluate) or a legacy
MXNet Module checkpoint (PREFIX-symbol.json, e.g. the original's resnet-101
teacher with TAP bn1_output); maps of different H x W are average-pooled to the
smallest. The images are the first validation images of the data the first run of
this project was trained on (its saved data_dir), unless --data-dir names others.
"""
import sys

import numpy as np

from tools import cli


def selectivity(fmap):
    """(K, C, H, W) feature maps -> (C, K*H*W) selectivity patterns, rows L2-normalised."""
    k, c = fmap.shape[:2]
    x = fmap.reshape(k, c, -1)
    x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12)
    x = x.transpose(1, 0, 2).reshape(c, -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embed(points, seed=0):
    from sklearn.manifold import TSNE
    n = len(points)
    return TSNE(n_components=2, perplexity=max(2.0, min(30.0, (n - 1) / 3.0)), init='pca', method='exact',
                random_state=seed).fit_transform(points)


def plot(teacher_fmap, students, out, title=''):
    """students: [(panel title, student fmap)]; the teacher's neurons appear in every panel.
    Writes a PNG; returns the number of (teacher, student) series drawn."""
    from .plotting import pyplot, save
    plt = pyplot()
    t = selectivity(teacher_fmap)
    fig, axes = plt.subplots(1, len(students), figsize=(5 * len(students), 4.6), squeeze=False)
    series = 0
    for ax, (name, fmap) in zip(axes[0], students):
        s = selectivity(fmap)
        if s.shape[1] != t.shape[1]:
            raise cli.UsageError('teacher and student maps must have the same K*H*W (%d vs %d)'
                             % (t.shape[1], s.shape[1]))
        xy = embed(np.concatenate([t, s]))
        ax.scatter(xy[:len(t), 0], xy[:len(t), 1], s=14, c='tab:red', label='teacher neurons (%d)' % len(t))
        ax.scatter(xy[len(t):, 0], xy[len(t):, 1], s=14, c='tab:blue', marker='^',
                   label='student neurons (%d)' % len(s))
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8)
        series += 2
    save(fig, out, title)
    return series


@cli.command
def main(argv=None):
    """Write the t-SNE figure; 2 with one error line on a user's mistake."""
    from tools import features
    p = cli.parser('tsne', __doc__)
    p.add_argument('--teacher', required=True, help='PREFIX:TAP of the teacher run')
    p.add_argument('--student', action='append', required=True, help='LABEL=PREFIX:TAP, once per panel')
    p.add_argument('--title', default='')
    features.add_run_arguments(p, images=64)
    args = p.parse_args(argv)

    def draw(_, maps):
        n = plot(maps[0][1], maps[1:], args.out, args.title)
        return 'wrote %s (%d panels, %d series)' % (args.out, len(maps) - 1, n)
    return features.run_figure(args, [('--teacher', args.teacher, False)] + [('--student', s, True)
                                                                             for s in args.student], draw)


if __name__ == '__main__':
    sys.exit(main())
