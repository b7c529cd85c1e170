"""Recipe: Learning to Deceive with Attention-Based Explanations (Pruthi et al., ACL 2020).

A training recipe: for each synthetic seq2seq task (Bigram Flip, Sequence Copy, Sequence
Reverse) an attentional GRU encoder-decoder is trained without (lambda = 0) and with
(lambda = 1) the attention-mass penalty on the aligned ("impermissible") source token.
The paper's Table 4 decimals could not be confirmed against the paper text, so every
claim here is an expectation written before the first run (README, "Claims and
tolerances"), scaled down from the paper's qualitative claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig


@dataclass(frozen=True)
class Config(TrainConfig):
    task: Literal["bigram_flip", "copy", "reverse"] = "bigram_flip"
    lam: float = 0.0  # lambda of the penalty R = -lambda log(1 - mass)
    vocab: int = 20  # content tokens (the official files use tokens i0..i99; sizes unpublished)
    min_len: int = 4
    max_len: int = 8
    train_size: int = 12_800
    test_size: int = 1_000
    data_seed: int = 0  # same sequences for every run seed and arm
    emb: int = 32
    hidden: int = 64
    dropout: float = 0.0
    batch_size: int = 64
    lr: float = 2e-3
    gradient_clip_val: float | None = 1.0  # official code: clip 1
    max_steps: int = 500
    max_epochs: int = 100  # max_steps ends training first
    log_every_n_steps: int = 50


PAPER = Paper(
    slug="deceptive_attention",
    title="Learning to Deceive with Attention-Based Explanations",
    arxiv="1909.07913",
    year=2019,
    authors=("Danish Pruthi", "Mansi Gupta", "Bhuwan Dhingra", "Graham Neubig", "Zachary C. Lipton"),
    venue="ACL 2020",
    code="https://github.com/danishpruthi/deceptive-attention",
)

TASK_SHORT = {"bigram_flip": "flip", "copy": "copy", "reverse": "reverse"}
TASK_NAMES = {"flip": "Bigram Flip", "copy": "Sequence Copy", "reverse": "Sequence Reverse"}
LAMBDAS = {"l0": 0.0, "l1": 1.0}


def _arms(tasks=("bigram_flip", "copy", "reverse")) -> dict[str, dict]:
    return {f"{TASK_SHORT[t]}_{tag}": {"task": t, "lam": lam} for t in tasks for tag, lam in LAMBDAS.items()}


def derive(m: dict) -> dict:
    """Per seed and task: accuracy cost of the penalty, acc(lambda=0) - acc(lambda=1), in points."""
    out = {}
    for short in TASK_SHORT.values():
        a0, a1 = m.get(f"{short}_l0/test/acc"), m.get(f"{short}_l1/test/acc")
        if a0 is not None and a1 is not None:
            out[f"{short}/acc_cost"] = a0 - a1
    return out


def plot(per_seed: dict, out_dir) -> None:
    """Accuracy and attention mass on the aligned token, lambda = 0 vs 1, per task
    (the content of the paper's seq2seq table as bars; mean over seeds, dots = seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shorts = [s for s in TASK_SHORT.values() if f"{s}_l0/test/acc" in per_seed]
    if not shorts:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "test/acc", "Test token accuracy (%)"),
                           (axes[1], "test/attn_mass", "Attention mass on the aligned token (%)")):
        for k, (tag, color) in enumerate((("l0", "#1f77b4"), ("l1", "#d62728"))):
            xs = np.arange(len(shorts)) + (k - 0.5) * 0.38
            vals = [[v for v in per_seed.get(f"{s}_{tag}/{key}", []) if v is not None] for s in shorts]
            ax.bar(xs, [np.mean(v) if v else np.nan for v in vals], width=0.36, color=color,
                   label=f"lambda = {LAMBDAS[tag]:g}")
            for x, v in zip(xs, vals):
                ax.plot([x] * len(v), v, "k.", ms=4)
        ax.set_xticks(np.arange(len(shorts)), [TASK_NAMES[s] for s in shorts])
        ax.set(title=title, ylim=(0, 105))
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.suptitle("Deceptive attention: penalising the aligned token (GRU seq2seq)")
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_and_attention_mass.png", dpi=110)
    plt.close(fig)


_PROTO = (
    "Generated task data (vocabulary 20 content tokens, lengths 4-8, 12,800 training and 1,000 test "
    "sequences, data seed 0). Bidirectional GRU encoder (emb 32, hidden 64), GRU decoder with softmax "
    "attention; Adam lr 2e-3, batch 64, 500 steps, clip 1; loss = cross-entropy - lambda log(1 - batch "
    "mean attention mass on the aligned source token). Test: greedy decoding for the target's length; "
    "accuracy and attention mass in % over target tokens including <eos> (official evaluation)."
)

