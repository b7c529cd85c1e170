"""Head-importance scores of Michel, Levy & Neubig (2019), "Are Sixteen Heads Really
Better than One?", for any model whose attention heads are gated by a ``head_mask``.

Each head's output is multiplied by a gate ``xi_h`` (``repro.blocks.attention.
MultiHeadAttention(head_mask=...)``; ``TransformerSeq2Seq(head_mask={"encoder"|"decoder"|
"cross": (layers, heads)})``). The importance of head h is the expected absolute
sensitivity of the loss to its gate, ``I_h = E_x |dL(x)/dxi_h|`` (evaluated at the current
gates), optionally l2-normalised per layer. One backward pass per batch gives every
example's gradient: the gates are expanded to one copy per example.

``loss_fn(net, batch, gates) -> (B,)`` per-example losses; ``gates`` is a dict of
``(layers, B, heads, 1, 1)`` tensors (broadcastable per layer to ``(B, H, Lq, D)``).
Masks are dicts ``kind -> (layers, heads)`` float tensors (1 = keep).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

Mask = dict[str, Tensor]
KINDS = ("encoder", "decoder", "cross")


def mask_shape(net: nn.Module) -> dict[str, tuple[int, int]]:
    """(layers, heads) of each attention kind of a ``TransformerSeq2Seq``."""
    heads = net.heads
    out = {"encoder": (len(net.encoder), heads), "decoder": (len(net.decoder), heads),
           "cross": (len(net.decoder), heads)}
    return {k: v for k, v in out.items() if v[0] > 0}


def ones_mask(net: nn.Module, device=None) -> Mask:
    dev = device if device is not None else next(net.parameters()).device
    return {k: torch.ones(shape, device=dev) for k, shape in mask_shape(net).items()}


def normalize_by_layer(scores: Mask) -> Mask:
    """Each layer's scores divided by their l2 norm."""
    return {k: v / v.norm(dim=-1, keepdim=True).clamp_min(1e-20) for k, v in scores.items()}


def batch_importance(net: nn.Module, batch, loss_fn: Callable[..., Tensor], base_mask: Mask) -> tuple[Mask, int]:
    """Sum over the batch's examples of |dL(x)/dxi_h| at the gates ``base_mask``, and the
    number of examples. Gradients flow only into the gates (parameters get none)."""
    bsz = batch["src"].shape[0]
    gates = {k: v.detach()[:, None, :, None, None].expand(v.shape[0], bsz, v.shape[1], 1, 1).clone()
             .requires_grad_(True) for k, v in base_mask.items()}
    with torch.enable_grad():
        loss = loss_fn(net, batch, gates).sum()
        grads = torch.autograd.grad(loss, [gates[k] for k in base_mask])
    return {k: g.detach().abs().sum(dim=1).view_as(base_mask[k]) for k, g in zip(base_mask, grads)}, bsz


def head_importance(net: nn.Module, batches: Iterable, loss_fn: Callable[..., Tensor], *,
                    base_mask: Mask | None = None, normalize: bool = True) -> Mask:
    """I_h = E_x |dL(x)/dxi_h| over ``batches`` (evaluation mode), per attention kind."""
    was_training = net.training
    net.eval()
    base = base_mask or ones_mask(net)
    scores = {k: torch.zeros_like(v) for k, v in base.items()}
    n = 0
    for b in batches:
        s, bsz = batch_importance(net, b, loss_fn, base)
        for k in scores:
            scores[k] += s[k]
        n += bsz
    net.train(was_training)
    scores = {k: v / max(n, 1) for k, v in scores.items()}
    return normalize_by_layer(scores) if normalize else scores


def flat(scores: Mask) -> Tensor:
    """All heads' values in a fixed order (KINDS, layer, head)."""
    return torch.cat([scores[k].reshape(-1) for k in KINDS if k in scores])
