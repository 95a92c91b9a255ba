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


# --- logit methods -----------------------------------------------------------------------------
def _kl(p, log_p, log_q):
    """sum p (log p - log q) with 0 log 0 = 0 (PyTorch's kl_div, summed)."""
    return sum(pi * (lp - lq) for pi, lp, lq in zip(p, log_p, log_q) if pi > 0)


def dkd(s, t, labels, alpha=1.0, beta=8.0, T=4.0):
    """mdistiller's dkd_loss per sample (its value is the batch mean), written sample by sample."""
    out = []
    for a, b, y in zip(s, t, labels):
        y = int(y)
        ps, pt = softmax(a / T), softmax(b / T)
        bs = np.array([ps[y], sum(ps[c] for c in range(len(ps)) if c != y)])
        bt = np.array([pt[y], sum(pt[c] for c in range(len(pt)) if c != y)])
        tckd = _kl(bt, np.log(bt), np.log(bs)) * T ** 2
        mask = np.zeros(len(a))
        mask[y] = 1.0
        qt = softmax(b / T - 1000.0 * mask)
        za = a / T - 1000.0 * mask
        log_qs = za - za.max() - np.log(np.exp(za - za.max()).sum())
        nckd = sum(qt[c] * (np.log(qt[c]) - log_qs[c]) for c in range(len(a)) if qt[c] > 0) * T ** 2
        out.append(alpha * tckd + beta * nckd)
    return np.array(out)


def _torch_cosine(x, y, eps):
    """torch.nn.functional.cosine_similarity of two vectors (each norm clamped at eps)."""
    return (x / max(np.sqrt((x ** 2).sum()), eps) * (y / max(np.sqrt((y ** 2).sum()), eps))).sum()


def _pearson(x, y, eps=1e-8):
    return _torch_cosine(x - x.mean(), y - y.mean(), eps)


def dist(s, t, beta=1.0, gamma=1.0, tau=1.0):
    """torchdistill's DISTLoss (the batch value)."""
    ys = np.array([softmax(a / tau) for a in s])
    yt = np.array([softmax(b / tau) for b in t])
    inter = 1 - np.mean([_pearson(ys[i], yt[i]) for i in range(len(ys))])
    intra = 1 - np.mean([_pearson(ys[:, c], yt[:, c]) for c in range(ys.shape[1])])
    return tau ** 2 * (beta * inter + gamma * intra)


# --- batch-relational methods (batch values) ------------------------------------------------
def sp(s, t):
    """RepDistiller's Similarity: ||G_s - G_t||_F^2 / B^2, G = row-normalised f f^T."""
    B = len(s)
    fs, ft = s.reshape(B, -1), t.reshape(B, -1)
    gs = norm_rows(np.array([[fs[i] @ fs[j] for j in range(B)] for i in range(B)]))
    gt = norm_rows(np.array([[ft[i] @ ft[j] for j in range(B)] for i in range(B)]))
    return ((gs - gt) ** 2).sum() / B ** 2


def _pooled(x):
    return x.mean(axis=(2, 3)) if x.ndim == 4 else x


def _smooth_l1(x):
    x = abs(x)
    return 0.5 * x * x if x < 1 else x - 0.5


def rkd(s, t, w_d=25.0, w_a=50.0, eps=1e-12):
    """RepDistiller's RKDLoss on pooled features (the batch value)."""
    s, t = _pooled(s), _pooled(t)
    B = len(s)

    def distances(e):
        d = np.zeros((B, B))
        for i in range(B):
            for j in range(B):
                if i != j:
                    d[i, j] = math.sqrt(max(((e[i] - e[j]) ** 2).sum(), eps))
        return d / d[d > 0].mean()

    def angles(e):
        a = np.zeros((B, B, B))
        for i in range(B):
            for j in range(B):
                for k in range(B):
                    u, v = norm_rows(e[j] - e[i]), norm_rows(e[k] - e[i])
                    a[i, j, k] = u @ v
        return a

    ds, dt = distances(s), distances(t)
    loss_d = np.mean([_smooth_l1(x) for x in (ds - dt).ravel()])
    loss_a = np.mean([_smooth_l1(x) for x in (angles(s) - angles(t)).ravel()])
    return w_d * loss_d + w_a * loss_a


