"""fb.resnet's ImageNet augmentation and the validation crop, on one decoded image, with OpenCV.

Training (`augment_image`): random-resized crop (area 0.08-1 of the image, aspect ratio 3/4-4/3,
10 tries, else the centre square), bicubic resize to S x S, mirror with probability 1/2, colour
jitter (brightness, contrast, saturation, each factor 1 +- 0.4) and PCA lighting (standard
deviation 0.1), then (x - mean) / std. Validation (`centre_image`): the shorter side bicubic to
`resize`, the centre S x S, (x - mean) / std. Both write RGB float32 planes (3, S, S) into a given
array, from the BGR uint8 (H, W, 3) image cv2.imdecode gives.

Every random number of a sample is in one row of `draw_augmentation`, drawn from a generator
seeded by (seed, epoch, batch): the result of a sample does not depend on which thread computes
it, or when.
"""
import math

import numpy as np

#: fb.resnet's PCA lighting: ImageNet's RGB eigenvalues (on the 0-255 scale) and eigenvectors
EIGVAL = np.array([0.2175, 0.0188, 0.0045]) * 255.0
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                   [-0.5808, -0.0045, -0.8140],
                   [-0.5836, -0.6948, 0.4203]])
CROP_TRIES = 10
AREA = (0.08, 1.0)
LOG_RATIO = (math.log(3.0 / 4.0), math.log(4.0 / 3.0))
JITTER = 0.4
LIGHTING = 0.1
#: the columns of one sample's row of draws
COL_AREA, COL_RATIO = slice(0, CROP_TRIES), slice(CROP_TRIES, 2 * CROP_TRIES)
COL_X, COL_Y, COL_FLIP = 2 * CROP_TRIES, 2 * CROP_TRIES + 1, 2 * CROP_TRIES + 2
COL_ALPHA, COL_LIGHT = slice(COL_FLIP + 1, COL_FLIP + 4), slice(COL_FLIP + 4, COL_FLIP + 7)
DRAWS = COL_FLIP + 7


def centre_crop_resize(image_size):
    """The shorter side before an image_size centre crop: 256 for 224, as for ImageNet."""
    return int(image_size * 256 / 224)


