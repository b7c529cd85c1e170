"""The measurements behind the claims (see README, "Claims and tolerances").

1. Optimal radii: the SNR- and memory-optimal Hamming radii for the paper's Transformer
   setting (n = 64, r = 2^n, m = 1024) from the closed forms (model.py).
2. Exponential decay: for each radius d, the exact circle intersection I(d_v) and the
   log-linear fit log I = beta * x + b over d_v = 0..d-1; R^2 of that fit.
3. Weight curves: total-variation distance between the normalised intersection weights and
   softmax(beta x) over every Hamming distance 0..n (one pattern per distance).
4. Reads: SDM read (intersection weights) vs attention read (softmax with the fitted beta)
   of m random patterns for queries k bits away from a stored pattern: cosine similarity
   of the (bipolar) outputs, agreement of the binarised bits, and how often each read
   returns the stored pattern exactly. Random, so repeated over seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .data import noisy_queries, random_patterns
from .model import (
    attention_read,
    binarise,
    fit_beta,
    hamming_to_cosine,
    intersection_table,
    memory_optimal_fraction,
    sdm_read,
    snr_optimal_fraction,
    space_fraction_to_radius,
)


def optimal_radii(cfg) -> dict[str, float]:
    r = 2.0**cfg.n if cfg.neurons is None else float(cfg.neurons)
    p_snr = snr_optimal_fraction(cfg.m, r)
    p_mem = memory_optimal_fraction(cfg.n, r, cfg.retrieval_prob)
    return {
        "optimal_d/snr": float(space_fraction_to_radius(cfg.n, p_snr)),
        "optimal_d/mem": float(space_fraction_to_radius(cfg.n, p_mem)),
        "optimal_d/snr_fraction": p_snr,
        "optimal_d/mem_fraction": p_mem,
    }


def decay_and_curves(cfg) -> tuple[dict[str, float], dict[int, Any]]:
    out: dict[str, float] = {}
    curves: dict[int, Any] = {}
    dvs = np.arange(cfg.n + 1)
    x = hamming_to_cosine(dvs, cfg.n)
    for d in cfg.radii:
        fit = fit_beta(cfg.n, d)
        table = intersection_table(cfg.n, d, cfg.neurons)
        sdm_w = table / table.sum()
        logits = fit.beta * x
        att_w = np.exp(logits - logits.max())
        att_w /= att_w.sum()
        out[f"fit/d{d}/beta"] = fit.beta
        out[f"fit/d{d}/r2"] = fit.r2
        out[f"curve/d{d}/tv"] = 0.5 * float(np.abs(sdm_w - att_w).sum())
        curves[d] = (fit, table, sdm_w, att_w)
    out["fit/headline_r2"] = out[f"fit/d{cfg.headline_radius}/r2"]
    out["fit/min_r2"] = min(out[f"fit/d{d}/r2"] for d in cfg.radii)
    out["curve/max_tv"] = max(out[f"curve/d{d}/tv"] for d in cfg.radii)
    return out, curves


def reads(cfg, seed: int, fits: dict[int, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    patterns = random_patterns(cfg.m, cfg.n, seed=seed)
    cos_all, bits_all = [], []
    for d in cfg.radii:
        fit, table, _, _ = fits[d]
        for k in cfg.query_flips:
            q, target = noisy_queries(patterns, cfg.num_queries, k, seed=seed * 1000 + d * 37 + k)
            s = sdm_read(q, patterns, patterns, table)
            a = attention_read(q, patterns, patterns, fit.beta)
            defined = torch.isfinite(s).all(-1)
            s_b, a_b = 2 * s[defined] - 1, 2 * a[defined] - 1  # bipolar: cosine is not inflated by 0/1 offsets
            cos = torch.nn.functional.cosine_similarity(s_b, a_b, dim=-1)
            bits = (binarise(s[defined]) == binarise(a[defined])).double().mean(-1)
            key = f"read/d{d}/k{k}"
            out[f"{key}/cos"] = float(cos.mean())
            out[f"{key}/bits"] = float(bits.mean())
            out[f"{key}/undefined"] = float((~defined).double().mean())
            out[f"{key}/exact_sdm"] = float((binarise(s[defined]) == patterns[target[defined]]).all(-1).double().mean())
            out[f"{key}/exact_attention"] = float((binarise(a) == patterns[target]).all(-1).double().mean())
            cos_all.append(out[f"{key}/cos"])
            bits_all.append(out[f"{key}/bits"])
    out["read/min_cos"] = min(cos_all)
    out["read/min_bits"] = min(bits_all)
    return out


def plot(cfg, curves: dict[int, Any], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    dvs = np.arange(cfg.n + 1)
    x = hamming_to_cosine(dvs, cfg.n)
    for i, (d, (fit, table, sdm_w, att_w)) in enumerate(sorted(curves.items())):
        color = f"C{i}"
        keep = table > 0
        axes[0].semilogy(dvs[keep], table[keep], "o", ms=3.5, color=color, label=f"d={d}: exact |intersection|")
        span = dvs <= 2 * d
        axes[0].semilogy(dvs[span], np.exp(fit.beta * x[span] + fit.bias), "-", color=color, lw=1,
                         label=f"d={d}: exp fit, beta={fit.beta:.1f}, R2={fit.r2:.4f}")
        axes[1].semilogy(dvs[keep], sdm_w[keep], "o", ms=3.5, color=color, label=f"d={d}: SDM (normalised)")
        axes[1].semilogy(dvs[span], att_w[span], "-", color=color, lw=1, label=f"d={d}: softmax(beta x)")
    axes[0].set(xlabel="Hamming distance d_v between query and pattern", ylabel="neurons in the intersection",
                title=f"Circle intersection, n={cfg.n}, r=2^n")
    axes[1].set(xlabel="Hamming distance d_v", ylabel="normalised weight",
                title="SDM weights vs attention softmax")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(cfg, ctx) -> dict[str, float]:
    """Closed-form parts are deterministic (computed every seed, identical); the reads use
    the seed's random patterns and queries. The figure is drawn on the first seed."""
    metrics = optimal_radii(cfg)
    decay, curves = decay_and_curves(cfg)
    metrics.update(decay)
    metrics.update(reads(cfg, ctx.seed, curves))
    if ctx.seed == ctx.first_seed:
        plot(cfg, curves, ctx.run_dir / "figures" / "circle_intersection_vs_hamming.png")
    return metrics
