"""Captioning metrics through pycocoevalcap (the coco-caption code every captioning
paper since 2015 reports with): PTBTokenizer, BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D
and, where Stanford CoreNLP 3.6.0 has been installed for it, SPICE.

``COCOEvalCap.evaluate()`` is not used: it always builds SPICE, which downloads
CoreNLP at first use and so fails offline before computing anything. The scorers are
called one by one instead, exactly as ``COCOEvalCap.evaluate`` calls them.

All scores are returned on the papers' scale (x100: BLEU-4 24.3, CIDEr 113.5).
PTBTokenizer and METEOR run Java (``java`` on PATH; Java 17 is part of the CI image).
"""

from __future__ import annotations

import atexit
import math
import re
import shutil
import threading
from pathlib import Path
from typing import Hashable, Iterable, Mapping, Sequence

METRIC_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
SPICE_HOWTO = (
    "SPICE needs Stanford CoreNLP 3.6.0 (stanford-corenlp-3.6.0.jar and "
    "stanford-corenlp-3.6.0-models.jar) in pycocoevalcap/spice/lib/. On a machine with internet run "
    "`python -c \"from pycocoevalcap.spice.get_stanford_models import get_stanford_models; "
    "get_stanford_models()\"` (or copy the two jars there by hand), then run with `--set spice=true`."
)

_METEOR = None
_METEOR_LOCK = threading.Lock()


def _require_java() -> None:
    if shutil.which("java") is None:
        from repro.errors import ReproError

        raise ReproError(
            "the coco-caption PTBTokenizer and METEOR need Java, and `java` is not on PATH",
            hint="apt-get install -y default-jre-headless (Java 17 is what CI uses)",
        )


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap.bleu.bleu as _b

    return Path(_b.__file__).resolve().parent.parent


def spice_available() -> bool:
    """True when SPICE can run offline: CoreNLP 3.6.0 jars are in place."""
    lib = _pycocoevalcap_dir() / "spice" / "lib"
    return (lib / "stanford-corenlp-3.6.0.jar").exists() and (lib / "stanford-corenlp-3.6.0-models.jar").exists()


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """coco-caption's PTBTokenizer (Stanford CoreNLP 3.4.1 PTBTokenizer, lower-cased,
    punctuation removed) over ``{key: [caption, ...]}``."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    _require_java()
    keys = list(captions)
    # PTBTokenizer keys its output by the input keys; it needs them hashable and unique
    inp = {i: [{"caption": c} for c in captions[k]] for i, k in enumerate(keys)}
    out = PTBTokenizer().tokenize(inp)
    return {k: out[i] for i, k in enumerate(keys)}


_PUNCT = re.compile(r"[^\w\s]")


def simple_tokenize(text: str) -> str:
    """Lower-case and drop punctuation (what PTBTokenizer's output looks like for plain
    captions). Used for SCST rewards, where a JVM call per batch would be too slow."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _meteor():
    global _METEOR
    with _METEOR_LOCK:
        if _METEOR is None:
            from pycocoevalcap.meteor.meteor import Meteor

            _require_java()
            _METEOR = Meteor()
            atexit.register(_close_meteor)
        return _METEOR


def _close_meteor() -> None:
    global _METEOR
    m, _METEOR = _METEOR, None
    if m is not None:
        try:
            m.meteor_p.stdin.close()
            m.meteor_p.kill()
            m.meteor_p.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def score_captions(
    refs: Mapping[Hashable, Sequence[str]],
    hyps: Mapping[Hashable, str],
    *,
    meteor: bool = True,
    spice: bool = False,
    tokenize: bool = True,
) -> dict[str, float]:
    """Corpus scores of one hypothesis per image against its references.

    Returns ``BLEU-1..4`` (coco-caption's BLEU: corpus-level, closest reference length,
    brevity penalty), ``METEOR`` (1.5, ``-l en -norm``), ``ROUGE-L`` and ``CIDEr``
    (pycocoevalcap's CIDEr-D: sigma 6, clipped, IDF from the scored reference set),
    all x100; ``SPICE`` only when ``spice=True`` and CoreNLP is installed
    (:data:`SPICE_HOWTO`), else it is absent.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(refs) != set(hyps):
        raise ValueError("refs and hyps must cover the same images")
    if not hyps:
        raise ValueError("nothing to score")
    keys = sorted(hyps, key=str)
    if tokenize:
        gts = ptb_tokenize({k: list(refs[k]) for k in keys})
        res = ptb_tokenize({k: [hyps[k]] for k in keys})
    else:
        gts = {k: [simple_tokenize(r) for r in refs[k]] for k in keys}
        res = {k: [simple_tokenize(hyps[k])] for k in keys}
    # the scorers index with the dict keys; strings keep their ordering stable
    gts = {str(k): v for k, v in gts.items()}
    res = {str(k): v for k, v in res.items()}
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, b in enumerate(bleu, 1):
        out[f"BLEU-{n}"] = 100.0 * float(b)
    if meteor:
        out["METEOR"] = 100.0 * float(_meteor().compute_score(gts, res)[0])
    out["ROUGE-L"] = 100.0 * float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = 100.0 * float(Cider().compute_score(gts, res)[0])
    if spice:
        if spice_available():
            from pycocoevalcap.spice.spice import Spice

            out["SPICE"] = 100.0 * float(Spice().compute_score(gts, res)[0])
    for k, v in out.items():
        if not math.isfinite(v):
            raise ValueError(f"{k} is not finite ({v})")
    return out


class CorpusCiderD:
    """CIDEr-D with document frequencies fixed to a training corpus, as self-critical
    training uses it for rewards (the official Up-Down SCST layer builds its scorer
    from the training captions once). The n-gram, tf-idf, clipping and length-penalty
    code is pycocoevalcap's ``CiderScorer``; only the IDF statistics are frozen."""

    def __init__(self, corpus_refs: Iterable[Sequence[str]], n: int = 4, sigma: float = 6.0) -> None:
        from pycocoevalcap.cider.cider_scorer import CiderScorer, cook_refs

        corpus = [list(r) for r in corpus_refs]
        if not corpus:
            raise ValueError("an empty reference corpus")
        base = CiderScorer(n=n, sigma=sigma)
        base.crefs = [cook_refs([simple_tokenize(s) for s in refs], n) for refs in corpus]
        base.ctest = [None] * len(base.crefs)
        base.compute_doc_freq()
        self._df = base.document_frequency
        self._ref_len = math.log(float(len(corpus)))
        self._n, self._sigma = n, sigma
        self._cls = _frozen_cider_class(CiderScorer)

    def scores(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[float]:
        """CIDEr-D (x1, as pycocoevalcap returns it per image) of each hypothesis."""
        from pycocoevalcap.cider.cider_scorer import cook_refs, cook_test

        if len(hyps) != len(refs):
            raise ValueError("one reference list per hypothesis")
        scorer = self._cls(n=self._n, sigma=self._sigma)
        scorer.document_frequency = self._df
        scorer.fixed_ref_len = self._ref_len
        scorer.crefs = [cook_refs([simple_tokenize(s) for s in r], self._n) for r in refs]
        scorer.ctest = [cook_test(simple_tokenize(h), self._n) for h in hyps]
        return [float(s) for s in scorer.compute_cider()]


def _frozen_cider_class(base):
    class _Frozen(base):
        """``compute_cider`` sets ``ref_len`` from the scored set; here it stays the corpus value."""

        fixed_ref_len = 0.0

        @property
        def ref_len(self):
            return self.fixed_ref_len

        @ref_len.setter
        def ref_len(self, _value):
            pass

    return _Frozen
