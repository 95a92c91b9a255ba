"""Transfer losses and their registry.

Families (one module each):

- `logit`: KD (Hinton), DKD (decoupled KD, takes the labels), DIST;
- `feature`: FitNet, AT, NST (MMD with linear / poly / Gaussian kernels),
  FSP, OFD (with `ofd_margin`), KDSVD;
- `relational`: SP, RKD, PKT (batch-relational);
- `heads`: CC, VID (losses with trainable heads, `HeadLoss`);
- `review`: ReviewKD (attention-based fusion of the stages, hierarchical context loss);
- `staged`: AB, FT (heads trained in a stage before the main training, `Stage`);
- `contrastive`: CRD (embedding heads and a memory bank indexed by sample);
- `base`: `ShapedLoss`, `HeadLoss`, `Stage`, `PairingError`, `Connector` and shared helpers.

Every loss is a HybridBlock that returns the **per-sample** loss, shape
(B,), unweighted; the trainer adds ``weight * loss`` to each sample's
cross-entropy and averages over the batch (as the original's MakeLoss /
SoftmaxOutput with ``grad_scale=weight`` and an optimizer that rescales by
1/batch). A batch-relational loss returns a (B,) vector whose mean is its
batch loss; under several devices each device's share is its own batch.
Teacher inputs never receive gradients. Losses are parameter-free unless
their entry declares ``heads``: then the block owns trainable heads, shaped
from its inputs, that train with the student.

Adding a method: write one loss block and add one `METHODS` entry that
declares what the loss takes (`Method` below); `core.distiller` routes the
inputs from the declaration.
"""
import math                                          # noqa: F401  (names the former transfer.py module
from collections import OrderedDict, namedtuple      # offered stay importable from symbols.transfer)

from mxnet import ndarray as nd                      # noqa: F401
from mxnet.gluon import nn, HybridBlock              # noqa: F401

from ..common import batch_norm                      # noqa: F401
from .base import (NORM_EPS, PairingError, ShapedLoss, HeadLoss, Connector, Stage, STAGE_TRAINS, stage_settings,
                   freeze, _rows,
                   _rows_original, _pool_to)
from .logit import KDLoss, DKDLoss, DISTLoss
from .feature import (NSTLoss, OriginalNSTPolyLoss, ATLoss, FitNetLoss, FSPLoss, OFDLoss, KDSVDLoss,
                      ofd_margin)
from .relational import SPLoss, RKDLoss, PKTLoss
from .heads import CCLoss, VIDLoss
from .review import ReviewKDLoss
from .staged import ABLoss, FTLoss
from .contrastive import CRDLoss

# ---------------------------------------------------------------------------
# Registry: one entry a method.
#   name, weight: the registry key and the peers' CIFAR weight (`default_weight`);
#   make(cfg): the loss block from the config's loss options (a dict; `make({})` gives
#           the peers' defaults);
#   inputs: what the loss block is called with (see INPUTS);
#   connector: the student tap goes through a Connector (1x1 conv + BN) to the
#           teacher's channels first ('feature' methods);
#   margin: the loss also takes the OFD margin of the teacher tap;
#   labels: the loss also takes the ground-truth labels (B,), as its last input;
#   warmup_epochs: 0, or W > 0 to scale the method's weight by min((epoch + 1) / W, 1)
#           in the 0-based epoch (mdistiller's min(epoch / W, 1) with epochs from 1);
#           `warmup_factor` computes it, `DistillBlock.set_epoch` applies it;
#   relational: the loss is batch-relational (its per-sample values are shares of a batch
#           loss; under several devices each device's batch is its own);
#   heads: the loss block owns trainable parameters (a `HeadLoss`): `core.distiller` keeps it
#           in `DistillBlock.extras` (trained with the student, saved in `.extra.params`,
#           restored on resume, not exported) and calls its `build(*shapes)` with the
#           per-sample shapes of its inputs (from the taps' shapes) before initialisation;
#   indices: the loss also takes each sample's index in the training set, (B,), as its last
#           input (after the labels); the data layer supplies it (CRD's memory bank); a loss that
#           keeps a per-sample state declares state outputs (`HeadLoss.n_states`), which the
#           trainer hands to its `update_state` after every optimizer step;
#   stages: `Stage`s run by the trainer before epoch 0 in plan order (FT's paraphraser, AB's
#           initialisation), skipped on resume (their results are in the checkpoint), each
#           followed by the loss block's `finish_stage(name)`; config keys `<stage>_epochs` and
#           `<stage>_lr` override a stage's epochs and learning rate.
INPUTS = OrderedDict([
    ('logits', 'student and teacher logits (B, K); the method takes no taps'),
    ('feature', 'per tap pair: the student and the teacher feature map (B, C, H, W)'),
    ('vector', 'per tap pair: the student and the teacher tap, each a vector (B, D) or a map '
               '(B, C, H, W) that the loss pools globally'),
    ('fsp', 'per tap pair of (a, b) taps: student a, student b, teacher a, teacher b maps'),
    ('layers', 'all of the method\'s tap pairs in one call, in order: student taps 1..n, then teacher '
               'taps 1..n (n >= 2), maps (B, C, H, W) or, for a loss that takes them, vectors (B, D); its '
               'term is scaled by the sum of the layer weights'),
])

