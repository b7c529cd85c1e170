"""Recipe: A study of latent monotonic attention variants (Zeyer, Schlüter & Ney, 2021).

Training recipe. Arms: global soft attention (the paper's baseline) and hard
latent-position monotonic attention trained with the exact sum over all monotonic
alignments. The paper's Switchboard 300h experiments need LDC data and its result tables
could not be read in this session, so there is no `full` profile and no paper number is a
claim (README, `skips`); the `cpu` claims are expectations written before the first run,
on a synthetic monotonic transduction task (data.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig


@dataclass(frozen=True)
class Config(TrainConfig):
    attention: Literal["hard_monotonic", "global_soft"] = "hard_monotonic"
    train_criterion: Literal["full_sum", "viterbi"] = "full_sum"  # hard model only
    strict: bool = True  # t_s > t_{s-1}; False: t_s >= t_{s-1}
    max_jump: int = 0  # 0: any forward jump
    jump_bins: int = 8
    input_feeding: bool = True  # soft baseline: decoder LSTM reads c_{s-1}
    # data (data.py)
    vocab: int = 10
    noise_std: float = 0.3
    min_frames: int = 2
    max_frames: int = 4
    train_min_len: int = 4
    train_max_len: int = 8
    long_min_len: int = 12
    long_max_len: int = 20
    train_samples: int = 3000
    dev_samples: int = 200
    test_samples: int = 300  # per test split
    data_seed: int = 0
    # model
    enc_hidden: int = 64  # per direction
    enc_layers: int = 1
    embed_dim: int = 32
    dec_hidden: int = 64
    att_dim: int = 64
    readout_dim: int = 64
    # training
    lr: float = 1e-3
    batch_size: int = 32
    eval_batch_size: int = 50
    max_epochs: int = 8
    gradient_clip_val: float | None = 5.0
    log_every_n_steps: int = 50


PAPER = Paper(
    slug="latent_monotonic_attention",
    title="A study of latent monotonic attention variants",
    arxiv="2103.16710",
    year=2021,
    authors=("Albert Zeyer", "Ralf Schlüter", "Hermann Ney"),
    venue="arXiv preprint",
    code="https://github.com/rwth-i6/returnn-experiments/tree/master/2021-latent-monotonic-attention",
)

ARMS = {"global_soft": {"attention": "global_soft"}, "hard_monotonic": {"attention": "hard_monotonic"}}


def derive(m: dict) -> dict:
    """Per seed: LER gaps between the arms (percentage points)."""
    out: dict[str, float] = {}
    for split in ("iid", "long"):
        h, s = m.get(f"hard_monotonic/test/ler_{split}"), m.get(f"global_soft/test/ler_{split}")
        if h is not None and s is not None:
            out[f"gap/ler_{split}_hard_minus_soft"] = h - s
    return out


def plot(per_seed: dict, out_dir) -> None:
    """Label error rate per arm on the in-distribution and the ~2.7x longer test inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, (arm, color) in enumerate((("global_soft", "#1f77b4"), ("hard_monotonic", "#d62728"))):
        for x, split in enumerate(("iid", "long")):
            vals = [v for v in per_seed.get(f"{arm}/test/ler_{split}", []) if v is not None]
            if vals:
                ax.bar(x + 0.38 * k, float(np.mean(vals)), 0.36, color=color, label=arm if x == 0 else None)
                ax.scatter([x + 0.38 * k] * len(vals), vals, color="black", s=10, zorder=3)
    ax.set_xticks([0.19, 1.19], labels=["test iid (4-8 symbols)", "test long (12-20 symbols)"])
    ax.set(ylabel="label error rate [%]", title="Synthetic monotonic transduction (bars: mean; dots: seeds)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "ler_by_split.png", dpi=110)
    plt.close(fig)


_CPU_PROTO = (
    "Synthetic monotonic transduction (data.py): 10 symbols, no immediate repeats, each symbol 2-4 frames, 0-2 "
    "leading and 1-2 trailing silence frames, one-hot features + N(0, 0.3^2) noise; 3000 training sequences of "
    "4-8 symbols; 300 test sequences per split, 'iid' 4-8 symbols, 'long' 12-20 symbols. 1-layer BLSTM encoder "
    "(2x64), LSTM decoder (64), MLP attention energies; Adam 1e-3, batch 32, 8 epochs, clip 5. Hard model: exact "
    "full-sum NLL over strictly monotonic alignments; soft model: cross entropy. Greedy decoding (hard: joint over "
    "position and label). LER = Levenshtein distance / reference length x 100, EOS excluded; mean over 3 seeds."
)
_SRC = "expectation stated before the first run (README, 'cpu claims')"

CPU_CLAIMS = (
    Claim(
        id="soft-learns-iid", metric="global_soft/test/ler_iid", reported=5.0, better="lower", bound=True,
        tolerance=Tolerance("abs", 0.0, "analysis",
                            "Per-frame noise 0.3 against a one-hot margin of 1 and 2-4 frames per symbol make the "
                            "in-distribution task nearly noise-free for a BLSTM; a working attention model should be "
                            "close to 0 LER, 5% leaves room for under-training at 8 epochs."),
        kind="expectation", seeds=3, aggregate="mean", unit="%",
        source="Paper's setting: the global soft attention baseline is a working ASR model; " + _SRC,
        protocol=_CPU_PROTO,
    ),
    Claim(
        id="hard-learns-iid", metric="hard_monotonic/test/ler_iid", reported=5.0, better="lower", bound=True,
        tolerance=Tolerance("abs", 0.0, "analysis", "As for the soft baseline: the task is nearly noise-free in "
                                                     "distribution; 5% allows for under-training."),
        kind="expectation", seeds=3, aggregate="mean", unit="%",
        source="Abstract: the hard attention model is one of the monotonic latent models that 'perform as good as "
               "the global soft attention model'; " + _SRC,
        protocol=_CPU_PROTO,
    ),
    Claim(
        id="hard-as-good-as-soft-iid", metric="gap/ler_iid_hard_minus_soft", reported=2.0, better="lower",
        bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "'As good as' read as: the hard model's in-distribution LER exceeds the soft baseline's "
                            "by at most 2 points (per seed, averaged); our reading, not a paper number."),
        kind="expectation", seeds=3, aggregate="mean", unit="points",
        source="Abstract: 'We can show that our monotonic models perform as good as the global soft attention "
               "model'; " + _SRC,
        protocol=_CPU_PROTO + " Gap = LER(hard) - LER(soft) on 'iid', per seed.",
    ),
    Claim(
        id="hard-generalises-long", metric="hard_monotonic/test/ler_long", reported=10.0, better="lower",
        bound=True,
        tolerance=Tolerance("abs", 0.0, "analysis",
                            "The position model only sees relative jumps and frame content, so nothing in it depends "
                            "on the absolute length; the label-only decoder LSTM does run ~2.5x more steps than in "
                            "training, hence a looser bound (10%) than in distribution."),
        kind="expectation", seeds=3, aggregate="mean", unit="%",
        source="Abstract: global soft attention 'is not monotonic, which might lead to ... bad generalisation' and "
               "monotonicity 'can potentially fix all of this'; " + _SRC + " (inputs 12-20 symbols, trained on 4-8)",
        protocol=_CPU_PROTO,
    ),
    Claim(
        id="hard-better-than-soft-long", metric="gap/ler_long_hard_minus_soft", reported=-5.0, better="lower",
        bound=True,
        tolerance=Tolerance("abs", 0.0, "definition",
                            "'Better on longer inputs' read as: the hard model's LER on 'long' is at least 5 points "
                            "below the soft baseline's (per seed, averaged); our reading, not a paper number."),
        kind="expectation", seeds=3, aggregate="mean", unit="points",
        source="Abstract (motivation: global soft attention generalises badly); " + _SRC,
        protocol=_CPU_PROTO + " Gap = LER(hard) - LER(soft) on 'long', per seed.",
    ),
)

