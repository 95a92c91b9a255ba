"""Contrastive losses: CRD, Contrastive Representation Distillation (Tian et al., ICLR 2020;
RepDistiller's ``CRDLoss`` with its ``ContrastMemory`` and ``ContrastLoss``).

CRD contrasts each sample's embedding with the other network's embeddings of the same sample
(positive) and of K other samples (negatives) kept in a memory bank indexed by sample, so its
registry entry declares ``indices=True`` (the data layer supplies each sample's index in the
training set, the loss takes it as its last input) and ``heads=True`` (the embedding heads and
the memory bank live in the checkpoint's ``.extra.params``, left out of the export). The
memory is updated after each optimizer step through the loss's state outputs
(`HeadLoss.n_states`, `update_state`), so a resumed run continues with the memory it stopped
with.
"""
import math

from mxnet import init, nd

from .base import HeadLoss, PairingError, _normalize
from .heads import _torch_dense

#: the largest training set whose sample indices float32 holds exactly (the graph's indices are float32)
MAX_SAMPLES = 2 ** 24
#: memories of at most this many times K+1 rows are scored whole (`CRDLoss._scores`)
DENSE_ROWS = 32


def _row_sum(F, x):
    """(B, K) -> (B, 1) row sums as a matrix-vector product with ones of x's dtype (MXNet 1.9.1's CPU
    `sum(axis=1)` takes several times longer on CRD's (128, 16384) scores; see base.sample_sum)."""
    return F.dot(x, F.ones_like(F.slice_axis(x, axis=0, begin=0, end=1)), transpose_b=True)


def _amp_active():
    """Whether MXNet AMP was initialised in this process (it then casts some operators' inputs)."""
    from mxnet.contrib.amp import amp
    return bool(amp._amp_initialized)


