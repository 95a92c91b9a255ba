"""What `python -m tools.detection` shows of Faster R-CNN runs: Table 4, curves, detections.

- `results_table(rows, classes)`: the paper's Table 4 (backbone, method, the
  paper's VOC07 mAP, the mAP measured) and the per-class AP of every row,
  markdown; `rows` are dicts with network, method, paper_map, map, per_class.
- `plot_curves(runs, out)`: VOC07 mAP and the four training losses against
  epoch, one line per run, from the runs' records (log_dir/<prefix>.jsonl).
- `plot_detections(images, out, classes, threshold)`: a grid of test images
  with their ground-truth boxes (dashed) and the detections scoring at least
  `threshold` (class and score).
Figures are written whole or not at all (tools/plotting.py).
"""
import math

import numpy as np

from .markdown import cell
from .plotting import pyplot, save

COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#46f0f0', '#f032e6', '#bcf60c', '#fabebe',
           '#008080', '#e6beff', '#9a6324', '#800000', '#aaffc3', '#808000', '#ffd8b1', '#000075', '#808080',
           '#000000', '#ffe119']
TERMS = ('rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box')


def _pct(value):
    return 'n/a' if value is None or value != value else '%.1f' % (100 * value)


def results_table(rows, classes):
    """Table 4's format, then the per-class AP (%) of each row; markdown text."""
    lines = ['| backbone | method | paper VOC07 mAP | VOC07 mAP here |', '|---|---|---|---|']
    for r in rows:
        paper = '%.1f' % r['paper_map'] if r.get('paper_map') is not None else '-'
        lines.append('| %s | %s | %s | %s |' % (cell(r['network']), cell(r['method']), paper, _pct(r['map'])))
    lines += ['', '| method | ' + ' | '.join(cell(c) for c in classes) + ' |', '|---|' + '---|' * len(classes)]
    for r in rows:
        lines.append('| %s | %s |' % (cell(r['method']), ' | '.join(_pct(r['per_class'].get(c)) for c in classes)))
    return '\n'.join(lines)


def plot_curves(runs, out, title=''):
    """`runs`: [(label, records)], records as core/records.read_records gives them. Draws VOC07 mAP
    (%) and the training losses per epoch; returns the number of runs drawn."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, records in runs:
        epochs = [r['epoch'] + 1 for r in records]
        line, = axes[0].plot(epochs, [100 * r.get('val_map', float('nan')) for r in records], marker='o',
                             label=label)
        total = [sum(r.get('train_' + t, 0.0) for t in TERMS) for r in records]
        axes[1].plot(epochs, total, color=line.get_color(), label=label)
    from matplotlib.ticker import MaxNLocator
    axes[0].set_ylabel('VOC07 mAP (%)')
    axes[1].set_ylabel('training loss (RPN + RCNN, mean per epoch)')
    for ax in axes:
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save(fig, out, title)
    return len(runs)


def plot_detections(images, out, classes, threshold=0.5, title=''):
    """`images`: [(name, image HxWx3 uint8, gt label (N, 6), (ids, scores, boxes))]. Draws each image
    with its ground truth (black, dashed) and its detections scoring >= threshold (yellow, labelled
    with class and score on the class's colour); returns the number of detections drawn."""
    plt = pyplot()
    cols = min(4, len(images))
    rows = int(math.ceil(len(images) / float(cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False)
    drawn = 0
    for ax, (name, img, label, (ids, scores, boxes)) in zip(axes.flat, images):
        ax.imshow(img)
        ax.set_title(name, fontsize=8)
        ax.axis('off')
        for x0, y0, x1, y1, c, _ in np.asarray(label).reshape((-1, 6)):
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linestyle='--', linewidth=1.2,
                                       edgecolor='black'))
        for c, s, (x0, y0, x1, y1) in zip(ids, scores, boxes):
            if s < threshold:
                continue
            colour = COLOURS[int(c) % len(COLOURS)]
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=2, edgecolor='yellow'))
            ax.text(x0, y0, '%s %.2f' % (classes[int(c)], s), fontsize=7, color='white', va='bottom',
                    bbox=dict(facecolor=colour, alpha=0.8, pad=1, edgecolor='none'))
            drawn += 1
    for ax in list(axes.flat)[len(images):]:
        ax.axis('off')
    save(fig, out, title or 'detections scoring >= %g (yellow); ground truth black, dashed' % threshold)
    return drawn


__all__ = ['results_table', 'plot_curves', 'plot_detections']
