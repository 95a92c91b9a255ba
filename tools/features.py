"""Load a checkpointed network with taps and read its feature maps on images."""
import itertools
import os

import numpy as np

_COUNTER = itertools.count()


# A legacy Module checkpoint has no metadata: it reads raw pixels, as the original's
# teachers do (their first layer is a BatchNorm on the input).
LEGACY_META = {'network': 'legacy checkpoint', 'mean': [0.0], 'std': [1.0]}


def _legacy_epoch(prefix_path, tag):
    if tag != 'best':
        return int(tag)
    folder, name = os.path.split(prefix_path)
    epochs = sorted(int(f[len(name) + 1:-7]) for f in os.listdir(folder or '.')
                    if f.startswith(name + '-') and f.endswith('.params') and f[len(name) + 1:-7].isdigit())
    if not epochs:
        raise IOError('legacy checkpoint %s-symbol.json has no %s-NNNN.params next to it' % (prefix_path, name))
    return epochs[-1]


def load_tapped(prefix_path, taps, tag='best'):
    """(x -> (logits, taps...) block, metadata) of a run of this project or, where
    prefix_path-symbol.json exists instead, of a legacy MXNet Module checkpoint (epoch `tag`,
    or its latest for 'best'; taps by internal name such as bn1_output)."""
    import mxnet as mx
    import symbols
    from core import checkpoint
    from tools.cli import require_finite
    if os.path.isfile(prefix_path + '-symbol.json'):
        epoch = _legacy_epoch(prefix_path, tag)
        net = symbols.load_legacy_network(prefix_path, epoch, mx.cpu())
        require_finite(net, prefix_path, epoch)
        return symbols.with_taps(net, taps), dict(LEGACY_META)
    net, meta = checkpoint.load_network(prefix_path, tag, mx.cpu(), prefix='view%d_' % next(_COUNTER))
    require_finite(net, prefix_path, tag)
    return symbols.with_taps(net, taps), meta


def pack_images(prefix, count, channels, size, resize=None):
    """The first `count` images (uint8 N x C x H x W) and labels of a RecordIO pack, unnormalised
    (shorter side to `resize` first if given, then the centre size x size crop)."""
    from data.packiters import image_record_iter
    extra = {'resize': resize} if resize else {}
    it = image_record_iter(path_imgrec=prefix + '.rec', path_imgidx=prefix + '.idx',
                           data_shape=(channels, size, size), batch_size=count, shuffle=False, **extra)
    batch = it.next()
    return batch.data[0].asnumpy().astype(np.uint8), batch.label[0].asnumpy().astype(int)


def tap_outputs(block, images, mean, std):
    """Numpy outputs [logits, tap_1, ...] of `block` on uint8 images (N, C, H, W)."""
    import mxnet as mx
    c = images.shape[1]
    m = np.asarray(mean if len(mean) == c else list(mean) * c, np.float32).reshape(1, c, 1, 1)
    s = np.asarray(std if len(std) == c else list(std) * c, np.float32).reshape(1, c, 1, 1)
    out = block(mx.nd.array((images.astype(np.float32) - m) / s))
    out = out if isinstance(out, (list, tuple)) else [out]
    return [o.asnumpy() for o in out]


def parse_view(text, label=True, option=None):
    """'LABEL=PREFIX:TAP' (or 'PREFIX:TAP' with label=False) -> (label, prefix, tap); UsageError
    (naming `option`, e.g. '--student') when the PREFIX or the TAP is missing."""
    from tools.cli import UsageError
    name, rest = text.split('=', 1) if label and '=' in text else (None, text)
    prefix, _, tap = rest.rpartition(':')
    if not prefix or not tap:
        raise UsageError('%s%r: expected %sPREFIX:TAP, e.g. %smodel/run:stage3_pre'
                         % (option + ' ' if option else '', text, 'LABEL=' if label else '',
                            'student=' if label else ''))
    return name or os.path.basename(prefix), prefix, tap


def val_images(meta, data_dir, count, at_most=False):
    """The first `count` validation images (uint8 N x C x H x W) of the data a checkpoint was trained
    on (`meta`: dataset, in_channels, image_size), read from `data_dir`; with `at_most`, fewer when
    the validation set is smaller (else that is a UsageError)."""
    from tools.cli import UsageError
    dataset, channels, size = meta.get('dataset'), meta.get('in_channels', 3), meta.get('image_size')
    if dataset in ('cifar10', 'cifar100'):
        from data.cifar import load_cifar
        _, (x, _) = load_cifar(data_dir, dataset)
        count = min(count, len(x)) if at_most else count
        if count > len(x):
            raise UsageError('--images %d: the validation set in %s has %d images; ask for at most that many'
                             % (count, data_dir, len(x)))
        return x[:count].transpose(0, 3, 1, 2).copy()
    from data import check_pack, check_channels
    from data.packfile import ensure_decodable
    from data.packiters import centre_crop_resize
    prefix = os.path.join(data_dir, 'val')
    have = check_pack(prefix)
    count = min(count, have) if at_most else count
    if count > have:
        raise UsageError('--images %d: the validation pack %s.rec has %d images; ask for at most that many'
                         % (count, prefix, have))
    # as in training: the resizing iterator aborts on an image that does not decode, the others
    # would give garbage pixels (free for packs the builder made); the images must be of the run's kind
    ensure_decodable(prefix)
    from data import DataError
    try:
        check_channels(prefix, channels, dataset)
    except DataError:
        raise UsageError('the run was trained on %d-channel (%s) %s images, but the pack %s.rec holds %s ones: give '
                         '--data-dir of data like its run\'s' % (channels, 'grayscale' if channels == 1 else 'colour',
                                                                  dataset, prefix, 'colour' if channels == 1 else
                                                                  'grayscale'))
    resize = centre_crop_resize(size) if dataset == 'imagenet' else None
    return pack_images(prefix, count, channels, size, resize)[0]