Method = namedtuple('Method', 'name inputs connector margin weight make labels warmup_epochs relational heads '
                    'indices stages', defaults=(False, 0, False, False, False, ()))

METHODS = OrderedDict()
METHODS['kd'] = Method('kd', 'logits', False, False, 16.0, lambda c: KDLoss(c.get('kd_t', 4.0)))
METHODS['fitnet'] = Method('fitnet', 'feature', True, False, 100.0, lambda c: FitNetLoss())
METHODS['at'] = Method('at', 'feature', False, False, 1000.0, lambda c: ATLoss(c.get('at_p', 2)))
METHODS['mmd'] = Method('mmd', 'feature', False, False, 50.0,
                        lambda c: NSTLoss(c.get('mmd_kernel', 'poly'), c.get('mmd_degree', 2),
                                          c.get('mmd_c', 0.0)))
METHODS['fsp'] = Method('fsp', 'fsp', False, False, 1.0, lambda c: FSPLoss())
METHODS['ofd'] = Method('ofd', 'feature', True, True, 1e-3, lambda c: OFDLoss())
# RepDistiller / mdistiller CIFAR-100 weights: SP 3000, RKD 1 (25 / 50 inside), PKT 30000, KDSVD 1.
METHODS['sp'] = Method('sp', 'feature', False, False, 3000.0, lambda c: SPLoss(), relational=True)
METHODS['rkd'] = Method('rkd', 'vector', False, False, 1.0,
                        lambda c: RKDLoss(c.get('rkd_distance', 25.0), c.get('rkd_angle', 50.0)),
                        relational=True)
METHODS['pkt'] = Method('pkt', 'vector', False, False, 30000.0, lambda c: PKTLoss(), relational=True)
METHODS['kdsvd'] = Method('kdsvd', 'layers', False, False, 1.0, lambda c: KDSVDLoss(c.get('kdsvd_k', 1)))
# mdistiller DKD: CE weight 1, alpha 1, beta 8, T 4 inside the loss, warm-up 20 epochs.
METHODS['dkd'] = Method('dkd', 'logits', False, False, 1.0,
                        lambda c: DKDLoss(c.get('dkd_alpha', 1.0), c.get('dkd_beta', 8.0), c.get('dkd_t', 4.0)),
                        labels=True, warmup_epochs=20)
# torchdistill DISTLoss(beta=1, gamma=1, tau=1) with weight 2 (its only DIST config, ILSVRC2012).
METHODS['dist'] = Method('dist', 'logits', False, False, 2.0,
                         lambda c: DISTLoss(c.get('dist_beta', 1.0), c.get('dist_gamma', 1.0),
                                            c.get('dist_tau', 1.0)),
                         relational=True)
# Losses with trainable heads. RepDistiller's CIFAR-100 script (scripts/run_cifar_distill.sh):
# correlation -b 0.02, vid -b 1 (VID summed over its layer pairs); its CC heads are LinearEmbed
# (feat_dim 128). mdistiller ReviewKD: REVIEWKD_WEIGHT 1.0 (engine/cfg.py; its
# configs/cifar100/reviewkd.yaml, ResNet-32x4 -> 8x4, sets 5.0), WARMUP_EPOCHS 20.
METHODS['cc'] = Method('cc', 'vector', False, False, 0.02,
                       lambda c: CCLoss(c.get('cc_feat_dim', 128), c.get('cc_normalize', False)),
                       relational=True, heads=True)
METHODS['vid'] = Method('vid', 'feature', False, False, 1.0,
                        lambda c: VIDLoss(c.get('vid_init_pred_var', 5.0), c.get('vid_eps', 1e-5)), heads=True)
