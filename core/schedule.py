"""Learning-rate schedule as a pure function of the (fractional) epoch, so a
resumed run continues exactly where it stopped.

lr(e, s) = base * warm(e) * decay(e) * warm_steps(s), with e the fractional epoch, s the global step
(batches trained before this one), and
  warm(e)       = min(1, e / warmup_epochs)            (1 without warm-up)
  decay(e)      = factor ** (number of steps <= e)     ('step')
                = (1 + cos(pi * e' / E')) / 2           ('cosine', e' and E' counted after warm-up)
                = (1 - e' / E') ** power                ('poly', DeepLab's; power 0.9 by default)
  warm_steps(s) = min(1, (s + 1) / warmup_iters)       (1 without step warm-up: detection's recipe)
"""
import bisect
import math


def learning_rate(epoch, base, mode='step', steps=(), factor=0.1, num_epoch=1, warmup_epochs=0.0, power=0.9):
    warm = 1.0
    if warmup_epochs > 0 and epoch < warmup_epochs:
        warm = epoch / float(warmup_epochs)
    if mode in ('cosine', 'poly'):
        span = max(1e-8, num_epoch - warmup_epochs)
        t = min(1.0, max(0.0, (epoch - warmup_epochs) / span))
        decay = 0.5 * (1 + math.cos(math.pi * t)) if mode == 'cosine' else (1.0 - t) ** power
    else:
        decay = factor ** bisect.bisect_right(list(steps), epoch + 1e-9)
    return base * warm * decay


def from_config(cfg):
    """lr(epoch_float, step) for a validated config of any task (keys it has not: their defaults)."""
    mode, warmup_epochs = cfg.get('lr_mode', 'step'), cfg.get('warmup_epochs', 0)
    warmup_iters = cfg.get('warmup_iters', 0)

    def lr(e, step=0):
        value = learning_rate(e, cfg.lr, mode, cfg.get('lr_step', ()), cfg.get('lr_factor', 0.1), cfg.num_epoch,
                              warmup_epochs, cfg.get('lr_power', 0.9))
        if warmup_iters and step < warmup_iters:
            value *= (step + 1) / float(warmup_iters)
        return value
    return lr