def pool_to(fmap, h, w):
    """Adaptive average pooling of (N, C, H, W) numpy maps to (N, C, h, w)."""
    n, c, hh, ww = fmap.shape
    if (hh, ww) == (h, w):
        return fmap
    rows = [(i * hh // h, -(-(i + 1) * hh // h)) for i in range(h)]
    cols = [(j * ww // w, -(-(j + 1) * ww // w)) for j in range(w)]
    return np.stack([np.stack([fmap[:, :, a:b, p:q].mean(axis=(2, 3)) for p, q in cols], axis=-1)
                     for a, b in rows], axis=-2)


def run_data_dir(meta, prefix):
    """The data_dir the run of checkpoint metadata `meta` (run `prefix`) was trained on, as its saved
    configuration says (a relative one from the folder the run was started in, where it is not found
    from here); UsageError asking for --data-dir when it is not known or no longer there."""
    from tools.cli import UsageError
    saved = (meta.get('config') or {}).get('data_dir')
    if not saved:
        raise UsageError('run %s does not say which data it was trained on (a checkpoint older than its saved '
                         'configuration): give --data-dir, the folder of its validation data' % prefix)
    if not os.path.isabs(saved) and not os.path.isdir(saved) and meta.get('cwd') and \
            os.path.isdir(os.path.join(meta['cwd'], saved)):
        saved = os.path.join(meta['cwd'], saved)
    if not os.path.isdir(saved):
        raise UsageError('run %s was trained on data_dir=%s, which is not there any more: give --data-dir, the folder '
                         'of its validation data now' % (prefix, saved))
    return saved


def view_maps(views, data_dir, count, epoch='best'):
    """Images and [(label, tap maps)] for views [(label, prefix, tap)] on the same validation images."""
    loaded = [(name,) + load_tapped(prefix, [tap], epoch) for name, prefix, tap in views]
    runs = [(meta, prefix) for (_, _, meta), (_, prefix, _) in zip(loaded, views) if 'dataset' in meta]
    if not runs:
        from tools.cli import UsageError
        raise UsageError('the views are all legacy checkpoints: add a run of this project, whose metadata '
                         'says which data and image size to read')
    kinds = sorted({(meta.get('in_channels', 3), meta.get('image_size')) for meta, _ in runs}, key=str)
    if len(kinds) > 1:
        from tools.cli import UsageError
        raise UsageError('the views are runs of different images (%s): every view reads the same images, so give '
                         'runs trained on the same data' % ', '.join(
                             '%s: %s-channel %sx%s' % (prefix, meta.get('in_channels', 3), meta.get('image_size'),
                                                       meta.get('image_size')) for meta, prefix in runs))
    if data_dir is None:
        data_dir = run_data_dir(*runs[0])
    images = val_images(runs[0][0], data_dir, count)
    out = [(name, tap_outputs(block, images, meta['mean'], meta['std'])[1]) for name, block, meta in loaded]
    for (name, m), (_, prefix, tap) in zip(out, views):
        if m.ndim != 4:
            from tools.cli import UsageError
            raise UsageError('view %s=%s:%s: tap %r has shape %s per image, not a feature map (C, H, W); choose a '
                             'map tap such as a stage output' % (name, prefix, tap, tap, m.shape[1:]))
    h = min(m.shape[2] for _, m in out)
    w = min(m.shape[3] for _, m in out)
    return images, [(name, pool_to(m, h, w)) for name, m in out]


def add_run_arguments(parser, images):
    """The options the figure commands share: data, image count (>= 1), epoch (a number or 'best'),
    output; argparse rejects a wrong value with one error line."""
    from tools import cli
    parser.add_argument('--data-dir', help="the validation data of the runs (default: the first run's data_dir, as "
                        'its saved configuration says)')
    parser.add_argument('--images', type=cli.positive_int, default=images, help='validation images to read')
    parser.add_argument('--epoch', default='best', type=cli.epoch_arg,
                        help='checkpoint epoch of every run, or "best"')
    parser.add_argument('--out', required=True, help='PNG to write')


def run_figure(args, views, draw):
    """Check the views ([(option, 'LABEL=PREFIX:TAP' text, has label)]), --data-dir and --out before
    any work, read the views' maps and call draw(images, maps) -> message; return 0. A user error
    propagates to the command's `tools.cli.command` wrapper (one error line, exit status 2); the
    figure is written whole or not at all."""
    from tools import cli
    parsed = [parse_view(text, label, option) for option, text, label in views]
    for (option, _, _), (_, prefix, _) in zip(views, parsed):
        cli.checkpoint_prefix(prefix, option, legacy=True)
    if args.data_dir is not None:
        cli.existing_dir(args.data_dir, '--data-dir', 'give the folder holding the validation data the runs were '
                         'trained on (e.g. datasets/fashion_mnist)')
    from tools.plotting import figure_path
    figure_path(args.out)
    images, maps = view_maps(parsed, args.data_dir, args.images, args.epoch)
    print(draw(images, maps))
    return 0

