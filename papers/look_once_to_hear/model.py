"""Look Once to Hear (Veluri, Itani, Chen, Yoshioka, Gollakota; CHI 2024; arXiv 2405.06289).

The system has two networks (paper Sec. 3; official repo vb000/LookOnceToHear):

1. an **enrollment network** that turns a short, *noisy binaural* enrollment clip (the
   wearer looks at the target speaker, so the target is the source with no interaural
   time/level difference) into a speaker embedding: a non-causal TF-GridNet whose
   per-frame features are projected to the embedding size and averaged over time
   (official ``EmbedTFGridNet``: 3 blocks, D=64, H=64, STFT 128/64 at 16 kHz, embedding 256);
2. a **causal target-speech-hearing (TSH) network** that extracts the target's binaural
   speech from the binaural mixture, chunk by chunk (8 ms chunks, 4 ms lookahead): a
   streaming TF-GridNet whose features are multiplied by a projection of the speaker
   embedding after its first block (official ``tfgridnet_realtime``: B=3 blocks, D=64,
   H=64, 4 attention heads over a causal window of 50 frames, STFT window 128+64 samples,
   hop 128 = 8 ms at 16 kHz, complex spectral mapping to the two ear signals).

A TF-GridNet block (Wang et al. 2023, "TF-GridNet", Sec. III) is: an intra-frame
bidirectional LSTM across frequency, an inter-frame LSTM across time (unidirectional in
the causal network, its state carried from chunk to chunk), and a full-band self-attention
across time whose queries/keys are per-frequency features concatenated over all bins; in
the causal network each frame attends to itself and the previous ``local_atten_len - 1``
frames (a key/value cache of zeros at the start, as in the official streaming code).

Everything streams: :meth:`TargetSpeechNet.forward_frames` consumes any number of STFT
frames and returns their output samples plus the state (conv/deconv context, LSTM
state, attention key/value cache, overlap-add tail). The offline call is the same code
on all frames at once from a fresh state; ``test_look_once_to_hear.py`` checks that
frame-by-frame streaming equals it (outputs and state) and that the attention path
equals the shared naive reference with explicit windows.

The attention kernel is the shared ``repro.blocks.attention.sdpa_attention``; the speaker
conditioning, the causal state handling and the binaural STFT front end are this paper's
delta.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.attention import sdpa_attention

State = dict[str, Any]


# ----------------------------------------------------------------------------- STFT front end


class STFT(nn.Module):
    """Framing + rFFT with a periodic sqrt-Hann window, and the inverse with overlap-add
    (synthesis window = the dual window of the analysis window at this hop).

    Frames are taken without centring: frame ``t`` covers samples ``[t*hop, t*hop+n_fft)``,
    so with ``n_fft = hop + pad`` each 8 ms chunk is analysed together with ``pad``
    samples of lookahead (the paper's 4 ms), and output chunk ``t`` is final once frame
    ``t`` is processed: algorithmic latency = hop + pad samples.
    """

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        if n_fft < hop or n_fft - hop > hop:
            raise ValueError("need hop <= n_fft <= 2*hop (one chunk of overlap-add tail)")
        self.n_fft, self.hop = n_fft, hop
        self.n_freqs = n_fft // 2 + 1
        w = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).sqrt()
        # synthesis window: the analysis window divided by the overlap-added squared window,
        # so analysis -> synthesis -> overlap-add reconstructs exactly at any hop <= n_fft
        norm = torch.zeros(n_fft, dtype=torch.float64)
        for k in range(-(n_fft // hop) - 1, n_fft // hop + 2):
            lo, hi = max(0, -k * hop), min(n_fft, n_fft - k * hop)
            if lo < hi:
                norm[lo:hi] += w[lo + k * hop: hi + k * hop] ** 2
        self.register_buffer("window", w.float(), persistent=False)
        synth = torch.where(norm > 1e-12, w / norm.clamp_min(1e-12), torch.zeros_like(w))  # hop == n_fft: w(0) = 0
        self.register_buffer("synthesis_window", synth.float(), persistent=False)

    def frames(self, x: Tensor) -> Tensor:
        """(B, M, N) -> (B, M, T, n_fft) with T = 1 + (N - n_fft) // hop."""
        return x.unfold(-1, self.n_fft, self.hop)

    def analysis(self, frames: Tensor) -> Tensor:
        """(B, M, T, n_fft) frames -> (B, 2M, T, F): real parts of every mic, then imaginary."""
        spec = torch.fft.rfft(frames * self.window, dim=-1)
        return torch.cat([spec.real, spec.imag], dim=1)

    def synthesis(self, ri: Tensor) -> Tensor:
        """(B, S, 2, T, F) real/imag -> (B, S, T, n_fft) windowed time frames."""
        spec = torch.complex(ri[:, :, 0], ri[:, :, 1])
        return torch.fft.irfft(spec, n=self.n_fft, dim=-1) * self.synthesis_window

    def overlap_add(self, frames: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
        """Overlap-add (B, S, T, n_fft) frames after the previous call's ``tail``
        (B, S, n_fft - hop); returns the T*hop finished samples and the new tail."""
        b, s, t, n = frames.shape
        length = (t - 1) * self.hop + n
        out = F.fold(frames.reshape(b * s, t, n).transpose(1, 2), output_size=(1, length),
                     kernel_size=(1, n), stride=(1, self.hop)).view(b, s, length)
        pad = n - self.hop
        if pad:
            out = torch.cat([out[..., :pad] + tail, out[..., pad:]], dim=-1)
        return out[..., : t * self.hop], out[..., t * self.hop:]


# ----------------------------------------------------------------------------- TF-GridNet block


def local_causal_mask(t: int, window: int, device=None) -> Tensor:
    """Bool mask (t, t + window - 1): query ``i`` (at extended position ``i + window - 1``,
    after ``window - 1`` cached frames) sees extended positions ``i .. i + window - 1``."""
    q = torch.arange(t, device=device)[:, None]
    k = torch.arange(t + window - 1, device=device)[None, :]
    return (k >= q) & (k <= q + window - 1)


class GridNetBlock(nn.Module):
    """One TF-GridNet block on (B, C, T, F) features (TF-GridNet Sec. III-B/C; causal
    variant of the official ``tfgridnet_causal.GridNetBlock``).

    ``causal=True``: unidirectional inter-frame LSTM with carried state and local causal
    attention over a cache of ``local_atten_len - 1`` past frames. ``causal=False``: a
    bidirectional inter-frame LSTM and full attention over the clip (enrollment network).
    """

    def __init__(self, channels: int, hidden: int, n_freqs: int, heads: int = 4, approx_qk_dim: int = 512,
                 local_atten_len: int = 50, causal: bool = True, attn=sdpa_attention) -> None:
        super().__init__()
        self.c, self.h, self.f, self.heads = channels, hidden, n_freqs, heads
        self.causal, self.window, self.attn = causal, local_atten_len, attn
        self.intra_norm = nn.LayerNorm(channels)
        self.intra_rnn = nn.LSTM(channels, hidden, batch_first=True, bidirectional=True)
        self.intra_linear = nn.Linear(2 * hidden, channels)
        self.inter_norm = nn.LayerNorm(channels)
        self.inter_rnn = nn.LSTM(channels, hidden, batch_first=True, bidirectional=not causal)
        self.inter_linear = nn.Linear(hidden * (1 if causal else 2), channels)
        if heads:
            if channels % heads:
                raise ValueError(f"channels {channels} not divisible by heads {heads}")
            self.e = math.ceil(approx_qk_dim / n_freqs)  # per-bin query/key size (TF-GridNet's E)
            self.dv = channels // heads
            self.q = nn.Sequential(nn.Linear(channels, self.e * heads), nn.PReLU())
            self.k = nn.Sequential(nn.Linear(channels, self.e * heads), nn.PReLU())
            self.v = nn.Sequential(nn.Linear(channels, self.dv * heads), nn.PReLU())
            self.q_norm = nn.LayerNorm(n_freqs * self.e)
            self.k_norm = nn.LayerNorm(n_freqs * self.e)
            self.v_norm = nn.LayerNorm(n_freqs * self.dv)
            self.proj = nn.Sequential(nn.Linear(channels, channels), nn.PReLU())
            self.proj_norm = nn.LayerNorm(n_freqs * channels)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        if not self.causal:
            return {}
        z = lambda *s: torch.zeros(*s, device=device, dtype=dtype)  # noqa: E731
        st: State = {"h": z(1, batch * self.f, self.h), "c": z(1, batch * self.f, self.h)}
        if self.heads:
            st["k"] = z(batch, self.heads, self.window - 1, self.f * self.e)
            st["v"] = z(batch, self.heads, self.window - 1, self.f * self.dv)
        return st

    def _heads(self, x: Tensor, lin: nn.Module, norm: nn.Module, d: int) -> Tensor:
        b, t, f, _ = x.shape  # (B, T, F, C) -> (B, heads, T, F*d), normalised over F*d per head
        y = lin(x).view(b, t, f, self.heads, d).permute(0, 3, 1, 2, 4).reshape(b, self.heads, t, f * d)
        return norm(y)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        b, c, t, f = x.shape
        state = dict(state) if state else self.init_state(b, x.device, x.dtype)
        u = x.permute(0, 2, 3, 1)  # (B, T, F, C)
        # intra-frame: BLSTM across frequency, per frame
        y, _ = self.intra_rnn(self.intra_norm(u).reshape(b * t, f, c))
        u = self.intra_linear(y).view(b, t, f, c) + u
        # inter-frame: LSTM across time, per frequency (causal: state carried over)
        v = self.inter_norm(u).transpose(1, 2).reshape(b * f, t, c)
        if self.causal:
            y, (state["h"], state["c"]) = self.inter_rnn(v, (state["h"], state["c"]))
        else:
            y, _ = self.inter_rnn(v)
        u = self.inter_linear(y).view(b, f, t, c).transpose(1, 2) + u
        if self.heads:  # full-band self-attention across time
            q = self._heads(u, self.q, self.q_norm, self.e)
            k = self._heads(u, self.k, self.k_norm, self.e)
            vv = self._heads(u, self.v, self.v_norm, self.dv)
            mask = None
            if self.causal:
                k, vv = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], vv], dim=2)
                state["k"], state["v"] = k[:, :, k.shape[2] - (self.window - 1):], vv[:, :, vv.shape[2] - (self.window - 1):]
                mask = local_causal_mask(t, self.window, x.device)
            o = self.attn(q, k, vv, mask)  # (B, heads, T, F*dv)
            o = o.view(b, self.heads, t, f, self.dv).permute(0, 2, 3, 1, 4).reshape(b, t, f, c)
            o = self.proj_norm(self.proj(o).reshape(b, t, f * c)).view(b, t, f, c)
            u = u + o
        return u.permute(0, 3, 1, 2), state


