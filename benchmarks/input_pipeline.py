"""Input pipeline: images/s of the project's iterators against the decode bound, side by side.

    python -m benchmarks.input_pipeline [--images 2000] [--seconds 2] [--rounds 11] [--paths ...]

Builds its own data in a temporary folder (nothing is downloaded):
  imagenet  photo-like JPEGs of about 500x375 (random sizes around it, quality 90, 106 KB on
            average, as ImageNet's 108 KB), packed by the project's builder
            (`data.pack.build_packs`): training and validation packs;
  fashion   28x28 grayscale PNG packs (blurred shapes) from `data.pack.pack_arrays`;
  cifar     32x32x3 uint8 arrays, as `data.cifar` loads them.
and times, in one run, the methods one after another `--rounds` times (in reverse order every
other round; the median of each is kept, the ratio of each round printed too, and the load
average after each round, so a change of machine load hits all of them alike):
  project  the iterator train.py uses, built by `data.packiters.record_iters` as `data.DataSource`
           builds it, with `--threads` (default: the cores, as data_threads) decoding workers:
           for ImageNet packs `data.decode.DecodeIter` (OpenCV in worker processes) as it feeds
           a GPU (uint8 images and per-image colour maps, the colour step left to the device),
           for Fashion-MNIST packs one ImageRecordIter, for CIFAR `data.arrays.ArrayIter`;
  project_cpu  (ImageNet) DecodeIter as it feeds a network on the CPU: the workers apply the
           colour maps and write float32 images;
  before   the iterator the project used before DecodeIter: one MXNet ImageRecordIter with the
           same keywords as then (`preprocess_threads` = the cores, which MXNet 1.9.1 caps at
           max(cores/2 - 1, 1)); for Fashion-MNIST that is the project's iterator again (the
           path did not change), for CIFAR there is no other (ArrayIter did not change);
  bound    the decode bound: OpenCV (cv2, one OpenCV thread each) in as many processes as cores,
           each holding the pack's own JPEG/PNG bytes in memory (no reading) and running whole
           batches: decode, then for ImageNet training a random-resized crop (area 0.08-1,
           aspect 3/4-4/3, 10 tries, else the centre), resize to 224 (bicubic, the interpolation
           of both iterators) and a random mirror; for validation the shorter side to 256
           (bicubic) and the centre 224; for Fashion-MNIST pad 2, a random 28 crop and a mirror
           (validation: the decode alone); for CIFAR (nothing to decode) pad 4, a random 32 crop
           and a mirror of each image with numpy. Into a uint8 batch: no colour jitter,
           lighting, normalisation or float conversion, which project_cpu also does.
For ImageNet paths, `colour_ms` is the CPU time per batch of `data.device.colour_apply` (the
colour step project leaves to the device) on this machine's CPU, for scale.
Images/s of an iterator counts whole batches (the last one of an epoch included: it is whole)
from the first batch of an epoch on, for `--seconds`, crossing into new epochs (each iterator
built afresh as the trainer does every epoch, its start-up counted), waiting for each batch's
data. One line per path, then one JSON object with every figure.
"""
import argparse
import json
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from core.env import configure_threads, proc_stat

configure_threads()

IMAGENET_MEAN, IMAGENET_STD = [123.68, 116.28, 103.53], [58.395, 57.12, 57.375]


# ---------------------------------------------------------------------------------------------
# data

