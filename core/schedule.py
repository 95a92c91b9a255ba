"""Learning-rate schedule as a pure function of the (fractional) epoch, so a
resumed run continues exactly where it stopped.

lr(e) = base * warm(e) * decay(e), with
  warm(e)  = min(1, e / warmup_epochs)            (1 without warm-up)
  decay(e) = factor ** (number of steps <= e)     ('step')
           = (1 + cos(pi * e' / E')) / 2           ('cosine', e' and E' counted after warm-up)
"""
import bisect
import math


def learning_rate(epoch, base, mode='step', steps=(), factor=0.1, num_epoch=1, warmup_epochs=0.0):
    warm = 1.0
    if warmup_epochs > 0 and epoch < warmup_epochs:
        warm = epoch / float(warmup_epochs)
    if mode == 'cosine':
        span = max(1e-8, num_epoch - warmup_epochs)
        t = min(1.0, max(0.0, (epoch - warmup_epochs) / span))
        decay = 0.5 * (1 + math.cos(math.pi * t))
    else:
        decay = factor ** bisect.bisect_right(list(steps), epoch + 1e-9)
    return base * warm * decay


def from_config(cfg):
    """lr(epoch_float) for a validated config."""
    return lambda e: learning_rate(e, cfg.lr, cfg.lr_mode, cfg.lr_step, cfg.lr_factor, cfg.num_epoch,
                                   cfg.warmup_epochs)
