"""Source-separation metrics through torchmetrics (1.9): SI-SNR and SI-SNR improvement.

SI-SNR (Le Roux et al. 2019, "SDR -- half-baked or well done?", = SI-SDR): both signals
are made zero-mean, the estimate is projected on the target, s = <est, tgt> tgt / ||tgt||^2,
and SI-SNR = 10 log10(||s||^2 / ||est - s||^2). torchmetrics computes it with
``zero_mean=True`` and an ``eps`` of the dtype's machine epsilon.

SI-SNR improvement (SI-SNRi) = SI-SNR(estimate, target) - SI-SNR(mixture, target), per
example and per channel, then averaged over channels (Look Once to Hear's binaural
outputs: left and right ears are two channels).
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

IMPLEMENTATION = "torchmetrics.functional.audio.scale_invariant_signal_noise_ratio (torchmetrics 1.9)"


def si_snr(estimate: Tensor, target: Tensor) -> Tensor:
    """SI-SNR in dB over the last (time) axis; shape = the leading axes."""
    return scale_invariant_signal_noise_ratio(estimate, target)


def si_snr_improvement(estimate: Tensor, mixture: Tensor, target: Tensor, reduce_channels: bool = True) -> Tensor:
    """SI-SNR(estimate) - SI-SNR(mixture) against ``target``; inputs ``(..., C, T)`` or
    ``(..., T)``. ``reduce_channels``: mean over the channel axis when inputs have >= 2 dims."""
    if not (estimate.shape == mixture.shape == target.shape):
        raise ValueError(f"shapes differ: {tuple(estimate.shape)}, {tuple(mixture.shape)}, {tuple(target.shape)}")
    imp = si_snr(estimate, target) - si_snr(mixture, target)
    if reduce_channels and estimate.dim() >= 2:
        imp = imp.mean(dim=-1)
    return imp


def neg_si_snr_loss(estimate: Tensor, target: Tensor) -> Tensor:
    """Mean negative SI-SNR (a training loss)."""
    return -si_snr(estimate, target).mean()


__all__ = ["IMPLEMENTATION", "si_snr", "si_snr_improvement", "neg_si_snr_loss"]
