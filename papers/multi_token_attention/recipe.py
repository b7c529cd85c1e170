"""Recipe: Multi-Token Attention (Golovneva, Wang, Weston & Sukhbaatar, 2025).

A training recipe on the paper's motivating toy task (its first experiment): find the
block of letters that contains every query letter and write it out. Two arms per seed,
a standard Transformer and the same model with MTA's key-query convolution (the
official toy configuration). ``full`` is the official setting with the official
README's per-seed numbers as claims; ``cpu`` is a stated small-scale version whose
claims are expectations written before its first run (README, "Claims and tolerances").
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Literal

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig


@dataclass(frozen=True)
class Config(TrainConfig):
    # --- the toy task (official toy_task/generate_data.py; data.py) ---
    n_blocks: int = 52  # official pad_len=319 characters with N=5, L=2 -> 52 blocks, 321 tokens
    block_len: int = 5  # N
    query_len: int = 2  # L
    n_letters: int = 26
    train_samples: int = 1_000_000  # official: --train_samples 1000000
    val_samples: int = 1_000
    test_samples: int = 1_000  # official test_samples default
    data_seed: int = 0  # one data set for every run seed (the paper varies only the training seed)
    eval_batch_size: int = 250
    # --- the model (official toy_task/configs/find_block_*.yaml; model.py) ---
    attention: Literal["softmax", "mta"] = "softmax"
    dim: int = 256
    layers: int = 4
    heads: int = 2
    ffn_hidden: int = 0  # 0: lingua's SwiGLU rule (2/3 * 4 * dim rounded up to 256) -> 768
    rope_theta: float = 100_000.0
    attn_dropout: float = 0.1  # official "dropout: 0.1", applied to the attention weights
    tie_weights: bool = True
    # --- MTA (Section 3); 0 switches a piece off ---
    q_kernel: int = 2  # c_q of the pre-softmax key-query convolution
    k_kernel: int = 9  # c_k
    post_q_kernel: int = 0  # post-softmax key-query convolution ([kq-post] in model.py)
    post_k_kernel: int = 0
    head_kernel: int = 0  # c_h: heads per head-mixing group ([head-mix] in model.py)
    head_mix_pre_softmax: bool = False
    group_norm: bool = False  # per-head RMS group norm (Section 3, Figure 1)
    depth_scale: bool = False  # scale the group norm by 1 - lambda_init(layer)
    gating: bool = False  # scalar sigmoid gate per head
    mta_layers: tuple[int, ...] = ()  # () = every layer (official toy config: mta_layers unset)
    # --- optimisation (official: AdamW lr 1e-4, wd 0, beta2 0.98, warmup 1000, constant; lingua clip 1.0) ---
    max_steps: int = 100_000
    max_epochs: int = 1_000  # max_steps ends training first
    batch_size: int = 64
    lr: float = 1e-4
    warmup_steps: int = 1_000
    beta2: float = 0.98
    weight_decay: float = 0.0
    gradient_clip_val: float | None = 1.0
    log_every_n_steps: int = 100


PAPER = Paper(
    slug="multi_token_attention",
    title="Multi-Token Attention",
    arxiv="2504.00927",
    year=2025,
    authors=("Olga Golovneva", "Tianlu Wang", "Jason Weston", "Sainbayar Sukhbaatar"),
    venue="arXiv preprint",
    code="https://github.com/facebookresearch/RAM/tree/main/projects/mta",
)

ARMS = {"transformer": {"attention": "softmax"}, "mta": {"attention": "mta"}}

README_URL = "https://github.com/facebookresearch/RAM/blob/main/projects/mta/toy_task/README.md"
# Official README, seeds 42/43/44 on an H100 (percent error); the H200 row is 83.9/83.1/37.6
# (mean 68.2) for the Transformer and 0.1/0.0/0.1 for MTA: "exact numbers will differ on
# different GPUs".
PAPER_TRANSFORMER = (77.7, 75.3, 1.9)
PAPER_MTA = (0.0, 0.0, 0.2)


def _sem(values) -> float:
    """Standard error of a 3-seed mean from the README's per-seed spread."""
    return statistics.stdev(values) / math.sqrt(len(values))


PROTOCOL = (
    "Teacher-forced greedy prediction of the answer tokens (the target block's N letters and <eos>) of each "
    "held-out example; an example is an error if any of them is wrong (same as greedy decoding not writing the "
    "block exactly; official eval.py 'err_seq'). Error rate in percent over the test split (unique contexts, "
    "none seen in training), final weights after max_steps, mean over seeds (training seeds {seeds}; one data "
    "set from data_seed 0)."
)
_TASK_FULL = "Toy task N=5, L=2, 52 blocks (319 characters + <bos>/<eos>), 26 letters, query=All; 1000 test examples. "
_MODEL_FULL = ("4 layers, dim 256, 2 heads, RoPE, SwiGLU, tied embeddings, attention dropout 0.1; MTA arm: pre-softmax "
               "key-query conv c_q=2, c_k=9 in every layer, identity init; AdamW lr 1e-4, warmup 1000, constant, "
               "batch 64, 100k steps. ")

