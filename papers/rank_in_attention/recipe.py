"""Recipe: On the Benefits of Rank in Attention Layers (Amsel, Yehudai & Bruna, 2024).

A training recipe: one attention layer regresses the nearest-neighbour target with
either one full-rank head (H = 1, r = d) or d rank-1 heads (H = d, r = 1; the standard
H = d/r scaling, same parameter count), for several d; at d = 16 also H = 2, 4, 8.
The paper reports its experiments only as figures, so every claim here is an
expectation written before the first run (README, "Claims and tolerances").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig


@dataclass(frozen=True)
class Config(TrainConfig):
    d: int = 16  # embedding dimension
    heads: int = 1  # H; each head has rank r = d / H
    context: int = 2  # N: Theorem 2's separation already holds for N = 2
    train_samples: int = 100_000
    val_samples: int = 2_000
    test_samples: int = 10_000
    data_seed: int = 0
    batch_size: int = 256
    lr: float = 1e-2
    max_steps: int = 1_500
    max_epochs: int = 1_000  # max_steps ends training first
    log_every_n_steps: int = 50


PAPER = Paper(
    slug="rank_in_attention",
    title="On the Benefits of Rank in Attention Layers",
    arxiv="2407.16153",
    year=2024,
    authors=("Noah Amsel", "Gilad Yehudai", "Joan Bruna"),
    venue="arXiv preprint (ICLR 2025 as 'Quality over Quantity in Attention Layers: When Adding More Heads Hurts')",
    code="",
)

CPU_DIMS = (4, 8, 16, 32)
HEAD_SWEEP_D = 16
HEAD_SWEEP = (1, 4, 16)


def _arms(dims, sweep_d, sweep_heads) -> dict[str, dict]:
    arms: dict[str, dict] = {}
    for d in dims:
        arms[f"full_d{d}"] = {"d": d, "heads": 1}
        arms[f"rank1_d{d}"] = {"d": d, "heads": d}
    for h in sweep_heads:
        if h not in (1, sweep_d):
            arms[f"h{h}_d{sweep_d}"] = {"d": sweep_d, "heads": h}
    return arms


def _heads_arm(d: int, h: int) -> str:
    return f"full_d{d}" if h == 1 else f"rank1_d{d}" if h == d else f"h{h}_d{d}"


def derive(m: dict) -> dict:
    """Per seed: error ratio rank-1 / full-rank at each d, its log10, and the growth of
    the log-ratio from the smallest to the largest d."""
    out: dict[str, float] = {}
    dims = sorted(int(k.split("/")[0][len("full_d"):]) for k in m
                  if k.startswith("full_d") and k.endswith("/test/nmse") and f"rank1_d{k.split('/')[0][6:]}/test/nmse" in m)
    for d in dims:
        full, low = m[f"full_d{d}/test/nmse"], m[f"rank1_d{d}/test/nmse"]
        out[f"gap/ratio_d{d}"] = low / full
        out[f"gap/log10_ratio_d{d}"] = math.log10(low / full)
    if len(dims) >= 2:
        out["gap/log10_ratio_growth"] = out[f"gap/log10_ratio_d{dims[-1]}"] - out[f"gap/log10_ratio_d{dims[0]}"]
    d = HEAD_SWEEP_D
    if f"full_d{d}/test/nmse" in m:
        for h in HEAD_SWEEP[1:]:
            key = f"{_heads_arm(d, h)}/test/nmse"
            if key in m:
                out[f"gap/ratio_h{h}_d{d}"] = m[key] / m[f"full_d{d}/test/nmse"]
    return out


def plot(per_seed: dict, out_dir) -> None:
    """Left: test error vs d for one full-rank head and d rank-1 heads (the paper's
    separation); right: error vs number of heads H at fixed d (H = d/r)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def stats(key):
        vals = [v for v in per_seed.get(key, []) if v is not None]
        return (float(np.mean(vals)), float(np.min(vals)), float(np.max(vals))) if vals else None

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for prefix, label, color in (("full", "1 head, rank d", "#1f77b4"), ("rank1", "d heads, rank 1", "#d62728")):
        pts = []
        for d in sorted({int(k.split("/")[0].split("_d")[1]) for k in per_seed if k.startswith(prefix + "_d")}):
            s = stats(f"{prefix}_d{d}/test/nmse")
            if s:
                pts.append((d, *s))
        if pts:
            d, mean, lo, hi = map(np.array, zip(*pts))
            axes[0].errorbar(d, mean, yerr=[mean - lo, hi - mean], marker="o", color=color, label=label, capsize=3)
    uni = [v for k, vals in per_seed.items() if k.endswith("/test/nmse_uniform") for v in vals if v is not None]
    if uni:
        axes[0].axhline(float(np.mean(uni)), color="#888888", ls="--", lw=1, label="uniform attention")
    axes[0].set(xscale="log", yscale="log", xlabel="embedding dimension d", ylabel="test error E||f - f*||^2",
                title="Nearest-neighbour target")
    axes[0].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[0].set_xticks([4, 8, 16, 32], labels=["4", "8", "16", "32"])
    pts = []
    for h in HEAD_SWEEP:
        s = stats(f"{_heads_arm(HEAD_SWEEP_D, h)}/test/nmse")
        if s:
            pts.append((h, *s))
    if pts:
        h, mean, lo, hi = map(np.array, zip(*pts))
        axes[1].errorbar(h, mean, yerr=[mean - lo, hi - mean], marker="o", color="#444444", capsize=3)
    axes[1].set(xscale="log", yscale="log", xlabel="heads H (rank r = d/H)", ylabel="test error",
                title=f"d = {HEAD_SWEEP_D}: more heads, lower rank")
    axes[1].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[1].set_xticks(list(HEAD_SWEEP), labels=[str(h) for h in HEAD_SWEEP])
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle("Rank vs heads (mean over seeds; bars: min-max)")
    fig.tight_layout()
    fig.savefig(out_dir / "error_vs_d_and_heads.png", dpi=110)
    plt.close(fig)


