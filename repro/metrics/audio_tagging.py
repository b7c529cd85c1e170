"""Audio-tagging metrics: macro mean average precision (mAP) through torchmetrics.

Convention for classes without positives: the AP of a class with no positive label in
the evaluated set is undefined (precision is never reached at any recall).
torchmetrics 1.9 and scikit-learn 1.9 both score such a class 0 and torchmetrics' macro
average then counts it, which penalises a model for classes that a (shrunken) copy of
the test set simply does not contain. ``macro_map`` therefore **excludes classes without
positives from the macro mean** and returns how many were excluded, so a run can record
it. On a test set where every class has a positive (the published AudioSet eval list) this
equals ``MultilabelAveragePrecision(average="macro")`` exactly.
"""

from __future__ import annotations


def macro_map(scores, targets) -> tuple[float, int]:
    """(mAP over classes with >= 1 positive, number of classes excluded).

    ``scores``: (N, C) real-valued scores (logits or probabilities; AP depends only on
    their order within each class); ``targets``: (N, C) in {0, 1}.
    Computed with ``torchmetrics.classification.MultilabelAveragePrecision(average="macro")``
    on the columns that hold a positive.
    """
    import torch
    from torchmetrics.classification import MultilabelAveragePrecision

    scores = torch.as_tensor(scores, dtype=torch.float32)
    targets = torch.as_tensor(targets).long()
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be equal (N, C)")
    keep = targets.sum(0) > 0
    n_excluded = int((~keep).sum())
    if not bool(keep.any()):
        return float("nan"), n_excluded
    k = int(keep.sum())
    metric = MultilabelAveragePrecision(num_labels=k, average="macro", thresholds=None)
    return float(metric(scores[:, keep], targets[:, keep])), n_excluded


def one_hot(labels, num_classes: int):
    """Single-label targets (N,) as (N, C) multi-hot, for mAP over single-label sets."""
    import torch

    return torch.nn.functional.one_hot(torch.as_tensor(labels).long(), num_classes)


__all__ = ["macro_map", "one_hot"]