FULL_CLAIMS = (
    Claim(
        id="transformer-error", metric="transformer/test/error_rate", reported=51.6, better="lower",
        tolerance=Tolerance(
            "sigma", 2.0, "paper_std",
            "The README's per-seed errors 77.7 / 75.3 / 1.9 (H100) are bimodal: a seed either fails (~76%) or "
            "solves the task; their spread gives a standard error of the 3-seed mean of 24.9 points, and 2 of "
            "those (+-50 points) is the band. It is wide because the paper's own result is: the claim only "
            "rules out a Transformer that solves the task on (almost) every seed.",
            std=round(_sem(PAPER_TRANSFORMER), 2),
        ),
        source=f"Official toy-task README ({README_URL}), row 'Base, H100', average of seeds 42/43/44 "
               "(the paper's motivating toy task)",
        protocol=_TASK_FULL + _MODEL_FULL + PROTOCOL.format(seeds="0, 1, 2"), unit="%", seeds=3,
    ),
    Claim(
        id="mta-error", metric="mta/test/error_rate", reported=0.1, better="lower",
        tolerance=Tolerance(
            "abs", 0.4, "paper_std",
            "README per-seed MTA errors 0.0 / 0.0 / 0.2 (H100) and 0.1 / 0.0 / 0.1 (H200): per-seed std 0.12 "
            "points; one seed's estimate on 1000 test examples also carries binomial noise of ~0.1 point at "
            "this rate. +-0.4 points is about 3x the per-seed spread: a mean above 0.5% means MTA no longer "
            "solves the task essentially always.",
        ),
        source=f"Official toy-task README ({README_URL}), row 'MTA, H100', average of seeds 42/43/44",
        protocol=_TASK_FULL + _MODEL_FULL + PROTOCOL.format(seeds="0, 1, 2"), unit="%", seeds=3,
    ),
    Claim(
        id="mta-gap", metric="gap/error_rate", reported=51.5, better="higher",
        tolerance=Tolerance(
            "sigma", 2.0, "paper_std",
            "Per-seed gaps (Transformer - MTA) from the README: 77.7 / 75.3 / 1.7 points; standard error of "
            "their 3-seed mean 24.9 points; 2 of those is the band (the baseline's seed-dependent failure "
            "dominates the spread).",
            std=round(_sem(tuple(a - b for a, b in zip(PAPER_TRANSFORMER, PAPER_MTA))), 2),
        ),
        source=f"Official toy-task README ({README_URL}): 51.6 - 0.1 points (H100 averages)",
        protocol="Per seed: transformer/test/error_rate - mta/test/error_rate (same seed, same data); mean over "
                 "3 seeds. " + _TASK_FULL + _MODEL_FULL,
        unit="points", seeds=3,
    ),
)

# ------------------------------------------------------------------------------ cpu
# A stated small-scale version (README, "The cpu profile"): the same task rules (N=5, L=2,
# 26 letters, query=All), the same architecture family, depth, heads and MTA kernels,
# shrunk to 6 blocks, dim 64 and 600 steps. Expectations and tolerances below were
# written before the first cpu run and are not to be changed after it.
CPU_CONFIG = Config(
    n_blocks=6, train_samples=19_200, val_samples=500, test_samples=1_000,
    dim=64, layers=4, heads=2, ffn_hidden=192, attn_dropout=0.0,
    max_steps=600, batch_size=32, lr=1e-3, warmup_steps=50, log_every_n_steps=50,
)
_CPU_TASK = ("Toy task N=5, L=2, 6 blocks (45 tokens), 26 letters, query=All; 19.2k training examples (one epoch), "
             "1000 test examples. 4 layers, dim 64, 2 heads, SwiGLU width 192 (3x dim, the official ratio), no "
             "dropout; MTA arm: c_q=2, c_k=9 in every layer, identity init; AdamW lr 1e-3, warmup 50, constant, "
             "batch 32, 600 steps. ")
_CPU_SRC = ("Our expectation (written before the first run), scaling down the official README's "
            "Transformer 51.6% vs MTA 0.1% error (N=5, L=2, 52 blocks, 100k steps of batch 64): ")

