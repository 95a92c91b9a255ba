"""Seconds per distillation step of the PyTorch peers' implementation of one method.

Runs under a Python with `torch` (and `yacs`, `scipy`, `tqdm` for mdistiller), never MXNet:

    bash benchmarks/peer_env.sh                     # .peer-venv and the peers' checkouts in .peers/
    .peer-venv/bin/python benchmarks/peers.py --method at --batch 128 --classes 100 --steps 10

It times the same step as `benchmarks.train_step`'s distillation step (teacher forward, student
forward, the losses, backward, SGD-momentum update) on random 32x32 data, teacher ResNet-56 and
student ResNet-20 of CIFAR (16-32-64 channels, as `cifar_resnet56` / `cifar_resnet20` here), with
the peer's own code imported from its checkout:

- RepDistiller (Tian et al., `--repdistiller DIR`): its `helper.loops.train_distill` runs the step
  (CE + its always-computed KL term + the method), its networks, its loss modules, set up as its
  `train_student.py` sets them up (kd, hint, attention, nst, similarity, rkd, pkt, kdsvd,
  correlation, vid, abound, factor, fsp, crd). Two-stage methods (abound, factor, fsp) are timed in
  their main training, after the stage, as this project times them.
- mdistiller (`--mdistiller DIR`): its distiller classes (DKD, ReviewKD, OFD) and its
  `BaseTrainer.train_iter` step, at its config defaults (DKD at beta 8; ReviewKD on ResNet-20's
  channels [16, 32, 64, 64]).
- DIST (torchdistill) and CWD (mmrazor) are not installable without their frameworks: their loss
  is restated here from the papers' definitions (DIST: tau^2 (beta (1 - mean_i pearson(p_s,i, p_t,i))
  + gamma (1 - mean_c pearson over the batch)); CWD: tau^2 / (N C) sum_{n,c} KL(softmax_hw(t/tau) ||
  softmax_hw(s/tau))) on RepDistiller's networks, in RepDistiller's step.

The last line printed is one JSON object: {method, peer, step_s, samples_s, ...}.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time
import types

# this project's method name -> (peer, the peer's own name of it)
PEERS = {
    'kd': ('RepDistiller', 'kd'), 'fitnet': ('RepDistiller', 'hint'), 'at': ('RepDistiller', 'attention'),
    'mmd': ('RepDistiller', 'nst'), 'fsp': ('RepDistiller', 'fsp'), 'sp': ('RepDistiller', 'similarity'),
    'rkd': ('RepDistiller', 'rkd'), 'pkt': ('RepDistiller', 'pkt'), 'kdsvd': ('RepDistiller', 'kdsvd'),
    'cc': ('RepDistiller', 'correlation'), 'vid': ('RepDistiller', 'vid'), 'ab': ('RepDistiller', 'abound'),
    'ft': ('RepDistiller', 'factor'), 'crd': ('RepDistiller', 'crd'),
    'dkd': ('mdistiller', 'DKD'), 'reviewkd': ('mdistiller', 'REVIEWKD'), 'ofd': ('mdistiller', 'OFD'),
    'dist': ('restated (torchdistill)', 'dist'), 'cwd': ('restated (mmrazor)', 'cwd'),
}


def _timed(run, steps, warmup):
    """Seconds per step of run(n) (n steps), after `warmup` steps; the peer's prints are swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        run(warmup)
        tic = time.time()
        run(steps)
    return (time.time() - tic) / steps


