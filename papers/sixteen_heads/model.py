"""Head ablation, head-importance scores and head pruning (Michel, Levy & Neubig,
"Are Sixteen Heads Really Better than One?", NeurIPS 2019, arXiv 1905.10650).

The paper's delta is an analysis of a trained Transformer, not a new layer:

* Background (mask variables): each head's output is multiplied by a gate,
  ``MHAtt(x, q) = sum_h xi_h Att_h(x, q)`` with ``xi_h in {0, 1}``; ``xi_h = 0`` removes
  head h. The suite's ``MultiHeadAttention(head_mask=...)`` applies exactly this gate before
  the output projection, and ``TransformerSeq2Seq(head_mask={"encoder"|"decoder"|"cross":
  (layers, heads)})`` gates the three attention kinds the paper ablates separately
  (Enc-Enc, Enc-Dec, Dec-Dec).
* Sec. ablating_one (ablating one head): evaluate the model with a single ``xi_h = 0``.
* Sec. ablating_all_but_one (all heads but one): in one layer keep only head h; the paper
  reports, per layer, the best head to keep.
* Pruning section (head importance score): ``I_h = E_{x ~ X} |dL(x)/dxi_h|`` evaluated at the
  current mask (a first-order Taylor estimate of the loss change when head h is masked;
  by the chain rule it equals ``|Att_h(x)^T dL(x)/dAtt_h(x)|``). Scores are normalised per
  layer by their l2 norm (the official scripts pass ``--normalize-by-layer`` (MT) and
  ``--normalize_pruning_by_layer`` (BERT); copies of the authors' BERT fork divide each layer's scores by
  their l2 norm). The paper text beyond the abstract was not reachable from here, so the
  equation is transcribed from the definition in the catalogue and the official repo.
* Pruning section (iterative pruning): remove heads in increasing order of importance, a fixed percentage
  of all heads at a time, and evaluate after each step (the figure: accuracy/BLEU vs
  fraction pruned). By default the scores are computed once (copies of the authors' BERT fork in the code index recompute
  them only with ``--exact_pruning``); ``iterative_pruning_masks`` (``recompute_importance``) re-estimates them under the
  current mask before every step. A random pruning order is the baseline.

Section names follow the labels of the v3 LaTeX source (``sec:ablating_one``,
``sec:ablating_all_but_one``); section numbers were not confirmed.

Masks are dicts ``kind -> (layers, heads)`` float tensors (1 = keep).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.blocks.seq2seq import TransformerSeq2Seq
from repro.head_importance import KINDS, Mask, mask_shape, normalize_by_layer, ones_mask  # noqa: F401 (re-exported)
from repro.head_importance import head_importance as shared_importance

from .data import PAD, decoder_input, vocab_size

# KINDS: Enc-Enc, Dec-Dec, Enc-Dec attention (the paper's E, D, A)
Head = tuple[str, int, int]  # (kind, layer, head)


# ---------------------------------------------------------------------------- masks
def all_heads(mask: Mask) -> list[Head]:
    return [(k, layer, h) for k in KINDS if k in mask for layer in range(mask[k].shape[0])
            for h in range(mask[k].shape[1])]


def ablate_one(mask: Mask, head: Head) -> Mask:
    """Sec. ablating_one: the same mask with head ``(kind, layer, h)`` removed (xi_h = 0)."""
    out = {k: v.clone() for k, v in mask.items()}
    kind, layer, h = head
    out[kind][layer, h] = 0.0
    return out


def keep_only(mask: Mask, head: Head) -> Mask:
    """Sec. ablating_all_but_one: in layer ``layer`` of ``kind`` keep only head ``h``."""
    out = {k: v.clone() for k, v in mask.items()}
    kind, layer, h = head
    out[kind][layer] = 0.0
    out[kind][layer, h] = 1.0
    return out


# ---------------------------------------------------------------------------- loss / accuracy
def per_example_loss(net: TransformerSeq2Seq, batch: dict[str, Tensor], head_mask: Mask | None = None) -> Tensor:
    """L(x) for each example: the summed token negative log-likelihood of the reference
    under teacher forcing, shape (B,)."""
    tgt = batch["tgt"]
    logits = net(batch["src"], decoder_input(tgt), head_mask=head_mask)
    nll = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD, reduction="none")
    return nll.sum(dim=1)


@torch.no_grad()
def accuracy(net: TransformerSeq2Seq, batches: Iterable[dict[str, Tensor]], head_mask: Mask | None = None
             ) -> tuple[float, float]:
    """(token accuracy, sequence accuracy) in percent, teacher-forced, over non-pad
    target tokens (the <eos> included)."""
    right = total = seq_right = seqs = 0
    for b in batches:
        tgt = b["tgt"]
        pred = net(b["src"], decoder_input(tgt), head_mask=head_mask).argmax(-1)
        real = tgt != PAD
        ok = (pred == tgt) & real
        right += int(ok.sum())
        total += int(real.sum())
        seq_right += int((ok | ~real).all(dim=1).sum())
        seqs += tgt.shape[0]
    return 100.0 * right / max(total, 1), 100.0 * seq_right / max(seqs, 1)


# ---------------------------------------------------------------------------- importance (Sec. 4.1)
def head_importance(net: TransformerSeq2Seq, batches: Iterable[dict[str, Tensor]], *, base_mask: Mask | None = None,
                    normalize: bool = True) -> Mask:
    """I_h = E_x |dL(x)/dxi_h| for every head at the gates ``base_mask`` (default all 1), with
    L the summed token NLL of the reference; ``normalize``: the paper's per-layer l2
    normalisation. The gate-gradient computation is the shared ``repro.head_importance``."""
    return shared_importance(net, batches, per_example_loss, base_mask=base_mask, normalize=normalize)


# ---------------------------------------------------------------------------- pruning (Sec. 4)
def importance_order(scores: Mask, alive: Mask | None = None) -> list[Head]:
    """Heads (still alive) from least to most important; ties broken by position."""
    heads = [hd for hd in all_heads(scores) if alive is None or alive[hd[0]][hd[1], hd[2]] > 0]
    return sorted(heads, key=lambda hd: (float(scores[hd[0]][hd[1], hd[2]]), KINDS.index(hd[0]), hd[1], hd[2]))


def random_order(mask: Mask, generator: torch.Generator) -> list[Head]:
    heads = all_heads(mask)
    return [heads[i] for i in torch.randperm(len(heads), generator=generator).tolist()]


def prune(mask: Mask, order: Sequence[Head], n_prune: int, *, min_heads_per_layer: int = 1) -> tuple[Mask, int]:
    """Remove up to ``n_prune`` more heads from ``mask``, taking them in ``order`` and
    skipping any head whose removal would leave its layer with fewer than
    ``min_heads_per_layer`` heads (0 allows emptying a layer). Returns the new mask and
    how many heads it removed."""
    out = {k: v.clone() for k, v in mask.items()}
    removed = 0
    for kind, layer, h in order:
        if removed >= n_prune:
            break
        if out[kind][layer, h] == 0:
            continue
        if int((out[kind][layer] > 0).sum()) - 1 < min_heads_per_layer:
            continue
        out[kind][layer, h] = 0.0
        removed += 1
    return out, removed


def pruning_masks(mask: Mask, order: Sequence[Head], fractions: Sequence[float], *,
                  min_heads_per_layer: int = 1) -> list[Mask]:
    """Nested masks with ``round(f * n_heads)`` heads removed for each fraction f (fixed order)."""
    n_total = len(all_heads(mask))
    return [prune(mask, order, round(f * n_total), min_heads_per_layer=min_heads_per_layer)[0] for f in fractions]


def iterative_pruning_masks(net: TransformerSeq2Seq, batches: list[dict[str, Tensor]], fractions: Sequence[float], *,
                            min_heads_per_layer: int = 1, normalize: bool = True) -> list[Mask]:
    """Like ``pruning_masks`` by importance, but the scores are re-estimated under the
    current mask before each step (the fork's ``--exact_pruning``)."""
    cur = ones_mask(net)
    n_total = len(all_heads(cur))
    masks = []
    for f in fractions:
        target = round(f * n_total)
        have = n_total - sum(int((v > 0).sum()) for v in cur.values())
        if target > have:
            scores = head_importance(net, batches, base_mask=cur, normalize=normalize)
            cur, _ = prune(cur, importance_order(scores, cur), target - have, min_heads_per_layer=min_heads_per_layer)
        masks.append({k: v.clone() for k, v in cur.items()})
    return masks


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman correlation (average ranks for ties)."""
    def ranks(v):
        t = torch.tensor(list(v), dtype=torch.float64)
        order = t.argsort()
        r = torch.empty_like(t)
        r[order] = torch.arange(len(t), dtype=torch.float64)
        for val in t.unique():  # average tied ranks
            idx = t == val
            r[idx] = r[idx].mean()
        return r
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / den if den > 0 else math.nan


# ---------------------------------------------------------------------------- the analysis
def pct_tag(f: float) -> str:
    return f"p{round(100 * f):02d}"


def analyse(net: TransformerSeq2Seq, importance_batches: list, test_batches: list, cfg, seed: int) -> dict[str, float]:
    """Sec. ablating_one, ablating_all_but_one and the pruning section on a trained model; accuracies in percent (test split)."""
    net.eval()
    full = ones_mask(net)
    base_acc, base_seq = accuracy(net, test_batches)
    m: dict[str, float] = {"test/acc": base_acc, "test/seq_acc": base_seq}
    heads = all_heads(full)
    # Sec. ablating_one: one head at a time
    deltas = {}
    for hd in heads:
        deltas[hd] = accuracy(net, test_batches, ablate_one(full, hd))[0] - base_acc
        m[f"ablation/{hd[0]}_L{hd[1]}_H{hd[2]}"] = deltas[hd]
    d = list(deltas.values())
    m["ablation/frac_under_1pt"] = sum(abs(x) < 1.0 for x in d) / len(d)
    m["ablation/max_drop"] = -min(d)
    m["ablation/mean_delta"] = sum(d) / len(d)
    for k in KINDS:
        dk = [v for hd, v in deltas.items() if hd[0] == k]
        m[f"ablation/frac_under_1pt_{k}"] = sum(abs(x) < 1.0 for x in dk) / len(dk)
    # Sec. ablating_all_but_one: all heads but one in a layer; the best head per layer
    under = []
    for k in KINDS:
        for layer in range(full[k].shape[0]):
            best = max(accuracy(net, test_batches, keep_only(full, (k, layer, h)))[0] - base_acc
                       for h in range(full[k].shape[1]))
            m[f"keep_one/{k}_L{layer}_best_delta"] = best
            under.append(best > -1.0)
    m["keep_one/frac_layers_within_1pt"] = sum(under) / len(under)
    # pruning section, importance score: importance, and how well it ranks the single-head ablation drops
    scores = head_importance(net, importance_batches, normalize=cfg.normalize_by_layer)
    m["importance/spearman_vs_ablation_drop"] = rank_correlation(
        [float(scores[k][layer, h]) for k, layer, h in heads], [-deltas[hd] for hd in heads])
    # Pruning: pruning curves, importance order vs random orders
    fr = list(cfg.prune_fractions)
    if cfg.recompute_importance:
        imp_masks = iterative_pruning_masks(net, importance_batches, fr, min_heads_per_layer=cfg.min_heads_per_layer,
                                            normalize=cfg.normalize_by_layer)
    else:
        imp_masks = pruning_masks(full, importance_order(scores), fr, min_heads_per_layer=cfg.min_heads_per_layer)
    g = torch.Generator().manual_seed(10_000 + seed)
    rand = [pruning_masks(full, random_order(full, g), fr, min_heads_per_layer=cfg.min_heads_per_layer)
            for _ in range(cfg.random_orders)]
    for i, f in enumerate(fr):
        tag = pct_tag(f)
        m[f"prune/importance_{tag}"] = accuracy(net, test_batches, imp_masks[i])[0]
        m[f"prune/random_{tag}"] = sum(accuracy(net, test_batches, r[i])[0] for r in rand) / len(rand)
        m[f"prune/heads_removed_{tag}"] = float(len(heads) - sum(int((v > 0).sum()) for v in imp_masks[i].values()))
    return m


# ---------------------------------------------------------------------------- training
class SortModule(L.LightningModule):
    """A small Transformer encoder-decoder (the shared ``TransformerSeq2Seq``) trained by
    teacher-forced cross-entropy on the sorting task."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        v = vocab_size(cfg.n_symbols)
        self.net = TransformerSeq2Seq(v, v, dim=cfg.dim, heads=cfg.heads, encoder_layers=cfg.layers,
                                      decoder_layers=cfg.layers, ffn_dim=cfg.ffn_dim, dropout=cfg.dropout,
                                      norm_first=True, share_embeddings=True, pad_id=PAD,
                                      max_positions=cfg.max_len + 2)
        self._acc = [0, 0]

    def _loss(self, batch) -> Tensor:
        return per_example_loss(self.net, batch).sum() / (batch["tgt"] != PAD).sum()

    def training_step(self, batch, _):
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        self.log("val/loss", self._loss(batch))

    def on_test_epoch_start(self):
        self._acc = [0, 0]

    def test_step(self, batch, _):
        tgt = batch["tgt"]
        pred = self.net(batch["src"], decoder_input(tgt)).argmax(-1)
        real = tgt != PAD
        self._acc[0] += int(((pred == tgt) & real).sum())
        self._acc[1] += int(real.sum())

    def on_test_epoch_end(self):
        self.log("test/acc_trainer", 100.0 * self._acc[0] / max(self._acc[1], 1))

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr, betas=(0.9, 0.98))
        total, warm = max(1, self.cfg.max_steps), max(1, self.cfg.warmup_steps)

        def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 0
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