CPU_CLAIMS = (
    Claim(
        id="mta-beats-transformer", metric="gap/error_rate", reported=20.0, better="higher", bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "A bound we define: MTA's error at least 20 points below the Transformer's on "
                            "average (the paper's gap is 51.5 points at full scale)."),
        kind="expectation", seeds=3, unit="points",
        source=_CPU_SRC + "one MTA layer can score the conjunction of both query letters over a block directly, "
                          "a Transformer needs several layers for it, so MTA should learn the task clearly faster.",
        protocol="Per seed: transformer/test/error_rate - mta/test/error_rate; mean over 3 seeds. " + _CPU_TASK
        + PROTOCOL.format(seeds="0, 1, 2"),
    ),
    Claim(
        id="mta-better-every-seed", metric="gap/error_rate", reported=1.0, better="higher", bound=True,
        aggregate="min",
        tolerance=Tolerance("abs", 0.0, "definition",
                            "A bound we define: on every seed MTA's error is at least 1 point below the "
                            "Transformer's (1 point = 10 of 1000 test examples, more than a tie)."),
        kind="expectation", seeds=3, unit="points",
        source=_CPU_SRC + "the advantage should hold on each seed, not only on average.",
        protocol="Per-seed gap as above; the smallest of the 3 seeds. " + _CPU_TASK,
    ),
    Claim(
        id="mta-learns-task", metric="mta/test/error_rate", reported=50.0, better="lower", bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "A bound we define: MTA writes at least half of the test blocks exactly right on "
                            "average (the paper's MTA is at 0.1% after 100k steps; 600 steps allow far less)."),
        kind="expectation", seeds=3, unit="%",
        source=_CPU_SRC + "MTA should solve the shrunk task for most examples within 600 steps.",
        protocol=_CPU_TASK + PROTOCOL.format(seeds="0, 1, 2"),
    ),
)

SMOKE_CONFIG = Config(
    n_blocks=3, train_samples=64, val_samples=16, test_samples=16, eval_batch_size=16,
    dim=16, layers=2, heads=2, ffn_hidden=32, attn_dropout=0.1,
    post_q_kernel=2, post_k_kernel=3, head_kernel=2, group_norm=True, depth_scale=True, gating=True,
    max_steps=3, batch_size=8, lr=1e-3, warmup_steps=1, log_every_n_steps=1,
)

PROFILES = {
    "full": Profile(
        "full", Config(),
        "The official toy-task setting (N=5, L=2, 52 blocks, 1M training examples; 4 layers, dim 256, 2 heads; "
        "100k steps of batch 64), Transformer and MTA, 3 seeds; claims: the official README's error rates.",
        claims=FULL_CLAIMS, seeds=3, arms=ARMS, gpu_hours=10.0,
    ),
    "cpu": Profile(
        "cpu", CPU_CONFIG,
        "The toy task shrunk to 6 blocks and a dim-64 model trained 600 steps, Transformer and MTA, 3 seeds; "
        "claims are our expectations, written before the first run.",
        claims=CPU_CLAIMS, seeds=3, arms=ARMS, slow=True, budget_minutes=10,
    ),
    "smoke": Profile(
        "smoke", SMOKE_CONFIG,
        "Wiring only: 3 blocks, a dim-16 model, 3 steps; the MTA arm switches on every MTA piece "
        "(pre/post-softmax convolutions, head mixing, group norm with depth scaling, gating).",
        seeds=1, arms={"transformer": {"attention": "softmax"}, "mta": {"attention": "mta"}}, budget_minutes=0.5,
    ),
}


def derive(m: dict) -> dict:
    """Per seed: the error-rate gap Transformer - MTA (points), and the same for the first answer letter."""
    out = {}
    for key in ("error_rate", "first_letter_error_rate"):
        a, b = m.get(f"transformer/test/{key}"), m.get(f"mta/test/{key}")
        if a is not None and b is not None:
            out[f"gap/{key}"] = a - b
    return out


def plot(per_seed: dict, out_dir) -> None:
    """Per-seed test error of both arms (the official README's table as a figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (arm, color) in enumerate((("transformer", "#d62728"), ("mta", "#1f77b4"))):
        vals = [v for v in per_seed.get(f"{arm}/test/error_rate", []) if v is not None]
        if not vals:
            continue
        ax.bar([i], [sum(vals) / len(vals)], color=color, alpha=0.4, width=0.6)
        ax.scatter([i] * len(vals), vals, color=color, zorder=3, label=f"{arm} (per seed)")
    ax.set_xticks([0, 1], labels=["Transformer", "MTA"])
    ax.set_ylabel("test error rate (%)")
    ax.set_ylim(0, 103)
    ax.set_title("Find-the-block toy task (bars: mean over seeds)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "error_rate.png", dpi=110)
    plt.close(fig)


def _build_model(cfg):
    from .model import build_module

    return build_module(cfg)


def _build_data(cfg):
    from .data import build_datamodule

    return build_datamodule(cfg)


METRICS = (
    "transformer/test/error_rate", "mta/test/error_rate", "gap/error_rate",
    "transformer/test/first_letter_error_rate", "mta/test/first_letter_error_rate", "gap/first_letter_error_rate",
    "transformer/test/token_error_rate", "mta/test/token_error_rate",
)

RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS,
    build_model=_build_model, build_data=_build_data, derive=derive, plot=plot,
)


