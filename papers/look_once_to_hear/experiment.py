"""One unit = one seed: build (or reuse) the speech corpus, train the enrollment network
and the causal TSH network (jointly, or in the paper's two stages: ``TSHStage1`` then
``EnrollStage2``) with Lightning (``ctx.fit_and_test``), evaluate
SI-SNRi on fixed test scenes of unseen speakers with the noisy enrollment, the clean
enrollment and the wrong-speaker enrollment, then time the paper's causal configuration
on one 8 ms chunk (streaming, batch 1) on this machine.

Metric keys: ``test/si_snri`` (noisy enrollment, the paper's setting), ``test/si_snri_clean_enroll``,
``test/si_snri_wrong_enroll``, ``test/gap_noisy_minus_wrong``, ``test/input_si_snr``,
``bench/chunk_ms``, ``bench/rtf``, ``bench/tsh_params_m``, ``bench/threads``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.audio import signal_noise_ratio

from repro.metrics.separation import si_snr, si_snr_improvement
from repro.training import seed_everything

from .data import SceneConfig, SceneData
from .model import TargetSpeechNet, build


class TSHModule(L.LightningModule):
    """Joint training of enrollment net + TSH net with the official TSH loss (negative
    SNR of the binaural estimate); test: SI-SNRi under three enrollment conditions."""

    CONDITIONS = {"enroll": "", "enroll_clean": "_clean_enroll", "enroll_wrong": "_wrong_enroll"}

    def __init__(self, cfg, model=None) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model if model is not None else build(cfg)
        self._test: dict[str, list[torch.Tensor]] = {}

    def forward(self, mixture, enrollment):
        return self.model(mixture, enrollment)

    def training_step(self, batch, batch_idx):
        est = self.model(batch["mixture"], batch["enroll"])
        if self.cfg.loss == "snr":
            loss = -signal_noise_ratio(est, batch["target"]).mean()
        else:
            loss = -si_snr(est, batch["target"]).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=est.shape[0])
        return loss

    def on_test_epoch_start(self) -> None:
        self._test = {}

    def test_step(self, batch, batch_idx):
        mix, tgt = batch["mixture"], batch["target"]
        self._test.setdefault("input", []).append(si_snr(mix, tgt).mean(-1).cpu())
        for key, suffix in self.CONDITIONS.items():
            est = self.model(mix, batch[key])
            self._test.setdefault(key, []).append(si_snr_improvement(est, mix, tgt).cpu())

    def on_test_epoch_end(self) -> None:
        m = {f"test/si_snri{s}": torch.cat(self._test[k]).mean() for k, s in self.CONDITIONS.items()}
        m["test/gap_noisy_minus_wrong"] = m["test/si_snri"] - m["test/si_snri_wrong_enroll"]
        m["test/input_si_snr"] = torch.cat(self._test["input"]).mean()
        for k, v in m.items():
            self.log(k, float(v))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr)


class TSHStage1(L.LightningModule):
    """Paper stage 1 (official ``ts_hear_embed_pl_module``): the TSH network alone,
    conditioned on the teacher embedding of the target's clean enrollment utterance
    (``embedding_gt``), trained with the TSH loss; test: SI-SNRi with that embedding."""

    def __init__(self, cfg, model) -> None:
        super().__init__()
        self.cfg, self.model = cfg, model
        self._test: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        est = self.model.tsh(batch["mixture"], batch["embedding_gt"])
        fn = signal_noise_ratio if self.cfg.loss == "snr" else si_snr
        loss = -fn(est, batch["target"]).mean()
        self.log("train/tsh_loss", loss, prog_bar=True, batch_size=est.shape[0])
        return loss

    def on_test_epoch_start(self) -> None:
        self._test = []

    def test_step(self, batch, batch_idx):
        est = self.model.tsh(batch["mixture"], batch["embedding_gt"])
        self._test.append(si_snr_improvement(est, batch["mixture"], batch["target"]).cpu())

    def on_test_epoch_end(self) -> None:
        self.log("test/si_snri_teacher_embed", float(torch.cat(self._test).mean()))

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.tsh.parameters(), lr=self.cfg.lr)


class EnrollStage2(TSHModule):
    """Paper stage 2 (official ``binaural_embed_pl_module``): the enrollment network maps
    the noisy binaural enrollment onto the teacher embedding with a cosine embedding loss
    (margin 0.5; the official negatives start at epoch 100 of 100, so only the positive
    term is used); the TSH network of stage 1 is frozen. Test: the three enrollment
    conditions of :class:`TSHModule` plus the cosine similarity to the teacher."""

    def __init__(self, cfg, model) -> None:
        super().__init__(cfg, model)
        self.cos_loss = torch.nn.CosineEmbeddingLoss(margin=cfg.embed_margin)
        for p in self.model.tsh.parameters():
            p.requires_grad_(False)

    def training_step(self, batch, batch_idx):
        emb = self.model.enroll(batch["enroll"])
        ones = torch.ones(emb.shape[0], device=emb.device)
        loss = self.cos_loss(emb, batch["embedding_gt"], ones)
        self.log("train/embed_loss", loss, prog_bar=True, batch_size=emb.shape[0])
        return loss

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        cos = torch.nn.functional.cosine_similarity(self.model.enroll(batch["enroll"]), batch["embedding_gt"], dim=-1)
        self._test.setdefault("cos", []).append(cos.cpu())

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log("test/embed_cosine", float(torch.cat(self._test["cos"]).mean()))

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.enroll.parameters(), lr=self.cfg.lr)


class SpeakerTableTeacher:
    """Wiring stand-in for the d-vector teacher (smoke only): a fixed random unit vector per
    speaker id (seeded by its CRC). It carries the speaker's identity and nothing about
    the voice, so it exercises the two-stage plumbing, not the paper's method."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, pool, utt: int) -> np.ndarray:
        import zlib

        v = np.random.default_rng(zlib.crc32(pool.utts[utt].speaker.encode())).standard_normal(self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)


