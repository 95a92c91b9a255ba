"""Segmentation's loss."""
from mxnet import gluon

IGNORE = 255


class PixelLoss(gluon.HybridBlock):
    """Per image, the mean softmax cross-entropy over its pixels whose label is not 255: scores
    (B, K, H, W), labels (B, H, W) -> (B,); an image without a labelled pixel gives 0."""

    def hybrid_forward(self, F, scores, label):
        valid = label != IGNORE
        logp = F.log_softmax(scores, axis=1)
        picked = F.pick(logp, label * valid, axis=1)                     # (B, H, W)
        total = F.sum(-picked * valid, axis=(1, 2))
        return total / F.maximum(F.sum(valid, axis=(1, 2)), 1)
