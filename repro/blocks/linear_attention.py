"""Linear attention (Katharopoulos et al., 2020) and its references, shared by the
papers that reorder or reinterpret it (Lightning Attention-2's tiling, the Dynamical
Systems Framework's recurrence, TransNormerLLM's decayed form).

With a feature map ``phi`` applied to queries and keys, causal linear attention is

    o_t = sum_{s<=t} lambda^(t-s) <phi(q_t), phi(k_s)> v_s                       (1)
          [ / sum_{s<=t} lambda^(t-s) <phi(q_t), phi(k_s)> ]    (``normalize=True``)

with an optional per-head decay ``lambda`` in (0, 1] (``decay=None`` means 1, plain
linear attention). Three equivalent ways of computing it live here:

* ``causal_linear_attention``: the *parallel* form, materialising the masked
  ``(n x n)`` matrix ``(phi(Q) phi(K)^T) * M`` with ``M_ts = lambda^(t-s) [s <= t]``;
  O(n^2 d). This is the readable reference every fast path is tested against.
* ``recurrent_linear_attention``: the *recurrent* (state) form,
  ``S_t = lambda S_{t-1} + phi(k_t) v_t^T``, ``z_t = lambda z_{t-1} + phi(k_t)``,
  ``o_t = phi(q_t)^T S_t [/ phi(q_t)^T z_t]``; O(n d e) time, O(d e) state. A Python
  loop over time: a reference, not a fast path.
* ``linear_attention``: the non-causal form ``phi(Q) (phi(K)^T V)`` (every query sees
  every key), O(n d e).

Shapes follow the suite's attention interface: ``q, k`` are ``(..., n, d)``, ``v`` is
``(..., n, e)``; ``decay`` is a float or a tensor broadcastable to the leading dims
``(...)`` (typically one value per head, shape ``(H,)`` for ``(B, H, n, d)`` inputs).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention import causal_mask, register_attention

FeatureMap = Callable[[Tensor], Tensor]


def elu_plus_one(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al., 2020, Eq. 7)."""
    return F.elu(x) + 1.0


def identity(x: Tensor) -> Tensor:
    """phi(x) = x: unnormalised linear attention (as in TransNormerLLM / Lightning Attention)."""
    return x


def relu(x: Tensor) -> Tensor:
    return F.relu(x)


def softmax_features(x: Tensor) -> Tensor:
    """phi(x) = softmax(x) over the feature dimension: positive features that sum to one
    (a normalised feature map)."""
    return torch.softmax(x, dim=-1)


FEATURE_MAPS: dict[str, FeatureMap] = {
    "elu+1": elu_plus_one,
    "identity": identity,
    "relu": relu,
    "softmax": softmax_features,
}


def get_feature_map(name: str | FeatureMap | None) -> FeatureMap:
    """A feature map by name (``elu+1``, ``identity``, ``relu``, ``softmax``); a callable
    is returned as is; ``None`` means identity."""
    if name is None:
        return identity
    if callable(name):
        return name
    try:
        return FEATURE_MAPS[name]
    except KeyError:
        raise KeyError(f"unknown feature map {name!r}; known: {', '.join(FEATURE_MAPS)}") from None


def _decay_tensor(decay: float | Tensor | None, like: Tensor) -> Tensor | None:
    """``decay`` as a tensor of shape ``lead + (1, 1)`` (broadcasting against
    ``(..., n, n)``), in the dtype/device of ``like``; ``None`` for no decay."""
    if decay is None:
        return None
    d = torch.as_tensor(decay, dtype=like.dtype, device=like.device)
    if torch.any(d <= 0) or torch.any(d > 1):
        raise ValueError("decay must lie in (0, 1]")
    return d.reshape(d.shape + (1, 1))


def decay_mask(n: int, decay: float | Tensor | None, *, dtype=torch.float32, device=None) -> Tensor:
    """``M_ts = lambda^(t-s)`` for ``s <= t``, else 0: shape ``(n, n)`` without decay or
    for a scalar, ``decay.shape + (n, n)`` for a tensor of decays."""
    t = torch.arange(n, device=device)
    diff = (t[:, None] - t[None, :]).to(dtype)
    lower = causal_mask(n, n, device)
    if decay is None:
        return lower.to(dtype)
    lam = _decay_tensor(decay, diff)
    # lambda^(t-s) = exp((t-s) log lambda); the upper triangle is zeroed, never exponentiated
    return torch.where(lower, torch.exp(diff.clamp(min=0) * torch.log(lam)), torch.zeros((), dtype=dtype,
                                                                                         device=device))


