"""Recipe: Show, Attend and Tell (Xu et al., ICML 2015).

Training recipe. The cpu profile is a labelled analogue on synthetic scenes; its
expectations and tolerances were written before the first run (README, "Claims and
tolerances"). The full profile trains the six Table 1 rows of the paper (soft and hard
attention on Flickr8k, Flickr30k and COCO) and claims BLEU-1..4 and METEOR of the three
rows whose values could be confirmed (README, "Claims").
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig


@dataclass(frozen=True)
class Config(TrainConfig):
    dataset: str = "coco_captions"  # coco_captions | flickr8k | flickr30k | scenes (cpu analogue)
    encoder: str = "vgg19"  # vgg19 (paper: Oxford VGG conv5_4, frozen) | small_cnn (cpu analogue)
    pretrained: bool = True  # ImageNet weights for vgg19 (torchvision downloads them once)
    image_size: int = 224
    feat_dim: int = 64  # small_cnn annotation-vector size D
    cnn_width: int = 32
    attention: str = "soft"  # soft | hard | mean (no-attention control)
    embed: int = 512  # official COCO script: dim_word 512
    hidden: int = 1800  # official COCO script: LSTM dim 1800
    att_hidden: int = 512  # f_att hidden size (official: ctx_dim)
    dropout: float = 0.5
    alpha_c: float = 1.0  # doubly stochastic lambda (official COCO script: alpha-c 1.0)
    lambda_r: float = 0.1  # hard attention: REINFORCE weight (official: the /10 in the learning rule)
    lambda_e: float = 0.002  # hard attention: entropy weight (official alpha_entropy_c)
    semi_sampling_p: float = 0.5  # hard attention: probability of using the expected context
    beam_size: int = 5  # official generate_caps.py default k=5
    max_len: int = 20  # words per caption (training truncation and decoding limit)
    max_words: int = 10000  # official n_words: the 10,000 most frequent words
    meteor: bool = True
    eval_batch_size: int = 64
    max_items_per_split: int = 0  # >0: only the first n images of each split (quick checks)
    # synthetic scenes (cpu analogue)
    n_train: int = 3000
    n_val: int = 200
    n_test: int = 300
    data_seed: int = 46
    attention_figure: bool = True
    torch_threads: int = 0  # >0: intra-op threads while this model trains/tests (cpu/smoke: 1)
    # TrainConfig overrides (full profile: official COCO script)
    max_epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-4  # official adam lr0
    optimizer: str = "adam"  # adam | rmsprop (Section 5.1: RMSProp for Flickr8k, Adam for Flickr30k/COCO)
    gradient_clip_val: float | None = None


PAPER = Paper(
    slug="show_attend_tell",
    title="Show, Attend and Tell: Neural Image Caption Generation with Visual Attention",
    arxiv="1502.03044",
    year=2015,
    authors=("Kelvin Xu", "Jimmy Ba", "Ryan Kiros", "Kyunghyun Cho", "Aaron Courville", "Ruslan Salakhutdinov",
             "Richard Zemel", "Yoshua Bengio"),
    venue="ICML 2015",
    code="https://github.com/kelvinxu/arctic-captions",
)

CPU_CONFIG = Config(
    dataset="scenes", encoder="small_cnn", pretrained=False, image_size=48, feat_dim=64, cnn_width=16,
    embed=64, hidden=128, att_hidden=64, dropout=0.1, alpha_c=1.0, beam_size=3, max_len=14,
    max_epochs=4, batch_size=50, lr=2e-3, gradient_clip_val=5.0, eval_batch_size=100,
    n_train=1500, n_val=150, n_test=300, torch_threads=1,
)

SMOKE_CONFIG = Config(
    dataset="flickr8k", encoder="small_cnn", pretrained=False, image_size=48, feat_dim=16, cnn_width=8,
    embed=16, hidden=24, att_hidden=16, dropout=0.0, beam_size=2, max_len=12, max_epochs=1, batch_size=8,
    lr=2e-3, eval_batch_size=8, n_train=24, n_val=8, n_test=12, attention_figure=True, meteor=True,
    torch_threads=1,
)

_PROTO = (
    "Synthetic scenes (48x48, two shapes of distinct colours and shapes on a 3x3 grid, three template "
    "references each; 1,500 train / 300 test scenes, fixed data seed 46); small CNN encoder (6x6 grid, L=36, "
    "coordinate input channels) trained jointly with a 128-unit LSTM decoder (deep output, gating beta, doubly "
    "stochastic lambda=1), Adam 2e-3, 4 epochs over every (scene, reference) pair, batch 50; beam size 3, max 14 words; scores from "
    "pycocoevalcap 1.2 (PTBTokenizer, Bleu(4), Cider = CIDEr-D) x100. Arms: soft = eq. 6 soft attention, "
    "mean = the same decoder with z_t = beta_t mean_i a_i (no attention)."
)
_GAP_TOL = Tolerance(
    "abs", 0.0, "definition",
    "Stated before running: 'soft attention beats the mean-pooled decoder' read as a positive gap in every seed "
    "(aggregate = min over 3 seeds), with no slack.",
)

CPU_CLAIMS = (
    Claim(
        id="soft-beats-mean-bleu4", metric="gap/BLEU-4", reported=0.0, better="higher", bound=True,
        tolerance=_GAP_TOL, kind="expectation", seeds=3, aggregate="min", unit="BLEU points",
        source="expectation stated before running; scales down the paper's Table 1 comparison (attention decoders "
               "vs decoders fed one global image vector, in BLEU)",
        protocol=_PROTO + " Metric: BLEU-4(soft) - BLEU-4(mean) per seed.",
    ),
    Claim(
        id="soft-beats-mean-cider", metric="gap/CIDEr", reported=0.0, better="higher", bound=True,
        tolerance=_GAP_TOL, kind="expectation", seeds=3, aggregate="min", unit="CIDEr points",
        source="expectation stated before running; the issue's CIDEr analogue of Table 1's comparison with "
               "no-attention decoders (the paper reports BLEU and METEOR only)",
        protocol=_PROTO + " Metric: CIDEr-D(soft) - CIDEr-D(mean) per seed.",
    ),
    Claim(
        id="attention-on-named-object", metric="soft/test/attn_mass_over_area", reported=2.0, better="higher",
        bound=True, kind="expectation", seeds=3, aggregate="mean", unit="x area fraction",
        tolerance=Tolerance(
            "abs", 0.0, "definition",
            "Stated before running: 'well above its area fraction' read as at least twice the mass a uniform "
            "attention map would put inside the box (mass/area >= 2); uniform attention gives exactly 1.",
        ),
        source="expectation stated before running; scales down the abstract's claim that the model 'learns to fix "
               "its gaze on salient objects while generating the corresponding words' (the paper's attention figures)",
        protocol=_PROTO + " For every word of the teacher-forced first reference that names an object (its "
                          "shape noun), mass = sum over the 36 cells of alpha_t(cell) x (fraction of the cell "
                          "inside the object's box); area = box area / image area; metric = mean mass / mean "
                          "area over all such words of the 300 test scenes.",
    ),
)

# Table 1, rows "Soft-Attention" and "Hard-Attention" of each dataset block (BLEU-1..4 and METEOR,
# single models). The arXiv text's tables were not reachable with the offline tools, so a row is a
# claim only where independent transcriptions of Table 1 agree exactly (searched 2026-11-29):
# - Flickr8k soft and hard: four reproduction-project READMEs that quote both rows (BLEU-1 printed
#   "67") and a paper-review note that copies the whole table;
# - COCO soft: the review note and a reimplementation README (70.7 / 49.2 / 34.4 / 24.3 / 23.9).
# Flickr30k soft/hard and COCO hard appear only in the review note: listed in the README as
# unconfirmed, not claimed (their arms still run, without verdicts).
TABLE1 = {
    ("flickr8k", "soft"): (67.0, 44.8, 29.9, 19.5, 18.93),
    ("flickr8k", "hard"): (67.0, 45.7, 31.4, 21.3, 20.30),
    ("coco_captions", "soft"): (70.7, 49.2, 34.4, 24.3, 23.90),
}
_CONFIRMED_BY = {
    "flickr8k": "four reproduction READMEs and a review note agree",
    "coco_captions": "a review note and a reimplementation README agree",
}
_TABLE1_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR")
_DATASET_NAME = {"flickr8k": "Flickr8k", "flickr30k": "Flickr30k", "coco_captions": "MS COCO"}
_ARM_PREFIX = {"flickr8k": "f8k", "flickr30k": "f30k", "coco_captions": "coco"}
# Section 5.1: RMSProp for Flickr8k (official rmsprop: step 1e-4), Adam for Flickr30k and COCO
_OPTIMISER = {"flickr8k": {"optimizer": "rmsprop", "lr": 1e-4}, "flickr30k": {}, "coco_captions": {}}
FULL_ARMS = {
    f"{_ARM_PREFIX[ds]}-{kind}": {"dataset": ds, "data_dir": f"@{ds}", "attention": kind, **_OPTIMISER[ds]}
    for ds in _DATASET_NAME for kind in ("soft", "hard")
}
_FULL_PROTO = (
    "Test split of Karpathy & Fei-Fei (Flickr8k 1,000 / Flickr30k 1,000 / COCO 5,000 images; the public splits "
    "Section 5.1 points to, by our reading), five references per image; frozen ImageNet VGG-19 conv5_4 "
    "(torchvision weights; the paper: Oxford VGGnet), beam 5, at most 20 words; BLEU-n = coco-caption BLEU "
    "(corpus level, closest reference length) and METEOR 1.5 through pycocoevalcap 1.2 with its PTBTokenizer, "
    "x100. The paper's own BLEU/METEOR scripts are not named in what we could read; small metric-implementation "
    "differences are possible. One model per row, as the paper."
)
_FULL_TOL = Tolerance(
    "abs", 1.0, "assumed",
    "Assumed before any run: the paper reports one model per row without a spread; +-1 point is our allowance "
    "for seed variance and for the reimplementation (torchvision VGG-19 weights instead of the Oxford Caffe "
    "model, PyTorch instead of Theano, the official script's schedule approximated in epochs).",
)
FULL_CLAIMS = tuple(
    Claim(
        id=f"{_ARM_PREFIX[ds]}-{kind}-{metric.lower()}", metric=f"{_ARM_PREFIX[ds]}-{kind}/test/{metric}",
        reported=value, better="higher", tolerance=_FULL_TOL, unit="points",
        source=f"Table 1, {_DATASET_NAME[ds]} block, row '{kind.capitalize()}-Attention', column {metric} "
               f"(paper text not reachable offline; {_CONFIRMED_BY[ds]} on this value)",
        protocol=_FULL_PROTO,
    )
    for (ds, kind), values in TABLE1.items() for metric, value in zip(_TABLE1_METRICS, values)
)

PROFILES = {
    "full": Profile(
        "full", Config(),
        "Table 1: soft and hard attention on Flickr8k, Flickr30k and COCO (Karpathy splits), one model each "
        "(claims for the three rows whose values are confirmed, README): "
        "frozen ImageNet VGG-19 conv5_4 (14x14x512), LSTM 1800, embeddings 512, doubly stochastic lambda 1, "
        "dropout, Adam 2e-4 (RMSProp 1e-4 on Flickr8k, Section 5.1), beam 5. One dataset: --arm coco-soft "
        "--arm coco-hard (needs only that dataset; a subset of arms is not a canonical run).",
        claims=FULL_CLAIMS, datasets=tuple(_DATASET_NAME), arms=FULL_ARMS, seeds=1, gpu_hours=80.0,
    ),
    "cpu": Profile(
        "cpu", CPU_CONFIG,
        "Labelled analogue on synthetic scenes: soft attention vs a mean-pooled no-attention decoder (same "
        "encoder and decoder), 3 seeds; attention mass on the named object's box.",
        claims=CPU_CLAIMS, seeds=3, arms={"soft": {"attention": "soft"}, "mean": {"attention": "mean"}},
        # measured: 4.9 CPU-minutes for the whole profile (one intra-op thread per unit); 25 min wall on a
        # 2-core machine shared with ~12 runnable processes. 8 = the quiet-machine time with margin.
        slow=True, budget_minutes=8,
    ),
    "smoke": Profile(
        "smoke", SMOKE_CONFIG,
        "Wiring only: one epoch of a tiny model on the flickr8k fixture (real raw layout, prepared by "
        "data_scripts), and the cpu pipeline (both arms, attention analysis, figures) on a few synthetic scenes.",
        datasets=("flickr8k",), use_fixtures=True,
        arms={"fixture": {"dataset": "flickr8k", "attention": "soft"},
              "soft": {"dataset": "scenes", "attention": "soft"},
              "mean": {"dataset": "scenes", "attention": "mean", "meteor": False}},
        budget_minutes=2,
    ),
}

TEST_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
METRICS = (
    *(f"test/{k}" for k in TEST_KEYS), "test/attn_mass_in_box", "test/attn_box_area_fraction",
    "test/attn_mass_over_area", "soft/test/attn_mass_over_area", "gap/BLEU-4", "gap/CIDEr",
    *(c.metric for c in FULL_CLAIMS),
)


def _build_model(cfg):
    from .data import build_vocab
    from .model import ShowAttendTell

    return ShowAttendTell(cfg, build_vocab(cfg))


def _build_data(cfg):
    from .data import build_datamodule

    return build_datamodule(cfg)


def _derive(m):
    out = {}
    for key in ("BLEU-4", "CIDEr"):
        a, b = m.get(f"soft/test/{key}"), m.get(f"mean/test/{key}")
        if a is not None and b is not None:
            out[f"gap/{key}"] = a - b
    return out


def _plot(per_seed, out_dir):
    from .plots import plot_summary

    plot_summary(per_seed, out_dir)


RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, build_model=_build_model,
    build_data=_build_data, derive=_derive, plot=_plot,
    skips={
        "cpu-hard-attention": "hard attention is implemented and unit-tested (estimator, sampling) but not run in "
                              "the cpu profile, to keep it within 10 minutes on 2 cores; the full profile runs it.",
    },
)
