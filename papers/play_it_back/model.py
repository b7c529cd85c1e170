"""Play It Back: Iterative Attention for Audio Recognition (Stergiou & Damen, ICASSP 2023).

The paper's delta over a spectrogram transformer classifier (Section 2 of the paper; facts
that the text leaves open are taken from the official repository, alexandrosstergiou/PlayItBack,
and marked "[code]"):

1. **Full-sequence pass** (playback 0): a log-(mel) spectrogram of the whole clip at the
   coarse hop h_0, encoded by a transformer encoder B (the paper: MViTv2, frozen and
   pretrained [code: FREEZE_ENCODER]; here a small transformer over time frames, trained
   from scratch, shared by all playbacks as in [code]).
2. **Slot-attention selection**: slot attention (Locatello et al., 2020, Algorithm 1) with
   two slots, "informative" and "uninformative", 3 iterations [code: num_slots=2,
   iters=3], over the playback's encoded frames. The informative slot's attention over
   frames is thresholded at its mean [code: ``diag <= diag.mean()``]; the contiguous run
   that holds its maximum is the selected segment (a time span on the original clip).
3. **Replay at a smaller hop**: the selected segment is re-featurised from the waveform
   at the next, smaller hop h_p (the window length stays fixed [code: WINDOW_LENGTH]),
   as a fixed number of frames centred on the segment and clamped to the clip (the
   region estimator of [code, first release: ``scaled_region_estimator``]). Frame j of a
   replay starting at sample s covers samples [s + j h_p, s + j h_p + win): the same
   samples as frame s/h_p + j of a whole-clip spectrogram at hop h_p (tested).
4. **Iterative refinement**: playback p+1 selects inside playback p's (finer) frames, so
   each replay zooms further in.
5. **Decoder**: a latent cross-attention decoder [code: TemPr] with one layer per playback:
   the latents cross-attend to playback p's features at layer p, each layer's latents are
   mean-pooled, the playbacks are averaged [code: FUSION mean], and a linear layer
   classifies.
6. **Slot training**: the informative slot's attention pools the playback's features into a
   clip vector that the encoder head classifies; this auxiliary loss (weight 0.1 as the
   paper's playback loss in [code]) is what trains the slot attention, because the
   segment choice itself is not differentiable. (The official code uses a pairwise rank
   loss between informative- and uninformative-slot predictions; we use the plain
   classification loss of the informative slot — a stated simplification.)

Built from repro's shared blocks (``TransformerBlock`` with and without cross-attention,
``sinusoidal_positions``); the paper-specific code is the spectrogram at a given hop
and offset, slot attention, segment selection and the replay window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.transformer import TransformerBlock, sinusoidal_positions

# --------------------------------------------------------------------------- features


def frame_count(n_samples: int, win: int, hop: int) -> int:
    """Frames of an un-centred STFT: frame k covers samples [k hop, k hop + win)."""
    return 0 if n_samples < win else (n_samples - win) // hop + 1


class Spectrogram(nn.Module):
    """Log power spectrogram (optionally mel, HTK scale, no normalisation as in [code])
    of waveform slices, un-centred: frame k of ``wave[s:]`` covers samples
    [s + k hop, s + k hop + win). ``n_fft`` >= ``win`` (zero-padded frames)."""

    def __init__(self, sample_rate: int, win: int, n_fft: int, n_mels: int = 0, eps: float = 1e-6) -> None:
        super().__init__()
        self.sample_rate, self.win, self.n_fft, self.eps = sample_rate, win, n_fft, eps
        self.register_buffer("window", torch.hann_window(win, periodic=True), persistent=False)
        if n_mels:
            import torchaudio

            fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate,
                                                       norm=None, mel_scale="htk")
            self.register_buffer("mel", fb, persistent=False)
        else:
            self.mel = None
        self.n_bins = n_mels or n_fft // 2 + 1

    def forward(self, wave: Tensor, hop: int) -> Tensor:
        """wave (B, L) -> (B, T, F) with T = frame_count(L, win, hop)."""
        frames = wave.unfold(-1, self.win, hop) * self.window  # (B, T, win)
        spec = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)  # (B, T, n_fft//2+1)
        if self.mel is not None:
            spec = spec @ self.mel
        return torch.log(spec + self.eps)

    def segment(self, wave: Tensor, start: Tensor, hop: int, n_frames: int) -> Tensor:
        """Frames [0, n_frames) of each ``wave[b, start[b]:]`` at ``hop``: (B, n_frames, F)."""
        span = (n_frames - 1) * hop + self.win
        idx = start.long()[:, None] + torch.arange(span, device=wave.device)[None]
        return self(wave.gather(1, idx), hop)


# --------------------------------------------------------------------------- slot attention


class SlotAttention(nn.Module):
    """Slot attention (Locatello et al., 2020, Algorithm 1): slots compete for inputs
    through a softmax over slots, then take a weighted mean of the inputs, a GRU update
    and a residual MLP. Each slot has its own learned initial mean (so the two slots are
    distinguishable and evaluation is deterministic); during training Gaussian noise with
    a learned scale is added to the initial slots, as in the original."""

    def __init__(self, dim: int, num_slots: int = 2, iters: int = 3, hidden: int = 128, eps: float = 1e-8) -> None:
        super().__init__()
        self.num_slots, self.iters, self.eps, self.scale = num_slots, iters, eps, dim**-0.5
        self.slots_mu = nn.Parameter(torch.randn(1, num_slots, dim) * dim**-0.5)
        self.slots_logsigma = nn.Parameter(torch.full((1, 1, dim), -2.0))
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, max(dim, hidden)), nn.ReLU(), nn.Linear(max(dim, hidden), dim))
        self.norm_in, self.norm_slots, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """inputs (B, N, D) -> slots (B, S, D), attention (B, S, N) of the last iteration
        (softmax over slots: the share of each input that each slot claims)."""
        b, _, d = inputs.shape
        slots = self.slots_mu.expand(b, -1, -1)
        if self.training:
            slots = slots + self.slots_logsigma.exp() * torch.randn_like(slots)
        x = self.norm_in(inputs)
        k, v = self.to_k(x), self.to_v(x)
        attn = None
        for _ in range(self.iters):
            prev = slots
            q = self.to_q(self.norm_slots(slots))
            attn = torch.softmax(torch.einsum("bsd,bnd->bsn", q, k) * self.scale, dim=1) + self.eps
            updates = torch.einsum("bsn,bnd->bsd", attn / attn.sum(-1, keepdim=True), v)
            slots = self.gru(updates.reshape(-1, d), prev.reshape(-1, d)).view(b, -1, d)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


# --------------------------------------------------------------------------- selection


def select_segment(mask: Tensor) -> tuple[Tensor, Tensor]:
    """The selected segment of each row of ``mask`` (B, T): the contiguous run of frames
    whose value exceeds the row mean that contains the row's maximum. Returns frame
    indices ``first`` and ``last`` (inclusive), 0 <= first <= argmax <= last < T."""
    b, t = mask.shape
    peak = mask.argmax(-1)
    above = mask > mask.mean(-1, keepdim=True)
    above[torch.arange(b), peak] = True  # a constant row has no frame above its mean
    idx = torch.arange(t, device=mask.device).expand(b, t)
    below_left = (~above) & (idx < peak[:, None])
    below_right = (~above) & (idx > peak[:, None])
    first = torch.where(below_left, idx, torch.full_like(idx, -1)).max(-1).values + 1
    last = torch.where(below_right, idx, torch.full_like(idx, t)).min(-1).values - 1
    return first, last


def segment_samples(first: Tensor, last: Tensor, offset: Tensor, hop: int, win: int) -> tuple[Tensor, Tensor]:
    """Sample span [start, end) covered by frames first..last of a pass at ``hop`` whose
    frame 0 starts at sample ``offset``."""
    return offset + first * hop, offset + last * hop + win


def replay_start(start: Tensor, end: Tensor, hop: int, n_frames: int, win: int, length: int) -> Tensor:
    """First sample of a replay of ``n_frames`` frames at ``hop`` centred on [start, end),
    on the hop grid of the whole clip (a multiple of ``hop``) and inside [0, length)."""
    span = (n_frames - 1) * hop + win
    if span > length:
        raise ValueError(f"a replay of {n_frames} frames at hop {hop} ({span} samples) exceeds the clip ({length})")
    centre = (start + end).double() / 2
    s = torch.round((centre - span / 2) / hop) * hop
    last_ok = ((length - span) // hop) * hop
    return s.clamp(0, last_ok).long()


# --------------------------------------------------------------------------- network


class FrameEncoder(nn.Module):
    """Encoder B: frames (B, T, F) -> features (B, T, D); a linear frame embedding,
    sinusoidal frame positions, a learned embedding of the playback index (the hop
    differs per playback) and pre-norm transformer blocks."""

    def __init__(self, n_bins: int, dim: int, heads: int, layers: int, playbacks: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Linear(n_bins, dim)
        self.playback = nn.Embedding(playbacks, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout=dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, frames: Tensor, playback: int) -> Tensor:
        x = self.embed(frames) + sinusoidal_positions(frames.shape[1], self.dim, frames.device)
        x = x + self.playback.weight[playback]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class LatentDecoder(nn.Module):
    """[code: TemPr] latents cross-attend to playback p's features at layer p (then
    latent self-attention and FFN inside the same ``TransformerBlock``); the per-layer
    latents are mean-pooled and averaged over playbacks."""

    def __init__(self, dim: int, heads: int, playbacks: int, latents: int, num_classes: int) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latents, dim) * dim**-0.5)
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, cross_attention=True) for _ in range(playbacks))
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, feats: list[Tensor]) -> Tensor:
        x = self.latents.expand(feats[0].shape[0], -1, -1)
        pooled = []
        for layer, f in zip(self.layers, feats):
            x = layer(x, context=f)
            pooled.append(x.mean(1))
        return self.fc(self.norm(torch.stack(pooled, 1).mean(1)))


class PlayItBack(nn.Module):
    """The whole model. ``hops`` (samples) lists the hop of every playback: ``hops[0]`` is
    the full-sequence pass, ``hops[1:]`` the replays (decreasing). One entry = the
    single-pass model (no selection, no replay)."""

    def __init__(self, *, sample_rate: int, win: int, n_fft: int, n_mels: int, hops: tuple[int, ...],
                 replay_frames: int, dim: int, heads: int, layers: int, latents: int, num_classes: int,
                 slot_iters: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if any(b >= a for a, b in zip(hops, hops[1:])):
            raise ValueError(f"replay hops must decrease: {hops}")
        self.hops, self.replay_frames, self.win = tuple(hops), replay_frames, win
        self.spec = Spectrogram(sample_rate, win, n_fft, n_mels)
        p = len(hops)
        self.encoder = FrameEncoder(self.spec.n_bins, dim, heads, layers, p, dropout)
        # one slot attention per playback that selects the next segment
        self.slots = nn.ModuleList(SlotAttention(dim, 2, slot_iters) for _ in range(p - 1))
        self.head = nn.Linear(dim, num_classes) if p > 1 else None  # the encoder head (slot loss)
        self.decoder = LatentDecoder(dim, heads, p, latents, num_classes)

    def forward(self, wave: Tensor) -> dict[str, Tensor | list]:
        """wave (B, L) -> {"logits", "slot_logits" (one per selecting playback),
        "spans" [(start, end) samples of each replay window], "segments" [(start, end)
        of each selected segment]}."""
        b, length = wave.shape
        frames = self.spec(wave, self.hops[0])
        mu = frames.mean(dim=(1, 2), keepdim=True)  # per-clip standardisation, shared by all
        sd = frames.std(dim=(1, 2), keepdim=True) + 1e-5  # playbacks (keeps the energy envelope)
        offset = torch.zeros(b, dtype=torch.long, device=wave.device)
        feats, slot_logits, spans, segments = [], [], [], []
        for p, hop in enumerate(self.hops):
            if p > 0:
                offset = replay_start(seg[0], seg[1], hop, self.replay_frames, self.win, length)
                frames = self.spec.segment(wave, offset, hop, self.replay_frames)
                spans.append((offset, offset + (self.replay_frames - 1) * hop + self.win))
            f = self.encoder((frames - mu) / sd, p)
            feats.append(f)
            if p < len(self.hops) - 1:
                _, attn = self.slots[p](f)
                pos = attn[:, 0]  # the informative slot's share of every frame
                pooled = torch.einsum("bn,bnd->bd", pos / pos.sum(-1, keepdim=True), f)
                slot_logits.append(self.head(pooled))
                first, last = select_segment(pos.detach())
                seg = segment_samples(first, last, offset, hop, self.win)
                segments.append(seg)
        return {"logits": self.decoder(feats), "slot_logits": slot_logits, "spans": spans, "segments": segments}


# --------------------------------------------------------------------------- lightning


def _lightning():
    import lightning as L

    return L


class PlayItBackModule(_lightning().LightningModule):
    """Training/evaluation wrapper: cross-entropy (single-label) or binary cross-entropy
    (multi-label, AudioSet) on the decoder logits plus ``aux_weight`` times the same loss
    on every selecting playback's slot logits. Test metrics: top-1 accuracy (single-label),
    macro mAP via ``repro.metrics.audio_tagging.macro_map`` (both), the number of test clips."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        sr = cfg.sample_rate
        ms = lambda x: int(round(x * sr / 1000))  # noqa: E731
        self.net = PlayItBack(sample_rate=sr, win=ms(cfg.win_ms), n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                              hops=tuple(ms(h) for h in cfg.hops_ms), replay_frames=cfg.replay_frames,
                              dim=cfg.dim, heads=cfg.heads, layers=cfg.layers, latents=cfg.latents,
                              num_classes=cfg.num_classes, slot_iters=cfg.slot_iters, dropout=cfg.dropout)
        self._test: list[tuple[Tensor, Tensor]] = []
        self._hits: dict[int, list[Tensor]] = {}

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.cfg.multilabel:
            return F.binary_cross_entropy_with_logits(logits, y.float())
        return F.cross_entropy(logits, y)

    def _step(self, batch):
        wave, y = batch[0], batch[1]
        out = self.net(wave)
        loss = self._loss(out["logits"], y)
        aux = sum((self._loss(s, y) for s in out["slot_logits"]), torch.zeros((), device=wave.device))
        return out, loss, aux

    def training_step(self, batch, _):
        _, loss, aux = self._step(batch)
        total = loss + self.cfg.aux_weight * aux
        self.log("train/loss", loss, prog_bar=True)
        return total

    def validation_step(self, batch, _):
        out, loss, _ = self._step(batch)
        self.log("val/loss", loss)
        if not self.cfg.multilabel:
            self.log("val/acc", (out["logits"].argmax(-1) == batch[1]).float().mean())

    def test_step(self, batch, _):
        out, _, _ = self._step(batch)
        self._test.append((out["logits"].detach().float().cpu(), batch[1].detach().cpu()))
        if len(batch) == 3 and out["spans"]:  # fine_clicks: event onsets known -> where did the replays land?
            onset = batch[2]
            ev_end = onset + int(round(self.cfg.event_secs * self.cfg.sample_rate))
            for p, (s, e) in enumerate(out["spans"], start=1):
                overlap = (torch.minimum(e, ev_end) - torch.maximum(s, onset)).clamp(min=0)
                self._hits.setdefault(p, []).append((overlap >= 0.5 * (e - s)).float().cpu())

    def on_test_epoch_start(self) -> None:
        self._test, self._hits = [], {}

    def on_test_epoch_end(self) -> None:
        from repro.metrics.audio_tagging import macro_map, one_hot

        logits = torch.cat([a for a, _ in self._test])
        y = torch.cat([b for _, b in self._test])
        n = logits.shape[0]
        if self.cfg.multilabel:
            m, excluded = macro_map(logits, y)
        else:
            self.log("test/acc", (logits.argmax(-1) == y).float().mean())
            m, excluded = macro_map(logits.softmax(-1), one_hot(y, logits.shape[1]))
        self.log("test/mAP", m if math.isfinite(m) else float("nan"))
        self.log("test/map_excluded_classes", float(excluded))
        self.log("test/n_clips", float(n))
        for p, hits in getattr(self, "_hits", {}).items():  # diagnostic, not a claim
            self.log(f"test/replay{p}_on_event", torch.cat(hits).mean())

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        steps = self.trainer.estimated_stepping_batches if self.trainer is not None else 1000
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.cfg.lr, total_steps=max(1, int(steps)),
                                                    pct_start=0.1, anneal_strategy="cos")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
