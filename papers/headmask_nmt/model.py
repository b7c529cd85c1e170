"""HeadMask (Sun, Huang, Dai & Chen, "Alleviating the Inequality of Attention Heads for
Neural Machine Translation", COLING 2022, arXiv 2009.09672).

The paper's delta is a training-time regulariser: in every training batch, k attention
heads are masked (their output gate xi_h = 0, the gates of Michel et al. 2019 that the
shared ``MultiHeadAttention(head_mask=...)`` applies), so that the model cannot depend on a
few heads and the others are trained too. Two ways of choosing the k heads (abstract: "in
two specific ways"; method names from the paper's result rows "Random-18" / "Impt-18"):

* Random-k: k heads drawn uniformly without replacement, anew for every batch
  (``random_k_mask``);
* Impt-k: the k *most important* heads on the current batch are masked
  (``impt_k_mask``), importance being Michel et al.'s ``I_h = E_x |dL(x)/dxi_h|`` computed
  with one extra backward pass on the batch (``repro.head_importance.batch_importance``).

Beyond the abstract and the result rows, the paper text was not readable here and there
is no official code, so three details are our assumptions, stated in the README: heads are
counted over all attention kinds (encoder self, decoder self, encoder-decoder; 144 heads in
a 6+6-layer, 8-head Transformer, so k=18 masks 12.5%); a masked head is zeroed without
rescaling the others; no mask is applied at test time.

The analysis (``analyse``) measures what the paper's motivation is about, how unequal the
heads of the trained model are: importance scores on held-out data and the accuracy lost
when each head alone is removed, summarised by their spread (coefficient of variation, Gini).
"""

from __future__ import annotations

import torch
from torch import Tensor

from repro.blocks.seq2seq import TransformerSeq2Seq
from repro.head_importance import KINDS, Mask, batch_importance, flat, head_importance, ones_mask

from .data import PAD, NMTModule, decoder_input, per_example_loss


# --------------------------------------------------------------------------- mask sampling
def random_k_mask(base: Mask, k: int, generator: torch.Generator | None = None) -> Mask:
    """Random-k: zero k heads drawn uniformly (without replacement) from all heads."""
    sizes = [v.numel() for v in base.values()]
    n = sum(sizes)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside [0, {n}] heads")
    idx = torch.randperm(n, generator=generator)[:k]
    gates = torch.ones(n)
    gates[idx] = 0.0
    return _unflat(gates, base)


def impt_k_mask(scores: Mask, k: int) -> Mask:
    """Impt-k: zero the k heads with the largest importance scores (ties: lower index first)."""
    s = flat({kk: scores[kk] for kk in KINDS if kk in scores}).double()
    n = s.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside [0, {n}] heads")
    order = sorted(range(n), key=lambda i: (-float(s[i]), i))[:k]
    gates = torch.ones(n)
    gates[order] = 0.0
    return _unflat(gates, scores)


def _unflat(gates: Tensor, like: Mask) -> Mask:
    out, i = {}, 0
    for kk in KINDS:
        if kk in like:
            v = like[kk]
            out[kk] = gates[i:i + v.numel()].view_as(v).to(device=v.device, dtype=v.dtype)
            i += v.numel()
    return out


def gate_loss(net: TransformerSeq2Seq, batch, gates) -> Tensor:
    return per_example_loss(net, batch, gates)


class HeadMaskModule(NMTModule):
    """``NMTModule`` whose training steps mask k heads (``cfg.mask``: none | random | impt)."""

    def __init__(self, cfg, vocab_size: int, detok=None, refs=None, seed: int = 0) -> None:
        super().__init__(cfg, vocab_size, detok, refs)
        self._gen = torch.Generator().manual_seed(7919 * int(seed) + 1)

    def train_head_mask(self, batch):
        c = self.cfg
        if c.mask == "none" or c.mask_k == 0:
            return None
        base = ones_mask(self.net)
        if c.mask == "random":
            return random_k_mask(base, c.mask_k, self._gen)
        if c.mask == "impt":
            scores, _ = batch_importance(self.net, batch, gate_loss, base)  # this batch, current (training) mode
            return impt_k_mask(scores, c.mask_k)
        raise ValueError(f"unknown mask {c.mask!r}")


# --------------------------------------------------------------------------- analysis
def token_accuracy(net: TransformerSeq2Seq, batches, mask: Mask | None = None) -> float:
    ok = tot = 0
    with torch.no_grad():
        for b in batches:
            pred = net(b["src"], decoder_input(b["tgt"]), head_mask=mask).argmax(-1)
            real = b["tgt"] != PAD
            ok += int(((pred == b["tgt"]) & real).sum())
            tot += int(real.sum())
    return 100.0 * ok / max(tot, 1)


def cv(x: Tensor) -> float:
    """Coefficient of variation std/mean (population std)."""
    x = x.double()
    return float(x.std(unbiased=False) / x.mean().clamp_min(1e-20))


def gini(x: Tensor) -> float:
    """Gini coefficient of non-negative values (0 = all equal)."""
    x = x.double().clamp_min(0).sort().values
    n = x.numel()
    if n == 0 or float(x.sum()) == 0.0:
        return 0.0
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * x.sum()))


def analyse(net: TransformerSeq2Seq, importance_batches: list, test_batches: list) -> dict[str, float]:
    """Head inequality of a trained model: importance I_h (held-out split; raw and
    l2-normalised per layer) and single-head ablation drops (test split, token accuracy)."""
    net.eval()
    m: dict[str, float] = {}
    raw = head_importance(net, importance_batches, gate_loss, normalize=False)
    r = flat(raw)
    m["importance/cv"] = cv(r)
    m["importance/gini"] = gini(r)
    m["importance/max_over_mean"] = float(r.max() / r.mean().clamp_min(1e-20))
    m["importance/cv_layer_normalised"] = cv(flat(head_importance(net, importance_batches, gate_loss)))
    base = token_accuracy(net, test_batches)
    m["ablation/base_acc"] = base
    full = ones_mask(net)
    drops = []
    for kind in KINDS:
        if kind not in full:
            continue
        layers, heads = full[kind].shape
        for layer in range(layers):
            for h in range(heads):
                mask = {k: v.clone() for k, v in full.items()}
                mask[kind][layer, h] = 0.0
                drops.append(base - token_accuracy(net, test_batches, mask))
    d = torch.tensor(drops, dtype=torch.float64)
    m["ablation/drop_mean"] = float(d.mean())
    m["ablation/drop_std"] = float(d.std(unbiased=False))
    m["ablation/drop_max"] = float(d.max())
    m["ablation/drop_gini"] = gini(d)
    return m