def generator(*words):
    """A numpy Generator (PCG64) seeded by the integers `words` alone."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(w) % (1 << 64) for w in words])))


def draw_augmentation(seed, epoch, batch, rows):
    """(rows, DRAWS = 29) float64: every random number of the augmentation of the `rows` samples
    of global batch `batch` of `epoch`, from a generator seeded by (seed, epoch, 1, batch) alone.
    Per sample: 10 area fractions ~ U(0.08, 1), 10 log aspect ratios ~ U(log 3/4, log 4/3), the
    crop's x and y as fractions of the room left ~ U(0, 1), a mirror draw ~ U(0, 1) (mirror if
    < 0.5), the brightness, contrast and saturation factors ~ U(0.6, 1.4) and the 3 PCA lighting
    weights ~ N(0, 0.1)."""
    g = generator(seed, epoch, 1, batch)
    return np.concatenate([g.uniform(AREA[0], AREA[1], (rows, CROP_TRIES)),
                           g.uniform(LOG_RATIO[0], LOG_RATIO[1], (rows, CROP_TRIES)),
                           g.random((rows, 3)),
                           g.uniform(1.0 - JITTER, 1.0 + JITTER, (rows, 3)),
                           g.normal(0.0, LIGHTING, (rows, 3))], axis=1)


def random_resized_box(h, w, areas, log_ratios, fx, fy):
    """(x, y, width, height) of fb.resnet's random-resized crop of an h x w image. For the first
    try (area fraction a, log aspect ratio r) whose box fits: width = round(sqrt(a h w e^r)),
    height = round(sqrt(a h w / e^r)), x = floor(fx (w - width + 1)), y = floor(fy (h - height + 1));
    the centre min(h, w) square if no try fits."""
    for area, log_ratio in zip(areas, log_ratios):
        target, ratio = area * h * w, math.exp(log_ratio)
        cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(fx * (w - cw + 1)), int(fy * (h - ch + 1)), cw, ch
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, side, side


def colour_maps(draws, mean, std):
    """(rows, 3, 4) nested lists: for each row of draws (`draw_augmentation`) and RGB output
    channel k, (alpha_k, beta_k, gamma_k, delta_k) such that fb.resnet's colour jitter, its PCA
    lighting and the normalisation of an RGB image x are
        out_k = alpha_k x_k + beta_k gray(x) + gamma_k + delta_k mean(gray(x))
    (gray = 0.299 R + 0.587 G + 0.114 B). Computed for a whole batch at once; `augment_image`
    adds the image's mean gray.

    Jitter blends x with black (brightness, factor fb), with its mean gray (contrast, fc) and
    with its gray image (saturation, fs): x -> f x + (1 - f) o. Each blend is linear in x and
    gray(a x + b gray(x) + c) = (a + b) gray(x) + c for a gray c, so the three compose exactly,
    in any order (fb.resnet's random order changes nothing): x -> a x + b gray(x) + c with
    a = fb fc fs, b = fb fc (1 - fs), c = fb (1 - fc) mean(gray(x)). Lighting adds
    EIGVEC (light * EIGVAL) to c; then (. - mean_k) / std_k. No clipping between the steps, as in
    fb.resnet."""
    draws = np.asarray(draws, np.float64).reshape(-1, DRAWS)
    std, mean = np.asarray(std, np.float64), np.asarray(mean, np.float64)
    fb, fc, fs = draws[:, COL_ALPHA].T
    a = fb * fc * fs
    offsets = (draws[:, COL_LIGHT] * EIGVAL).dot(EIGVEC.T)                # (rows, 3): RGB lighting
    maps = np.stack([np.outer(a, 1 / std), np.outer(fb * fc - a, 1 / std), (offsets - mean) / std,
                     np.outer(fb - fb * fc, 1 / std)], axis=2)
    return maps.tolist()


def augment_image(img, out, p, maps):
    """fb.resnet's training augmentation of the BGR uint8 image `img` (H, W, 3) with the draws `p`
    (a row of `draw_augmentation`) and their colour map `maps` (a row of `colour_maps`):
    normalised RGB float32 written into `out` (3, S, S), one cv2.addWeighted per plane. gray(x)
    is OpenCV's, rounded to uint8 (within 0.5 of the exact one, so out is within 0.4 grey levels
    of fb.resnet's): the exact one in float costs 2% more per image here."""
    import cv2
    size = out.shape[-1]
    h, w = img.shape[:2]
    x, y, cw, ch = random_resized_box(h, w, p[COL_AREA], p[COL_RATIO], p[COL_X], p[COL_Y])
    img = cv2.resize(img[y:y + ch, x:x + cw], (size, size), interpolation=cv2.INTER_CUBIC)
    if p[COL_FLIP] < 0.5:
        cv2.flip(img, 1, dst=img)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    mean_gray = cv2.mean(gray)[0]
    planes = cv2.split(img)
    for k in range(3):                              # RGB out of the BGR planes
        alpha, beta, gamma, delta = maps[k]
        plane = out[k]
        _written(cv2.addWeighted(planes[2 - k], alpha, gray, beta, gamma + delta * mean_gray, dst=plane,
                                 dtype=cv2.CV_32F), plane)


def centre_image(img, out, resize, mean, std):
    """Validation: the shorter side of the BGR uint8 image `img` bicubic-resized to `resize` (the
    longer to floor(resize x longer / shorter), as ImageRecordIter's `resize`), the centre S x S,
    normalised RGB float32 written into `out` (3, S, S): out_k = (x_k - mean_k) / std_k."""
    import cv2
    size = out.shape[-1]
    h, w = img.shape[:2]
    nh, nw = (resize * h // w, resize) if h > w else (resize, resize * w // h)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
    y, x = (nh - size) // 2, (nw - size) // 2
    planes = cv2.split(img[y:y + size, x:x + size])
    for k in range(3):
        s, plane = std[k], out[k]
        _written(cv2.addWeighted(planes[2 - k], 1.0 / s, planes[2 - k], 0.0, -mean[k] / s, dst=plane,
                                 dtype=cv2.CV_32F), plane)


def _written(result, plane):
    """RuntimeError unless OpenCV wrote `result` into `plane` itself (OpenCV 4 returns the `dst`
    it was given when that fits)."""
    if result is not plane:
        raise RuntimeError('OpenCV did not write into the given batch plane')