def pkt(s, t, eps=1e-7):
    """RepDistiller's PKT on pooled features (the batch value)."""
    def probabilities(x):
        x = x / (np.sqrt((x ** 2).sum(axis=1, keepdims=True)) + eps)
        k = np.array([[(x[i] @ x[j] + 1) / 2 for j in range(len(x))] for i in range(len(x))])
        return k / k.sum(axis=1, keepdims=True)
    ps, pt = probabilities(_pooled(s)), probabilities(_pooled(t))
    return np.mean(pt * np.log((pt + eps) / (ps + eps)))


# --- KDSVD ---------------------------------------------------------------------------------
def _svd_vectors(x, n):
    """Normalised right singular vectors (C, n) and normalised singular values (n,) of
    X = F^T (H*W x C), decreasing, from numpy's SVD."""
    c = x.shape[0]
    X = x.reshape(c, -1).T
    _, sv, vt = np.linalg.svd(X, full_matrices=False)
    n = min(n, len(sv))
    v = vt[:n].T
    v = v / np.maximum(np.sqrt((v ** 2).sum(axis=0, keepdims=True)), 1e-12)
    s = sv[:n] / max(np.sqrt((sv[:n] ** 2).sum()), 1e-12)
    return v, s


def kdsvd(s_maps, t_maps, k=1):
    """RepDistiller's KDSVD per sample (its value is the batch mean), from numpy's SVD; each
    teacher singular vector oriented with its largest-magnitude component positive."""
    B = len(s_maps[0])
    out = np.zeros(B)
    for b in range(B):
        prev = None
        for fs, ft in zip(s_maps, t_maps):
            vt, st = _svd_vectors(ft[b], k)
            vs, _ = _svd_vectors(fs[b], k + 3)
            for j in range(vt.shape[1]):
                if vt[np.argmax(np.abs(vt[:, j])), j] < 0:
                    vt[:, j] = -vt[:, j]
            cos = vs.T @ vt                                         # (k+3, k)
            aligned = np.zeros_like(vt)
            for j in range(vt.shape[1]):
                best = np.abs(cos[:, j]).max()
                for m in range(vs.shape[1]):
                    if abs(cos[m, j]) == best:
                        aligned[:, j] += np.sign(cos[m, j]) * vs[:, m]
            vt, vs = vt * st, aligned * st
            if prev is not None:
                for j in range(vt.shape[1]):
                    for c in range(vt.shape[0]):
                        for c2 in range(prev[1].shape[0]):
                            rs = math.exp(-(vs[c, j] - prev[0][c2, j]) ** 2 / 8)
                            rt = math.exp(-(vt[c, j] - prev[1][c2, j]) ** 2 / 8)
                            out[b] += (rs - rt) ** 2
            prev = (vs, vt)
    return out


# --- losses with trainable heads (the heads' weights are inputs) ----------------------------
def cc(s, t, ws, bs, wt, bt, normalize=False):
    """RepDistiller's Correlation on its embeddings (the batch value): e = W x + b
    (LinearEmbed; with `normalize`, Embed's e / ||e||), delta = |e_s - e_t|,
    loss = mean over the B-1 consecutive pairs of sum_k delta_i,k delta_i+1,k."""
    es, et = _pooled(s) @ ws.T + bs, _pooled(t) @ wt.T + bt
    if normalize:
        es = es / np.sqrt((es ** 2).sum(axis=1, keepdims=True))
        et = et / np.sqrt((et ** 2).sum(axis=1, keepdims=True))
    delta = np.abs(es - et)
    return np.mean([(delta[i] * delta[i + 1]).sum() for i in range(len(delta) - 1)])


def _conv1x1(w, x):
    """(O, C, 1, 1) weights on one sample (C, H, W)."""
    return np.einsum('oc,chw->ohw', w[:, :, 0, 0], x)


def vid(s, t, w1, w2, w3, log_scale, eps=1e-5):
    """RepDistiller's VIDLoss per sample (its value is the batch mean): the larger map pooled to
    the smaller, mu = conv3(relu(conv2(relu(conv1(s))))), var = log(1 + exp(log_scale)) + eps,
    mean over C*H*W of 0.5 * ((mu - t)^2 / var + log var)."""
    var = np.log(1.0 + np.exp(log_scale)) + eps
    out = []
    for a, b in zip(s, t):
        a, b = match(a, b)
        mu = _conv1x1(w3, np.maximum(_conv1x1(w2, np.maximum(_conv1x1(w1, a), 0)), 0))
        nlp = 0.5 * ((mu - b) ** 2 / var[:, None, None] + np.log(var)[:, None, None])
        out.append(nlp.mean())
    return np.array(out)


