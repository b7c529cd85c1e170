"""Recipe: Play It Back: Iterative Attention for Audio Recognition (Stergiou & Damen, ICASSP 2023).

A training recipe. The cpu profile is a labelled analogue (fine temporal pattern that only
a small hop resolves) with expectations written before the first run; the full profile is
the paper's AudioSet setting, without claims: the paper's table numbers could not be
confirmed against the paper text (README, "Paper numbers").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig


@dataclass(frozen=True)
class Config(TrainConfig):
    task: Literal["fine_clicks", "prepared"] = "fine_clicks"
    # audio front end (samples derive from ms at sample_rate)
    sample_rate: int = 16000
    clip_secs: float = 1.024
    win_ms: float = 0.5  # STFT window, fixed across playbacks (paper code: WINDOW_LENGTH)
    n_fft: int = 8
    n_mels: int = 0  # 0: linear-frequency bins
    hops_ms: tuple[float, ...] = (16.0, 2.0, 0.5)  # playback 0 (full clip), then the replays
    replay_frames: int = 64  # frames per replay (the paper code's crop: 400)
    # network
    dim: int = 64
    heads: int = 4
    layers: int = 2
    latents: int = 8
    slot_iters: int = 3
    dropout: float = 0.0
    aux_weight: float = 0.1  # slot (playback) loss weight, as the paper code's 0.1
    weight_decay: float = 0.01
    num_classes: int = 2
    multilabel: bool = False
    # fine_clicks task
    spacings_ms: tuple[float, ...] = (3.0, 5.0)
    event_secs: float = 0.1
    jitter: float = 0.15
    n_train: int = 2000  # prepared task: 0 = all
    n_val: int = 200
    n_test: int = 1000
    data_seed: int = 1234
    # training
    max_epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    gradient_clip_val: float | None = 1.0
    checkpoint_every_n_epochs: int = 0


PAPER = Paper(
    slug="play_it_back",
    title="Play It Back: Iterative Attention for Audio Recognition",
    arxiv="2210.11328",
    year=2022,
    authors=("Alexandros Stergiou", "Dima Damen"),
    venue="ICASSP 2023",
    code="https://github.com/alexandrosstergiou/PlayItBack",
)

SINGLE = {"hops_ms": (16.0,)}
REPLAY = {"hops_ms": (16.0, 2.0, 0.5)}

_PROTO = (
    "fine_clicks analogue (papers/play_it_back/data.py): 16 kHz, 1.024-s clips, white noise (std 0.05) plus one "
    "100-ms event: a 2-kHz carrier gated into pips of 40% of the spacing, spacing 3 ms (class 0) or 5 ms (class 1), "
    "every interval jittered by U(-15%, +15%), amplitude U(0.3, 1.0), random onset; 2000 train / 200 val / 1000 test "
    "clips (data seed 1234, the same for every run seed); log power spectrogram, 0.5-ms Hann window, n_fft 8. "
    "Arms: 'single' = one pass over the whole clip at hop 16 ms (64 frames); 'replay' = the same pass plus two "
    "slot-attention-selected replays of 64 frames at hops 2 ms and 0.5 ms. Same encoder (dim 64, 2 layers, 4 heads), "
    "latent decoder (8 latents, one layer per playback), AdamW lr 2e-3 one-cycle, 8 epochs, batch 32, 3 seeds; "
    "top-1 accuracy on the 1000 test clips (mean over seeds)."
)


def _bound(note: str) -> Tolerance:  # the bound itself is the claim's `reported`
    return Tolerance("abs", 0.0, "definition", note)


CPU_CLAIMS = (
    Claim(
        id="replay_gain",
        metric="gain/test_acc",
        reported=0.15,
        better="higher",
        bound=True,
        tolerance=_bound("Stated bound, no slack: the mean (over 3 seeds) of replay minus single accuracy must "
                               "be >= 0.15. Analysis written before running: the single pass sees about 6 frames of "
                               "the event, each an on/off sample with the same probability (the 40% duty cycle) for "
                               "both classes; the aliased periodicity of a 16-ms frame train is smeared by the "
                               "jitter, so it is expected near chance (<= 0.65). The 0.5-ms replay resolves 6-10 pip "
                               "periods in its 32-ms window and is expected >= 0.85 when the selection lands in the "
                               "event; 0.15 leaves room for selection misses and short training."),
        source="expectation stated before running; scales down the paper's claim (abstract, Section 3) that "
               "replaying slot-attention-selected segments at a smaller hop improves recognition over the "
               "full-sequence pass alone",
        protocol=_PROTO + " Metric: per seed, replay/test/acc - single/test/acc.",
        seeds=3,
        kind="expectation",
    ),
    Claim(
        id="replay_acc",
        metric="replay/test/acc",
        reported=0.8,
        better="higher",
        bound=True,
        tolerance=_bound("Stated bound, no slack: the replay arm must resolve the spacing on most clips "
                              "(>= 0.8; expected >= 0.85, see replay_gain); a selection that misses the event, or a "
                              "replay misaligned with the clip's timeline, gives about chance."),
        source="expectation stated before running; the replayed, higher-resolution segment carries the class "
               "(paper, Section 2: 'higher resolution features within these segments')",
        protocol=_PROTO,
        seeds=3,
        kind="expectation",
    ),
    Claim(
        id="single_pass_near_chance",
        metric="single/test/acc",
        reported=0.7,
        better="lower",
        bound=True,
        tolerance=_bound("Stated bound, no slack: the condition that makes this analogue meaningful — one pass "
                              "at the coarse hop cannot resolve the spacing (expected <= 0.65, chance 0.5; 0.7 allows "
                              "for weak aliasing cues that survive the jitter)."),
        source="expectation stated before running (design check of the analogue: the classes differ only at a "
               "hop well below the coarse one)",
        protocol=_PROTO,
        seeds=3,
        kind="expectation",
    ),
)

CPU = Config()
# Smoke: the VGG-Sound fixture (single label, so it logs test/acc like the cpu claims; the multi-label
# AudioSet path is covered by the unit tests).
SMOKE = Config(
    task="prepared", sample_rate=16000, clip_secs=2.0, win_ms=20.0, n_fft=512, n_mels=32, hops_ms=(20.0, 10.0),
    replay_frames=32, dim=32, heads=2, layers=1, latents=4, num_classes=8, multilabel=False, n_train=0, n_val=0,
    n_test=0, max_epochs=1, batch_size=8, lr=1e-3,
)
# The paper's AudioSet setting (configs/Audioset/PlayItBackX3.yaml of the official code): 16 kHz, 10-s clips,
# 20-ms window, n_fft 2048, 128 HTK mel bins, 400-frame crops, hop 25 ms / (p + 1) for playback p = 0..3,
# 527 classes, BCE, batch 64, 50 epochs. Differences (README): no pretrained frozen MViTv2-B encoder, AdamW.
FULL = Config(
    task="prepared", sample_rate=16000, clip_secs=10.0, win_ms=20.0, n_fft=2048, n_mels=128,
    hops_ms=(25.0, 12.5, 25.0 / 3, 6.25), replay_frames=400, dim=384, heads=6, layers=8, latents=64,
    num_classes=527, multilabel=True, n_train=0, n_val=0, n_test=0, max_epochs=50, batch_size=64, lr=5e-4,
    num_workers=8, checkpoint_every_n_epochs=1,
)

PROFILES = {
    "full": Profile(
        "full", FULL,
        "AudioSet (as placed by the user; the test-clip count is logged as test/n_clips), the paper's spectrogram and "
        "playback settings (X3: four playbacks), our from-scratch encoder; no claims (paper numbers unconfirmed)",
        datasets=("audioset",), seeds=1, gpu_hours=400.0,
    ),
    "cpu": Profile(
        "cpu", CPU,
        "fine temporal analogue: single coarse pass vs play-it-back replay (3 seeds x 2 arms)",
        claims=CPU_CLAIMS, seeds=3, arms={"single": SINGLE, "replay": REPLAY},
        slow=True, budget_minutes=10.0,
    ),
    "smoke": Profile(
        "smoke", SMOKE, "VGG-Sound fixture (single-label synthetic events), one epoch, one replay",
        datasets=("vggsound",), use_fixtures=True, budget_minutes=1.0,
    ),
}

METRICS = (
    "single/test/acc", "replay/test/acc", "gain/test_acc", "test/acc", "test/mAP", "test/n_clips",
    "test/map_excluded_classes", "single/test/mAP", "replay/test/mAP",
    "replay/test/replay1_on_event", "replay/test/replay2_on_event",  # diagnostics: replay windows on the event
)


def build_model(cfg: Config):
    from .model import PlayItBackModule

    return PlayItBackModule(cfg)


def build_data(cfg: Config):
    from .data import PlayItBackData

    return PlayItBackData(cfg)


def derive(m):
    out = {}
    if "replay/test/acc" in m and "single/test/acc" in m:
        out["gain/test_acc"] = m["replay/test/acc"] - m["single/test/acc"]
    return out


def plot(per_seed, out_dir) -> None:
    """Accuracy per arm (mean and per-seed points): the paper's claim in one panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ("single", "replay") if f"{a}/test/acc" in per_seed]
    if not arms:
        return
    fig, ax = plt.subplots(figsize=(4, 3.2))
    for i, a in enumerate(arms):
        vals = [v for v in per_seed[f"{a}/test/acc"] if v is not None]
        ax.bar(i, sum(vals) / len(vals), color="#bbb" if a == "single" else "#4a7")
        ax.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
    ax.axhline(0.5, ls=":", color="grey", label="chance")
    ax.set_xticks(range(len(arms)), ["one pass, hop 16 ms", "+ replays, 2 / 0.5 ms"][: len(arms)])
    ax.set_ylabel("test accuracy (3 vs 5 ms pips)")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "replay_vs_single.png", dpi=120)
    plt.close(fig)


RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, build_model=build_model,
    build_data=build_data, derive=derive, plot=plot,
)

__all__ = ["Config", "RECIPE", "replace"]
