"""Neuron activation heat maps blended over the input images (the NST paper's
Figure 2): for each image, the input and the maps of chosen channels of one or
more networks, upsampled to the image and overlaid in colour.

    python -m tools.heatmaps --net "teacher=model/T:stage3_pre" --net "NST student=model/S:stage3_pre" \
        [--data-dir DIR] [--images 4] [--channels 3] [--epoch best] --out heatmaps.png

Each network shows its `--channels` most active channels of the tap. PREFIX is
a run of this project or a legacy MXNet Module checkpoint (PREFIX-symbol.json). The images are the first validation images of
the data the first run of this project was trained on (its saved data_dir),
unless --data-dir names others.
"""
import sys

import numpy as np

from tools import cli


def _upsample(a, size):
    import cv2
    return cv2.resize(a.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def blend(image, act, alpha=0.5):
    """RGB float image in [0, 1]: `image` (H, W) or (H, W, 3) uint8 under the colour-mapped `act` (h, w)."""
    from .plotting import pyplot
    pyplot()
    from matplotlib import cm
    img = image.astype(np.float32) / 255.0
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    a = _upsample(act, img.shape[:2])
    a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
    return (1 - alpha) * img + alpha * cm.jet(a)[..., :3]


def top_channels(fmaps, k):
    """The k channels with the largest mean activation over (N, C, H, W)."""
    return list(np.argsort(-fmaps.mean(axis=(0, 2, 3)))[:k])


def plot(images, rows, out, channels=3):
    """images: uint8 (N, C, H, W); rows: [(name, fmaps (N, C', h, w))]. For every image a row of
    the input and, for every network, its `channels` most active channels. Returns the panel count."""
    from .plotting import pyplot, save
    plt = pyplot()
    n = len(images)
    chosen = [(name, f, top_channels(f, min(channels, f.shape[1]))) for name, f in rows]   # (at most its tap's)
    cols = 1 + sum(len(chans) for _, _, chans in chosen)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.7 * n), squeeze=False)
    panels = 0
    for i in range(n):
        img = images[i].transpose(1, 2, 0)
        img = img[..., 0] if img.shape[2] == 1 else img
        axes[i][0].imshow(img, cmap='gray' if img.ndim == 2 else None)
        axes[i][0].set_title('input' if i == 0 else '', fontsize=8)
        col = 1
        for name, f, chans in chosen:
            for c in chans:
                axes[i][col].imshow(blend(img, f[i, c]))
                if i == 0:
                    axes[i][col].set_title('%s ch%d' % (name, c), fontsize=7)
                col += 1
                panels += 1
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    save(fig, out)
    return panels


@cli.command
def main(argv=None):
    """Write the heat-map figure; 2 with one error line on a user's mistake."""
    from tools import features
    p = cli.parser('heatmaps', __doc__)
    p.add_argument('--net', action='append', required=True, help='LABEL=PREFIX:TAP, once per network')
    p.add_argument('--channels', type=cli.positive_int, default=3, help='channels shown per network')
    features.add_run_arguments(p, images=4)
    args = p.parse_args(argv)

    def draw(images, maps):
        fewer = [('the tap' if len(maps) == 1 else '%s\'s tap' % name) + ' has %d' % f.shape[1] for name, f in maps
                 if f.shape[1] < args.channels]
        note = ('; --channels %d: %s, all drawn' % (args.channels, ', '.join(fewer))) if fewer else ''
        return 'wrote %s (%d panels)%s' % (args.out, plot(images, maps, args.out, args.channels), note)
    return features.run_figure(args, [('--net', v, True) for v in args.net], draw)


if __name__ == '__main__':
    sys.exit(main())
