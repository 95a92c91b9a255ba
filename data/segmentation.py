"""Semantic segmentation data in the PASCAL VOC layouts, checked whole before any training.

- VOC 2012 (`VOCdevkit/VOC2012/`): `JPEGImages/ID.jpg`, `SegmentationClass/ID.png` (palette
  PNGs: the pixel values are class indices, 255 marks borders and "difficult" pixels, ignored),
  `ImageSets/Segmentation/{train,val,trainval}.txt` (one ID a line).
- SBD, the augmented training set (`benchmark_RELEASE/dataset/` or gluoncv's `VOCaug/dataset/`):
  `img/ID.jpg`, `cls/ID.mat` (MATLAB files, `GTcls.Segmentation`), `train.txt`, `val.txt`.

gluoncv's `VOCSegmentation` / `VOCAugSegmentation` read these layouts too, but stop on a missing
file with a bare assertion and read 'train' as trainval.txt; here each split is read as named, and
every mask is checked before training (`check_items`): a listed file that is missing, a mask whose
size differs from its image, a value that is neither a class nor 255, an RGB mask, a palette PNG
whose palette is not VOC's. Each is one `SegmentationDataError` naming the file and the fix.

Training samples (`train_sample`): random scale in [scale_min, scale_max] (image bilinear, mask
nearest), padded to the crop size (image with the mean, mask with 255), a random crop_size square,
a random horizontal flip, normalised ((pixel - mean) / std, RGB, CHW float32); every random number
comes from (seed, epoch, position), so a resumed run sees the samples an uninterrupted one does.
Validation (`val_sample`): the whole image, normalised, one image a device (single scale).
"""
import os

import numpy as np

from core.errors import DataError

IGNORE = 255
VOC_CLASSES = ['background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor']


class SegmentationDataError(DataError):
    """Segmentation data that cannot be trained on as it is; names the file and the fix."""


def voc_colormap(n=256):
    """The PASCAL VOC palette: (n, 3) uint8, colour of class i from the bits of i."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def _ids(list_file, fix):
    if not os.path.isfile(list_file):
        raise SegmentationDataError('image list %s does not exist: %s' % (list_file, fix))
    with open(list_file) as f:
        ids = [line.strip().split()[0] for line in f if line.strip()]
    if not ids:
        raise SegmentationDataError('image list %s is empty: list one image ID a line' % list_file)
    from .idlists import once_each
    return [ids[k] for k in once_each(ids, list_file)]


def voc_items(voc_root, split):
    """[(image, mask)] of VOC 2012 split `split` under `voc_root` (the VOCdevkit folder, or its
    VOC2012 folder)."""
    base = voc_root if os.path.isdir(os.path.join(voc_root, 'SegmentationClass')) else \
        os.path.join(voc_root, 'VOC2012')
    if not os.path.isdir(base):
        raise SegmentationDataError('voc_root=%s holds no VOC2012 folder (VOCdevkit/VOC2012/JPEGImages, '
                                    'SegmentationClass, ImageSets/Segmentation): give the VOCdevkit folder' % voc_root)
    list_file = os.path.join(base, 'ImageSets', 'Segmentation', split + '.txt')
    ids = _ids(list_file, 'VOC 2012 lists train.txt, val.txt and trainval.txt there; check the split name')
    return [(os.path.join(base, 'JPEGImages', i + '.jpg'), os.path.join(base, 'SegmentationClass', i + '.png'),
             list_file) for i in ids]


def sbd_items(sbd_root, split):
    """[(image, mask)] of SBD split `split` ('train' or 'val') under `sbd_root` (its `dataset`
    folder: img/, cls/, train.txt, val.txt)."""
    list_file = os.path.join(sbd_root, split + '.txt')
    ids = _ids(list_file, 'give sbd_root=the SBD folder that holds img/, cls/, train.txt and val.txt '
                          '(benchmark_RELEASE/dataset)')
    return [(os.path.join(sbd_root, 'img', i + '.jpg'), os.path.join(sbd_root, 'cls', i + '.mat'), list_file)
            for i in ids]


def read_mask(path, check_palette=True):
    """A mask as class indices, (H, W) uint8: a palette ('P') or grayscale ('L') PNG, or an SBD .mat
    file. SegmentationDataError for an RGB mask or a palette other than VOC's (`check_palette`)."""
    if path.endswith('.mat'):
        from scipy.io import loadmat
        try:
            m = loadmat(path)['GTcls'][0]['Segmentation'][0]
        except Exception as e:
            raise SegmentationDataError('SBD mask %s cannot be read (%s: %s): copy it again from the SBD archive'
                                        % (path, type(e).__name__, str(e)[:120]))
        return np.asarray(m, dtype=np.uint8)
    from PIL import Image
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:
        raise SegmentationDataError('mask %s cannot be read (%s): copy it again' % (path, str(e)[:120]))
    if img.format == 'JPEG':         # (lossy: the edges between classes blur into values of other classes)
        raise SegmentationDataError('mask %s holds JPEG data (saved as JPEG, then renamed?): JPEG blurs the edges '
                                    'between classes into other values; save the mask as a PNG (a VOC palette PNG, or '
                                    'a grayscale PNG of class indices)' % path)
    if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
        raise SegmentationDataError('mask %s is a 16- or 32-bit image (mode %s): masks are 8-bit PNGs of class indices '
                                    '(0..254, 255 for "ignore"); save it as an 8-bit grayscale or VOC palette PNG'
                                    % (path, img.mode))
    if img.mode not in ('P', 'L'):
        raise SegmentationDataError('mask %s is a %s image: a mask holds class indices (a VOC palette PNG, or a '
                                    'grayscale PNG of indices); convert its colours to indices' % (path, img.mode))
    mask = np.asarray(img, dtype=np.uint8)
    if img.mode == 'P' and check_palette:
        palette = np.asarray(img.getpalette()[:768], dtype=np.uint8).reshape(-1, 3)
        voc = voc_colormap(len(palette))
        used = [int(v) for v in np.unique(mask) if v != IGNORE]
        beyond = [v for v in used if v >= len(palette)]
        if beyond:
            raise SegmentationDataError('mask %s is a palette PNG whose pixels use index %d, beyond its palette of %d '
                                        'colours (the file was written wrongly): save the mask with the VOC palette, '
                                        'or as a grayscale PNG of class indices' % (path, beyond[0], len(palette)))
        wrong = [v for v in used if not (palette[v] == voc[v]).all()]
        if wrong:
            v = wrong[0]
            raise SegmentationDataError('mask %s is a palette %s of another palette: index %d is drawn as %s, VOC '
                                        'draws it as %s; the indices may not be VOC\'s classes: save the mask with '
                                        'the VOC palette (or as a grayscale PNG of class indices)'
                                        % (path, 'PNG' if img.format in ('PNG', None) else 'image (%s data)' % img.format,
                                           v, tuple(palette[v]), tuple(voc[v])))
    return mask