def _batches(torch, args, n, crd_k=None):
    """n (input, target, index[, contrast_idx]) batches of random data, as the peers' loaders give them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    y = torch.arange(args.batch) % args.classes
    index = torch.arange(args.batch)
    if crd_k is None:
        return [(x, y, index)] * n
    contrast = torch.randint(0, args.num_samples, (args.batch, crd_k + 1), generator=g)
    return [(x, y, index, contrast)] * n


def _restated(torch, name):
    """The loss module of a method restated from its definition (see the module doc)."""
    nn, F = torch.nn, torch.nn.functional

    def pearson(a, b, eps=1e-8):           # per row
        a = a - a.mean(1, keepdim=True)
        b = b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    class Dist(nn.Module):
        def forward(self, z_s, z_t, beta=1.0, gamma=1.0, tau=1.0):
            p_s, p_t = F.softmax(z_s / tau, dim=1), F.softmax(z_t / tau, dim=1)
            inter = 1 - pearson(p_s, p_t).mean()
            intra = 1 - pearson(p_s.t(), p_t.t()).mean()
            return tau ** 2 * (beta * inter + gamma * intra)

    class Cwd(nn.Module):
        def forward(self, g_s, g_t, tau=1.0):
            out = []
            for s, t in zip(g_s, g_t):
                n, c, h, w = t.shape
                p_t = F.softmax(t.reshape(-1, h * w) / tau, dim=1)
                kl = (p_t * (F.log_softmax(t.reshape(-1, h * w) / tau, dim=1)
                             - F.log_softmax(s.reshape(-1, h * w) / tau, dim=1))).sum()
                out.append(kl * tau ** 2 / (n * c))
            return out

    return Dist() if name == 'dist' else Cwd()


def repdistiller_step(torch, args, name):
    """Seconds per step of RepDistiller's `train_distill` for its method `name`."""
    sys.path.insert(0, args.repdistiller)
    from models import model_dict
    from distiller_zoo import (DistillKL, HintLoss, Attention, Similarity, Correlation, VIDLoss, RKDLoss, PKT,
                               ABLoss, FactorTransfer, KDSVD, FSP, NSTLoss)
    from crd.criterion import CRDLoss
    from helper.loops import train_distill
    from models.util import ConvReg, LinearEmbed, Connector, Translator, Paraphraser
    nn = torch.nn
    restated = name in ('dist', 'cwd')
    opt = types.SimpleNamespace(distill='kd' if restated else name, gamma=1.0, alpha=1.0, beta=1.0, kd_T=4,
                                hint_layer=2, feat_dim=128, nce_k=16384, nce_t=0.07, nce_m=0.5,
                                n_data=args.num_samples, print_freq=10 ** 9, mode='exact')
    model_t, model_s = model_dict['resnet56'](num_classes=args.classes), model_dict['resnet20'](num_classes=args.classes)
    data = torch.randn(2, 3, 32, 32)
    model_t.eval()
    model_s.eval()
    feat_t, _ = model_t(data, is_feat=True)
    feat_s, _ = model_s(data, is_feat=True)
    module_list, trainable = nn.ModuleList([model_s]), nn.ModuleList([model_s])
    criterion_kd = DistillKL(opt.kd_T)
    if name == 'hint':
        criterion_kd = HintLoss()
        regress = ConvReg(feat_s[opt.hint_layer].shape, feat_t[opt.hint_layer].shape)
        module_list.append(regress)
        trainable.append(regress)
    elif name == 'crd':
        opt.s_dim, opt.t_dim = feat_s[-1].shape[1], feat_t[-1].shape[1]
        # RepDistiller's ContrastMemory moves its sampler to the GPU unconditionally (`.cuda()`): on a
        # CPU-only torch that is made a no-op, and the memory stays where it is
        torch.Tensor.cuda = lambda self, *a, **k: self
        criterion_kd = CRDLoss(opt)
        for m in (criterion_kd.embed_s, criterion_kd.embed_t):
            module_list.append(m)
            trainable.append(m)
    elif name in ('attention', 'nst', 'similarity', 'rkd', 'pkt', 'kdsvd'):
        criterion_kd = {'attention': Attention, 'nst': NSTLoss, 'similarity': Similarity, 'rkd': RKDLoss,
                        'pkt': PKT, 'kdsvd': KDSVD}[name]()
    elif name == 'correlation':
        criterion_kd = Correlation()
        for m in (LinearEmbed(feat_s[-1].shape[1], opt.feat_dim), LinearEmbed(feat_t[-1].shape[1], opt.feat_dim)):
            module_list.append(m)
            trainable.append(m)
    elif name == 'vid':
        criterion_kd = nn.ModuleList([VIDLoss(s.shape[1], t.shape[1], t.shape[1])
                                      for s, t in zip(feat_s[1:-1], feat_t[1:-1])])
        trainable.append(criterion_kd)
    elif name == 'abound':
        module_list.append(Connector([f.shape for f in feat_s[1:-1]], [f.shape for f in feat_t[1:-1]]))
        criterion_kd = ABLoss(len(feat_s[1:-1]))
    elif name == 'factor':
        translator, paraphraser = Translator(feat_s[-2].shape, feat_t[-2].shape), Paraphraser(feat_t[-2].shape)
        criterion_kd = FactorTransfer()
        module_list.append(translator)
        module_list.append(paraphraser)
        trainable.append(translator)
    elif name == 'fsp':
        criterion_kd = FSP([s.shape for s in feat_s[:-1]], [t.shape for t in feat_t[:-1]])
    criterion_list = nn.ModuleList([nn.CrossEntropyLoss(), DistillKL(opt.kd_T), criterion_kd])
    optimizer = torch.optim.SGD(trainable.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    module_list.append(model_t)
    if restated:                        # the restated loss in RepDistiller's step, in place of its KD term
        loss = _restated(torch, name)
        if name == 'dist':
            criterion_list[1] = loss            # its KL slot: `kd` adds nothing else
        else:
            return _cwd_step(torch, args, module_list, criterion_list, optimizer, loss)
    crd_k = opt.nce_k if name == 'crd' else None
    return _timed(lambda n: train_distill(1, _batches(torch, args, n, crd_k), module_list, criterion_list, optimizer,
                                          opt), args.steps, args.warmup)


def _cwd_step(torch, args, module_list, criterion_list, optimizer, loss):
    """RepDistiller's step (its loop body) with CWD on the three stages' pre-activation maps."""
    model_s, model_t = module_list[0], module_list[-1]
    ce = criterion_list[0]

    def run(n):
        model_s.train()
        model_t.eval()
        for x, y, _ in _batches(torch, args, n):
            feat_s, logit_s = model_s(x, is_feat=True, preact=True)
            with torch.no_grad():
                feat_t, _ = model_t(x, is_feat=True, preact=True)
            total = ce(logit_s, y) + sum(loss(feat_s[1:-1], [f.detach() for f in feat_t[1:-1]]))
            total.item()
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
    return _timed(run, args.steps, args.warmup)


def mdistiller_step(torch, args, name):
    """Seconds per step of mdistiller's distiller `name` in the body of its BaseTrainer.train_iter."""
    sys.path.insert(0, args.mdistiller)
    engine = types.ModuleType('mdistiller.engine')      # its cfg, without the trainers' imports (tensorboardX, ...)
    engine.__path__ = [os.path.join(args.mdistiller, 'mdistiller', 'engine')]
    sys.modules['mdistiller.engine'] = engine
    from mdistiller.engine.cfg import CFG
    from mdistiller.distillers import distiller_dict
    from mdistiller.models.cifar import resnet20, resnet56
    cfg = CFG.clone()
    cfg.DISTILLER.TYPE = name
    cfg.REVIEWKD.IN_CHANNELS = cfg.REVIEWKD.OUT_CHANNELS = [16, 32, 64, 64]
    teacher, student = resnet56(num_classes=args.classes), resnet20(num_classes=args.classes)
    distiller = distiller_dict[name](student, teacher, cfg)
    distiller.train()
    optimizer = torch.optim.SGD(distiller.get_learnable_parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

    def run(n):
        for image, target, _ in _batches(torch, args, n):
            optimizer.zero_grad()
            preds, losses = distiller(image=image, target=target, epoch=100)
            loss = sum(l.mean() for l in losses.values())
            loss.backward()
            optimizer.step()
            preds.topk(5, 1)
            loss.cpu().detach().numpy().mean()
    return _timed(run, args.steps, args.warmup)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p.add_argument('--method', required=True, choices=sorted(PEERS), help="this project's name of the method")
    p.add_argument('--repdistiller', default=os.path.join(here, '.peers', 'RepDistiller'))
    p.add_argument('--mdistiller', default=os.path.join(here, '.peers', 'mdistiller'))
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--classes', type=int, default=100)
    p.add_argument('--num-samples', type=int, default=50000, help="CRD's memory bank rows (CIFAR: 50000)")
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        p.exit(2, 'error: this benchmark runs under a Python with torch: bash benchmarks/peer_env.sh, then '
                  '.peer-venv/bin/python benchmarks/peers.py ...\n')
    peer, name = PEERS[args.method]
    folder = args.mdistiller if peer == 'mdistiller' else args.repdistiller
    if not os.path.isdir(folder):
        p.exit(2, 'error: no checkout of %s at %s: bash benchmarks/peer_env.sh makes one, or give its folder\n'
               % (peer.split()[0] if peer.startswith('restated') else peer, folder))
    torch.manual_seed(0)
    step = (mdistiller_step if peer == 'mdistiller' else repdistiller_step)(torch, args, name)
    print(json.dumps({'method': args.method, 'peer': peer, 'peer_name': name, 'step_s': step,
                      'samples_s': args.batch / step, 'batch': args.batch, 'classes': args.classes,
                      'threads': torch.get_num_threads(), 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
