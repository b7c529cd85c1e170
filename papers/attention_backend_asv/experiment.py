"""The pipeline behind every profile (one unit = one encoder, one seed):

features (80-dim log Mel, CMN) -> speaker encoder (TDNN x-vector or ResNet-34, AM-softmax
[+ uniformity loss]) trained with Lightning -> embeddings of every training, enrollment
and test utterance extracted once and stored in the unit folder -> three back-ends on
the *same* stored embeddings:

* ``cosine``: cosine between the average of a model's enrollment embeddings and the test
  embedding;
* ``plda``: Kaldi-style PLDA (centering, LDA, length norm, two-covariance PLDA; the
  enrollment mean scored with its count);
* ``attention``: the paper's back-end (``model.AttentionBackend``) trained with Lightning
  on the training embeddings, scored by the cosine of its set aggregate and the test
  embedding.

-> EER (%) and normalised minDCF for each, their differences, and the extraction
throughput. Metric keys: ``<backend>/eer``, ``<backend>/min_dcf`` (p_target =
``cfg.p_target``), ``<backend>/min_dcf_p001``, ``gap/eer_attention_minus_<backend>``, ...
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from repro.blocks.plda import PLDABackend
from repro.blocks.speaker import AMSoftmax, build_encoder, uniformity_loss
from repro.metrics.speaker import eer as eer_fraction
from repro.metrics.speaker import min_dcf
from repro.recipe import TrainConfig
from repro.training import seed_everything

from .data import (BackendData, Corpus, EncoderData, FeatureBank, load_corpus, read_audio, single_thread,
                   synthetic_corpus)
from .model import AttentionBackend, backend_loss

BACKENDS = ("cosine", "plda", "attention")


# ----------------------------------------------------------------------------- Lightning modules


def encoder_kwargs(cfg) -> dict[str, Any]:
    if cfg.encoder == "tdnn":
        return dict(channels=cfg.tdnn_channels, stats_channels=cfg.tdnn_stats, emb_dim=cfg.emb_dim)
    return dict(base=cfg.resnet_base, layers=tuple(cfg.resnet_layers), emb_dim=cfg.emb_dim)


class EncoderModule(L.LightningModule):
    """Speaker classification on crops with additive-margin softmax (+ uniformity loss)."""

    def __init__(self, cfg, n_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.encoder, cfg.n_mels, **encoder_kwargs(cfg))
        self.head = AMSoftmax(cfg.emb_dim, n_classes, cfg.am_margin, cfg.am_scale)

    def loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        feats, labels = batch
        emb = self.encoder(feats)
        ce, cos = self.head(emb, labels)
        loss = ce + self.cfg.uniform_weight * uniformity_loss(emb) if self.cfg.uniform_weight else ce
        return loss, (cos.argmax(-1) == labels).float().mean()

    def training_step(self, batch, _):
        loss, acc = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", acc)
        return loss

    def test_step(self, batch, _):
        loss, acc = self.loss(batch)
        self.log("test/encoder_loss", loss)
        self.log("test/encoder_acc", acc)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.encoder_lr, weight_decay=self.cfg.encoder_wd)


class BackendModule(L.LightningModule):
    """The attention back-end trained on leave-one-out trials of balanced batches
    (official ``train.py``: SGD momentum 0.9, weight decay 1e-5, MultiStepLR x0.1,
    summed BCE, gradient norm clipped at 20)."""

    def __init__(self, cfg, dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.backend = AttentionBackend(dim, cfg.backend_heads, cfg.backend_pool_hidden, cfg.backend_pooling)
        self.centres: torch.Tensor | None = None
        self._parts: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch, _):
        x = batch.view(self.cfg.backend_n_spks, self.cfg.backend_n_utts, -1)
        loss, scores, labels = backend_loss(self.backend, x)
        self.log("train/loss", loss / labels.numel(), prog_bar=True)  # per trial, for reading
        return loss

    def on_test_epoch_start(self) -> None:
        self._parts = []

    def test_step(self, batch, _):
        idx, sets, mask = batch
        self._parts.append((idx.cpu(), self.backend.aggregate(sets, mask).detach().cpu()))

    def on_test_epoch_end(self) -> None:
        idx = torch.cat([i for i, _ in self._parts])
        cen = torch.cat([c for _, c in self._parts])
        self.centres = cen[torch.argsort(idx)]
        self.log("test/n_models", float(len(idx)))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.cfg.backend_lr, momentum=0.9, weight_decay=1e-5)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(self.cfg.backend_milestones), gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


# ----------------------------------------------------------------------------- scoring, metrics


def verification_metrics(labels: np.ndarray, scores: np.ndarray, cfg) -> dict[str, float]:
    """EER (%) and normalised minDCF (C_miss = C_fa = 1) at ``cfg.p_target`` and 0.001."""
    return {
        "eer": 100.0 * eer_fraction(labels, scores),
        "min_dcf": min_dcf(labels, scores, p_target=cfg.p_target),
        "min_dcf_p001": min_dcf(labels, scores, p_target=0.001),
    }


def trial_scores(centres: torch.Tensor, tests: torch.Tensor, mi: np.ndarray, ti: np.ndarray) -> np.ndarray:
    """Cosine of ``centres[mi]`` and ``tests[ti]`` per trial (chunked: millions of trials)."""
    c = torch.nn.functional.normalize(centres.double(), dim=-1)
    t = torch.nn.functional.normalize(tests.double(), dim=-1)
    out = np.empty(len(mi))
    for s in range(0, len(mi), 1 << 20):
        a, b = torch.from_numpy(mi[s: s + (1 << 20)]), torch.from_numpy(ti[s: s + (1 << 20)])
        out[s: s + len(a)] = (c[a] * t[b]).sum(-1).numpy()
    return out


@torch.inference_mode()
def extract(encoder: torch.nn.Module, feats: FeatureBank, rels: list[str], device, max_frames: int) -> torch.Tensor:
    """One embedding per utterance from its whole length (capped at ``max_frames``)."""
    encoder.eval().to(device)
    out = []
    with single_thread():  # one utterance at a time: small ops, faster on one intra-op thread
        for rel in rels:
            f = feats(rel)[:max_frames]
            out.append(encoder(f[None].to(device)).float().cpu()[0])
    return torch.stack(out)


@torch.inference_mode()
def benchmark_extraction(encoder: torch.nn.Module, corpus: Corpus, rels: list[str], cfg, device) -> dict[str, float]:
    """End-to-end extraction throughput (read audio + features + forward), one utterance
    at a time: utterances per second and the real-time factor (compute s / audio s)."""
    from repro.blocks.speaker import fbank as fbank_of

    encoder.eval().to(device)
    audio_s = 0.0
    t0 = time.perf_counter()
    with single_thread():
        for rel in rels:
            wave, sr = read_audio(corpus.root / rel)
            audio_s += wave.numel() / sr
            f = fbank_of(wave, sr, cfg.n_mels)[: cfg.max_extract_frames]
            encoder(f[None].to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"bench/extract_utts_per_s": len(rels) / dt, "bench/extract_rtf": dt / max(audio_s, 1e-9),
            "bench/audio_s_per_utt": audio_s / max(len(rels), 1)}


def _stage(**kw) -> TrainConfig:
    """The Trainer schedule of one training stage (``ctx.fit_and_test(..., cfg=)``)."""
    base = dict(limit_val_batches=0, log_every_n_steps=5)
    base.update(kw)
    return TrainConfig(**base)


def corpus_root(cfg, ctx) -> Path:
    if cfg.corpus == "synthetic":
        return synthetic_corpus(dict(
            n_dev=cfg.synth_dev, n_cn2=cfg.synth_cn2, n_eval=cfg.synth_eval, utts_per_train=cfg.synth_utts_per_train,
            n_enroll=cfg.synth_enroll, n_test=cfg.synth_test, genres_per_speaker=cfg.synth_genres,
            n_words=(cfg.synth_words_min, cfg.synth_words_max), seed=cfg.synth_seed))
    if cfg.corpus in ctx.data:
        return Path(ctx.data[cfg.corpus])
    if cfg.data_dir:
        return Path(cfg.data_dir)
    raise ValueError(f"corpus {cfg.corpus!r} is not among this profile's datasets {sorted(ctx.data)}")


# ----------------------------------------------------------------------------- the unit


def measure(cfg, ctx) -> dict[str, float]:
    device = ctx.device
    corpus = load_corpus(corpus_root(cfg, ctx), cfg.max_train_utts_per_spk)
    cache = ctx.run_dir / "cache" / f"fbank-{corpus.key()}-{cfg.n_mels}.pt" if cfg.cache_features else None
    feats = FeatureBank(corpus, cfg.n_mels, cache)
    speakers = sorted({s for _, s in corpus.train})
    spk_index = {s: i for i, s in enumerate(speakers)}
    train_rels = [p for p, _ in corpus.train]
    models = list(corpus.enroll)
    tests = corpus.test_utterances()
    enroll_rels = list(dict.fromkeys(p for m in models for p in corpus.enroll[m]))
    metrics: dict[str, float] = {}

    # 1. speaker encoder, trained once per unit; embeddings stored for every back-end
    emb_file = ctx.unit_dir / "embeddings.pt"
    if emb_file.exists():
        store = torch.load(emb_file, weights_only=True)
    else:
        module = EncoderModule(cfg, len(speakers))
        dm = EncoderData(feats, corpus, cfg.crop_frames, cfg.encoder_batch, ctx.seed, cfg.num_workers)
        out = ctx.fit_and_test(module, dm, "encoder", cfg=_stage(
            max_epochs=cfg.encoder_epochs, max_steps=cfg.encoder_max_steps, batch_size=cfg.encoder_batch))
        enc = module.encoder
        t0 = time.perf_counter()
        store = {
            "train": extract(enc, feats, train_rels, device, cfg.max_extract_frames),
            "enroll": extract(enc, feats, enroll_rels, device, cfg.max_extract_frames),
            "test": extract(enc, feats, tests, device, cfg.max_extract_frames),
            "extract_s": torch.tensor(time.perf_counter() - t0),
            "encoder_acc": torch.tensor(out["metrics"].get("test/encoder_acc", float("nan"))),
            "encoder_train_loss": torch.tensor(out["metrics"].get("train/loss", float("nan"))),
        }
        if cfg.bench_utts:
            bench = benchmark_extraction(enc, corpus, tests[: cfg.bench_utts], cfg, device)
            store.update({k: torch.tensor(v) for k, v in bench.items()})
        torch.save(store, emb_file)
    for k, v in store.items():
        if v.dim() == 0 and k not in ("extract_s",):
            metrics[k if "/" in k else f"encoder/{k.removeprefix('encoder_')}"] = float(v)

    train_emb, enr_emb, test_emb = store["train"], store["enroll"], store["test"]
    train_labels = [spk_index[s] for _, s in corpus.train]
    if cfg.center_embeddings:  # the training mean, subtracted before cosine and attention scoring
        mean = train_emb.mean(0)
        train_c, enr_c, test_c = train_emb - mean, enr_emb - mean, test_emb - mean
    else:
        train_c, enr_c, test_c = train_emb, enr_emb, test_emb
    enr_pos = {p: i for i, p in enumerate(enroll_rels)}
    sets = [enr_c[[enr_pos[p] for p in corpus.enroll[m]]] for m in models]
    raw_sets = [enr_emb[[enr_pos[p] for p in corpus.enroll[m]]] for m in models]
    m_index = {m: i for i, m in enumerate(models)}
    t_index = {p: i for i, p in enumerate(tests)}
    mi = np.array([m_index[m] for m, _, _ in corpus.trials])
    ti = np.array([t_index[p] for _, p, _ in corpus.trials])
    labels = np.array([lab for _, _, lab in corpus.trials])
    scores: dict[str, np.ndarray] = {}

    # 2a. cosine scoring of the averaged enrollment embeddings
    scores["cosine"] = trial_scores(torch.stack([s.mean(0) for s in sets]), test_c, mi, ti)

    # 2b. PLDA
    plda = PLDABackend(lda_dim=cfg.plda_lda_dim, iters=cfg.plda_iters).fit(train_emb.double().numpy(), train_labels)
    llr = plda.score_sets([s.double().numpy() for s in raw_sets], test_emb.double().numpy())
    scores["plda"] = llr[mi, ti]

    # 2c. the attention back-end, trained on the training embeddings
    counts = np.bincount(train_labels)
    keep = [i for i, lab in enumerate(train_labels) if counts[lab] >= max(cfg.backend_min_utts, cfg.backend_n_utts)]
    b_emb = train_c[keep]
    b_lab = [train_labels[i] for i in keep]
    n_batches = max(1, len(b_lab) * cfg.backend_epoch_factor // (cfg.backend_n_spks * cfg.backend_n_utts))
    # re-seed: the back-end's initialisation must not depend on whether the encoder stage ran
    # in this process or was skipped on resume (its embeddings were stored)
    seed_everything(ctx.seed)
    bmod = BackendModule(cfg, b_emb.shape[1])
    bdm = BackendData(b_emb, b_lab, sets, cfg.backend_n_spks, cfg.backend_n_utts, n_batches, ctx.seed)
    bout = ctx.fit_and_test(bmod, bdm, "backend",
                            cfg=_stage(max_epochs=cfg.backend_epochs, gradient_clip_val=cfg.backend_clip))
    scores["attention"] = trial_scores(bmod.centres, test_c, mi, ti)
    metrics["attention/train_loss_per_trial"] = float(bout["metrics"].get("train/loss", float("nan")))

    for name in BACKENDS:
        for k, v in verification_metrics(labels, scores[name], cfg).items():
            metrics[f"{name}/{k}"] = v
    for other in ("cosine", "plda"):
        for k in ("eer", "min_dcf"):
            metrics[f"gap/{k}_attention_minus_{other}"] = metrics[f"attention/{k}"] - metrics[f"{other}/{k}"]
    metrics.update({
        "data/n_trials": float(len(labels)), "data/n_targets": float(labels.sum()),
        "data/n_models": float(len(models)), "data/n_train_speakers": float(len(speakers)),
        "data/mean_enroll_utts": float(np.mean([len(corpus.enroll[m]) for m in models])),
    })
    return metrics
