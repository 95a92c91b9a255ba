"""Predicted masks of segmentation runs side by side: one row per validation image, its image, its
ground truth, then each run's prediction (VOC's palette; 255, the unlabelled border, in white).

    python -m tools.plot_masks --prefix model/TEACHER model/STUDENT model/DISTILLED \\
        [--epoch best] [--images 4] [--first 0] --out masks.png [key=value ...]

The images are the validation list of the first run's saved configuration (key=value overrides on
top, e.g. voc_root=... when the data moved); every run must have been trained on its classes.
"""
import os
import sys

import numpy as np

from . import cli
from .plotting import figure_path


def _config(prefix, tag, overrides):
    """(configuration saved with segmentation checkpoint `prefix`, the tag it resolves to)."""
    from config import of_checkpoint
    from core import checkpoint
    folder, name = os.path.split(prefix)
    tag = checkpoint.resolve_tag(folder or '.', name, tag)
    meta = checkpoint.read_meta(folder or '.', name, tag)
    if meta.get('kind') != 'segmentation':
        raise cli.UsageError('checkpoint %s (epoch %s) is not a segmentation run: give runs trained with '
                             'task=segmentation' % (prefix, tag))
    cfg = of_checkpoint(meta, '%s epoch %s' % (prefix, tag), overrides, backbone=False)
    if cfg is None:
        raise cli.UsageError('checkpoint %s (epoch %s) keeps no configuration (written by an older version): evaluate '
                             'it with tools.evaluate --cfg instead' % (prefix, tag))
    return cfg, tag


def coloured(mask, palette):
    """(H, W) class indices (255: unlabelled) -> (H, W, 3) uint8 colours; 255 white."""
    out = palette[np.minimum(mask, len(palette) - 1)]
    out[mask == 255] = 255
    return out


@cli.command
def main(argv=None):
    """Write the figure; 2 with one error line for a wrong argument, checkpoint or data."""
    p = cli.parser('plot_masks', __doc__)
    p.add_argument('--prefix', nargs='+', required=True, help='segmentation runs (model_dir/RUN), one column each')
    p.add_argument('--epoch', default='best', type=cli.epoch_arg, help='epoch number or "best" (every run)')
    p.add_argument('--images', type=cli.positive_int, default=4, help='validation images, one row each (default 4)')
    p.add_argument('--first', type=cli.nonnegative_int, default=0, help='index of the first image in the list')
    p.add_argument('--title', default='')
    p.add_argument('--out', required=True, help='the figure (PNG unless the extension says otherwise)')
    p.add_argument('overrides', nargs='*', help='key=value on the first run\'s configuration (its data)')
    args = p.parse_args(argv)
    figure_path(args.out, example='masks.png')
    prefixes = [cli.checkpoint_prefix(x, '--prefix') for x in args.prefix]
    import mxnet as mx
    from data import segmentation as segdata
    from tasks.segmentation.task import load_network
    cfg, _ = _config(prefixes[0], args.epoch, args.overrides)
    items = segdata.voc_items(cfg.voc_root, cfg.val_split)
    if args.first >= len(items):
        raise cli.UsageError('--first %d: the validation list %s of %s has %d images' % (
            args.first, cfg.val_split, cfg.voc_root, len(items)))
    if args.first + args.images > len(items):
        raise cli.UsageError('--images %d%s: the validation list %s of %s has %d images; ask for at most %d' % (
            args.images, ' from --first %d' % args.first if args.first else '', cfg.val_split, cfg.voc_root,
            len(items), len(items) - args.first))
    items = items[args.first:args.first + args.images]
    segdata.check_items(items, cfg.num_classes, fix='the runs predict these %d classes: draw them on data of their '
                        'classes (leave out voc_root to use the first run\'s data)' % cfg.num_classes)
    columns = []
    for prefix in prefixes:
        net, meta = load_network(prefix, args.epoch, [mx.cpu()])
        if list(meta['classes']) != list(cfg.classes):
            raise cli.UsageError('run %s was trained on the classes %s, run %s on %s: draw runs of one set of classes'
                                 % (prefix, meta['classes'], prefixes[0], cfg.classes))
        net.hybridize(static_alloc=True)
        preds = []
        for image, mask, _ in items:
            x, _ = segdata.val_sample(image, mask, cfg.mean, cfg.std)
            preds.append(mx.nd.argmax(net(mx.nd.array(x[None])), axis=1)[0].asnumpy().astype(np.uint8))
        columns.append(('%s\nepoch %s' % (os.path.basename(prefix), meta.get('epoch')), preds))
    from .plotting import pyplot, save
    palette = segdata.voc_colormap(256)
    plt = pyplot()
    n_cols = 2 + len(columns)
    fig, axes = plt.subplots(len(items), n_cols, figsize=(2.2 * n_cols, 2.2 * len(items)), squeeze=False)
    for row, (image, mask, _) in enumerate(items):
        panels = [('image', segdata.read_image(image)),
                  ('ground truth', coloured(segdata.read_mask(mask, check_palette=False), palette))]
        panels += [(title, coloured(preds[row], palette)) for title, preds in columns]
        for col, (title, picture) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(picture, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
    save(fig, args.out, args.title)
    print('%s: %d image(s) x %d run(s)' % (args.out, len(items), len(columns)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
