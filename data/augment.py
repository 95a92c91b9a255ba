"""fb.resnet's ImageNet augmentation and the validation crop, on one decoded image, with OpenCV.

Training: random-resized crop (area 0.08-1 of the image, aspect ratio 3/4-4/3, 10 tries, else
the centre square), bicubic resize to S x S, mirror with probability 1/2 (`crop_image`), then
colour jitter (brightness, contrast, saturation, each factor 1 +- 0.4), PCA lighting (standard
deviation 0.1) and (x - mean) / std, which together are one affine map of each pixel's RGB
(`colour_affine`). Validation: the shorter side bicubic to `resize`, the centre S x S
(`centre_image`), then (x - mean) / std (`normalise_affine`). For a GPU, the decoding workers
write RGB uint8 planes (3, S, S) (`write_planes`) and the affine maps (3 x 4 per image) go with
the batch, to run on the device (`data.device.colour_apply`), as GPU input pipelines do: a
quarter of the bytes to write and to copy, and no float work per pixel on the cores that decode.
For a CPU, which would do that float work anyway, the workers apply the map themselves and write
float32 planes (`write_affine`). The input is the BGR uint8 (H, W, 3) image cv2.imdecode gives.

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
#: the RGB weights of gray, as OpenCV's and PIL's conversion
GRAY = np.array([0.299, 0.587, 0.114])
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


def colour_affine(draws, mean, std):
    """(affine (rows, 3, 4) float32, contrast (rows, 3) float64): for each row of draws
    (`draw_augmentation`), the affine map [A | c] of fb.resnet's colour jitter, its PCA lighting and
    the normalisation of an RGB image x, per pixel
        out_k = sum_j A_kj x_j + c_k + contrast_k gray(means)         (k, j over R, G, B)
    where `means` are the RGB channel means of the augmented image (`finish_colour` adds that term
    once they are known, in the decoding worker).

    Jitter blends x with black (brightness, factor fb), with its mean gray (contrast, fc) and
    with its gray image (saturation, fs): x -> f x + (1 - f) o, gray = 0.299 R + 0.587 G + 0.114 B.
    Each blend is linear in x and gray(a x + b gray(x) + c) = (a + b) gray(x) + c for a gray c, so
    the three compose exactly, in any order (fb.resnet's random order changes nothing):
    x -> a x + b gray(x) + d mean(gray(x)) with a = fb fc fs, b = fb fc (1 - fs), d = fb (1 - fc),
    and mean(gray(x)) = gray(means). Lighting adds EIGVEC (light * EIGVAL); then (. - mean_k) / std_k:
        A_kj = (a [k = j] + b g_j) / std_k,  c_k = (lighting_k - mean_k) / std_k,  contrast_k = d / std_k.
    No clipping between the steps, as in fb.resnet."""
    draws = np.asarray(draws, np.float64).reshape(-1, DRAWS)
    std, mean = np.asarray(std, np.float64), np.asarray(mean, np.float64)
    fb, fc, fs = draws[:, COL_ALPHA].T
    a, b, d = fb * fc * fs, fb * fc * (1.0 - fs), fb * (1.0 - fc)
    lighting = (draws[:, COL_LIGHT] * EIGVAL).dot(EIGVEC.T)              # (rows, 3): RGB offsets
    matrix = a[:, None, None] * np.eye(3) + b[:, None, None] * GRAY[None, None, :]
    affine = np.concatenate([matrix, (lighting - mean)[:, :, None]], axis=2) / std[None, :, None]
    return affine.astype(np.float32), np.outer(d, 1.0 / std)


def normalise_affine(rows, mean, std):
    """(rows, 3, 4) float32: the affine map [A | c] of the normalisation alone, (x_k - mean_k) / std_k
    (validation), in the layout of `colour_affine`."""
    std, mean = np.asarray(std, np.float64), np.asarray(mean, np.float64)
    one = np.concatenate([np.diag(1.0 / std), (-mean / std)[:, None]], axis=1)
    return np.repeat(one[None], rows, axis=0).astype(np.float32)


def finish_colour(affine, contrast, image):
    """Complete one image's `colour_affine` row in place: c_k += contrast_k gray(means), with the
    RGB channel means of `image`, the augmented BGR uint8 (S, S, 3)."""
    import cv2
    blue, green, red = cv2.mean(image)[:3]
    gray = GRAY[0] * red + GRAY[1] * green + GRAY[2] * blue
    affine[:, 3] += (np.asarray(contrast) * gray).astype(np.float32)


def crop_image(img, p, out):
    """fb.resnet's random-resized crop, bicubic resize and mirror of the BGR uint8 image `img`
    (H, W, 3) with the draws `p` (a row of `draw_augmentation`), written into `out` (S, S, 3) uint8
    BGR, which is returned."""
    import cv2
    size = out.shape[0]
    h, w = img.shape[:2]
    x, y, cw, ch = random_resized_box(h, w, p[COL_AREA], p[COL_RATIO], p[COL_X], p[COL_Y])
    _written(cv2.resize(img[y:y + ch, x:x + cw], (size, size), dst=out, interpolation=cv2.INTER_CUBIC), out)
    if p[COL_FLIP] < 0.5:
        _written(cv2.flip(out, 1, dst=out), out)
    return out


def centre_image(img, size, resize):
    """Validation: the shorter side of the BGR uint8 image `img` bicubic-resized to `resize` (the
    longer to floor(resize x longer / shorter), as ImageRecordIter's `resize`), then its centre
    `size` x `size` (a view, BGR uint8)."""
    import cv2
    h, w = img.shape[:2]
    nh, nw = (resize * h // w, resize) if h > w else (resize, resize * w // h)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
    y, x = (nh - size) // 2, (nw - size) // 2
    return img[y:y + size, x:x + size]


def write_planes(image, out):
    """The BGR uint8 image `image` (S, S, 3) as RGB uint8 planes into `out` (3, S, S): one cv2.split."""
    import cv2
    result = cv2.split(image, [out[2], out[1], out[0]])
    for k in range(3):
        _written(result[k], out[2 - k])


def write_affine(image, affine, out, scratch):
    """The affine map `affine` [A | c] (3, 4) of RGB (`colour_affine`, `normalise_affine`) applied to
    the BGR uint8 image `image` (S, S, 3), written as RGB float32 planes into `out` (3, S, S); the
    decoding worker's own work when the network runs on the CPU. `scratch`: two (S, S, 3) float32
    arrays, reused image after image."""
    import cv2
    pixels, mapped = scratch
    np.copyto(pixels, image, casting='unsafe')
    bgr = np.concatenate([affine[:, 2::-1], affine[:, 3:]], axis=1)        # the columns for B, G, R inputs
    _written(cv2.transform(pixels, bgr, dst=mapped), mapped)
    result = cv2.split(mapped, [out[0], out[1], out[2]])
    for k in range(3):
        _written(result[k], out[k])


def _written(result, target):
    """RuntimeError unless OpenCV wrote `result` into `target` itself (OpenCV 4 writes into the
    `dst` it is given when that fits)."""
    if result is not target and result.__array_interface__['data'][0] != target.__array_interface__['data'][0]:
        raise RuntimeError('OpenCV did not write into the given batch array')