PROFILES = {
    "cpu": Profile(
        "cpu", Config(),
        "Synthetic monotonic transduction: global soft attention vs hard latent monotonic attention (exact full "
        "sum), trained on 4-8 symbols, tested on 4-8 and 12-20; 3 seeds.",
        claims=CPU_CLAIMS, seeds=3, arms=ARMS, budget_minutes=10, slow=True,
    ),
    "smoke": Profile(
        "smoke", Config(train_samples=48, dev_samples=8, test_samples=8, batch_size=16, eval_batch_size=8,
                        max_epochs=1, enc_hidden=8, embed_dim=8, dec_hidden=8, att_dim=8, readout_dim=8,
                        long_min_len=9, long_max_len=10),
        "Wiring only: one epoch on 48 sequences, both arms, tiny model.",
        arms=ARMS, budget_minutes=0.5,
    ),
}

METRICS = tuple(dict.fromkeys(c.metric for c in CPU_CLAIMS))


def _build_model(cfg):
    from .model import LatentAttentionModule

    return LatentAttentionModule(cfg)


def _build_data(cfg):
    from .data import MonotonicTransductionData

    return MonotonicTransductionData(cfg)


RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, build_model=_build_model,
    build_data=_build_data, derive=derive, plot=plot,
    skips={
        "full": "Switchboard 300h (LDC97S62, licence-gated; features from RASR) has no data script here, and the "
                "paper's WER table could not be read in this session. The official score logs "
                "(switchboard/scores/*.recog.wers.txt) give per-epoch WERs (global soft attention retrain1: 14.3-14.6; "
                "hard attention initialised from it: 15.4 at epoch 1, 14.4-14.5 from epoch 125 on) without naming the test set or the epoch the paper "
                "reports, so they are listed in the README as unconfirmed, not claimed.",
        "variants": "The local windowed soft attention and segmental soft attention variants are not implemented.",
        "training": "The paper trains the hard model with the best alignment from search (Viterbi) and a decoder "
                    "that feeds back the attended frame; this recipe's decoder reads labels only, which makes the "
                    "exact full sum tractable (train_criterion=viterbi gives the maximum approximation).",
    },
)
