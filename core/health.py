"""Warnings for a model that is still finite but no longer sane.

A classifier's logits stay within tens in a healthy run; a run whose lr is too high for its batch
can blow them up to 1e10 and beyond while every loss and weight stays finite, and such a model then
trains, evaluates and exports without an error while being useless (its softmax is one-hot, its
float32 arithmetic overflows in any other order of operations, e.g. onnxruntime's).
"""

LOGIT_LIMIT = 1e4        # |logit| beyond this is taken as a sign of divergence, not of confidence


def logit_warning(largest, what):
    """The warning for `what` (e.g. 'checkpoint model/RUN (epoch 3)') whose largest |logit| is
    `largest`, or None when that is within LOGIT_LIMIT."""
    if not largest > LOGIT_LIMIT:
        return None
    return ('%s has logits up to %.2g (a healthy classifier stays within tens): the training has diverged '
            'while staying finite, most likely an lr too high for the batch size; lower lr (or raise batch_size) '
            'and train again, or use an earlier epoch' % (what, largest))