METHODS['reviewkd'] = Method('reviewkd', 'layers', False, False, 1.0,
                             lambda c: ReviewKDLoss(c.get('reviewkd_mid_channels')), warmup_epochs=20, heads=True)
# RepDistiller's CIFAR-100 two-stage methods and CRD (train_student.py, helper/pretrain.py,
# scripts/run_cifar_distill.sh): init_epochs 30; AB's init at the run's lr, then -b 0 (its main
# training adds no AB term); FT's paraphraser at lr 0.01, then -b 200 with FactorTransfer(2, 1),
# rate 0.5; CRD -b 0.8 with feat_dim 128, nce_k 16384, nce_t 0.07, nce_m 0.5. CRD's memory bank
# has a row per training sample: the trainer passes `num_samples` with the loss options.
METHODS['ab'] = Method('ab', 'layers', False, False, 0.0, lambda c: ABLoss(c.get('ab_margin', 1.0)), heads=True,
                       stages=(Stage('ab_init', 'student', 30, None, lambda loss: loss),))
METHODS['ft'] = Method('ft', 'feature', False, False, 200.0,
                       lambda c: FTLoss(c.get('ft_p1', 2.0), c.get('ft_p2', 1.0), c.get('ft_rate', 0.5)), heads=True,
                       stages=(Stage('ft_init', 'heads', 30, 0.01, lambda loss: loss.paraphraser),))
METHODS['crd'] = Method('crd', 'vector', False, False, 0.8,
                        lambda c: CRDLoss(c.get('num_samples'), c.get('crd_feat_dim', 128), c.get('crd_nce_k', 16384),
                                          c.get('crd_nce_t', 0.07), c.get('crd_nce_m', 0.5)),
                        relational=True, heads=True, indices=True)
ALIASES = {'nst': 'mmd'}


def canonical_method(name):
    """'nst' -> 'mmd'; unknown names raise ValueError listing the methods."""
    name = ALIASES.get(name, name)
    if name not in METHODS:
        raise ValueError('unknown transfer method %r; available: %s (nst is an alias of mmd)'
                         % (name, ', '.join(METHODS)))
    return name


def parse_kt_type(kt_type):
    """'kd+mmd' -> ['kd', 'mmd'] (aliases resolved, duplicates rejected)."""
    names = [canonical_method(p.strip()) for p in str(kt_type).split('+') if p.strip()]
    if not names:
        raise ValueError('kt_type is empty; use e.g. "kd", "mmd" or "kd+mmd"')
    if len(set(names)) != len(names):
        raise ValueError('kt_type %r names a method twice' % kt_type)
    return names


def default_weight(method, kernel='poly'):
    """The paper's weight for `method` (NST: 50 for linear/poly, 100 for Gaussian)."""
    method = canonical_method(method)
    if method == 'mmd' and kernel == 'gaussian':
        return 100.0
    return METHODS[method].weight


def takes_taps(method):
    """Whether `method` reads network taps (everything but the logit methods)."""
    return METHODS[canonical_method(method)].inputs != 'logits'


def warmup_epochs(method, override=None):
    """The warm-up of `method` in epochs: 0 for a method that declares none; for one that
    declares W > 0, `override` (config key kt_warmup_epochs) when given, else W."""
    w = METHODS[canonical_method(method)].warmup_epochs
    return w if not w or override is None else override


def warmup_factor(method, epoch, override=None):
    """The factor on `method`'s weight in the 0-based `epoch`: min((epoch + 1) / W, 1) with W its
    warm-up (`warmup_epochs`), 1 without one."""
    w = warmup_epochs(method, override)
    return 1.0 if not w else min((epoch + 1) / float(w), 1.0)


__all__ = ['NORM_EPS', 'PairingError', 'ShapedLoss', 'HeadLoss', 'Connector', 'KDLoss', 'DKDLoss', 'DISTLoss',
           'NSTLoss', 'OriginalNSTPolyLoss', 'ATLoss', 'FitNetLoss', 'FSPLoss', 'OFDLoss', 'KDSVDLoss', 'ofd_margin',
           'SPLoss', 'RKDLoss', 'PKTLoss', 'CCLoss', 'VIDLoss', 'ReviewKDLoss', 'ABLoss', 'FTLoss', 'CRDLoss',
           'Stage', 'STAGE_TRAINS', 'stage_settings', 'freeze', 'INPUTS', 'Method', 'METHODS',
           'ALIASES', 'canonical_method', 'parse_kt_type', 'default_weight', 'takes_taps', 'warmup_epochs', 'warmup_factor']
