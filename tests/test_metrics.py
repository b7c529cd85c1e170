"""Shared metric wrappers against hand-computed cases and a second implementation."""

from __future__ import annotations

import numpy as np
import pytest

from repro.metrics.speaker import eer, min_dcf
from repro.metrics.text import corpus_bleu

pytestmark = pytest.mark.unit


def test_eer_hand_computed():
    # targets 0.9, 0.8, 0.4; non-targets 0.7, 0.3, 0.2: one target (0.4) below one non-target (0.7)
    labels = [1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2]
    assert eer(labels, scores) == pytest.approx(1 / 3)
    assert eer([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_eer_matches_torchmetrics_on_random_trials():
    import torch
    from torchmetrics.functional.classification import binary_eer

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    scores = rng.normal(labels * 1.5, 1.0)
    ours = eer(labels, scores)
    theirs = float(binary_eer(torch.tensor(scores), torch.tensor(labels)))
    assert ours == pytest.approx(theirs, abs=2e-3)  # conventions differ only in the ROC point used


def test_min_dcf_normalised_hand_computed():
    labels = [1, 1, 0, 0]
    scores = [0.9, 0.2, 0.8, 0.1]
    # thresholds: accept >= 0.9 -> miss 0.5, fa 0 ; >= 0.8 -> miss 0.5, fa 0.5 ; >= 0.2 -> miss 0, fa 0.5
    p = 0.05
    expect = min(0.5 * p, 0.5 * p + 0.5 * (1 - p), 0.5 * (1 - p), 1 * p) / min(p, 1 - p)
    assert min_dcf(labels, scores, p_target=p) == pytest.approx(expect)
    with pytest.raises(ValueError, match="both target"):
        min_dcf([1, 1], [0.1, 0.2])


def test_bleu_wraps_sacrebleu_and_reports_signature():
    hyps = ["the cat sat on the mat", "a quick brown fox"]
    refs = ["the cat sat on the mat", "the quick brown fox"]
    res = corpus_bleu(hyps, refs)
    import sacrebleu

    assert res.score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert "tok:13a" in res.signature and "nrefs:1" in res.signature
    assert corpus_bleu(refs, refs).score == pytest.approx(100.0)
    tok = corpus_bleu(["a , b c &quot; d ."], ["a , b c &quot; d ."], tokenize="none")
    assert tok.score == pytest.approx(100.0) and "tok:none" in tok.signature
    with pytest.raises(ValueError):
        corpus_bleu(["a"], ["a", "b"])
