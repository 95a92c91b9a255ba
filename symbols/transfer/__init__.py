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

Adding a method: write one loss block and `register` one `Method` that declares
what the loss takes and its options (registry.py); `tasks.classification.distiller` routes the
inputs from the declaration, config/schema.py and the docs read the options.
"""
import math                                          # noqa: F401  (names the former transfer.py module
from collections import OrderedDict, namedtuple      # noqa: F401  (offered stay importable from symbols.transfer)

from mxnet import ndarray as nd                      # noqa: F401
from mxnet.gluon import nn, HybridBlock              # noqa: F401

from ..common import batch_norm                      # noqa: F401
from .base import (NORM_EPS, PairingError, ShapedLoss, HeadLoss, Connector, Stage, STAGE_TRAINS, stage_settings,
                   freeze, _rows,
                   _rows_original, _pool_to)
from .logit import KDLoss, DKDLoss, DISTLoss
from .feature import (NSTLoss, OriginalNSTPolyLoss, ATLoss, FitNetLoss, FSPLoss, OFDLoss, KDSVDLoss, CWDLoss,
                      ofd_margin)
from .relational import SPLoss, RKDLoss, PKTLoss
from .heads import CCLoss, VIDLoss
from .review import ReviewKDLoss
from .staged import ABLoss, FTLoss
from .contrastive import CRDLoss

from .registry import (INPUTS, Option, Method, METHODS, ALIASES, register, method_options, canonical_method,
                       parse_kt_type, default_weight, takes_taps, warmup_epochs, warmup_factor)
from .feature import ofd_teacher_margin

# ---------------------------------------------------------------------------
# The registered methods (registry.py says what each field declares). Weights: the NST paper's for
# KD, FitNet, AT, NST, FSP and OFD's; the peers' CIFAR-100 ones for the rest (RepDistiller,
# mdistiller, torchdistill).
register(Method(
    'kd', 'logits', 16.0, lambda o: KDLoss(o['kd_t']), 'Hinton et al., Distilling the Knowledge in a Neural '
    'Network, 2015', options=[Option('kd_t', 4.0, 'KD temperature', min=0, strict=True)]))
register(Method(
    'fitnet', 'feature', 100.0, lambda o: FitNetLoss(), 'Romero et al., FitNets: Hints for Thin Deep Nets, ICLR '
    '2015', connector=True))
register(Method(
    'at', 'feature', 1000.0, lambda o: ATLoss(o['at_p']), 'Zagoruyko & Komodakis, Paying More Attention to '
    'Attention, ICLR 2017', options=[Option('at_p', 2.0, 'attention-transfer exponent p', min=0, strict=True)],
    spatial=True))
register(Method(
    'mmd', 'feature', lambda o: 100.0 if o['mmd_kernel'] == 'gaussian' else 50.0,
    lambda o: NSTLoss(o['mmd_kernel'], o['mmd_degree'], o['mmd_c']),
    'Huang & Wang, Like What You Like: Knowledge Distill via Neuron Selectivity Transfer, 2017 (NST; weight 50, '
    'Gaussian kernel 100)',
    options=[Option('mmd_kernel', 'poly', 'NST kernel', type='choice', choices=('linear', 'poly', 'gaussian')),
             Option('mmd_degree', 2, 'NST poly degree d', type='int', min=1),
             Option('mmd_c', 0.0, 'NST poly constant c')], spatial=True))
register(Method(
    'fsp', 'fsp', 1.0, lambda o: FSPLoss(), 'Yim et al., A Gift from Knowledge Distillation (FSP), CVPR 2017'))
register(Method(
    'ofd', 'feature', 1e-3, lambda o: OFDLoss(), 'Heo et al., A Comprehensive Overhaul of Feature Distillation, '
    'ICCV 2019', connector=True, margin=ofd_teacher_margin))
# mmrazor's CWD on PSPNet R101 -> R18 Cityscapes logits: tau 1, loss weight 3 (the paper's feature runs: tau 4).
register(Method(
    'cwd', 'feature', 3.0, lambda o: CWDLoss(o['cwd_tau']), 'Shu et al., Channel-wise Knowledge Distillation for '
    'Dense Prediction, ICCV 2021 (CWD)',
    options=[Option('cwd_tau', 1.0, 'CWD temperature of the per-channel spatial softmax (mmrazor PSPNet logits: 1; '
                                    'the paper\'s feature maps: 4)', min=0, strict=True)], spatial=True))
# RepDistiller / mdistiller CIFAR-100 weights: SP 3000, RKD 1 (25 / 50 inside), PKT 30000, KDSVD 1.
register(Method(
    'sp', 'tensor', 3000.0, lambda o: SPLoss(), 'Tung & Mori, Similarity-Preserving Knowledge Distillation, '
    'ICCV 2019', relational=True))
register(Method(
    'rkd', 'vector', 1.0, lambda o: RKDLoss(o['rkd_distance'], o['rkd_angle']), 'Park et al., Relational '
    'Knowledge Distillation, CVPR 2019', relational=True,
    options=[Option('rkd_distance', 25.0, 'RKD weight of the distance term', min=0),
             Option('rkd_angle', 50.0, 'RKD weight of the angle term', min=0)]))
register(Method(
    'pkt', 'vector', 30000.0, lambda o: PKTLoss(), 'Passalis & Tefas, Learning Deep Representations with '
    'Probabilistic Knowledge Transfer, ECCV 2018', relational=True))
register(Method(
    'kdsvd', 'layers', 1.0, lambda o: KDSVDLoss(o['kdsvd_k']), 'Lee et al., Self-supervised Knowledge '
    'Distillation Using Singular Value Decomposition, ECCV 2018',
    options=[Option('kdsvd_k', 1, 'KDSVD: singular vectors compared per layer', type='int', min=1)]))
# mdistiller DKD: CE weight 1, alpha 1, beta 8, T 4 inside the loss, warm-up 20 epochs.
register(Method(
    'dkd', 'logits', 1.0, lambda o: DKDLoss(o['dkd_alpha'], o['dkd_beta'], o['dkd_t']), 'Zhao et al., Decoupled '
    'Knowledge Distillation, CVPR 2022', labels=True, warmup_epochs=20,
    options=[Option('dkd_alpha', 1.0, 'DKD weight of the target-class term (mdistiller: 1)', min=0),
             Option('dkd_beta', 8.0, 'DKD weight of the non-target term (mdistiller CIFAR-100: 8; 2 for ResNet-56 '
                                     '-> 20, 6 for WRN-40-2 -> 16-2)', min=0),
             Option('dkd_t', 4.0, 'DKD temperature', min=0, strict=True)]))
# torchdistill DISTLoss(beta=1, gamma=1, tau=1) with weight 2 (its only DIST config, ILSVRC2012).
register(Method(
    'dist', 'logits', 2.0, lambda o: DISTLoss(o['dist_beta'], o['dist_gamma'], o['dist_tau']), 'Huang et al., '
    'Knowledge Distillation from A Stronger Teacher (DIST), NeurIPS 2022', relational=True,
    options=[Option('dist_beta', 1.0, 'DIST weight of the inter-class relation', min=0),
             Option('dist_gamma', 1.0, 'DIST weight of the intra-class relation', min=0),
             Option('dist_tau', 1.0, 'DIST temperature', min=0, strict=True)]))
# Losses with trainable heads. RepDistiller's CIFAR-100 script (scripts/run_cifar_distill.sh):
# correlation -b 0.02, vid -b 1 (VID summed over its layer pairs); its CC heads are LinearEmbed
# (feat_dim 128). mdistiller ReviewKD: REVIEWKD_WEIGHT 1.0 (engine/cfg.py; its
# configs/cifar100/reviewkd.yaml, ResNet-32x4 -> 8x4, sets 5.0), WARMUP_EPOCHS 20.
register(Method(
    'cc', 'vector', 0.02, lambda o: CCLoss(o['cc_feat_dim'], o['cc_normalize']), 'Peng et al., Correlation '
    'Congruence for Knowledge Distillation, ICCV 2019', relational=True, heads=True,
    options=[Option('cc_feat_dim', 128, 'CC: dimension of the student and teacher embedding heads (RepDistiller '
                                        'feat_dim 128)', type='int', min=1),
             Option('cc_normalize', False, 'CC: L2-normalise the embeddings (RepDistiller Embed); false: '
                                           'LinearEmbed, as its CIFAR script', type='bool')]))
register(Method(
    'vid', 'feature', 1.0, lambda o: VIDLoss(o['vid_init_pred_var'], o['vid_eps']), 'Ahn et al., Variational '
    'Information Distillation for Knowledge Transfer, CVPR 2019', heads=True,
    options=[Option('vid_init_pred_var', 5.0, 'VID: initial per-channel variance (RepDistiller 5.0)', min=0,
                    strict=True),
             Option('vid_eps', 1e-5, 'VID: variance floor (RepDistiller 1e-5)', min=0, strict=True)]))
register(Method(
    'reviewkd', 'layers', 1.0, lambda o: ReviewKDLoss(o['reviewkd_mid_channels']), 'Chen et al., Distilling '
    'Knowledge via Knowledge Review, CVPR 2021', warmup_epochs=20, heads=True,
    options=[Option('reviewkd_mid_channels', None, 'ReviewKD: ABF mid channels; null: min(512, channels of the '
                                                   'deepest student tap) as mdistiller', type='int', min=1,
                    optional=True)]))
# RepDistiller's CIFAR-100 two-stage methods and CRD (train_student.py, helper/pretrain.py,
# scripts/run_cifar_distill.sh): init_epochs 30; AB's init at the run's lr, then -b 0 (its main
# training adds no AB term); FT's paraphraser at lr 0.01, then -b 200 with FactorTransfer(2, 1),
# rate 0.5; CRD -b 0.8 with feat_dim 128, nce_k 16384, nce_t 0.07, nce_m 0.5. CRD's memory bank
# has a row per training sample: the trainer passes `num_samples` with the loss options.
register(Method(
    'ab', 'layers', 0.0, lambda o: ABLoss(o['ab_margin']), 'Heo et al., Knowledge Transfer via Distillation of '
    'Activation Boundaries Formed by Hidden Neurons, AAAI 2019', heads=True,
    stages=(Stage('ab_init', 'student', 30, None, lambda loss: loss),),
    options=[Option('ab_margin', 1.0, 'AB: margin m of the activation-boundary loss (RepDistiller 1.0)', min=0,
                    strict=True),
             Option('ab_init_epochs', None, 'AB: epochs of its initialisation stage before epoch 0 (student up to '
                                            'the taps and connectors on the AB loss alone); null: 30 as RepDistiller; '
                                            '0 skips it', type='int', min=0, optional=True),
             Option('ab_init_lr', None, 'AB: constant lr of its initialisation stage; null: the run\'s lr '
                                        '(RepDistiller)', min=0, strict=True, optional=True)]))
register(Method(
    'ft', 'feature', 200.0, lambda o: FTLoss(o['ft_p1'], o['ft_p2'], o['ft_rate']), 'Kim et al., Paraphrasing '
    'Complex Network: Network Compression via Factor Transfer, NeurIPS 2018', heads=True,
    stages=(Stage('ft_init', 'heads', 30, 0.01, lambda loss: loss.paraphraser),),
    options=[Option('ft_p1', 2.0, 'FT: power p1 of the factors\' channel mean (RepDistiller 2)', min=0, strict=True),
             Option('ft_p2', 1.0, 'FT: power p2 of the factor difference (RepDistiller 1: L1)', min=0, strict=True),
             Option('ft_rate', 0.5, 'FT: factor channels / teacher channels k (RepDistiller 0.5)', min=0, max=1,
                    strict=True),
             Option('ft_init_epochs', None, 'FT: epochs of the stage that trains the teacher\'s paraphraser before '
                                            'epoch 0; null: 30 as RepDistiller; 0 skips it', type='int', min=0,
                    optional=True),
             Option('ft_init_lr', None, 'FT: constant lr of the paraphraser stage; null: 0.01 (RepDistiller for '
                                        'ResNet/WRN students)', min=0, strict=True, optional=True)]))
register(Method(
    'crd', 'vector', 0.8,
    lambda o: CRDLoss(o.get('num_samples'), o['crd_feat_dim'], o['crd_nce_k'], o['crd_nce_t'], o['crd_nce_m']),
    'Tian et al., Contrastive Representation Distillation, ICLR 2020', relational=True, heads=True, indices=True,
    options=[Option('crd_feat_dim', 128, 'CRD: dimension of the embedding heads and the memory bank (RepDistiller '
                                         'feat_dim 128)', type='int', min=1),
             Option('crd_nce_k', 16384, 'CRD: negatives per sample, drawn uniformly from the training set '
                                        '(RepDistiller nce_k 16384)', type='int', min=1),
             Option('crd_nce_t', 0.07, 'CRD: temperature (RepDistiller nce_t 0.07)', min=0, strict=True),
             Option('crd_nce_m', 0.5, 'CRD: momentum of the memory-bank update (RepDistiller nce_m 0.5)', min=0,
                    max=1, max_strict=True)]))


__all__ = ['NORM_EPS', 'PairingError', 'ShapedLoss', 'HeadLoss', 'Connector', 'KDLoss', 'DKDLoss', 'DISTLoss',
           'NSTLoss', 'OriginalNSTPolyLoss', 'ATLoss', 'FitNetLoss', 'FSPLoss', 'OFDLoss', 'KDSVDLoss', 'ofd_margin',
           'SPLoss', 'RKDLoss', 'PKTLoss', 'CCLoss', 'VIDLoss', 'ReviewKDLoss', 'ABLoss', 'FTLoss', 'CRDLoss',
           'Stage', 'STAGE_TRAINS', 'stage_settings', 'freeze', 'INPUTS', 'Option', 'Method', 'METHODS',
           'register', 'method_options', 'ofd_teacher_margin', 'ALIASES', 'canonical_method', 'parse_kt_type', 'default_weight', 'takes_taps', 'warmup_epochs', 'warmup_factor']
