"""The paper's analysis (Section 2-4, Tables 1 and 2) on our trained agreement model.

For every analysed test sentence: the importance of each input token by blank-out
(replace it with <unk>, drop in the probability of the correct class) and by input
gradient (|sum over embedding dimensions of d logit_correct / d embedding|, as in the
official correlation script), and three attention-based scores of the <cls> position at
every layer l: raw attention (heads averaged), attention rollout and attention flow.
Spearman's rank correlation (scipy.stats.spearmanr) between each score and each
importance over the sentence's positions, averaged over sentences. With
``include_cls`` (default) the <cls> position is one of the correlated positions (it is
blanked out and scored like any token), as in the official correlation script, which
correlates over every position up to the sequence length; it is also what Table 1 implies
(raw and rollout differ at layer 1, which they cannot if <cls> is left out, because the
residual identity only adds to the <cls> entry).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data import UNK, AgreementData, VOCAB, max_length
from .model import AgreementClassifier, attention_flow_fast, attention_rollout, residual_attention

METHODS = ("raw", "rollout", "flow")
IMPORTANCES = ("blankout", "grad")


@torch.no_grad()
def blankout_importance(net, tokens: torch.Tensor, length: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """(B, n): p(correct) - p(correct | token j replaced by <unk>), for every position
    including <cls> (j = 0); padding is 0."""
    p0 = F.softmax(net(tokens), -1).gather(1, label[:, None])[:, 0]
    out = torch.zeros(tokens.shape, dtype=torch.float32)
    for j in range(tokens.shape[1]):
        live = length > j
        if not live.any():
            break
        t = tokens.clone()
        t[live, j] = UNK
        p = F.softmax(net(t), -1).gather(1, label[:, None])[:, 0]
        out[live, j] = (p0 - p)[live]
    return out


def gradient_importance(net, tokens: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """(B, n): |sum_d d logit_correct / d e_{j,d}| w.r.t. the token embeddings."""
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inp, out):
        out.retain_grad()
        store["e"] = out

    handle = net.encoder.embed.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = net(tokens)
            logits.gather(1, label[:, None]).sum().backward()
    finally:
        handle.remove()
    net.zero_grad(set_to_none=True)
    return store["e"].grad.sum(-1).abs().detach()


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def analyse(net, batch: dict[str, torch.Tensor], min_tokens: int, include_cls: bool = True) -> dict[str, list[list[float]]]:
    """Per-sentence correlations: {f"{imp}/{method}": [[corr per layer] per sentence]}."""
    net.eval()
    tokens, length, label = batch["tokens"], batch["length"], batch["label"]
    with torch.no_grad():
        _, weights = net(tokens, need_weights=True)
    w = torch.stack(weights, 1).double().numpy()  # (B, L, H, n, n)
    imps = {"blankout": blankout_importance(net, tokens, length, label).numpy(),
            "grad": gradient_importance(net, tokens, label).numpy()}
    out: dict[str, list[list[float]]] = {f"{i}/{m}": [] for i in IMPORTANCES for m in METHODS}
    n_layers = w.shape[1]
    first = 0 if include_cls else 1
    for b in range(len(tokens)):
        n = int(length[b])
        if n - 1 < min_tokens:
            continue
        wb = w[b, :, :, :n, :n]
        a = residual_attention(wb)
        scores = {
            "raw": [wb[layer].mean(0)[0, first:] for layer in range(n_layers)],
            "rollout": [r[0, first:] for r in attention_rollout(a)],
            "flow": [attention_flow_fast(a, layer + 1, 0)[first:] for layer in range(n_layers)],
        }
        for imp, values in imps.items():
            target = values[b, first:n]
            for m in METHODS:
                out[f"{imp}/{m}"].append([_spearman(s, target) for s in scores[m]])
    return out


def summarise(corrs: dict[str, list[list[float]]], n_layers: int) -> dict[str, float]:
    """Means (and standard deviations) over sentences, plus the pattern metrics the claims
    read: middle layers = mean of L2..L4; differences of means."""
    m: dict[str, float] = {}
    for key, rows in corrs.items():
        arr = np.array(rows, dtype=np.float64).reshape(-1, n_layers)
        for layer in range(n_layers):
            col = arr[:, layer]
            col = col[np.isfinite(col)]
            m[f"{key}_L{layer + 1}"] = float(col.mean()) if len(col) else math.nan
            m[f"{key}_L{layer + 1}_std"] = float(col.std()) if len(col) else math.nan
            m[f"{key}_L{layer + 1}_n"] = float(len(col))
    last = n_layers
    mid = [2, 3, 4] if n_layers >= 4 else list(range(1, n_layers + 1))
    for imp in IMPORTANCES:
        for meth in METHODS:
            m[f"{imp}/{meth}_mid"] = float(np.mean([m[f"{imp}/{meth}_L{k}"] for k in mid]))
        for meth in ("rollout", "flow"):
            m[f"{imp}/{meth}_minus_raw_L{last}"] = m[f"{imp}/{meth}_L{last}"] - m[f"{imp}/raw_L{last}"]
            m[f"{imp}/{meth}_minus_raw_mid"] = m[f"{imp}/{meth}_mid"] - m[f"{imp}/raw_mid"]
            m[f"{imp}/{meth}_rise"] = m[f"{imp}/{meth}_L{last}"] - m[f"{imp}/{meth}_L1"]
        m[f"{imp}/raw_L1_minus_mid"] = m[f"{imp}/raw_L1"] - m[f"{imp}/raw_mid"]
    return m


def measure(cfg, ctx) -> dict[str, float]:
    """Train the classifier with the engine's Trainer, then run the analysis on the
    first ``cfg.analysis_items`` test sentences."""
    dm = AgreementData(cfg)
    model = AgreementClassifier(cfg, len(VOCAB), max_length(cfg.max_pps, cfg.max_adjs))
    res = ctx.fit_and_test(model, dm)
    metrics = {"test/acc": float(res["metrics"]["test/acc"])}
    dm.setup("test")
    batch = {k: v[: cfg.analysis_items] for k, v in dm.test.tensors.items()}
    net = model.net.cpu()
    corrs: dict[str, list[list[float]]] = {}
    for start in range(0, len(batch["tokens"]), 50):
        part = analyse(net, {k: v[start:start + 50] for k, v in batch.items()}, cfg.min_tokens, cfg.include_cls)
        for k, rows in part.items():
            corrs.setdefault(k, []).extend(rows)
    metrics.update(summarise(corrs, cfg.layers))
    metrics["analysis/n_sentences"] = float(len(corrs["blankout/raw"]))
    return metrics


def plot(per_seed: dict[str, list], out_dir, paper: dict[str, dict[str, list[float]]] | None = None) -> None:
    """Correlation per layer for raw / rollout / flow (blank-out left, gradients right):
    the content of Tables 1 and 2 as curves; the paper's values dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted({int(k.rsplit("_L", 1)[1]) for k in per_seed
                     if k.startswith("blankout/raw_L") and k.rsplit("_L", 1)[1].isdigit()})
    if not layers:
        return
    colors = {"raw": "#7f7f7f", "rollout": "#1f77b4", "flow": "#d62728"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, imp, title in ((axes[0], "blankout", "vs blank-out importance (Table 1)"),
                           (axes[1], "grad", "vs input-gradient importance (Table 2)")):
        for meth in METHODS:
            means, los, his = [], [], []
            for layer in layers:
                vals = [v for v in per_seed.get(f"{imp}/{meth}_L{layer}", []) if v is not None and v == v]
                means.append(np.mean(vals) if vals else np.nan)
                los.append(np.min(vals) if vals else np.nan)
                his.append(np.max(vals) if vals else np.nan)
            means, los, his = map(np.array, (means, los, his))
            ax.errorbar(layers, means, yerr=[means - los, his - means], marker="o", capsize=3,
                        color=colors[meth], label=f"{meth} (ours)")
            if paper and imp in paper and meth in paper[imp]:
                ax.plot(range(1, len(paper[imp][meth]) + 1), paper[imp][meth], "--", color=colors[meth], alpha=0.6,
                        label=f"{meth} (paper)")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="layer", title=title, xticks=layers)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Spearman correlation (mean over sentences)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("Attention of <cls> to input tokens: raw attention vs rollout vs flow")
    fig.tight_layout()
    fig.savefig(out_dir / "correlation_per_layer.png", dpi=110)
    plt.close(fig)


__all__ = ["analyse", "summarise", "measure", "plot", "blankout_importance", "gradient_importance"]