_NOTE_SCALE = (
    "scaled down from the paper's claim (abstract): the penalty drives attention on impermissible "
    "tokens to near zero 'while paying surprisingly little cost in accuracy'"
)


def _claims() -> tuple[Claim, ...]:
    claims = []
    for short, name in TASK_NAMES.items():
        claims += [
            Claim(
                id=f"{short}-unpenalised-learns", metric=f"{short}_l0/test/acc", reported=90.0, better="higher",
                bound=True, kind="expectation", seeds=3, unit="%",
                tolerance=Tolerance("abs", 0.0, "definition",
                                    "A control: the unpenalised model must solve the task for the comparison to mean "
                                    "anything; 90% token accuracy is our threshold for 'solves' (paper's models: ~100%)."),
                source=f"{name}: expectation stated before running ({_NOTE_SCALE}); control for the lambda=0 model",
                protocol=_PROTO + " lambda = 0; mean over 3 seeds.",
            ),
            Claim(
                id=f"{short}-unpenalised-attends", metric=f"{short}_l0/test/attn_mass", reported=50.0,
                better="higher", bound=True, kind="expectation", seeds=3, unit="%",
                tolerance=Tolerance("abs", 0.0, "analysis",
                                    "With lengths 4-8 the <eos> step (never aligned) is 1/9 to 1/5 of target tokens, "
                                    "so the largest possible mass is 80-89%; a model that attends mainly to the token "
                                    "it copies exceeds 50%. Below 50% the penalty would have little to remove."),
                source=f"{name}: expectation stated before running; the paper's unpenalised models put most "
                       "attention on the aligned token (official repository README sample log, Bigram Flip, seed 1, lambda not stated: 93.34%)",
                protocol=_PROTO + " lambda = 0; mean over 3 seeds.",
            ),
            Claim(
                id=f"{short}-penalised-mass-near-zero", metric=f"{short}_l1/test/attn_mass", reported=5.0,
                better="lower", bound=True, kind="expectation", seeds=3, unit="%",
                tolerance=Tolerance("abs", 0.0, "definition",
                                    "'Near zero' read as below 5% of target tokens' attention, at least ten times "
                                    "below the unpenalised expectation (>= 50%)."),
                source=f"{name}: expectation stated before running ({_NOTE_SCALE})",
                protocol=_PROTO + " lambda = 1; mean over 3 seeds.",
            ),
            Claim(
                id=f"{short}-little-accuracy-cost", metric=f"{short}/acc_cost", reported=5.0, better="lower",
                bound=True, kind="expectation", seeds=3, unit="points",
                tolerance=Tolerance("abs", 0.0, "definition",
                                    "'Surprisingly little cost in accuracy' read as at most 5 accuracy points lost "
                                    "with lambda = 1 (same seed, same data), averaged over 3 seeds."),
                source=f"{name}: expectation stated before running ({_NOTE_SCALE})",
                protocol=_PROTO + " acc(lambda=0) - acc(lambda=1) per seed (derive), mean over 3 seeds.",
            ),
        ]
    return tuple(claims)


CPU_CLAIMS = _claims()

PROFILES = {
    "cpu": Profile(
        "cpu", Config(),
        "Bigram Flip, Sequence Copy and Sequence Reverse, lambda in {0, 1}, 3 seeds (18 short trainings).",
        claims=CPU_CLAIMS, seeds=3, arms=_arms(), slow=True, budget_minutes=10,
    ),
    "smoke": Profile(
        "smoke", Config(lam=1.0, train_size=128, test_size=32, max_steps=3, batch_size=16, emb=8, hidden=8,
                        max_len=6),
        "Wiring only: one tiny penalised run.", budget_minutes=0.5,
    ),
}


def _build_model(cfg):
    from .model import DeceptiveSeq2Seq

    return DeceptiveSeq2Seq(cfg)


def _build_data(cfg):
    from .data import SyntheticSeq2Seq

    return SyntheticSeq2Seq(cfg)


METRICS = tuple(
    f"{s}_{tag}/{k}" for s in TASK_SHORT.values() for tag in LAMBDAS for k in ("test/acc", "test/attn_mass")
) + tuple(f"{s}/acc_cost" for s in TASK_SHORT.values())

RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, build_model=_build_model,
    build_data=_build_data, derive=derive, plot=plot,
    skips={"full": "The paper's Table 4 numbers could not be confirmed against the paper text, and the official "
                   "repository ships neither the generated task files (absent from the stored snapshot) nor their "
                   "generator or settings (vocabulary, lengths, sizes), so the paper's exact setting cannot be "
                   "rebuilt; the cpu profile checks the abstract's claim on our stated analogue."},
)