def _conv(x, w, bias=None, pad=0):
    """Cross-correlation of a batch (B, C, H, W) with (O, C, k, k), stride 1, zero padding `pad`."""
    B, C, H, W = x.shape
    k = w.shape[2]
    xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad))
    xp[:, :, pad:pad + H, pad:pad + W] = x
    oh, ow = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    out = np.zeros((B, w.shape[0], oh, ow))
    for i in range(k):
        for j in range(k):
            out += np.einsum('oc,bchw->bohw', w[:, :, i, j], xp[:, :, i:i + oh, j:j + ow])
    return out if bias is None else out + bias[None, :, None, None]


def _bn(x, p, train, eps=1e-5):
    """BatchNorm2d: batch statistics (biased variance) when `train`, else the running ones."""
    if train:
        m, v = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        m, v = p['running_mean'], p['running_var']
    x = (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + eps)
    return x * p['gamma'][None, :, None, None] + p['beta'][None, :, None, None]


def nearest(x, size):
    """PyTorch's F.interpolate(x, size, mode='nearest'): output index j reads floor(j * in / out)."""
    h, w = x.shape[2:]
    ih = [int(math.floor(j * h / size[0])) for j in range(size[0])]
    iw = [int(math.floor(j * w / size[1])) for j in range(size[1])]
    return x[:, :, ih][:, :, :, iw]


def _abf(p, x, y, shape, out_shape, train):
    """mdistiller's ABF.forward: p holds conv1 (w, bn), conv2 (w, bn) and att (w, b) or None."""
    n, _, h, w = x.shape
    x = _bn(_conv(x, p['conv1_w']), p['bn1'], train)
    if p.get('att_w') is not None:
        y = nearest(y, shape)
        z = 1.0 / (1.0 + np.exp(-_conv(np.concatenate([x, y], axis=1), p['att_w'], p['att_b'])))
        x = x * z[:, 0].reshape(n, 1, h, w) + y * z[:, 1].reshape(n, 1, h, w)
    if x.shape[2:] != tuple(out_shape):
        x = nearest(x, out_shape)
    y = _bn(_conv(x, p['conv2_w'], pad=1), p['bn2'], train)
    return y, x


def hcl(fstudent, fteacher):
    """mdistiller's hcl_loss, per sample (mse as a mean over C*H*W of each sample; the batch
    mean is its value)."""
    loss_all = 0.0
    for fs, ft in zip(fstudent, fteacher):
        n, c, h, w = fs.shape
        loss = ((fs - ft) ** 2).mean(axis=(1, 2, 3))
        cnt, tot = 1.0, 1.0
        for l in [4, 2, 1]:
            if l >= h:
                continue
            ps = np.stack([adaptive_pool(x, (l, l)) for x in fs])
            pt = np.stack([adaptive_pool(x, (l, l)) for x in ft])
            cnt /= 2.0
            loss = loss + ((ps - pt) ** 2).mean(axis=(1, 2, 3)) * cnt
            tot += cnt
        loss_all = loss_all + loss / tot
    return loss_all


def reviewkd(s_maps, t_maps, abfs, train=True):
    """mdistiller's ReviewKD.forward_train (the HCL term, per sample): taps listed from the
    shallowest to the deepest, a (B, D) tap as (B, D, 1, 1); abfs[i] the parameters of stage i's
    ABF (the deepest has no att); shapes: each student map's H x W, out_shapes: the teacher's."""
    as_map = lambda x: x.reshape(x.shape + (1, 1)) if x.ndim == 2 else x
    x = [as_map(f) for f in s_maps][::-1]
    teacher = [as_map(f) for f in t_maps]
    shapes = [f.shape[2:] for f in x]
    out_shapes = [f.shape[2:] for f in teacher][::-1]
    abfs = abfs[::-1]
    results = []
    out_features, res_features = _abf(abfs[0], x[0], None, None, out_shapes[0], train)
    results.append(out_features)
    for features, abf, shape, out_shape in zip(x[1:], abfs[1:], shapes[1:], out_shapes[1:]):
        out_features, res_features = _abf(abf, features, res_features, shape, out_shape, train)
        results.insert(0, out_features)
    return hcl(results, teacher)