def image_size(path):
    """(height, width) of an image from its header."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception as e:
        raise SegmentationDataError('image %s cannot be read (%s): copy it again' % (path, str(e)[:120]))


def check_items(items, num_classes, bar=None, seen=None, fix='fix the mask, or list every class in classes=[...]'):
    """Check every (image, mask, list file) of `items` (see the module doc); the number checked.
    `seen`, a set, gets every class index the masks hold; `fix`: what a mask with a value beyond the
    classes asks for (evaluating a checkpoint, whose classes are fixed: other data)."""
    for image, mask, list_file in items:
        for path, what in ((image, 'image'), (mask, 'mask')):
            if not os.path.isfile(path):
                raise SegmentationDataError('%s %s, listed in %s, does not exist: copy it, or remove its line from the '
                                            'list' % (what, path, list_file))
        m = read_mask(mask)
        size = image_size(image)
        if m.shape != size:
            raise SegmentationDataError('mask %s is %dx%d but its image %s is %dx%d: a mask has its image\'s size'
                                        % (mask, m.shape[1], m.shape[0], image, size[1], size[0]))
        values = np.unique(m)
        if seen is not None:
            seen.update(int(v) for v in values if v != IGNORE)
        bad = [int(v) for v in values if v >= num_classes and v != IGNORE]
        if bad:
            raise SegmentationDataError('mask %s has the value %d, which is neither a class (0..%d of the %d classes) '
                                        'nor %d (ignored): %s' % (mask, bad[0], num_classes - 1, num_classes, IGNORE, fix))
        if bar is not None:
            bar.update(1)
    return len(items)


def read_image(path):
    """RGB uint8 (H, W, 3), as stored: an EXIF orientation is not applied (the mask is drawn on the
    stored pixels, and the header check reads the stored size)."""
    import cv2
    img = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise SegmentationDataError('image %s does not decode: copy it again' % path)
    return img[:, :, ::-1]


def normalise(img, mean, std):
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 (pixel - mean) / std."""
    x = (img.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def train_sample(image_path, mask_path, rng, crop, scale_min, scale_max, mean, std):
    """(image (3, crop, crop) float32, mask (crop, crop) float32) augmented with `rng` (a numpy
    Generator): random scale, pad, random crop, random flip (see the module doc)."""
    import cv2
    img, mask = read_image(image_path), read_mask(mask_path, check_palette=False)
    scale = rng.uniform(scale_min, scale_max)
    h, w = mask.shape
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
    ph, pw = max(crop - nh, 0), max(crop - nw, 0)
    if ph or pw:
        fill = [int(round(m)) for m in mean]
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=fill)
        mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE)
    y = int(rng.integers(0, img.shape[0] - crop + 1))
    x = int(rng.integers(0, img.shape[1] - crop + 1))
    img, mask = img[y:y + crop, x:x + crop], mask[y:y + crop, x:x + crop]
    if rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
    return normalise(img, mean, std), mask.astype(np.float32)


def val_sample(image_path, mask_path, mean, std):
    """(image (3, H, W) float32, mask (H, W) float32): the whole image, normalised."""
    return normalise(read_image(image_path), mean, std), read_mask(mask_path, check_palette=False).astype(np.float32)