def photo(rng, h, w):
    """A photo-like colour image: a smooth colour field, coarse and fine texture, sensor noise and
    a few discs. At 500x375 JPEG quality 90 makes about 106 KB of it: ImageNet's training JPEGs
    average 108 KB (138 GB for 1.28 M images), and the decoding time follows the size."""
    import cv2

    def field(scale, amplitude):                    # smooth noise of `scale` pixels, as float
        small = rng.randn(max(1, h // scale), max(1, w // scale), 3).astype(np.float32)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * amplitude
    base = cv2.resize(rng.randint(0, 256, (6, 8, 3)).astype(np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img = base + field(3, 34) + field(2, 30) + rng.randn(h, w, 3).astype(np.float32) * 20
    for _ in range(rng.randint(3, 9)):
        colour = tuple(int(v) for v in rng.randint(0, 256, 3))
        cv2.circle(img, (int(rng.randint(0, w)), int(rng.randint(0, h))), int(rng.randint(10, 80)), colour, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_imagenet(root, images, classes=10, seed=0):
    """JPEG class folders (train: `images`, val: half as many, at least 64) packed into
    root/imagenet by the project's builder; (the pack folder, the mean JPEG size in bytes)."""
    import cv2
    from data.pack import build_packs
    rng = np.random.RandomState(seed)
    sizes = []
    for split, count in (('train', images), ('val', max(images // 2, 64))):
        for i in range(count):
            folder = os.path.join(root, 'jpeg', split, 'class_%02d' % (i % classes))
            os.makedirs(folder, exist_ok=True)
            h, w = (375, 500) if rng.rand() < 0.7 else (500, 375)
            h, w = h + rng.randint(-50, 51), w + rng.randint(-50, 51)
            path = os.path.join(folder, '%05d.jpg' % i)
            cv2.imwrite(path, photo(rng, h, w), [cv2.IMWRITE_JPEG_QUALITY, 90])
            sizes.append(os.path.getsize(path))
    out = os.path.join(root, 'imagenet')
    build_packs(os.path.join(root, 'jpeg', 'train'), out, os.path.join(root, 'jpeg', 'val'), progress=False)
    shutil.rmtree(os.path.join(root, 'jpeg'))
    return out, float(np.mean(sizes))


def small_images(rng, n, size=28):
    """Grayscale images of blurred shapes (PNG of a few hundred bytes each, as Fashion-MNIST's)."""
    import cv2
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        img = out[i]
        for _ in range(rng.randint(1, 4)):
            cv2.ellipse(img, (int(rng.randint(6, 22)), int(rng.randint(6, 22))),
                        (int(rng.randint(3, 11)), int(rng.randint(3, 11))), float(rng.randint(0, 180)), 0, 360,
                        int(rng.randint(60, 256)), -1)
        out[i] = cv2.GaussianBlur(img, (3, 3), 0)
    return out


def make_fashion(root, images, seed=1):
    """28x28 grayscale PNG packs (train: `images`, val: a quarter, at least 256) in root/fashion."""
    from data.pack import pack_arrays
    rng = np.random.RandomState(seed)
    out = os.path.join(root, 'fashion')
    os.makedirs(out, exist_ok=True)
    for split, count in (('train', images), ('val', max(images // 4, 256))):
        pack_arrays(small_images(rng, count), rng.randint(0, 10, count), os.path.join(out, split), progress=False)
    return out


def read_images(prefix):
    """The image bytes of every record of a pack, in index order."""
    from data.packfile import read_idx, read_record_at, unpack_record
    keys, offsets = read_idx(prefix + '.idx')
    rec = prefix + '.rec'
    size = os.path.getsize(rec)
    with open(rec, 'rb') as f:
        return [unpack_record(read_record_at(f, o, size, rec), k, rec)[1] for k, o in zip(keys, offsets)]


# ---------------------------------------------------------------------------------------------
# the decode bound

# Each operation fills a uint8 batch `out` (B, ...) from B source images `items` (encoded bytes,
# or arrays for CIFAR), with the random numbers of the batch drawn at once from `rng`; OpenCV
# writes into `out` directly where it can (a numpy mirror copy costs 180 us at 224x224).

def _decode(buf, flags):
    import cv2
    return cv2.imdecode(np.frombuffer(buf, np.uint8), flags)


def imagenet_train_batch(rng, items, out):
    """Decode, random-resized crop (10 tries of area ~ U(0.08, 1) and log aspect ratio ~
    U(log 3/4, log 4/3), placed uniformly; else the centre square), bicubic resize to out's size,
    mirror with probability 1/2."""
    import cv2
    n, size = len(items), out.shape[1]
    areas = rng.uniform(0.08, 1.0, (n, 10)).tolist()
    ratios = np.exp(rng.uniform(np.log(0.75), np.log(4.0 / 3.0), (n, 10))).tolist()
    place, mirror = rng.random_sample((n, 2)).tolist(), (rng.random_sample(n) < 0.5).tolist()
    for i, buf in enumerate(items):
        img = _decode(buf, cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        cw = ch = min(h, w)
        x, y = (w - cw) // 2, (h - ch) // 2
        for area, ratio in zip(areas[i], ratios[i]):
            area *= h * w
            tw, th = int(round((area * ratio) ** 0.5)), int(round((area / ratio) ** 0.5))
            if 0 < tw <= w and 0 < th <= h:
                cw, ch = tw, th
                x, y = int(place[i][0] * (w - cw + 1)), int(place[i][1] * (h - ch + 1))
                break
        cv2.resize(img[y:y + ch, x:x + cw], (size, size), dst=out[i], interpolation=cv2.INTER_CUBIC)
        if mirror[i]:
            cv2.flip(out[i], 1, dst=out[i])


def imagenet_val_batch(rng, items, out, short=256):
    """Decode, the shorter side bicubic to `short`, the centre crop of out's size."""
    import cv2
    size = out.shape[1]
    for i, buf in enumerate(items):
        img = _decode(buf, cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        nw, nh = (short, short * h // w) if h > w else (short * w // h, short)
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
        y, x = (nh - size) // 2, (nw - size) // 2
        out[i] = img[y:y + size, x:x + size]


def pad_crop_mirror_batch(rng, images, out, pad):
    """Zero-pad by `pad`, a random crop back to the size, mirror with probability 1/2."""
    import cv2
    shifts = rng.randint(0, 2 * pad + 1, (len(images), 2)).tolist()
    mirror = (rng.random_sample(len(images)) < 0.5).tolist()
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        y, x = shifts[i]
        if mirror[i]:
            cv2.flip(padded[y:y + h, x:x + w], 1, dst=out[i])
        else:
            out[i] = padded[y:y + h, x:x + w]


def fashion_train_batch(rng, items, out, pad=2):
    import cv2
    pad_crop_mirror_batch(rng, [_decode(buf, cv2.IMREAD_GRAYSCALE) for buf in items], out, pad)


def fashion_val_batch(rng, items, out):
    import cv2
    for i, buf in enumerate(items):
        out[i] = _decode(buf, cv2.IMREAD_GRAYSCALE)


def cifar_train_batch(rng, items, out, pad=4):
    pad_crop_mirror_batch(rng, items, out, pad)


OPS = {'imagenet_train': imagenet_train_batch, 'imagenet_val': imagenet_val_batch,
       'fashion_train': fashion_train_batch, 'fashion_val': fashion_val_batch, 'cifar_train': cifar_train_batch}
_WORK = {}                  # in a bound worker process: its images and operation (`_bound_setup`)


def _bound_setup(path, op, shape, batch, barrier):
    """Bound worker start-up: the images from the pickle at `path` into memory, one OpenCV thread."""
    import cv2
    cv2.setNumThreads(1)
    with open(path, 'rb') as f:
        items = pickle.load(f)
    _WORK.update(items=items, op=OPS[op], shape=tuple(shape), batch=batch, barrier=barrier)


def _bound_run(args):
    """In a bound worker: a warm-up batch, then, once every worker is ready (so each runs exactly
    one of these calls, all at once), whole batches k, k + workers, k + 2 workers, ... of `op` for
    `seconds` (the batch under way then is finished and counted); (pid, images, start time, end
    time, CPU seconds)."""
    seconds, k, workers = args
    items, op, batch = _WORK['items'], _WORK['op'], _WORK['batch']
    rng = np.random.RandomState(k)
    out = np.empty((batch,) + _WORK['shape'], np.uint8)

    def run_batch(b):
        op(rng, [items[(b * batch + i) % len(items)] for i in range(batch)], out)
    run_batch(k)                                            # warm-up
    _WORK['barrier'].wait(timeout=300)
    start, cpu = time.time(), time.process_time()
    done, b = 0, k
    while time.time() < start + seconds:
        run_batch(b)
        done += batch
        b += workers
    return os.getpid(), done, start, time.time(), time.process_time() - cpu


class BoundPool(object):
    """The decode bound: `workers` processes (spawned: no copy of this process's threads), each
    holding `items` in memory and running `op` on whole batches of them; `rate` measures them all
    at once."""

    def __init__(self, items, op, shape, batch, workers, folder):
        import multiprocessing
        context = multiprocessing.get_context('spawn')
        self.workers = workers
        self.path = path = os.path.join(folder, 'bound-%s.pickle' % op)
        with open(path, 'wb') as f:
            pickle.dump(list(items), f, protocol=pickle.HIGHEST_PROTOCOL)
        self.pool = context.Pool(workers, _bound_setup, (path, op, shape, batch, context.Barrier(workers)))

    def rate(self, seconds):
        """(images/s, CPU ms per image) of all the workers together over about `seconds`, from the
        first worker's start to the last one's end."""
        results = self.pool.map(_bound_run, [(seconds, k, self.workers) for k in range(self.workers)], chunksize=1)
        if len({r[0] for r in results}) != self.workers:
            raise RuntimeError('the bound ran on fewer processes than %d' % self.workers)
        images = sum(r[1] for r in results)
        return (images / (max(r[3] for r in results) - min(r[2] for r in results)),
                sum(r[4] for r in results) * 1e3 / images)

    def close(self):
        self.pool.close()
        self.pool.join()
        if os.path.exists(self.path):
            os.remove(self.path)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            self.pool.terminate()
        self.close()


# ---------------------------------------------------------------------------------------------
# the project's iterators

class WorkerCPU(object):
    """CPU seconds used by the decoding worker processes of DecodeIter iterators (their pools'
    `pids`, read from /proc/PID/stat) since each was first seen; 0 for iterators without workers."""

    def __init__(self):
        self._start, self._last = {}, {}

    @staticmethod
    def _seconds(pid):
        fields = proc_stat(pid)
        if fields is None:                          # (gone: its last reading stands)
            return None
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf('SC_CLK_TCK'))     # utime + stime

    def see(self, it):
        """Take the workers of iterator `it` into account (from now on, for new ones)."""
        for pid in getattr(getattr(it, '_pool', None), 'pids', []):
            if pid not in self._start:
                now = self._seconds(pid)
                if now is not None:
                    self._start[pid] = self._last[pid] = now

    def total(self):
        """Seconds of CPU of every worker seen, since it was first seen."""
        for pid in self._start:
            now = self._seconds(pid)
            if now is not None:
                self._last[pid] = now
        return sum(self._last[pid] - self._start[pid] for pid in self._start)


def iterator_rate(make, seconds, first_epoch=0):
    """(images/s, CPU ms per image of this process, all its threads, and of its decoding worker
    processes) of the iterators `make(epoch)` gives, epoch after epoch (each built afresh, as the
    trainer does), for about `seconds`: from the first batch of the first epoch on (its start-up
    left out, as the bound's warm-up is), a later epoch's start-up counted; whole batches, waiting
    for each one's data."""
    epoch = first_epoch
    it = make(epoch)
    for array in next(it).data:
        array.wait_to_read()
    workers = WorkerCPU()
    workers.see(it)
    images, tic, cpu = 0, time.time(), time.process_time()
    try:
        while time.time() - tic < seconds or not images:
            try:
                batch = next(it)
            except StopIteration:
                epoch += 1
                it = make(epoch)
                workers.see(it)
                continue
            for array in batch.data:
                array.wait_to_read()
            images += batch.data[0].shape[0]
        used = time.process_time() - cpu + workers.total()
        return images / (time.time() - tic), used * 1e3 / images
    finally:
        if hasattr(it, 'close'):
            it.close()


def colour_ms(batch, size, repeats=10):
    """CPU milliseconds per batch of `data.device.colour_apply` on (batch, 3, size, size) uint8 images on
    this machine's CPU (the median of `repeats`, after one untimed call)."""
    import mxnet as mx
    from data.device import colour_apply
    rng = np.random.RandomState(3)
    images = mx.nd.array(rng.randint(0, 256, (batch, 3, size, size)), dtype='uint8')
    colour = mx.nd.array(rng.uniform(-1, 1, (batch, 3, 4)))
    colour_apply(images, colour).wait_to_read()
    times = []
    for _ in range(repeats):
        cpu = time.process_time()
        colour_apply(images, colour).wait_to_read()
        times.append((time.process_time() - cpu) * 1e3)
    return statistics.median(times)


def before_iter(prefix, split, batch, threads, size, channels, mean, std, style, pad=0, epoch=0):
    """The ImageRecordIter the project built before DecodeIter, with the same keywords."""
    from data import packiters
    kw = dict(label_width=1, data_name='data', label_name='softmax_label', data_shape=(channels, size, size),
              batch_size=batch, preprocess_threads=threads, round_batch=True, verbose=False,
              path_imgrec=os.path.join(prefix, split + '.rec'), path_imgidx=os.path.join(prefix, split + '.idx'),
              **packiters._norm(mean, std, channels))
    if split == 'train':
        kw.update(shuffle=True, seed=epoch, seed_aug=epoch, prefetch_buffer=4)
        if style == 'imagenet':
            kw.update(random_resized_crop=True, min_random_area=0.08, max_random_area=1.0,
                      min_aspect_ratio=3.0 / 4.0, max_aspect_ratio=4.0 / 3.0, brightness=0.4, contrast=0.4,
                      saturation=0.4, pca_noise=0.1, rand_mirror=True, inter_method=2)
        else:
            kw.update(pad=pad, fill_value=0, rand_crop=pad > 0, rand_mirror=True)
    elif style == 'imagenet':
        kw.update(resize=packiters.centre_crop_resize(size), rand_crop=False, rand_mirror=False, inter_method=2)
    else:
        kw.update(rand_crop=False, rand_mirror=False)
    return packiters.image_record_iter(**kw)


def compare(name, methods, rounds, log):
    """The methods one after another, `rounds` times after an untimed warm-up round (in reverse
    order every other round, so a trend in the machine's load hits them alike): per method every
    round's (images/s, CPU ms per image), and the load average (1 min) after each round."""
    runs, loads = {m: [] for m in methods}, []
    for fn in methods.values():                 # warm-up: new batch arrays' page faults, pool start-up
        fn()
    for r in range(rounds):
        for m in (list(methods) if r % 2 == 0 else list(methods)[::-1]):
            runs[m].append(methods[m]())
            log('  %-14s round %d  %-7s %8.1f img/s  %6.3f CPU ms/img' % ((name, r + 1, m) + runs[m][-1]))
        loads.append(round(os.getloadavg()[0], 2))
        log('  %-14s round %d  load average %.2f' % (name, r + 1, loads[-1]))
    return runs, loads


PATHS = ('imagenet_train', 'imagenet_val', 'fashion_train', 'fashion_val', 'cifar_train')


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=2000, help='JPEG training images (validation: half as many)')
    p.add_argument('--small-images', type=int, default=20000, help='PNG / array training images')
    p.add_argument('--batch', type=int, default=64, help='ImageNet batch')
    p.add_argument('--small-batch', type=int, default=128, help='Fashion-MNIST / CIFAR batch')
    p.add_argument('--threads', type=int, default=None,
                   help="the project's decoding workers (default: the cores, as data_threads)")
    p.add_argument('--seconds', type=float, default=2.0, help='per measurement')
    p.add_argument('--rounds', type=int, default=11)
    p.add_argument('--paths', default=','.join(PATHS), help='comma-separated, of ' + ', '.join(PATHS))
    p.add_argument('--keep', help='build the data in this folder and keep it (reused when there)')
    args = p.parse_args(argv)
    paths = [x.strip() for x in args.paths.split(',') if x.strip()]
    bad = [x for x in paths if x not in PATHS]
    if bad or not paths:
        p.error('--paths: %s is not one of %s' % (', '.join(bad) or "''", ', '.join(PATHS)))
    for name in ('images', 'small_images', 'batch', 'small_batch', 'threads', 'rounds'):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error('--%s must be at least 1 (got %d)' % (name.replace('_', '-'), value))
    if args.seconds <= 0:
        p.error('--seconds must be positive (got %g)' % args.seconds)
    if args.keep and os.path.exists(args.keep) and not os.path.isdir(args.keep):
        p.error('--keep %s is not a folder' % args.keep)
    args.paths = paths
    return args


def measure_path(path, args, root, cores, threads, log):
    """The figures of one path, and its line: {'batch', 'img_s' (median per method), 'rounds'
    (images/s per round), 'cpu_ms_per_img' (median per method), 'load', 'ratio' (project / bound,
    of the medians), 'round_ratios' and their median 'round_ratio_median' (project / bound of
    each round, measured minutes apart at most), 'cpu_ratio' (bound / project CPU per image), for
    ImageNet paths 'project_cpu_ratio' (project_cpu / bound) and 'colour_ms', and
    for the ImageNet and Fashion-MNIST paths 'before_ratio' and 'speedup' (project / before)}."""
    from data import packiters
    from data.arrays import ArrayIter
    dataset, split = path.split('_')
    if dataset == 'cifar':
        rng = np.random.RandomState(2)
        x = rng.randint(0, 256, (args.small_images, 32, 32, 3)).astype(np.uint8)
        y = rng.randint(0, 10, args.small_images)
        b, items, shape = args.small_batch, list(x), (32, 32, 3)
        mean, std = [125.31, 122.95, 113.87], [62.99, 62.09, 66.70]
        project = lambda e: ArrayIter(x, y, b, mean, std, shuffle=True, augment=True, pad=4, seed=0, epoch=e)
        before = project_cpu = None
    else:
        if dataset == 'imagenet':
            prefix, b, size, channels, style, pad = os.path.join(root, 'imagenet'), args.batch, 224, 3, 'imagenet', 0
            mean, std, shape = IMAGENET_MEAN, IMAGENET_STD, (224, 224, 3)
        else:
            prefix, b, size, channels, style, pad = os.path.join(root, 'fashion'), args.small_batch, 28, 1, 'small', 2
            mean, std, shape = [72.94], [90.02], (28, 28)
        def factory(on_device):
            tr, va = packiters.record_iters(os.path.join(prefix, 'train'), os.path.join(prefix, 'val'), b, size,
                                          channels, mean, std, style, pad=pad, threads=threads, seed=0,
                                          colour_on_device=on_device)
            return tr if split == 'train' else (lambda e: va())
        project = factory(True)
        project_cpu = factory(False) if dataset == 'imagenet' else None
        items = read_images(os.path.join(prefix, split))
        before = lambda e: before_iter(prefix, split, b, cores, size, channels, mean, std, style, pad, e)
    log('%s: batch %d' % (path, b))
    with BoundPool(items, path, shape, b, cores, root) as bound:
        # project and bound next to each other in every round
        methods = {'project': lambda: iterator_rate(project, args.seconds), 'bound': lambda: bound.rate(args.seconds)}
        if project_cpu is not None:
            methods['project_cpu'] = lambda: iterator_rate(project_cpu, args.seconds)
        if before is not None:
            methods['before'] = lambda: iterator_rate(before, args.seconds)
        runs, loads = compare(path, methods, args.rounds, log)
    median = statistics.median
    rates = {m: [rate for rate, _ in v] for m, v in runs.items()}
    med = {m: median(v) for m, v in rates.items()}
    cpu = {m: median([ms for _, ms in v]) for m, v in runs.items()}
    per_round = [mine / top for mine, top in zip(rates['project'], rates['bound'])]
    entry = {'batch': b, 'img_s': med, 'rounds': rates, 'cpu_ms_per_img': cpu, 'load': loads,
             'ratio': med['project'] / med['bound'], 'round_ratios': per_round, 'round_ratio_median': median(per_round),
             'cpu_ratio': cpu['bound'] / cpu['project']}
    line = '%-15s project %7.1f img/s' % (path, med['project'])
    if 'project_cpu' in med:
        entry['project_cpu_ratio'] = med['project_cpu'] / med['bound']
        entry['colour_ms'] = colour_ms(b, size)
    if 'before' in med:
        entry['before_ratio'] = med['before'] / med['bound']
        entry['speedup'] = med['project'] / med['before']
        line += '  before %7.1f img/s' % med['before']
    line += '  bound %7.1f img/s  project/bound %.3f (per round: median %.3f, %s)' % (
        med['bound'], entry['ratio'], entry['round_ratio_median'], ' '.join('%.2f' % v for v in per_round))
    if 'project_cpu' in med:
        line += '  project_cpu %.1f img/s, /bound %.3f  colour_apply on the CPU %.1f ms/batch' % (
            med['project_cpu'], entry['project_cpu_ratio'], entry['colour_ms'])
    if 'before' in med:
        line += '  before/bound %.3f  project/before %.2f' % (entry['before_ratio'], entry['speedup'])
    line += '  CPU ms/img %s' % ' '.join('%s %.2f' % kv for kv in cpu.items())
    return entry, line + '  (load %s)' % ' '.join('%.2f' % v for v in loads)


def main(argv=None):
    args = parse_args(argv)
    import cv2
    from core.env import process_cores
    from data import packiters
    cv2.setNumThreads(1)             # as DecodeIter and the bound run it: the threads/processes are the parallelism
    cores = process_cores()
    threads = args.threads or cores

    def log(msg):
        sys.stderr.write(msg + '\n')
        sys.stderr.flush()

    load = os.getloadavg()
    log('cores %d, decoding workers %d; load average %.2f %.2f %.2f' % ((cores, threads) + load))
    root = args.keep or tempfile.mkdtemp(prefix='input_pipeline-')
    result = {'cores': cores, 'threads': threads, 'load_before': load, 'paths': {}}
    try:
        tic = time.time()
        inet, fashion = os.path.join(root, 'imagenet'), os.path.join(root, 'fashion')
        if any(x.startswith('imagenet') for x in args.paths) and not os.path.isfile(os.path.join(inet, 'val.rec')):
            make_imagenet(root, args.images)
        if any(x.startswith('fashion') for x in args.paths) and not os.path.isfile(os.path.join(fashion, 'val.rec')):
            make_fashion(root, args.small_images)
        if os.path.isdir(inet):
            result['jpeg_mean_kb'] = os.path.getsize(os.path.join(inet, 'train.rec')) / 1024.0 / \
                len(packiters.PackIndex(os.path.join(inet, 'train')))
        log('data ready in %.0f s (%s)' % (time.time() - tic, root))
        for path in args.paths:
            result['paths'][path], line = measure_path(path, args, root, cores, threads, log)
            print(line)
            sys.stdout.flush()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    result['load_after'] = os.getloadavg()
    print(json.dumps(result))


if __name__ == '__main__':
    main()
