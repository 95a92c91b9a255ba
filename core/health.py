"""Warnings for a model that is still finite but no longer sane.

A classifier's logits stay within tens in a healthy run; a run whose lr is too high for its batch
can blow them up to 1e10 and beyond while every loss and weight stays finite, and such a model then
trains, evaluates and exports without an error while being useless (its softmax is one-hot, its
float32 arithmetic overflows in any other order of operations, e.g. onnxruntime's).
"""

LOGIT_LIMIT = 1e4        # |logit| beyond this is taken as a sign of divergence, not of confidence
LOSS_LIMIT = 1e3         # a detection loss term (cross-entropy or smooth-L1 per box) beyond this: diverged


def logit_warning(largest, what):
    """The warning for `what` (e.g. 'checkpoint model/RUN (epoch 3)') whose largest |logit| is
    `largest`, or None when that is within LOGIT_LIMIT."""
    if not largest > LOGIT_LIMIT:
        return None
    return ('%s has logits up to %.2g (a healthy classifier stays within tens): the training has diverged '
            'while staying finite, most likely an lr too high for the batch size; lower lr (or raise batch_size) '
            'and train again, or use an earlier epoch' % (what, largest))


def loss_warning(terms, what, limit=LOSS_LIMIT):
    """The warning for `what` (e.g. 'epoch 3') whose mean loss terms {name: value} include some beyond
    `limit` (a detector's cross-entropies start near ln(classes) and its box losses near 1), or None."""
    high = ['%s %.3g' % (k, v) for k, v in sorted(terms.items()) if v == v and v > limit]
    if not high:
        return None
    return ('the losses of %s are far beyond a converging run\'s (%s): the training has diverged while staying '
            'finite, most likely an lr too high; lower lr and train again, or use an earlier epoch'
            % (what, ', '.join(high)))