_PROTO = (
    "One attention layer (no biases, no MLP/residual/norm), cross-attention from the query y to the context "
    "X = (x_1, x_2) (N = 2); y, x_j i.i.d. uniform on S^(d-1); target x_j* with j* = argmax <y, x_j>. "
    "Adam lr 1e-2 with cosine decay, batch 256, 1500 steps on 100k fixed samples per seed; test error = mean of "
    "||f(y,X) - x_j*||^2 over 10k fresh samples (the zero predictor scores 1, uniform attention 0.5)."
)

CPU_CLAIMS = (
    Claim(
        id="full-rank-fits-d16", metric="full_d16/test/nmse", reported=0.1, better="lower", bound=True,
        tolerance=Tolerance("abs", 0.0, "analysis",
                            "The paper's construction (QK^T = beta I, VO^T = I) has error 0.08 at beta = 10 and 0.04 at "
                            "beta = 20 for d = 16, N = 2 (computed before running, README); 1500 Adam steps are expected "
                            "to reach beta >= 10, so <= 0.1."),
        kind="expectation", seeds=3, aggregate="mean",
        source="Section 4 (rank separation): one full-rank head approximates the target to any accuracy; "
               "expectation stated before running, scaled to d = 16, N = 2, 1500 steps",
        protocol=_PROTO,
    ),
    Claim(
        id="rank1-heads-worse-d16", metric="gap/ratio_d16", reported=3.0, better="higher", bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "'Dramatic' separation read as: d rank-1 heads end at >= 3x the error of one full-rank head "
                            "with the same parameter count, per seed, averaged."),
        kind="expectation", seeds=3, aggregate="mean",
        source="Theorem 2 / Section 4 and Section 7: low-rank heads with H = d/r fail to approximate the target that "
               "one full-rank head fits; expectation stated before running (d = 16, N = 2)",
        protocol=_PROTO + " Ratio = error(16 heads of rank 1) / error(1 head of rank 16), per seed.",
        unit="x",
    ),
    Claim(
        id="gap-grows-with-d", metric="gap/log10_ratio_growth", reported=0.0, better="higher", bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "Direction only: the log10 error ratio (rank-1 / full) at d = 32 must exceed the one at d = 4."),
        kind="expectation", seeds=3, aggregate="mean",
        source="Theorem 2: the number of rank-r heads needed grows exponentially in d - r, so at H = d the "
               "shortfall grows with d; expectation stated before running (d = 4 vs 32)",
        protocol=_PROTO + " log10(ratio at d=32) - log10(ratio at d=4), per seed.",
    ),
    Claim(
        id="more-heads-hurt-d16", metric="gap/ratio_h4_d16", reported=2.0, better="higher", bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "'Adding more heads hurts' read as: splitting the d = 16 head into 4 heads of rank 4 (same "
                            "parameter count) at least doubles the error, per seed, averaged."),
        kind="expectation", seeds=3, aggregate="mean",
        source="ICLR 2025 version, title and abstract: 'increasing the number of attention heads can severely decrease "
               "accuracy' (at fixed d, H = d/r); expectation stated before running (d = 16, H = 4 vs H = 1)",
        protocol=_PROTO + " Ratio = error(4 heads of rank 4) / error(1 head of rank 16), per seed.",
        unit="x",
    ),
)

PROFILES = {
    "cpu": Profile(
        "cpu", Config(),
        "One layer, N = 2: one full-rank head vs d rank-1 heads for d = 4, 8, 16, 32, and H = 4 (rank 4) at d = 16; "
        "3 seeds.",
        claims=CPU_CLAIMS, seeds=3, arms=_arms(CPU_DIMS, HEAD_SWEEP_D, HEAD_SWEEP), budget_minutes=8, slow=True,
    ),
    "smoke": Profile(
        "smoke", Config(train_samples=512, val_samples=64, test_samples=256, max_steps=4, batch_size=64),
        "Wiring only: two arms at d = 4, four steps.",
        arms={"full_d4": {"d": 4, "heads": 1}, "rank1_d4": {"d": 4, "heads": 4}}, budget_minutes=0.5,
    ),
}

METRICS = (
    "full_d16/test/nmse", "gap/ratio_h4_d16", "gap/ratio_d16", "gap/log10_ratio_growth",
)


def _build_model(cfg):
    from .model import NearestNeighbourModule

    return NearestNeighbourModule(cfg)


def _build_data(cfg):
    from .data import NearestNeighbourData

    return NearestNeighbourData(cfg)


RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, build_model=_build_model,
    build_data=_build_data, derive=derive, plot=plot,
    skips={
        "full": "The paper's experiments (Section 7) train off-the-shelf multi-layer transformers and report them only "
                "as figures, without a configuration we could confirm; the single-layer separation this recipe tests "
                "is already the paper's setting at CPU scale, so there is no larger profile with confirmed numbers.",
        "depth": "Section 6 (two layers of rank-1 heads approximate the target for short contexts) is not run.",
    },
)
