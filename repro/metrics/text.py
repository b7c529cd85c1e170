"""BLEU through sacreBLEU (the field's reference implementation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class BleuResult:
    score: float  # 0..100
    signature: str
    precisions: tuple[float, ...]
    bp: float


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], *, tokenize: str = "13a",
                lowercase: bool = False) -> BleuResult:
    """Corpus BLEU with one reference per segment.

    ``tokenize="13a"`` is sacreBLEU's standard (detokenized input); ``"none"`` scores
    already tokenized text as ``multi-bleu.perl`` does ("tokenized BLEU"), which is what
    papers before 2018 reported; a claim's protocol says which.
    """
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses vs {len(refs)} references")
    metric = BLEU(tokenize=tokenize, lowercase=lowercase, force=tokenize == "none")
    res = metric.corpus_score(list(hyps), [list(refs)])
    return BleuResult(res.score, str(metric.get_signature()), tuple(res.precisions), res.bp)
