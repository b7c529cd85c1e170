"""Confidence through Attention (Rikters & Fishel, MT Summit 2017, arXiv 1710.03743).

The paper's delta is a score of one translation computed from its attention matrix
alone (no reference): the soft alignment ``alpha`` between the I output tokens and the
J input tokens (``<eos>`` included on both sides, as the official scorer appends it),
every output row a distribution over the input (``sum_j alpha_ij = 1``).

The paper's penalties, in the form of the official scorer (M4t1ss/ConfidenceThroughAttention,
``thecode.py``: ``getCP``, ``getEnt`` on input rows, ``getRevEnt`` on output rows), which
we follow where the formulas printed in the paper/poster are ambiguous:

* coverage deviation penalty (CDP): every input token should receive a total attention
  of about 1 over the output,
  ``CDP = -(1/J) sum_j log(1 + |1 - sum_i alpha_ij|^p)``; the official code uses p = 6
  (``getCP(ali, w=6)``), the printed formula a square (p = 2) -> ``Config.cdp_power``;
* absentmindedness penalty of the output (AP_out): every output token should attend to
  few input tokens, ``AP_out = -(1/I) sum_i H(alpha_i.)`` (entropy of each output row);
* absentmindedness penalty of the input (AP_in): every input token's attention over the
  output, renormalised, should be concentrated,
  ``AP_in = -(1/J) sum_j H(alpha_.j / sum_i alpha_ij)``; an input token that receives no
  attention at all contributes 0 here (the official code leaves this case undefined /
  resets the sum; CDP already penalises it);
* confidence = CDP + AP_out + AP_in (``Mult`` in the official ``score.py``); every term is
  <= 0 and 0 is the most confident (a one-to-one alignment). Use case 1 ranks sentences
  by it (filtering back-translated data); use case 2 (``hybrid_select``) takes, per
  sentence, the output of the system with the higher confidence.

``confidence`` is the batched implementation (padding masks, any batch); ``confidence_naive``
is a per-sentence loop transcribing the definitions above, the reference of the
equivalence tests.

The paper computed the scores from RNN encoder-decoders (Nematus, Neural Monkey), whose
single attention is the soft alignment. We use the suite's shared Transformer
(``repro.blocks.seq2seq.TransformerSeq2Seq``) and take as ``alpha`` the cross-attention
of one decoder layer (``attn_layer``, default the last) averaged over its heads; with
one decoder layer (our default) this is the only encoder-decoder attention the model has.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.blocks.seq2seq import TransformerSeq2Seq

from .data import BOS, CORRUPTIONS, EOS, PAD, corrupt, decoder_input, pad_batch

TERMS = ("cdp", "ap_out", "ap_in", "total")


# ---------------------------------------------------------------------------- the scores
def _xlogx(p: Tensor) -> Tensor:
    return torch.where(p > 0, p * torch.log(p.clamp_min(1e-30)), torch.zeros_like(p))


def confidence(alpha: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
               cdp_power: float = 6.0) -> dict[str, Tensor]:
    """CDP, AP_out, AP_in and their sum for a batch of attention matrices.

    ``alpha``: (B, I, J) output-by-input attention; ``src_mask`` (B, J) / ``tgt_mask``
    (B, I) are True on real tokens (default: all real). Padded rows and columns are
    ignored. Returns a dict of (B,) tensors."""
    B, I, J = alpha.shape
    sm = torch.ones(B, J, dtype=torch.bool, device=alpha.device) if src_mask is None else src_mask.bool()
    tm = torch.ones(B, I, dtype=torch.bool, device=alpha.device) if tgt_mask is None else tgt_mask.bool()
    a = alpha * (tm[:, :, None] & sm[:, None, :])
    n_in = sm.sum(1).clamp_min(1).to(a.dtype)
    n_out = tm.sum(1).clamp_min(1).to(a.dtype)
    col = a.sum(1)  # (B, J): attention each input token receives
    cdp = -(torch.log1p((1 - col).abs() ** cdp_power) * sm).sum(1) / n_in
    row = a.sum(2, keepdim=True)
    p_out = a / torch.where(row > 0, row, torch.ones_like(row))
    ap_out = (_xlogx(p_out).sum(2) * tm).sum(1) / n_out  # = -(1/I) sum_i H(row i)
    c = col[:, None, :]
    p_in = a / torch.where(c > 0, c, torch.ones_like(c))
    ap_in = (_xlogx(p_in).sum(1) * sm).sum(1) / n_in
    return {"cdp": cdp, "ap_out": ap_out, "ap_in": ap_in, "total": cdp + ap_out + ap_in}


def confidence_naive(alpha: Tensor, n_out: int, n_in: int, cdp_power: float = 6.0) -> dict[str, Tensor]:
    """One sentence, loops over the definitions (the reference): ``alpha[:n_out, :n_in]``."""
    rows = [[alpha[i, j] for j in range(n_in)] for i in range(n_out)]

    def neg_entropy(dist):
        total = sum(dist)
        if float(total.detach()) <= 0:
            return alpha.new_zeros(())
        return sum((p / total) * torch.log(p / total) if float(p.detach()) > 0 else alpha.new_zeros(()) for p in dist)

    cdp = -sum(torch.log(1 + (1 - sum(rows[i][j] for i in range(n_out))).abs() ** cdp_power)
               for j in range(n_in)) / n_in
    ap_out = sum(neg_entropy(rows[i]) for i in range(n_out)) / n_out
    ap_in = sum(neg_entropy([rows[i][j] for i in range(n_out)]) for j in range(n_in)) / n_in
    return {"cdp": cdp, "ap_out": ap_out, "ap_in": ap_in, "total": cdp + ap_out + ap_in}


def filter_by_confidence(items: Sequence, scores: Sequence[float], keep_fraction: float) -> list:
    """Use case 1: keep the ``keep_fraction`` of ``items`` (e.g. back-translated sentence
    pairs) with the highest confidence, in their original order (ties broken by position)."""
    if len(items) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(items)} items")
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError("keep_fraction must be in [0, 1]")
    k = round(keep_fraction * len(items))
    best = sorted(range(len(items)), key=lambda i: (-scores[i], i))[:k]
    return [items[i] for i in sorted(best)]


def hybrid_select(conf_a: Sequence[float], conf_b: Sequence[float]) -> list[int]:
    """Use case 2 (the official ``hybrid.py``): per sentence 0 if system A's confidence is
    higher, else 1 (ties go to B, as in the official comparison ``Mult1 > Mult2``)."""
    return [0 if a > b else 1 for a, b in zip(conf_a, conf_b)]


# ---------------------------------------------------------------------------- the NMT model
class ConfidenceNMT(L.LightningModule):
    """The shared Transformer encoder-decoder trained by teacher-forced cross-entropy;
    ``alignment`` returns the attention matrix the scores read."""

    def __init__(self, cfg, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = TransformerSeq2Seq(vocab_size, vocab_size, dim=cfg.dim, heads=cfg.heads,
                                      encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
                                      ffn_dim=cfg.ffn_dim, dropout=cfg.dropout, norm_first=True,
                                      share_embeddings=True, pad_id=PAD, max_positions=cfg.max_positions)

    def _loss(self, batch) -> Tensor:
        logits = self.net(batch["src"], decoder_input(batch["tgt"]))
        return F.cross_entropy(logits.transpose(1, 2), batch["tgt"], ignore_index=PAD)

    def training_step(self, batch, _):
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=batch["src"].shape[0])
        return loss

    def validation_step(self, batch, _):
        self.log("val/loss", self._loss(batch), batch_size=batch["src"].shape[0])

    def test_step(self, batch, _):
        self.log("test/loss", self._loss(batch), batch_size=batch["src"].shape[0])

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr, betas=(0.9, 0.98))
        total, warm = max(1, self.cfg.max_steps), max(1, self.cfg.warmup_steps)

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.no_grad()
def alignment(net: TransformerSeq2Seq, src: Tensor, tgt: Tensor, layer: int = -1) -> Tensor:
    """Forced decoding of ``tgt`` (with <eos>) given ``src``: the cross-attention of decoder
    layer ``layer`` averaged over heads, (B, I, J). For the model's own greedy output it
    equals the attention seen while decoding (the decoder is deterministic in eval mode)."""
    _, w = net(src, decoder_input(tgt), need_weights=True)
    return w["cross"][layer].mean(1)


def score_pairs(net, pairs: list[tuple[list[int], list[int]]], cfg, device) -> dict[str, list[float]]:
    """Confidence terms for each (source, output) id pair (no <eos> in the lists)."""
    out: dict[str, list[float]] = {k: [] for k in TERMS}
    for i in range(0, len(pairs), cfg.eval_batch_size):
        chunk = pairs[i:i + cfg.eval_batch_size]
        src = pad_batch([s for s, _ in chunk]).to(device)
        tgt = pad_batch([t for _, t in chunk]).to(device)
        a = alignment(net, src, tgt, cfg.attn_layer).float()
        conf = confidence(a, src != PAD, tgt != PAD, cfg.cdp_power)
        for k in TERMS:
            out[k] += conf[k].tolist()
    return out


@torch.no_grad()
def greedy_outputs(net, sources: list[list[int]], cfg, device) -> list[list[int]]:
    hyps: list[list[int]] = []
    for i in range(0, len(sources), cfg.eval_batch_size):
        src = pad_batch(sources[i:i + cfg.eval_batch_size]).to(device)
        res = net.generate(src, bos=BOS, eos=EOS, beam_size=1, max_len_a=cfg.max_len_a, max_len_b=cfg.max_len_b)
        hyps += [h[0].tokens for h in res]
    return hyps


def analyse(net, dm, cfg, seed: int, device) -> dict[str, float]:
    """The two tests of the cpu analogue (README):

    1. separation: references vs corrupted outputs (drop / repeat / swap, one per
       sentence in turn), all force-decoded by the model; AUROC of each score
       (reference = positive class);
    2. quality: greedy translations of the quality set; Pearson and Spearman correlation
       of each score with sentence BLEU (sacreBLEU) against the references."""
    import numpy as np
    import sacrebleu
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import roc_auc_score

    net = net.to(device).eval()
    metrics: dict[str, float] = {}
    rng = random.Random(seed * 7919 + 1)
    sep = dm.splits["separation"]
    refs = [(s, t) for s, t in sep]
    bad, kinds = [], []
    for n, (s, t) in enumerate(sep):
        kind = CORRUPTIONS[n % len(CORRUPTIONS)]
        other = sep[(n + 1 + rng.randrange(len(sep) - 1)) % len(sep)][1] if len(sep) > 1 else t[:-1]
        c = corrupt(t, kind, rng, other)
        if c == t:  # a swap partner with the same output: not a corruption
            c = corrupt(t, "drop", rng, other)
        bad.append((s, c))
        kinds.append(kind)
    good_s, bad_s = score_pairs(net, refs, cfg, device), score_pairs(net, bad, cfg, device)
    y = np.r_[np.ones(len(refs)), np.zeros(len(bad))]
    for k in TERMS:
        metrics[f"sep/auroc_{k}"] = float(roc_auc_score(y, np.r_[good_s[k], bad_s[k]]))
    for kind in CORRUPTIONS:
        idx = [i for i, kk in enumerate(kinds) if kk == kind]
        if idx:
            yk = np.r_[np.ones(len(idx)), np.zeros(len(idx))]
            metrics[f"sep/auroc_total_{kind}"] = float(roc_auc_score(
                yk, np.r_[[good_s["total"][i] for i in idx], [bad_s["total"][i] for i in idx]]))
    metrics["sep/mean_total_reference"] = float(np.mean(good_s["total"]))
    metrics["sep/mean_total_corrupted"] = float(np.mean(bad_s["total"]))

    qual = dm.splits["quality"]
    hyps = greedy_outputs(net, [s for s, _ in qual], cfg, device)
    conf = score_pairs(net, [(s, h) for (s, _), h in zip(qual, hyps)], cfg, device)
    hyp_txt = [dm.detok(h) for h in hyps]
    ref_txt = [dm.detok(t) for _, t in qual]
    sbleu = np.array([sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyp_txt, ref_txt)])
    metrics["quality/corpus_bleu"] = float(sacrebleu.corpus_bleu(hyp_txt, [ref_txt]).score)
    metrics["quality/exact_match"] = float(np.mean([h == t for h, (_, t) in zip(hyps, qual)]))
    metrics["quality/sentence_bleu_std"] = float(sbleu.std())
    # A correlation with a constant (every output equally good or bad, e.g. an untrained
    # smoke model) is undefined; it is reported as 0 (no association shown) and flagged.
    metrics["quality/correlation_defined"] = 1.0
    for k in TERMS:
        x = np.asarray(conf[k])
        ok = sbleu.std() > 0 and x.std() > 0
        if not ok:
            metrics["quality/correlation_defined"] = 0.0
        metrics[f"quality/pearson_{k}"] = float(pearsonr(x, sbleu)[0]) if ok else 0.0
        metrics[f"quality/spearman_{k}"] = float(spearmanr(x, sbleu)[0]) if ok else 0.0
    metrics["n/separation"] = float(len(refs))
    metrics["n/quality"] = float(len(qual))
    return metrics