class CRDLoss(HeadLoss):
    """Contrastive Representation Distillation (Tian et al., ICLR 2020; RepDistiller's ``CRDLoss``).

    Inputs: student and teacher taps (B, D) (a (B, C, H, W) tap is global-average-pooled first;
    RepDistiller: the pooled features ``feat[-1]``), and the samples' indices in the training
    set, (B,) (or (B, K+1): column 0 the sample, then K given negatives, as RepDistiller's
    sampling data loader supplies them). Output (B,) and three state outputs (`n_states`).

    Heads and state, for N training samples and d = `feat_dim` (128):
      embeddings  e_s = norm(W_s x_s + b_s), e_t = norm(W_t x_t + b_t) (RepDistiller's
                  ``Embed``; both heads train, the teacher tap gets no gradient);
      memory      M_s, M_t (N, d), uniform in +-1/sqrt(d/3) (not trained by the optimizer);
      z           the normalisation constants (Z_s, Z_t), unset (-1) until the first step.

    With j_b0 = b's index and j_b1..j_bK its negatives, drawn uniformly from 0..N-1 with
    replacement (RepDistiller's ``ContrastMemory`` sampler: an ``AliasMethod`` over uniform
    weights), T = `nce_t` (0.07), c = K / N and eps = 1e-7:

        P^s_bk = exp(M_t[j_bk] . e_s,b / T) / Z_s       P^t_bk = exp(M_s[j_bk] . e_t,b / T) / Z_t
        h(P)_b = -log(P_b0 / (P_b0 + c + eps)) - sum_{k=1..K} log(c / (P_bk + c + eps))
        loss_b = h(P^s)_b + h(P^t)_b

    whose batch mean is RepDistiller's ``ContrastLoss`` on both sides. Z is RepDistiller's
    estimate on the first batch, Z_s = N mean_bk exp(M_t[j_bk] . e_s,b / T) (no gradient), kept
    from then on. After each optimizer step `update_state` moves the sample's memory rows
    towards the step's embeddings, momentum m = `nce_m` (0.5):

        M_s[j_b0] <- norm(m M_s[j_b0] + (1 - m) e_s,b),   M_t[j_b0] likewise with e_t,b

    (the loss of a step uses the memory before its update, as RepDistiller's).

    Deviations, chosen: the negatives are uniform over the whole training set (RepDistiller's
    memory sampler; its CIFAR data loader instead draws them among the other classes' samples,
    without replacement), so they may include same-class samples and the sample itself. The
    draws are in the graph, from MXNet's generator, which the trainer reseeds every epoch.

    Batch-relational in Z only: a sample's value depends on its batch through the first step's
    estimate of Z. Under several devices each device's share is its own batch (as the peers'
    DataParallel): on the first step each device uses its share's estimate, and the stored Z is
    the mean of the devices' estimates (the estimate over the whole batch); every device's
    memory receives the updates of all devices' samples, so the copies stay equal. Several
    workers (processes) would each see their own samples only: the trainer refuses that.
    """

    n_states = 3          # e_s (B, d), e_t (B, d), the Z estimates (2,)

    def __init__(self, num_samples=None, feat_dim=128, nce_k=16384, nce_t=0.07, nce_m=0.5, eps=1e-7, **kwargs):
        super(CRDLoss, self).__init__(**kwargs)
        for name, v in (('feat_dim', feat_dim), ('nce_k', nce_k)):
            if int(v) != v or v < 1:
                raise ValueError('CRD %s must be a positive integer, got %r' % (name, v))
        if not nce_t > 0 or not 0 <= nce_m < 1:
            raise ValueError('CRD needs nce_t > 0 and 0 <= nce_m < 1, got %r and %r' % (nce_t, nce_m))
        self.num_samples = None if num_samples is None else int(num_samples)
        self.feat_dim, self.nce_k = int(feat_dim), int(nce_k)
        self.nce_t, self.nce_m, self.eps = float(nce_t), float(nce_m), float(eps)
        self._z_set = False      # Z known to be set (by `update_state`): the graph then skips its estimate

    def _configure(self, shapes):
        if len(shapes) != 3 or any(len(s) not in (1, 3) for s in shapes[:2]) or len(shapes[2]) > 1:
            raise PairingError('CRD takes a student and a teacher tap, each a vector (B, D) or a map (B, C, H, W) '
                               'pooled globally, and the sample indices (B,) or (B, K+1); got per-sample shapes %s'
                               % (shapes,))
        self._pool = [len(s) == 3 for s in shapes[:2]]
        self._given = bool(shapes[2])                  # (B, K+1) contrast indices given, else drawn
        self._k = shapes[2][0] - 1 if self._given else self.nce_k
        if self._k < 1:
            raise PairingError('CRD contrast indices (B, K+1) need K >= 1 negatives; got K+1 = %d' % shapes[2][0])
        self._check_built('CRD', (shapes[0][0], shapes[1][0]))

    def _build(self, shapes):
        n = self.num_samples
        if n is None or n < 1:
            raise PairingError('CRD\'s memory bank has one row per training sample: give CRDLoss num_samples (the '
                               'trainer passes the training set\'s size)')
        if n > MAX_SAMPLES:
            raise PairingError('CRD indexes samples in float32, exact up to %d samples; the training set has %d'
                               % (MAX_SAMPLES, n))
        if not self._given and self.nce_k >= n:
            import logging
            logging.getLogger('train').warning(
                'crd_nce_k=%d negatives a sample, but the training set has %d samples: each is drawn about %.0f '
                'times a row (RepDistiller: 16384 of CIFAR\'s 50000); set crd_nce_k below %d', self.nce_k, n,
                self.nce_k / float(n), n)
        d_s, d_t = self._signature
        self.embed_s = _torch_dense(self.feat_dim, d_s)
        self.embed_t = _torch_dense(self.feat_dim, d_t)
        bound = 1.0 / math.sqrt(self.feat_dim / 3.0)
        self.memory_s = self.params.get('memory_s', shape=(n, self.feat_dim), init=init.Uniform(bound),
                                        grad_req='null', differentiable=False)
        self.memory_t = self.params.get('memory_t', shape=(n, self.feat_dim), init=init.Uniform(bound),
                                        grad_req='null', differentiable=False)
        self.z = self.params.get('z', shape=(2,), init=init.Constant(-1.0), grad_req='null', differentiable=False)

    def _embed(self, F, dense, x, pool):
        return _normalize(F, dense(F.mean(x, axis=(2, 3)) if pool else x), axis=1)

    def _contrast_index(self, F, index):
        """(the samples' indices j_b0 (B,), their negatives j_b1..j_bK (B, K)), float: the given ones,
        or K uniform draws."""
        if self._given:
            return (F.reshape(F.slice_axis(index, axis=1, begin=0, end=1), shape=(-1,)),
                    F.slice_axis(index, axis=1, begin=1, end=None))
        u = F.random.uniform_like(F.broadcast_axis(F.reshape(index, shape=(-1, 1)), axis=1, size=self._k))  # [0, 1)
        return index, F.minimum(F.floor(u * self.num_samples), self.num_samples - 1)

    def _scores(self, F, memory, a, pos, neg, shift=None):
        """The scores x = M[j_bk] . a_b (a = e / T), less `shift` L (1,) if given: of the samples' own
        rows (B, 1), and of their negatives (B, K).

        The negatives' against the whole memory, (B, d) x (d, N) -> (B, N), then the (B, K) entries
        picked, when the memory has at most DENSE_ROWS x (K+1) rows: one matrix product instead of
        gathering B K rows of d floats (1 GB at the defaults on CIFAR), several times faster and
        smaller there; gathering the rows beyond (the cost of the product grows with N). The
        product is a FullyConnected (faster than `dot` forward and backward on the CPU), with -L
        as its bias: a subtraction whose backward would reduce over the B K scores saved; under
        AMP (which runs FullyConnected in float16 or bfloat16) a float32 `dot`. The memory takes
        no gradient (grad_req null), so it needs no stop_gradient (a copy of N d floats)."""
        own = F.sum(F.take(memory, pos) * a, axis=1, keepdims=True)                      # (B, 1)
        if shift is not None:
            own = F.broadcast_sub(own, F.reshape(shift, shape=(1, 1)))
        if self.num_samples > DENSE_ROWS * (self._k + 1):
            w = F.take(memory, neg)                                                      # (B, K, d)
            others = F.reshape(F.batch_dot(w, F.expand_dims(a, axis=2)), shape=(0, -1))
        elif _amp_active():
            others = self._pick(F, F.dot(a, memory, transpose_b=True), pos, neg)
        else:
            bias = None if shift is None else F.broadcast_to(-shift, shape=(self.num_samples,))
            every = F.FullyConnected(a, memory, bias, num_hidden=self.num_samples, no_bias=shift is None)  # (B, N)
            return own, self._pick(F, every, pos, neg)
        return own, others if shift is None else F.broadcast_sub(others, F.reshape(shift, shape=(1, 1)))

    def _pick(self, F, every, pos, neg):
        """The (B, K) entries every[b, j_bk] of the (B, N) scores."""
        # (int64: b N + j outgrows int32 for a large batch of a large memory)
        start = F.cast(F.contrib.arange_like(pos, axis=0), 'int64') * self.num_samples    # row b at b N
        flat = F.broadcast_add(F.cast(neg, 'int64'), F.reshape(start, shape=(-1, 1)))     # (B, K)
        return F.take(F.reshape(every, shape=(-1,)), flat)

    def _side(self, F, memory, e, pos, neg, z):
        """(h(P)_b (B,), the Z estimate (1,)) of one side: its embedding e against the other side's memory.

        In the log domain, with x = M[j] . e / T, log P = x - log Z, c' = c + eps and
        L = log Z + log c', softrelu(u) = log(1 + exp(u)):
            -log(P_b0 / (P_b0 + c')) = softrelu(L - x_b0),
            -log(c / (P_bk + c')) = softrelu(x_bk - L) + log(c' / c),
        so h_b = softrelu(L - x_b0) + sum_k softrelu(x_bk - L) + K log(c' / c): one fused operator
        per score instead of exp, a division by Z, an addition, a division and a log (and their
        backward passes) over the B K scores.

        Z: while unset (z < 0) the step's estimate, computed in the graph from exp(x) (no
        gradient); once `update_state` has set it (`_z_set`), Z alone, and the graph skips the
        estimate (its output is then Z)."""
        c = float(self._k) / self.num_samples
        log_c1 = math.log(c + self.eps)
        a = e / self.nce_t
        if self._z_set:
            shift = F.log(z) + log_c1                                                            # L (1,)
            own, others = self._scores(F, memory, a, pos, neg, shift)
            estimate = z
        else:
            own, others = self._scores(F, memory, a, pos, neg)
            # the mean of the B (K+1) values exp(x): (mean of the B own + mean of the B rows' sums) / (K+1)
            estimate = F.stop_gradient((F.mean(F.exp(own), axis=(0, 1)) + F.mean(_row_sum(F, F.exp(others)),
                                                                                   axis=(0, 1)))
                                       * (float(self.num_samples) / (self._k + 1)))             # (1,)
            shift = F.reshape(F.log(F.stop_gradient(F.where(z < 0, estimate, z))), shape=(1, 1)) + log_c1
            own, others = F.broadcast_sub(own, shift), F.broadcast_sub(others, shift)
        h = (F.Activation(-own, act_type='softrelu') + _row_sum(F, F.Activation(others, act_type='softrelu'))
             + self._k * math.log1p(self.eps / c))
        return F.reshape(h, shape=(-1,)), estimate

    def hybrid_forward(self, F, s, t, index, memory_s, memory_t, z):
        e_s = self._embed(F, self.embed_s, s, self._pool[0])
        e_t = self._embed(F, self.embed_t, F.stop_gradient(t), self._pool[1])
        pos, neg = [F.stop_gradient(i) for i in self._contrast_index(F, F.cast(index, 'float32'))]
        h_s, z_s = self._side(F, memory_t, e_s, pos, neg, F.slice_axis(z, axis=0, begin=0, end=1))
        h_t, z_t = self._side(F, memory_s, e_t, pos, neg, F.slice_axis(z, axis=0, begin=1, end=2))
        return h_s + h_t, F.stop_gradient(e_s), F.stop_gradient(e_t), F.concat(z_s, z_t, dim=0)

    def update_state(self, indices, states):
        """Move the memory rows of the step's samples towards their embeddings (momentum
        `nce_m`, renormalised) on every device's copy, with every device's samples, and set Z
        from the first step's estimates (their mean over the devices) if unset. Returns True once,
        when Z is first seen set (on the first step, or the first after a resume): the graph is to
        be built again, without the estimate."""
        m = self.nce_m
        rows = [(i if len(i.shape) == 1 else i[:, 0]) for i in indices]
        for param, col in ((self.memory_s, 0), (self.memory_t, 1)):
            for mem in param.list_data():
                ctx = mem.context
                idx = nd.concat(*[r.as_in_context(ctx).astype('int64') for r in rows], dim=0)
                e = nd.concat(*[st[col].as_in_context(ctx).astype(mem.dtype, copy=False) for st in states], dim=0)
                v = nd.take(mem, idx) * m + e * (1 - m)
                mem[idx] = v / nd.sqrt(nd.sum(nd.square(v), axis=1, keepdims=True))
        for z in self.z.list_data():
            est = nd.add_n(*[st[2].as_in_context(z.context).astype(z.dtype, copy=False) for st in states]) / len(states)
            z[:] = nd.where(z < 0, est, z)
        if not self._z_set and (self.z.list_data()[0].asnumpy() >= 0).all():   # (a wait for Z, until it is set)
            self._z_set = True
            self._clear_cached_op()
            return True
        return False