def causal_linear_attention(q: Tensor, k: Tensor, v: Tensor, *, feature_map: str | FeatureMap | None = None,
                            normalize: bool = False, decay: float | Tensor | None = None,
                            eps: float = 0.0, mask: Tensor | None = None) -> Tensor:
    """Eq. (1) in the parallel form: ``((phi(Q) phi(K)^T) * M) V`` with the causal decay
    mask ``M``, divided row-wise by ``((phi(Q) phi(K)^T) * M) 1`` when ``normalize``.

    ``mask`` (optional, boolean, broadcastable to ``(..., n, n)``, True = attend) removes
    further pairs, e.g. key padding. O(n^2) time and memory: the reference.
    """
    phi = get_feature_map(feature_map)
    fq, fk = phi(q), phi(k)
    scores = torch.matmul(fq, fk.transpose(-2, -1))
    m = decay_mask(q.shape[-2], decay, dtype=scores.dtype, device=scores.device)
    if mask is not None:
        m = m * mask.to(scores.dtype)
    scores = scores * m
    out = torch.matmul(scores, v)
    if normalize:
        out = out / (scores.sum(dim=-1, keepdim=True) + eps)
    return out


def recurrent_linear_attention(q: Tensor, k: Tensor, v: Tensor, *, feature_map: str | FeatureMap | None = None,
                               normalize: bool = False, decay: float | Tensor | None = None, eps: float = 0.0,
                               initial_state: tuple[Tensor, Tensor] | None = None,
                               return_state: bool = False):
    """Eq. (1) as a recurrence over time with the state ``S_t`` (``(..., d, e)``) and the
    normaliser state ``z_t`` (``(..., d)``):

        S_t = lambda S_{t-1} + phi(k_t) v_t^T,   z_t = lambda z_{t-1} + phi(k_t),
        o_t = phi(q_t)^T S_t   [ / (phi(q_t)^T z_t + eps) ].

    ``initial_state=(S_0, z_0)`` continues a previous chunk; ``return_state=True`` also
    returns ``(S_n, z_n)``.
    """
    phi = get_feature_map(feature_map)
    fq, fk = phi(q), phi(k)
    lead = q.shape[:-2]
    d, e = fk.shape[-1], v.shape[-1]
    dtype = torch.result_type(fq, v)
    if initial_state is None:
        S = torch.zeros(*lead, d, e, dtype=dtype, device=q.device)
        z = torch.zeros(*lead, d, dtype=dtype, device=q.device)
    else:
        S, z = initial_state
    lam = _decay_tensor(decay, S)  # (..., 1, 1) for S
    lam_z = None if lam is None else lam[..., 0]  # (..., 1) for z
    outs = []
    for t in range(q.shape[-2]):
        kt, vt, qt = fk[..., t, :], v[..., t, :], fq[..., t, :]
        update = kt[..., :, None] * vt[..., None, :]
        S = update + (S if lam is None else lam * S)
        z = kt + (z if lam_z is None else lam_z * z)
        o = torch.einsum("...d,...de->...e", qt, S)
        if normalize:
            o = o / ((qt * z).sum(dim=-1, keepdim=True) + eps)
        outs.append(o)
    out = torch.stack(outs, dim=-2) if outs else v.new_zeros(*lead, 0, e)
    return (out, (S, z)) if return_state else out


def linear_attention(q: Tensor, k: Tensor, v: Tensor, *, feature_map: str | FeatureMap | None = "elu+1",
                     normalize: bool = True, eps: float = 0.0, key_mask: Tensor | None = None) -> Tensor:
    """Non-causal linear attention ``phi(Q) (phi(K)^T V) [/ phi(Q) (phi(K)^T 1)]``.

    ``key_mask`` (boolean ``(..., n)``, True = real key) drops padded keys.
    """
    phi = get_feature_map(feature_map)
    fq, fk = phi(q), phi(k)
    if key_mask is not None:
        fk = fk * key_mask[..., None].to(fk.dtype)
    kv = torch.matmul(fk.transpose(-2, -1), v)  # (..., d, e)
    out = torch.matmul(fq, kv)
    if normalize:
        out = out / (torch.matmul(fq, fk.sum(dim=-2)[..., None]) + eps)
    return out


def linear_attention_fn(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, causal: bool = False,
                        scale: float | None = None) -> Tensor:
    """Normalised elu+1 linear attention behind the suite's attention interface
    (``register_attention`` name ``"linear"``). ``scale`` multiplies q before the feature
    map if given. A boolean ``mask`` (True = attend) is applied in the parallel form;
    without a mask the non-causal path costs O(n d e) and the causal one O(n^2)."""
    if scale is not None:
        q = q * scale
    if mask is not None and mask.dtype != torch.bool:
        raise ValueError("linear attention takes boolean masks only (additive masks have no meaning here)")
    if causal or mask is not None:
        if causal and q.shape[-2] != k.shape[-2]:
            raise ValueError("causal linear attention needs as many queries as keys")
        phi = elu_plus_one
        scores = torch.matmul(phi(q), phi(k).transpose(-2, -1))
        keep = torch.ones_like(scores, dtype=torch.bool)
        if causal:
            keep = keep & causal_mask(q.shape[-2], k.shape[-2], q.device)
        if mask is not None:
            keep = keep & mask
        scores = scores * keep.to(scores.dtype)
        return torch.matmul(scores, v) / scores.sum(dim=-1, keepdim=True)
    return linear_attention(q, k, v, feature_map="elu+1", normalize=True)


register_attention("linear", linear_attention_fn)