# ----------------------------------------------------------------------------- the two networks


class TargetSpeechNet(nn.Module):
    """Causal, streaming target-speech-hearing network conditioned on a speaker embedding.

    Input conv over (3 frames x 3 bins) of the stacked real/imag spectra of ``n_mics``
    channels, ``n_layers`` causal GridNet blocks, the features multiplied by
    ``LayerNorm(Linear(embedding))`` reshaped to (C, F) after the first block, and a causal
    (3 x 3) output conv to the real/imag spectra of ``n_out`` output channels (the two ears).
    ``output="mapping"`` (official): those spectra are the output (complex spectral
    mapping). ``output="mask"`` (our option for very short CPU schedules): they are a
    residual complex mask, ``Y = (1 + M) * X`` per ear, so an untrained network passes the
    mixture through instead of noise.
    """

    def __init__(self, n_mics: int = 2, n_out: int = 2, chunk: int = 128, lookahead: int = 64,
                 embed_dim: int = 256, channels: int = 64, hidden: int = 64, n_layers: int = 3,
                 heads: int = 4, local_atten_len: int = 50, approx_qk_dim: int = 512,
                 output: str = "mapping") -> None:
        super().__init__()
        if output not in ("mapping", "mask") or (output == "mask" and n_out != n_mics):
            raise ValueError("output must be 'mapping', or 'mask' with n_out == n_mics")
        self.output = output
        self.stft = STFT(chunk + lookahead, chunk)
        f = self.stft.n_freqs
        self.n_mics, self.n_out, self.chunk, self.lookahead, self.c = n_mics, n_out, chunk, lookahead, channels
        self.t_ks = 3
        self.conv = nn.Conv2d(2 * n_mics, channels, (self.t_ks, 3), padding=(0, 1))
        self.blocks = nn.ModuleList(
            GridNetBlock(channels, hidden, f, heads, approx_qk_dim, local_atten_len, causal=True)
            for _ in range(n_layers))
        self.cond_at = min(1, n_layers - 1)  # official: after block 0 (before block 1)
        self.embed_proj = nn.Sequential(nn.Linear(embed_dim, channels * f), nn.LayerNorm(channels * f))
        self.deconv = nn.Conv2d(channels, 2 * n_out, (self.t_ks, 3), padding=(0, 1))

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        f = self.stft.n_freqs
        z = lambda *s: torch.zeros(*s, device=device, dtype=dtype)  # noqa: E731
        return {
            "conv": z(batch, 2 * self.n_mics, self.t_ks - 1, f),
            "deconv": z(batch, self.c, self.t_ks - 1, f),
            "ola": z(batch, self.n_out, self.lookahead),
            "blocks": [blk.init_state(batch, device, dtype) for blk in self.blocks],
        }

    def forward_frames(self, frames: Tensor, embedding: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """(B, M, T, chunk+lookahead) input frames -> (B, n_out, T*chunk) output samples."""
        b, _, t, _ = frames.shape
        st = state if state is not None else self.init_state(b, frames.device, frames.dtype)
        spec = self.stft.analysis(frames)  # (B, 2M, T, F)
        x = torch.cat([st["conv"], spec], dim=2)  # (B, 2M, 2+T, F)
        new = {"conv": x[:, :, -(self.t_ks - 1):]}
        h = self.conv(x)  # (B, C, T, F)
        cond = self.embed_proj(embedding).view(b, self.c, 1, -1)
        block_states = []
        for i, blk in enumerate(self.blocks):
            if i == self.cond_at:
                h = h * cond
            h, s = blk(h, st["blocks"][i])
            block_states.append(s)
        h = torch.cat([st["deconv"], h], dim=2)
        new["deconv"] = h[:, :, -(self.t_ks - 1):]
        ri = self.deconv(h).view(b, self.n_out, 2, t, -1)
        if self.output == "mask":  # (1 + m) * X per ear: a residual complex mask (our option, see README)
            xr, xi = spec.view(b, 2, self.n_mics, t, -1).unbind(1)
            mr, mi = ri[:, :, 0] + 1.0, ri[:, :, 1]
            ri = torch.stack([mr * xr - mi * xi, mr * xi + mi * xr], dim=2)
        y, new["ola"] = self.stft.overlap_add(self.stft.synthesis(ri), st["ola"])
        new["blocks"] = block_states
        return y, new

    def forward(self, mixture: Tensor, embedding: Tensor) -> Tensor:
        """Offline call on a whole clip (B, M, N) -> (B, n_out, N): pad to whole chunks,
        append the lookahead, run every frame from a fresh state, crop."""
        n = mixture.shape[-1]
        x = F.pad(mixture, (0, (-n) % self.chunk + self.lookahead))
        y, _ = self.forward_frames(self.stft.frames(x), embedding)
        return y[..., :n]


class EnrollmentNet(nn.Module):
    """Noisy binaural enrollment clip (B, M, N) -> speaker embedding (B, embed_dim):
    RMS normalisation, centred STFT, (3 x 3) conv, non-causal GridNet blocks, per-frame
    ``LayerNorm(Linear(F*C -> embed_dim))``, mean over frames (official EmbedTFGridNet)."""

    def __init__(self, n_mics: int = 2, n_fft: int = 128, hop: int = 64, embed_dim: int = 256,
                 channels: int = 64, hidden: int = 64, n_layers: int = 3, heads: int = 4,
                 approx_qk_dim: int = 512) -> None:
        super().__init__()
        self.stft = STFT(n_fft, hop)
        f = self.stft.n_freqs
        self.conv = nn.Conv2d(2 * n_mics, channels, (3, 3), padding=(1, 1))
        self.blocks = nn.ModuleList(
            GridNetBlock(channels, hidden, f, heads, approx_qk_dim, causal=False) for _ in range(n_layers))
        self.proj = nn.Sequential(nn.Linear(f * channels, embed_dim), nn.LayerNorm(embed_dim))

    def forward(self, enrollment: Tensor) -> Tensor:
        x = enrollment / (enrollment.std(dim=(1, 2), keepdim=True) + 1e-8)
        half = self.stft.n_fft // 2
        x = F.pad(x, (half, half))
        h = self.conv(self.stft.analysis(self.stft.frames(x)))
        for blk in self.blocks:
            h, _ = blk(h)
        b, c, t, f = h.shape
        return self.proj(h.permute(0, 2, 1, 3).reshape(b, t, c * f)).mean(dim=1)


class LookOnceToHear(nn.Module):
    """Enrollment network -> embedding -> causal TSH network."""

    def __init__(self, enroll: EnrollmentNet, tsh: TargetSpeechNet) -> None:
        super().__init__()
        self.enroll, self.tsh = enroll, tsh

    def forward(self, mixture: Tensor, enrollment: Tensor) -> Tensor:
        return self.tsh(mixture, self.enroll(enrollment))


def build(cfg) -> LookOnceToHear:
    """The model of a recipe config (fields ``sample_rate``, ``chunk_ms``, ``lookahead_ms``, ...)."""
    chunk = round(cfg.sample_rate * cfg.chunk_ms / 1000)
    look = round(cfg.sample_rate * cfg.lookahead_ms / 1000)
    tsh = TargetSpeechNet(n_mics=2, n_out=2, chunk=chunk, lookahead=look, embed_dim=cfg.embed_dim,
                          channels=cfg.tsh_channels, hidden=cfg.tsh_hidden, n_layers=cfg.tsh_layers,
                          heads=cfg.tsh_heads, local_atten_len=cfg.local_atten_len,
                          approx_qk_dim=cfg.approx_qk_dim, output=getattr(cfg, "tsh_output", "mapping"))
    enr_fft = round(cfg.sample_rate * cfg.enroll_win_ms / 1000)
    enroll = EnrollmentNet(n_mics=2, n_fft=enr_fft, hop=enr_fft // 2, embed_dim=cfg.embed_dim,
                           channels=cfg.enroll_channels, hidden=cfg.enroll_hidden, n_layers=cfg.enroll_layers,
                           heads=cfg.enroll_heads, approx_qk_dim=cfg.approx_qk_dim)
    return LookOnceToHear(enroll, tsh)