class ResemblyzerTeacher:
    """The paper's teacher (official ``dvector_embeddings.py``): Resemblyzer's pretrained
    ``VoiceEncoder`` (256-d d-vector, weights shipped inside the pip package) on the clean
    16 kHz utterance after ``preprocess_wav``; cached per utterance. Needs the optional
    package ``resemblyzer`` (with librosa and webrtcvad)."""

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            from repro.errors import DataMissing

            raise DataMissing(f"two-stage training needs the d-vector model of the paper ({exc})",
                              hint="uv pip install resemblyzer (brings librosa and webrtcvad)") from None
        self._enc, self._pre = VoiceEncoder(device="cpu"), preprocess_wav
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, pool, utt: int) -> np.ndarray:
        import soundfile as sf

        path = str(pool.utts[utt].path)
        if path not in self._cache:
            wav, sr = sf.read(path, dtype="float32")
            self._cache[path] = np.asarray(self._enc.embed_utterance(self._pre(wav, source_sr=sr)), np.float32)
        return self._cache[path]


def make_teacher(cfg):
    if cfg.teacher == "speaker_table":
        return SpeakerTableTeacher(cfg.embed_dim)
    if cfg.embed_dim != 256:
        raise ValueError("the Resemblyzer d-vector has 256 dimensions: set embed_dim=256")
    return ResemblyzerTeacher()


def scene_config(cfg) -> SceneConfig:
    return SceneConfig(sample_rate=cfg.sample_rate, clip_s=cfg.clip_s, enroll_s=cfg.enroll_s,
                       sir_db=tuple(cfg.sir_db), snr_db=tuple(cfg.snr_db))


