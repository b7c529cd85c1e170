"""Recipe: Look Once to Hear: Target Speech Hearing with Noisy Examples (Veluri, Itani,
Chen, Yoshioka, Gollakota; CHI 2024; arXiv 2405.06289).

A measurement recipe whose measurement is a training run (``ctx.fit_and_test``) plus a
latency bench: see ``experiment.py``. Claims and tolerances below were written before
the first ``cpu`` run (README, "Claims and tolerances").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig, lazy


@dataclass(frozen=True)
class Config(TrainConfig):
    corpus: Literal["librispeech", "synthetic"] = "librispeech"
    train_split: str = "train-clean-360"
    test_split: str = "test-clean"
    # synthetic espeak-ng corpus in LibriSpeech's layout (cpu analogue; data_scripts.librispeech.make_corpus)
    synth_train_speakers: int = 24
    synth_test_speakers: int = 8
    synth_utts: int = 5
    synth_words: tuple[int, ...] = (5, 8)
    synth_seed: int = 0
    # scenes (data.SceneConfig)
    sample_rate: int = 16000
    clip_s: float = 5.0
    enroll_s: float = 5.0
    sir_db: tuple[float, ...] = (-3.0, 3.0)  # synthetic rendering only (measured: data.SceneConfig official spec)
    snr_db: tuple[float, ...] = (5.0, 15.0)  # synthetic rendering only
    n_train: int = 100000  # scenes per epoch (official generate_jams.py: 100,000 training specifications)
    n_test: int = 10000  # official: 10,000 test specifications
    # causal TSH network (official experiments/tsh/config.json)
    chunk_ms: float = 8.0
    lookahead_ms: float = 4.0
    embed_dim: int = 256
    tsh_channels: int = 64  # D
    tsh_hidden: int = 64  # H
    tsh_layers: int = 3  # B
    tsh_heads: int = 4  # L
    local_atten_len: int = 50
    approx_qk_dim: int = 512
    tsh_output: Literal["mapping", "mask"] = "mapping"  # official: complex spectral mapping
    # enrollment network (official configs/embed.json: EmbedTFGridNet, n_fft 128 / stride 64 at 16 kHz)
    enroll_win_ms: float = 8.0
    enroll_channels: int = 64
    enroll_hidden: int = 64
    enroll_layers: int = 3
    enroll_heads: int = 4
    loss: Literal["snr", "si_snr"] = "snr"  # official TSH loss: -SNR
    # scene rendering: measured HRIR/BRIRs (data_scripts.binaural_rirs) + WHAM! noise, or the synthetic HRTF/noise
    spatial: Literal["measured", "synthetic"] = "measured"
    noise: Literal["wham", "synthetic"] = "wham"
    # paper: stage 1 TSH on teacher d-vectors, stage 2 enrollment net -> d-vector (cosine); or joint end to end
    training: Literal["two_stage", "joint"] = "two_stage"
    teacher: Literal["resemblyzer", "speaker_table"] = "resemblyzer"  # speaker_table: smoke wiring stand-in
    embed_margin: float = 0.5  # official CosineEmbeddingLoss margin
    bench_chunks: int = 200  # 0: skip the latency bench
    # training (official: Adam 5e-4, batch 8, 100 epochs)
    max_epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-4
    checkpoint_every_n_epochs: int = 1


PAPER = Paper(
    slug="look_once_to_hear",
    title="Look Once to Hear: Target Speech Hearing with Noisy Examples",
    arxiv="2405.06289",
    year=2024,
    authors=("Bandhav Veluri", "Malek Itani", "Tuochao Chen", "Takuya Yoshioka", "Shyamnath Gollakota"),
    venue="CHI 2024",
    code="https://github.com/vb000/LookOnceToHear",
)

_SISNRI = ("SI-SNR improvement (dB) = SI-SNR(estimate, target) - SI-SNR(mixture, target) per example and ear, "
           "averaged over both ears and all test scenes (repro.metrics.separation, torchmetrics 1.9 "
           "scale_invariant_signal_noise_ratio, zero-mean).")
_ABSTRACT = ("Abstract (arXiv 2405.06289v2/v3 and the CHI 2024 version): 'Our system achieves a signal quality "
             "improvement of 7.01 dB using less than 5 seconds of noisy enrollment audio and can process 8 ms of "
             "audio chunks in 6.24 ms on an embedded CPU'. The table row behind 7.01 dB could not be read in this "
             "work (only the abstract was reachable); the abstract does not name the embedded CPU.")

FULL_CLAIMS = (
    Claim(
        id="si-snri-noisy-enrollment", metric="test/si_snri", reported=7.01, better="higher", unit="dB",
        tolerance=Tolerance("abs", 1.0, "assumed",
                            "Assumed: no spread is reported in the abstract; 1 dB covers seed-to-seed variation "
                            "of separation training at this scale. Not widened for the simulation gap below."),
        source=_ABSTRACT,
        protocol=("Binaural 5 s scenes at 16 kHz simulated on the fly from LibriSpeech (train: train-clean-360, "
                  "100,000 scenes per epoch; test: test-clean, 10,000 fixed scenes of unseen speakers), each "
                  "rendered through one measured response set drawn with the official weights (CIPIC 35 : "
                  "RRBRIR 5 : ASH 45 : CATT 15; subjects/rooms of the official split): 2-3 speakers (one is the "
                  "target) each 15-25 dB above a WHAM! background at -25 dB, all anywhere in the room, the "
                  "rendered background scaled by U(3, 10); a 5 s noisy binaural enrollment = another such scene "
                  "with the target at the frontal response and the others > 20 degrees off-axis; causal TSH "
                  "network with the official configuration (8 ms chunks, 4 ms lookahead, D=64, H=64, B=3, "
                  "4 heads, 50-frame window) trained first on Resemblyzer d-vectors of the clean enrollment "
                  "utterance (negative-SNR loss), then the enrollment network EmbedTFGridNet (3 blocks) "
                  "trained to those d-vectors from the noisy enrollment (cosine embedding loss, margin 0.5); "
                  "test with the enrollment network's embedding. " + _SISNRI),
        known_gap=("Scenes follow the official specification (generate_jams.py: 2-3 speakers, 15-25 dB above "
                   "the background at -25 dB, 5 s; background gain U(3, 10) after rendering) and are rendered with "
                   "the paper's responses and WHAM! noise, trained in the paper's two stages with Resemblyzer "
                   "d-vector targets; but the scenes are our own draws from that specification (the authors' "
                   ".jams instances are on Google Drive), levels are RMS rather than scaper's LUFS, and the "
                   "enrollment distractors are kept > 20 degrees off-axis for every response set."),
    ),
    Claim(
        id="real-time-8ms-chunk", metric="bench/chunk_ms", reported=8.0, better="lower", bound=True, unit="ms",
        tolerance=Tolerance("abs", 0.0, "definition",
                            "Real time by definition: one 8 ms chunk must be processed in at most 8 ms."),
        source=_ABSTRACT + " Judged here: the real-time property (<= 8 ms per 8 ms chunk), not the 6.24 ms value, "
                           "which belongs to the paper's device.",
        protocol=("Median wall time of one streaming call of the paper's causal TSH configuration on one 8 ms "
                  "chunk (16 kHz, 2 mics, batch 1, torch.no_grad, eager PyTorch, random weights, 200 chunks after "
                  "5 warm-up chunks) on the machine that runs the profile, with its torch thread count "
                  "(bench/threads). The paper's 6.24 ms was measured on an embedded CPU and is not comparable "
                  "to another device."),
    ),
)

_CPU_PROTO = (
    "Labelled synthetic analogue: espeak-ng speakers (data_scripts._speaker_synth) in LibriSpeech's layout, "
    "24 training voices and 8 unseen test voices x 5 utterances; 8 kHz binaural scenes with the synthetic HRTF "
    "(Woodworth ITD + 8 dB broadband ILD) and synthetic binaural noise (SNR 5-15 dB, SIR -3..3 dB): 0.6 s "
    "mixtures, 1.0 s noisy enrollments (target in front, a distractor >= 20 degrees off-axis); a tiny causal "
    "TSH network (8 ms chunks, 4 ms lookahead, D=8, H=8, B=1, 2 heads, residual complex mask output) and "
    "enrollment network (1 block, D=8, 16 ms window) trained jointly from scratch per seed (Adam 1e-3, 200 steps "
    "of batch 8, negative SI-SNR loss: a scale-invariant objective for the short schedule, where the official "
    "-SNR loss first collapses the output towards zero); 48 fixed test scenes. "
    + _SISNRI
)
_BOUND0 = Tolerance("abs", 0.0, "definition",
                    "The expectation is a sign (the issue's 'positive SI-SNR improvement'), not a value: no slack.")
CPU_CLAIMS = (
    Claim(
        id="positive-si-snri", metric="test/si_snri", reported=0.0, better="higher", bound=True, unit="dB",
        tolerance=_BOUND0, kind="expectation", seeds=3, aggregate="mean",
        source=("expectation stated before running: with a noisy enrollment of the target, the jointly trained "
                "tiny model improves SI-SNR over the mixture (> 0 dB) on unseen synthetic speakers; scales down "
                "the abstract's 7.01 dB SI-SNRi claim"),
        protocol=_CPU_PROTO + " Measured: SI-SNRi with the noisy enrollment, mean over 3 seeds.",
    ),
    Claim(
        id="enrollment-selects-target", metric="test/gap_noisy_minus_wrong", reported=0.0, better="higher",
        bound=True, unit="dB", tolerance=_BOUND0, kind="expectation", seeds=3, aggregate="mean",
        source=("expectation stated before running (control): the enrollment decides whom the network extracts, "
                "so the noisy enrollment of the target gives a higher SI-SNRi (w.r.t. the target) than a noisy "
                "enrollment of the interfering speaker; the paper's premise that the noisy example identifies "
                "the target"),
        protocol=_CPU_PROTO + (" Measured: SI-SNRi(noisy enrollment of the target) - SI-SNRi(noisy enrollment "
                               "of the mixture's interfering speaker, built the same way), mean over 3 seeds."),
    ),
)

FULL = Config()
CPU = Config(
    corpus="synthetic", spatial="synthetic", noise="synthetic", training="joint", sample_rate=8000, clip_s=0.6, enroll_s=1.0, n_train=1600, n_test=48,
    embed_dim=32, tsh_channels=8, tsh_hidden=8, tsh_layers=1, tsh_heads=2, approx_qk_dim=64, tsh_output="mask",
    enroll_win_ms=16.0, enroll_channels=8, enroll_hidden=8, enroll_layers=1, enroll_heads=2,
    max_epochs=1, max_steps=200, batch_size=8, lr=1e-3, gradient_clip_val=5.0, loss="si_snr",
    checkpoint_every_n_epochs=0, log_every_n_steps=10, bench_chunks=200,
)
SMOKE = Config(
    corpus="librispeech", spatial="measured", noise="wham", training="two_stage", teacher="speaker_table",
    sample_rate=8000, clip_s=0.3, enroll_s=0.5, n_train=8, n_test=4, synth_utts=2,
    embed_dim=8, tsh_channels=4, tsh_hidden=4, tsh_layers=1, tsh_heads=2, local_atten_len=5, approx_qk_dim=16,
    enroll_win_ms=32.0, enroll_channels=4, enroll_hidden=4, enroll_layers=1, enroll_heads=2,
    max_epochs=1, max_steps=2, batch_size=4, lr=1e-3, checkpoint_every_n_epochs=0, log_every_n_steps=1,
    bench_chunks=5,
)

PROFILES = {
    "full": Profile(
        "full", FULL,
        "The paper's networks and two-stage training on LibriSpeech scenes rendered with the measured "
        "HRIR/BRIR sets and WHAM! noise; SI-SNRi with noisy enrollment and the per-chunk latency of the "
        "causal network. Needs the optional package resemblyzer (the paper's d-vector teacher).",
        claims=FULL_CLAIMS, datasets=("librispeech", "binaural_rirs", "wham_noise"), seeds=1,
        gpu_hours=1500.0,  # not measured: the earlier 150 h estimate for 20k scenes/epoch x5, x2 for two stages
    ),
    "cpu": Profile(
        "cpu", CPU,
        "Synthetic espeak-ng speakers, 8 kHz binaural scenes, tiny causal model trained jointly with its "
        "enrollment network, 3 seeds; plus the paper configuration's per-chunk latency on this CPU (unjudged).",
        claims=CPU_CLAIMS, seeds=3, slow=True, budget_minutes=10.0,
    ),
    "smoke": Profile(
        "smoke", SMOKE,
        "Wiring only: the LibriSpeech, binaural_rirs and wham_noise fixtures (real layouts) through the measured "
        "scene simulation, both networks in the paper's two stages (two steps each, with a speaker-table stand-in "
        "for the d-vector teacher), the three test conditions, the latency bench and the ledger.",
        datasets=("librispeech", "binaural_rirs", "wham_noise"), use_fixtures=True, budget_minutes=1.0,
    ),
}

METRICS = (
    "test/si_snri", "test/si_snri_clean_enroll", "test/si_snri_wrong_enroll", "test/gap_noisy_minus_wrong",
    "test/input_si_snr", "train/loss", "train/steps", "test/si_snri_teacher_embed", "test/embed_cosine",
    "train/tsh_loss", "train/embed_loss",
    "bench/chunk_ms", "bench/rtf", "bench/tsh_params_m", "bench/threads",
)



def _plot(per_seed, out_dir) -> None:
    from .plots import enrollment_bars

    enrollment_bars(per_seed, out_dir)


RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, measure=lazy(".experiment:measure", __package__), plot=_plot,
    skips={
        "jams-scene-instances": "The official scenes are scaper .jams instances (Google-Drive bundles); full draws "
                                "its own scenes from the same specification (official generate_jams.py: 2-3 "
                                "speakers, 15-25 dB over a -25 dB background, 5 s; background x U(3, 10)) with "
                                "RMS levels instead of scaper's LUFS. cpu keeps the synthetic HRTF and noise "
                                "(labelled analogue).",
        "cpu-joint-training": "The cpu analogue trains both tiny networks jointly end to end (no d-vector model "
                              "offline, and no time for two stages); full and smoke use the paper's two stages.",
        "paper-table-numbers": "Only the abstract could be read; the per-condition tables (clean vs noisy "
                               "enrollment, baselines, real-world user study) are not claimed.",
    },
)
