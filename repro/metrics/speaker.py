"""Speaker-verification metrics on scikit-learn's ROC curve.

No maintained library gives a normalised, memory-safe minDCF (speechbrain's is
unnormalised and O(N^2) in memory), so minDCF is these few lines over
``sklearn.metrics.roc_curve``. EER convention: the mean of FAR and FRR at the ROC
point where they are closest (as pyannote/torchmetrics report it).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve


def _rates(labels, scores):
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    if labels.min() == labels.max():
        raise ValueError("EER/minDCF need both target (1) and non-target (0) trials")
    fpr, tpr, thr = roc_curve(labels, scores)
    return fpr, 1.0 - tpr, thr


def eer(labels, scores) -> float:
    """Equal error rate (fraction, 0..1)."""
    fpr, fnr, _ = _rates(labels, scores)
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def min_dcf(labels, scores, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost (NIST SRE / VoxSRC definition)."""
    fpr, fnr, _ = _rates(labels, scores)
    dcf = c_miss * fnr * p_target + c_fa * fpr * (1 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target)))