# ------------------------------------------------------------------ AB, FT, CRD (issue 10)
def conv2d(x, w, bias=None, stride=1, pad=0):
    """Cross-correlation of (B, C, H, W) with (O, C, kh, kw), any stride, zero padding `pad`."""
    B, C, H, W = x.shape
    kh, kw = w.shape[2:]
    xp = np.zeros((B, C, H + 2 * pad, W + 2 * pad))
    xp[:, :, pad:pad + H, pad:pad + W] = x
    oh, ow = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    out = np.zeros((B, w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum('oc,bchw->bohw', w[:, :, i, j],
                             xp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride])
    return out if bias is None else out + bias[None, :, None, None]


def conv_transpose2d(x, w, bias=None, stride=1, pad=0):
    """PyTorch's ConvTranspose2d: weights (C_in, C_out, kh, kw); each input pixel scatters
    w * x into the output at (i * stride + ki - pad, j * stride + kj - pad)."""
    B, C, H, W = x.shape
    kh, kw = w.shape[2:]
    full = np.zeros((B, w.shape[1], (H - 1) * stride + kh, (W - 1) * stride + kw))
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + stride * (H - 1) + 1:stride, j:j + stride * (W - 1) + 1:stride] += \
                np.einsum('co,bchw->bohw', w[:, :, i, j], x)
    out = full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad]
    return out if bias is None else out + bias[None, :, None, None]


def leaky(x, slope=0.1):
    return np.where(x > 0, x, slope * x)


def ab_connect(x, p, kind, train):
    """RepDistiller's AB connector on a batch: None (identity) or ConvReg's convolution (`kind`
    'down' 3x3 stride 2 pad 1, 'up' 4x4 transposed stride 2 pad 1, 'valid' no padding) with its
    bias, then BatchNorm2d (batch statistics when `train`)."""
    if kind is None:
        return x
    if kind == 'up':
        y = conv_transpose2d(x, p['weight'], p['bias'], stride=2, pad=1)
    elif kind == 'down':
        y = conv2d(x, p['weight'], p['bias'], stride=2, pad=1)
    else:
        y = conv2d(x, p['weight'], p['bias'])
    return _bn(y, p, train)


def ab(s_maps, t_maps, connectors=None, kinds=None, margin=1.0, train=True):
    """RepDistiller's ABLoss(len(s_maps), margin) summed over its layers, per sample (its value
    is the batch mean): w_i = 2^(i-n+1), criterion_alternative_l2 summed over one sample's
    C*H*W, / 1000 * 3."""
    n = len(s_maps)
    out = 0
    for i, (s, t) in enumerate(zip(s_maps, t_maps)):
        c = ab_connect(s, (connectors or [None] * n)[i], (kinds or [None] * n)[i], train)
        alt = (c + margin) ** 2 * ((c > -margin) & (t <= 0)) + (c - margin) ** 2 * ((c <= margin) & (t > 0))
        out = out + 2.0 ** (i - n + 1) * np.abs(alt).sum(axis=(1, 2, 3)) / 1000 * 3
    return out


def ft_translator(s, layers, train=True):
    """RepDistiller's Translator (use_bn=True): per layer conv3x3 (pad 1, bias), BatchNorm2d, LeakyReLU(0.1)."""
    for p in layers:
        s = leaky(_bn(conv2d(s, p['weight'], p['bias'], pad=1), p, train))
    return s


def ft_encoder(t, layers):
    """RepDistiller's Paraphraser encoder (use_bn=False): per layer conv3x3 (pad 1, bias), LeakyReLU(0.1)."""
    for p in layers:
        t = leaky(conv2d(t, p['weight'], p['bias'], pad=1))
    return t


