"""The measurements behind the claims (README, "Claims and tolerances").

1. OMP equivalence (the paper's theory): on generated sparse regression problems, the
   selection order of the linear Sequential Attention adaptation (trained attention
   logits) against Orthogonal Matching Pursuit (scikit-learn ``orthogonal_mp``, with our
   own OMP and sklearn's ``OrthogonalMatchingPursuit`` as cross-checks).
2. Digits (the MLP algorithm on a small offline stand-in for the paper's datasets):
   select k pixels with Sequential Attention, with the one-shot attention baseline (LLY)
   and at random; refit the same MLP on each selection; test accuracy, and the gaps.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from .data import DigitsData, regression_problem
from .model import (
    FeatureSelectionMLP,
    global_minimiser_choice,
    omp_sequence,
    sequential_attention_linear,
    train_and_test,
)


def sklearn_omp_order(X: torch.Tensor, y: torch.Tensor, k: int) -> list[int]:
    """Selection order from scikit-learn's OMP path (column t = the solution after t+1 atoms)."""
    from sklearn.linear_model import orthogonal_mp

    path = orthogonal_mp(X.numpy(), y.numpy(), n_nonzero_coefs=k, return_path=True)
    path = np.asarray(path).reshape(X.shape[1], -1)
    order: list[int] = []
    for t in range(path.shape[1]):
        new = [int(j) for j in np.flatnonzero(path[:, t]) if int(j) not in order]
        order.extend(new)
    return order


def omp_equivalence(cfg, seed: int) -> dict[str, float]:
    from sklearn.linear_model import OrthogonalMatchingPursuit

    seq, sets, steps, vertex, ref_ok, recovery, top_w = [], [], [], [], [], [], []
    for p in range(cfg.problems):
        X, y, support = regression_problem(cfg.n_samples, cfg.n_features, cfg.k_true, cfg.noise,
                                           seed=seed * 100_003 + p)
        k = cfg.k_select
        omp = sklearn_omp_order(X, y, k)
        ours = omp_sequence(X, y, k)
        est = OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=False).fit(X.numpy(), y.numpy())
        ref_ok.append(float(ours == omp and set(np.flatnonzero(est.coef_).tolist()) == set(omp)))
        g = torch.Generator().manual_seed(seed * 100_003 + p + 7)
        sa, tw = sequential_attention_linear(X, y, k, cfg.lam, steps=cfg.sa_steps, lr=cfg.sa_lr, generator=g)
        seq.append(float(sa == omp))
        sets.append(float(set(sa) == set(omp)))
        steps.append(float(np.mean([a == b for a, b in zip(sa, omp)])))
        vertex.append(float(all(global_minimiser_choice(X, y, omp[:t], cfg.lam) == omp[t] for t in range(k))))
        recovery.append(len(set(omp) & set(support)) / len(support))
        top_w.append(min(tw))
    return {
        "omp/sequence_agreement": float(np.mean(seq)),
        "omp/set_agreement": float(np.mean(sets)),
        "omp/step_agreement": float(np.mean(steps)),
        "omp/vertex_agreement": float(np.mean(vertex)),
        "omp/reference_agreement": float(np.mean(ref_ok)),
        "omp/support_recovery": float(np.mean(recovery)),
        "omp/min_top_weight": float(min(top_w)),
    }


def _mask(indices: list[int], d: int) -> torch.Tensor:
    m = torch.zeros(d)
    m[indices] = 1.0
    return m


def digits(cfg, ctx) -> dict[str, float]:
    dm = DigitsData(batch_size=cfg.batch_size, split_seed=cfg.split_seed, shuffle_seed=ctx.seed, subset=cfg.subset)
    dm.setup()
    d, c = dm.num_features, dm.num_classes
    out: dict[str, float] = {}

    def fit(model, shuffle: int) -> float:
        return train_and_test(model, dm, epochs=cfg.max_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                              seed=ctx.seed * 1000 + shuffle)

    torch.manual_seed(ctx.seed)
    out["digits/all/acc"] = fit(FeatureSelectionMLP(d, c, "fixed", fixed_mask=torch.ones(d), hidden=cfg.hidden), 0)
    torch.manual_seed(ctx.seed + 1)
    lly = FeatureSelectionMLP(d, c, "lly", hidden=cfg.hidden)
    fit(lly, 1)
    lly_rank = torch.argsort(lly.lly_scores(dm.splits["train"][0]), descending=True).tolist()
    rng = torch.Generator().manual_seed(ctx.seed * 7919 + 13)
    for k in cfg.ks:
        torch.manual_seed(ctx.seed * 1000 + k)
        sa = FeatureSelectionMLP(d, c, "sa", num_select=k, hidden=cfg.hidden, start=cfg.warmup)
        fit(sa, 2)
        selections = {
            "sa": sa.selector.selected_indices(),
            "lly": lly_rank[:k],
            "random": torch.randperm(d, generator=rng)[:k].tolist(),
        }
        assert len(selections["sa"]) == k, selections["sa"]
        for name, sel in selections.items():
            torch.manual_seed(ctx.seed * 1000 + k + 1)  # the same refit initialisation for every selection
            out[f"digits/k{k}/{name}/acc"] = fit(FeatureSelectionMLP(d, c, "fixed", fixed_mask=_mask(sel, d),
                                                                     hidden=cfg.hidden), 3)
        out[f"digits/k{k}/gap_random"] = out[f"digits/k{k}/sa/acc"] - out[f"digits/k{k}/random/acc"]
        out[f"digits/k{k}/gap_lly"] = out[f"digits/k{k}/sa/acc"] - out[f"digits/k{k}/lly/acc"]
        out[f"digits/k{k}/sa_first"] = float(selections["sa"][0])
    h = cfg.headline_k
    out["digits/headline/gap_random"] = out[f"digits/k{h}/gap_random"]
    out["digits/headline/gap_lly"] = out[f"digits/k{h}/gap_lly"]
    out["digits/headline/sa_acc"] = out[f"digits/k{h}/sa/acc"]
    return out


def measure(cfg, ctx) -> dict[str, float]:
    """Single-threaded: every computation here is small, and a 2-core machine shared with
    other jobs slows down badly when torch's thread pool is oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = omp_equivalence(cfg, ctx.seed)
        metrics.update(digits(cfg, ctx))
    finally:
        torch.set_num_threads(threads)
    return metrics


def plot(per_seed: Mapping[str, list], out_dir: Any) -> None:
    """Test accuracy against the number of selected pixels (mean and range over seeds)."""
    import re

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({int(m.group(1)) for key in per_seed if (m := re.match(r"digits/k(\d+)/sa/acc$", key))})
    if not ks:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(("sa", "lly", "random")):
        vals = [np.array([v for v in per_seed.get(f"digits/k{k}/{name}/acc", []) if v is not None]) for k in ks]
        mean = [v.mean() for v in vals]
        ax.errorbar(ks, mean, yerr=[[m - v.min() for m, v in zip(mean, vals)], [v.max() - m for m, v in zip(mean, vals)]],
                    marker="o", capsize=3, color=f"C{i}",
                    label={"sa": "Sequential Attention", "lly": "one-shot attention (LLY)", "random": "random subset"}[name])
    allv = [v for v in per_seed.get("digits/all/acc", []) if v is not None]
    if allv:
        ax.axhline(float(np.mean(allv)), color="gray", ls="--", lw=1, label="all 64 pixels")
    ax.set(xlabel="selected pixels k", ylabel="test accuracy (refit MLP)", title="sklearn digits: feature selection")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "digits_accuracy_vs_k.png", dpi=110)
    plt.close(fig)