def synthetic_corpus(cfg) -> Path:
    """The cpu analogue's espeak-ng corpus in LibriSpeech's layout: a deterministic function
    of its arguments, built once under ``$REPRO_DATA/synthetic/`` and reused by later runs."""
    from data_scripts import librispeech
    from repro.paths import data_root

    spec = {cfg.train_split: (cfg.synth_train_speakers, cfg.synth_utts),
            cfg.test_split: (cfg.synth_test_speakers, cfg.synth_utts)}
    key = json.dumps([spec, list(cfg.synth_words), cfg.synth_seed], sort_keys=True)
    root = data_root() / "synthetic" / f"look_once_to_hear-{_crc(key)}"
    if not (root / "done.json").exists():
        import shutil

        tmp = root.with_name(root.name + ".part")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        librispeech.make_corpus(tmp, spec, seed=cfg.synth_seed, n_words=tuple(cfg.synth_words))
        librispeech.prepare(tmp, splits=tuple(spec))
        (tmp / "done.json").write_text(key)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)  # manifests hold relative paths: the folder can move
    return root


def _crc(s: str) -> str:
    import zlib

    return f"{zlib.crc32(s.encode()):08x}"


def bench_paper_chunk(n_chunks: int, warmup: int = 5) -> dict[str, float]:
    """Per-chunk wall time of the paper's causal TSH configuration (16 kHz, 8 ms chunks,
    4 ms lookahead, D=64, H=64, B=3, 4 heads, 50-frame attention window, 256-d embedding),
    streaming one chunk at a time, batch 1, no grad, random weights (the cost does not
    depend on their values). Median over ``n_chunks`` chunks."""
    net = TargetSpeechNet().eval()
    emb = torch.randn(1, 256)
    frame = torch.randn(1, 2, 1, net.stft.n_fft)
    times = []
    with torch.no_grad():
        state = net.init_state(1)
        for i in range(warmup + n_chunks):
            t0 = time.perf_counter()
            _, state = net.forward_frames(frame, emb, state)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    ms = float(np.median(times) * 1000)
    return {"bench/chunk_ms": ms, "bench/rtf": ms / 8.0,
            "bench/tsh_params_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "bench/threads": float(torch.get_num_threads())}


def measure(cfg, ctx) -> dict[str, float]:
    if cfg.corpus == "synthetic":
        root = synthetic_corpus(cfg)
    else:
        root = Path(cfg.data_dir)
    seed_everything(ctx.seed)
    rirs = Path(ctx.data["binaural_rirs"]) if cfg.spatial == "measured" else None
    noise = Path(ctx.data["wham_noise"]) if cfg.noise == "wham" else None
    if noise is not None and rirs is None:
        raise ValueError("noise='wham' is rendered through measured responses: set spatial='measured'")
    teacher = make_teacher(cfg) if cfg.training == "two_stage" else None
    dm = SceneData(root, cfg.train_split, cfg.test_split, cfg.n_train, cfg.n_test, cfg.batch_size, ctx.seed,
                   scene_config(cfg), num_workers=cfg.num_workers, rirs_root=rirs, noise_root=noise,
                   teacher=teacher)
    keep = ("test/si_snri", "test/si_snri_clean_enroll", "test/si_snri_wrong_enroll", "test/gap_noisy_minus_wrong",
            "test/input_si_snr", "train/loss", "test/si_snri_teacher_embed", "test/embed_cosine",
            "train/tsh_loss", "train/embed_loss")
    if cfg.training == "joint":
        out = ctx.fit_and_test(TSHModule(cfg), dm)
        metrics = {k: float(v) for k, v in out["metrics"].items() if k in keep}
        metrics["train/steps"] = float(out["training"]["global_step"])
    else:
        model = build(cfg)
        first = ctx.fit_and_test(TSHStage1(cfg, model), dm, name="stage1")
        second = ctx.fit_and_test(EnrollStage2(cfg, model), dm, name="stage2")
        metrics = {k: float(v) for o in (first, second) for k, v in o["metrics"].items() if k in keep}
        metrics["train/steps"] = float(first["training"]["global_step"] + second["training"]["global_step"])
    if cfg.bench_chunks > 0:
        metrics.update(bench_paper_chunk(cfg.bench_chunks))
    ctx.echo(f"[seed {ctx.seed}] " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
    return metrics


__all__ = ["TSHModule", "TSHStage1", "EnrollStage2", "SpeakerTableTeacher", "ResemblyzerTeacher", "measure",
           "bench_paper_chunk", "synthetic_corpus"]
