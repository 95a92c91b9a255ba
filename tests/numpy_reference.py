"""Plain numpy implementations of the transfer-loss definitions (issue 4),
written pair by pair, for the tests. Inputs are float64 arrays of one batch.
"""
import math

import numpy as np


def norm_rows(m):
    n = np.sqrt((m ** 2).sum(axis=-1, keepdims=True))
    return m / np.maximum(n, 1e-12)


def adaptive_pool(x, size):
    """Adaptive average pooling of (C, H, W) to `size` (MXNet's bin edges)."""
    c, h, w = x.shape
    oh, ow = size
    out = np.zeros((c, oh, ow))
    for i in range(oh):
        h0, h1 = int(math.floor(i * h / oh)), int(math.ceil((i + 1) * h / oh))
        for j in range(ow):
            w0, w1 = int(math.floor(j * w / ow)), int(math.ceil((j + 1) * w / ow))
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


def match(s, t):
    size = (min(s.shape[1], t.shape[1]), min(s.shape[2], t.shape[2]))
    if s.shape[1:] != size:
        s = adaptive_pool(s, size)
    if t.shape[1:] != size:
        t = adaptive_pool(t, size)
    return s, t


def softmax(z):
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def kd(s, t, T):
    out = []
    for a, b in zip(s, t):
        pt, ps = softmax(b / T), softmax(a / T)
        out.append((pt * (np.log(pt) - np.log(ps))).sum())
    return np.array(out)


def kernel(kind, x, y, degree=2, c=0.0, sigma2=None):
    if kind == 'linear':
        return x @ y
    if kind == 'poly':
        return (x @ y + c) ** degree
    return math.exp(-((x - y) ** 2).sum() / (2 * sigma2))


def nst(s, t, kind='poly', degree=2, c=0.0):
    out = []
    for a, b in zip(s, t):
        a, b = match(a, b)
        S = norm_rows(a.reshape(a.shape[0], -1))
        T = norm_rows(b.reshape(b.shape[0], -1))
        sigma2 = None
        if kind == 'gaussian':
            Z = np.concatenate([T, S])
            d = [((Z[i] - Z[j]) ** 2).sum() for i in range(len(Z)) for j in range(len(Z)) if i != j]
            sigma2 = np.mean(d)
        k = lambda X, Y: np.mean([kernel(kind, x, y, degree, c, sigma2) for x in X for y in Y])
        out.append(k(T, T) + k(S, S) - 2 * k(T, S))
    return np.array(out)


def original_nst_poly(s, t, c=0.0):
    out = []
    for a, b in zip(s, t):
        S = norm_rows(a.reshape(a.shape[0], -1))
        T = norm_rows(b.reshape(b.shape[0], -1))
        out.append(((S @ S.T + c) ** 2).mean() - 2 * ((S @ T.T + c) ** 2).mean())
    return np.array(out)


def at(s, t, p=2):
    out = []
    for a, b in zip(s, t):
        a, b = match(a, b)
        qa = norm_rows((np.abs(a) ** p).mean(axis=0).reshape(-1))
        qb = norm_rows((np.abs(b) ** p).mean(axis=0).reshape(-1))
        out.append(((qa - qb) ** 2).mean())
    return np.array(out)


def fitnet(s, t):
    out = []
    for a, b in zip(s, t):
        a, b = match(a, b)
        out.append(((a - b) ** 2).mean())
    return np.array(out)


def fsp(sa, sb, ta, tb):
    out = []
    for maps in zip(sa, sb, ta, tb):
        size = (min(m.shape[1] for m in maps), min(m.shape[2] for m in maps))
        maps = [adaptive_pool(m, size) if m.shape[1:] != size else m for m in maps]
        g = [maps[0].reshape(len(maps[0]), -1) @ maps[1].reshape(len(maps[1]), -1).T,
             maps[2].reshape(len(maps[2]), -1) @ maps[3].reshape(len(maps[3]), -1).T]
        n = size[0] * size[1]
        out.append((((g[0] - g[1]) / n) ** 2).mean())
    return np.array(out)


def ofd(s, t, margin):
    out = []
    for a, b in zip(s, t):
        a, b = match(a, b)
        total = 0.0
        for ch in range(a.shape[0]):
            for v_s, v_t in zip(a[ch].ravel(), b[ch].ravel()):
                target = max(v_t, margin[ch])
                if not (v_s <= target and target <= 0):
                    total += (v_s - target) ** 2
        out.append(total)
    return np.array(out)


def ofd_margin(gamma, beta):
    out = []
    for g, b in zip(gamma, beta):
        s = abs(g)
        z = b / s
        cdf = 0.5 * (1 + math.erf(-z / math.sqrt(2)))
        pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        out.append(b - s * pdf / cdf if cdf > 0.001 else -3 * s)
    return np.array(out)