def ft_paraphraser_loss(t, encoder, decoder):
    """The paraphraser's init-stage loss per sample (nn.MSELoss of its reconstruction is the
    batch mean): decoder = transposed conv3x3 (stride 1, pad 1, bias) + LeakyReLU(0.1) per layer."""
    rec = ft_encoder(t, encoder)
    for p in decoder:
        rec = leaky(conv_transpose2d(rec, p['weight'], p['bias'], stride=1, pad=1))
    return ((rec - t) ** 2).mean(axis=(1, 2, 3))


def ft(s, t, translator, encoder, p1=2.0, p2=1.0, train=True):
    """RepDistiller's FactorTransfer(p1, p2) on translator(s) and the paraphraser's encoder(t),
    per sample (its value is the batch mean); the larger factor map adaptive-pooled to the smaller."""
    f_s, f_t = ft_translator(s, translator, train), ft_encoder(t, encoder)
    out = []
    for a, b in zip(f_s, f_t):
        a, b = match(a, b)
        fa = norm_rows((a ** p1).mean(axis=0).reshape(1, -1))[0]
        fb = norm_rows((b ** p1).mean(axis=0).reshape(1, -1))[0]
        d = fa - fb
        out.append((np.abs(d) if p2 == 1 else d ** p2).mean())
    return np.array(out)


def crd(s, t, ws, bs, wt, bt, memory_s, memory_t, z, contrast, temperature=0.07, eps=1e-7):
    """RepDistiller's CRDLoss on one batch with given contrast indices (B, K+1) (column 0 the
    sample): Embed (linear + L2 norm) on both sides (a map is average-pooled first), the
    ContrastMemory scores exp(M[j] . e / T) / Z (Z = N * their mean when unset, z < 0), and
    ContrastLoss on both. Returns (per-sample loss (B,) whose mean is RepDistiller's, e_s,
    e_t, the Z estimates (2,))."""
    pool = lambda x: x.mean(axis=(2, 3)) if x.ndim == 4 else x
    e_s = norm_rows(pool(s) @ ws.T + bs)
    e_t = norm_rows(pool(t) @ wt.T + bt)
    n, k = len(memory_s), contrast.shape[1] - 1
    loss, estimates = 0, []
    for e, memory, zz in ((e_s, memory_t, z[0]), (e_t, memory_s, z[1])):
        p = np.exp(np.einsum('bkd,bd->bk', memory[contrast], e) / temperature)
        estimates.append(p.mean() * n)
        p = p / (estimates[-1] if zz < 0 else zz)
        c = k / float(n)
        log_d1 = np.log(p[:, 0] / (p[:, 0] + c + eps))
        log_d0 = np.log(c / (p[:, 1:] + c + eps))
        loss = loss - (log_d1 + log_d0.sum(axis=1))
    return loss, e_s, e_t, np.array(estimates)


def crd_update(memory_s, memory_t, z, index, e_s, e_t, estimates, momentum=0.5):
    """RepDistiller's ContrastMemory update: the rows of `index` move to
    norm(m * row + (1 - m) * e); Z takes the estimates if unset. Returns new copies."""
    memory_s, memory_t = memory_s.copy(), memory_t.copy()
    for memory, e in ((memory_s, e_s), (memory_t, e_t)):
        rows = memory[index] * momentum + e * (1 - momentum)
        memory[index] = rows / np.sqrt((rows ** 2).sum(axis=1, keepdims=True))
    return memory_s, memory_t, np.where(z < 0, estimates, z)


def cwd(s, t, tau=1.0):
    """Channel-wise distillation (mmrazor ChannelWiseDivergence, per sample): (tau^2 / C) *
    sum_c sum_i p_t[c, i] (log p_t[c, i] - log p_s[c, i]), p = softmax over the H*W positions of
    channel c of map / tau; the larger map average-pooled to the smaller first."""
    out = []
    for a, b in zip(s, t):
        a, b = match(a, b)
        c = a.shape[0]
        za, zb = a.reshape(c, -1) / tau, b.reshape(c, -1) / tau
        log_pa = za - za.max(axis=1, keepdims=True)
        log_pa = log_pa - np.log(np.exp(log_pa).sum(axis=1, keepdims=True))
        log_pb = zb - zb.max(axis=1, keepdims=True)
        log_pb = log_pb - np.log(np.exp(log_pb).sum(axis=1, keepdims=True))
        out.append((np.exp(log_pb) * (log_pb - log_pa)).sum() * tau ** 2 / c)
    return np.array(out)
