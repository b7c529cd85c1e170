"""One unit = one seed: build (or reuse) the speech corpus, train the enrollment network
and the causal TSH network jointly with Lightning (``ctx.fit_and_test``), evaluate
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

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = build(cfg)
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
    module = TSHModule(cfg)
    dm = SceneData(root, cfg.train_split, cfg.test_split, cfg.n_train, cfg.n_test, cfg.batch_size, ctx.seed,
                   scene_config(cfg), num_workers=cfg.num_workers)
    out = ctx.fit_and_test(module, dm)
    keep = ("test/si_snri", "test/si_snri_clean_enroll", "test/si_snri_wrong_enroll", "test/gap_noisy_minus_wrong",
            "test/input_si_snr", "train/loss")
    metrics = {k: float(v) for k, v in out["metrics"].items() if k in keep}
    metrics["train/steps"] = float(out["training"]["global_step"])
    if cfg.bench_chunks > 0:
        metrics.update(bench_paper_chunk(cfg.bench_chunks))
    ctx.echo(f"[seed {ctx.seed}] " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
    return metrics


__all__ = ["TSHModule", "measure", "bench_paper_chunk", "synthetic_corpus"]
