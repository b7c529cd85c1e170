"""Speaker-verification building blocks shared by the speaker-verification family:
the log Mel filterbank front-end, the two standard speaker encoders (TDNN x-vector and a
ResNet-34-style network, both with statistics pooling), the additive-margin softmax
loss and the uniformity loss on the hypersphere.

Shapes: features are ``(B, T, F)`` (frames x Mel bins); encoders return ``(B, E)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ----------------------------------------------------------------------------- front-end


def fbank(wave: Tensor, sample_rate: int = 16000, n_mels: int = 80, cmn: bool = True) -> Tensor:
    """Kaldi-compatible log Mel filterbank (25 ms Hamming windows every 10 ms, no dither),
    ``(T, n_mels)``, with utterance-level mean normalisation (CMN) when ``cmn``.

    ``wave`` is a 1-D float signal in [-1, 1]; it is scaled to the 16-bit range Kaldi
    expects (only the log offset depends on it, which CMN removes)."""
    from torchaudio.compliance.kaldi import fbank as kaldi_fbank

    if wave.dim() != 1:
        raise ValueError(f"fbank expects a 1-D signal, got shape {tuple(wave.shape)}")
    min_len = int(0.025 * sample_rate)
    if wave.numel() < min_len:  # shorter than one window: pad with zeros
        wave = F.pad(wave, (0, min_len - wave.numel()))
    feats = kaldi_fbank(wave[None].float() * 32768.0, num_mel_bins=n_mels, frame_length=25.0, frame_shift=10.0,
                        dither=0.0, energy_floor=0.0, sample_frequency=float(sample_rate), window_type="hamming")
    return feats - feats.mean(dim=0, keepdim=True) if cmn else feats


# ----------------------------------------------------------------------------- pooling


class StatsPool(nn.Module):
    """Statistics pooling (Snyder et al., 2018): mean and standard deviation over time.
    ``x`` is ``(B, C, T)``; returns ``(B, 2C)``."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=-1)
        var = (x - mean[..., None]).pow(2).mean(dim=-1)
        return torch.cat([mean, torch.sqrt(var.clamp_min(self.eps))], dim=-1)


# ----------------------------------------------------------------------------- TDNN x-vector


class TDNNLayer(nn.Sequential):
    """One frame-level layer: dilated 1-D convolution (a TDNN splice), ReLU, batch norm."""

    def __init__(self, cin: int, cout: int, context: int, dilation: int) -> None:
        super().__init__(nn.Conv1d(cin, cout, context, dilation=dilation), nn.ReLU(), nn.BatchNorm1d(cout))


class XVector(nn.Module):
    """The x-vector TDNN (Snyder et al., ICASSP 2018, Table 1): five frame layers with
    contexts [t-2, t+2], {t-2, t, t+2}, {t-3, t, t+3}, {t}, {t}; statistics pooling; the
    embedding is the affine output of the first segment layer ("segment6")."""

    receptive_field = 15  # frames: 1 + 4 (context 5) + 4 (3 taps, dilation 2) + 6 (3 taps, dilation 3)

    def __init__(self, n_mels: int = 80, channels: int = 512, stats_channels: int = 1500, emb_dim: int = 512) -> None:
        super().__init__()
        self.frames = nn.Sequential(
            TDNNLayer(n_mels, channels, 5, 1),
            TDNNLayer(channels, channels, 3, 2),
            TDNNLayer(channels, channels, 3, 3),
            TDNNLayer(channels, channels, 1, 1),
            TDNNLayer(channels, stats_channels, 1, 1),
        )
        self.pool = StatsPool()
        self.segment6 = nn.Linear(2 * stats_channels, emb_dim)
        self.emb_dim = emb_dim

    def forward(self, feats: Tensor) -> Tensor:
        x = feats.transpose(1, 2)  # (B, F, T)
        if x.shape[-1] < self.receptive_field:  # repeat very short inputs up to the receptive field
            x = x.repeat(1, 1, math.ceil(self.receptive_field / x.shape[-1]))
        return self.segment6(self.pool(self.frames(x)))


# ----------------------------------------------------------------------------- ResNet-34


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNet34(nn.Module):
    """ResNet-34-style speaker encoder (He et al., 2016; the "thin" variant used for
    speaker embeddings): a 3x3 stem, four stages of [3, 4, 6, 3] basic blocks with
    ``base, 2base, 4base, 8base`` channels (strides 1, 2, 2, 2 over frequency and time),
    statistics pooling over time of the flattened (channel x frequency) maps, and a
    linear embedding layer."""

    def __init__(self, n_mels: int = 80, base: int = 32, layers: tuple[int, ...] = (3, 4, 6, 3),
                 emb_dim: int = 256) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU())
        stages, cin = [], base
        for i, n in enumerate(layers):
            cout, stride = base * 2**i, (1 if i == 0 else 2)
            blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        freq = n_mels
        for i in range(1, len(layers)):
            freq = (freq + 1) // 2
        self.pool = StatsPool()
        self.embedding = nn.Linear(2 * cin * freq, emb_dim)
        self.emb_dim = emb_dim
        self.min_frames = 2 ** (len(layers) - 1)

    def forward(self, feats: Tensor) -> Tensor:
        x = feats.transpose(1, 2)[:, None]  # (B, 1, F, T)
        if x.shape[-1] < self.min_frames:
            x = x.repeat(1, 1, 1, math.ceil(self.min_frames / x.shape[-1]))
        x = self.stages(self.stem(x))  # (B, C, F', T')
        b, c, f, t = x.shape
        return self.embedding(self.pool(x.reshape(b, c * f, t)))


def build_encoder(name: str, n_mels: int = 80, **kw) -> nn.Module:
    if name == "tdnn":
        return XVector(n_mels, **kw)
    if name == "resnet":
        return ResNet34(n_mels, **kw)
    raise ValueError(f"unknown speaker encoder {name!r} (tdnn | resnet)")


# ----------------------------------------------------------------------------- losses


class AMSoftmax(nn.Module):
    """Additive-margin softmax (Wang et al., IEEE SPL 2018): logits
    ``s * (cos(theta_y) - m)`` for the true class and ``s * cos(theta_j)`` otherwise,
    cosines between the length-normalised embedding and class weights."""

    def __init__(self, emb_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, emb_dim) * 0.01)
        self.margin, self.scale = margin, scale

    def cosine(self, emb: Tensor) -> Tensor:
        return F.normalize(emb, dim=-1) @ F.normalize(self.weight, dim=-1).T

    def forward(self, emb: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(mean cross-entropy, cosine logits without margin)."""
        cos = self.cosine(emb)
        logits = self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[-1]).to(cos.dtype))
        return F.cross_entropy(logits, labels), cos


def uniformity_loss(emb: Tensor, t: float = 2.0) -> Tensor:
    """Uniformity on the hypersphere (Wang & Isola, ICML 2020):
    ``log mean_{i != j} exp(-t ||z_i - z_j||^2)`` over length-normalised ``emb`` rows."""
    z = F.normalize(emb, dim=-1)
    n = z.shape[0]
    if n < 2:
        return z.sum() * 0.0
    sq = torch.cdist(z, z).pow(2)
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    return torch.logsumexp(-t * sq[off], dim=0) - math.log(n * (n - 1))
