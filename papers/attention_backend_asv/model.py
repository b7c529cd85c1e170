"""The attention back-end (Zeng et al., ICASSP 2022, arXiv 2104.01541): a learned scorer
that takes the *set* of a speaker's enrollment embeddings instead of their average.

The paper's delta over cosine scoring of the averaged embeddings, in the order of its
method section and of the official implementation (nii-yamagishilab/Attention_Backend_for_ASV,
``model.py``: ``AttentionAggregation``; ``attention.py``: ``AttentionAlphaComponent``):

1. **Scaled-dot self-attention** over the K enrollment embeddings ``E = [e_1..e_K]``
   with a residual connection: ``H = E + MultiHead(E, E, E)``. Every enrollment
   embedding is re-expressed in the light of the others (the "intra-relationships of
   the enrollment utterances"). The shared :class:`~repro.blocks.attention.MultiHeadAttention`
   (softmax(QKᵀ/√d_k)V per head, output projection) is the block used.
2. **Feed-forward self-attention** (Raffel & Ellis, 2015) pools ``H`` into one speaker
   vector. Per head ``h`` (each head owns a ``D/heads`` slice of the features):
   ``a_{h,k} = softmax_k(w_hᵀ ReLU(W_h H_{k,h} + b_h) + c_h)`` and
   ``c_h = Σ_k a_{h,k} H_{k,h}``; the speaker vector is the concatenation ``c = [c_1..c_heads]``
   (the official code: two grouped affine layers, hidden size 64, shared scalar score
   per head, softmax over utterances).
3. **Scoring**: ``s = cos(c, t)`` with the test embedding ``t``; training passes it
   through a logistic unit ``p = σ(w·s + b)`` and minimises binary cross-entropy
   (summed over the trials of a batch) on same/different-speaker labels.

Trials for training (official ``AttentionAggregation.forward``): a batch holds N speakers
x M embeddings. For each utterance index i, every speaker's set *without* its i-th
embedding is aggregated, and every i-th embedding is scored against every such set:
N·N·M trials, N·M of them targets (:func:`leave_one_out_scores`).

Sets of different sizes are batched with a boolean mask (True = a real embedding); a
padded slot never influences a real one (tested against scoring each set alone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.attention import MultiHeadAttention


class FeedForwardAttentionPool(nn.Module):
    """Multi-head feed-forward self-attention pooling over a set (step 2 above).

    ``forward(h, mask)``: ``h`` ``(B, K, D)``, ``mask`` ``(B, K)`` bool -> ``(B, D)`` and the
    attention weights ``(B, heads, K)``."""

    def __init__(self, dim: int, heads: int = 2, hidden: int = 64) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.dim = heads, dim
        d = dim // heads
        # grouped affine layers, initialised as the official code (N(0, 0.01), zero bias):
        # a near-uniform softmax at the start, i.e. the back-end starts close to mean pooling.
        self.w1 = nn.Parameter(torch.randn(heads, d, hidden) * 0.01)
        self.b1 = nn.Parameter(torch.zeros(heads, hidden))
        self.w2 = nn.Parameter(torch.randn(heads, hidden) * 0.01)
        self.b2 = nn.Parameter(torch.zeros(heads))

    def weights(self, h: Tensor, mask: Tensor) -> Tensor:
        b, k, _ = h.shape
        hs = h.view(b, k, self.heads, self.dim // self.heads)
        e = torch.relu(torch.einsum("bkhd,hdj->bkhj", hs, self.w1) + self.b1)
        logits = torch.einsum("bkhj,hj->bhk", e, self.w2) + self.b2[None, :, None]  # (B, heads, K)
        logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
        return torch.softmax(logits, dim=-1)

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, k, _ = h.shape
        alpha = self.weights(h, mask)
        hs = h.view(b, k, self.heads, self.dim // self.heads)
        pooled = torch.einsum("bhk,bkhd->bhd", alpha, hs).reshape(b, self.dim)
        return pooled, alpha


class AttentionBackend(nn.Module):
    """Scaled-dot self-attention + feed-forward self-attention over the enrollment set,
    cosine against the test embedding, logistic calibration for training."""

    def __init__(self, dim: int, heads: int = 2, pool_hidden: int = 64, pooling: str = "ffsa") -> None:
        super().__init__()
        if pooling not in ("ffsa", "mean"):
            raise ValueError("pooling must be 'ffsa' (the paper) or 'mean' (the official code's ablation)")
        self.self_attention = MultiHeadAttention(dim, heads)
        self.pool = FeedForwardAttentionPool(dim, heads, pool_hidden) if pooling == "ffsa" else None
        self.logistic = nn.Linear(1, 1)
        self.dim = dim

    def aggregate(self, enroll: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, K, D)`` enrollment sets (``mask`` ``(B, K)``, True = present) -> ``(B, D)``."""
        if mask is None:
            mask = torch.ones(enroll.shape[:2], dtype=torch.bool, device=enroll.device)
        if not bool(mask.any(-1).all()):
            raise ValueError("every enrollment set needs at least one embedding")
        h = enroll + self.self_attention(enroll, mask=mask[:, None, None, :])  # keys masked for every query
        if self.pool is None:
            m = mask[..., None].to(h.dtype)
            return (h * m).sum(1) / m.sum(1)
        return self.pool(h, mask)[0]

    def score(self, enroll: Tensor, mask: Tensor | None, test: Tensor) -> Tensor:
        """Cosine between each set's aggregate and its test embedding: ``(B,)``."""
        return F.cosine_similarity(self.aggregate(enroll, mask), test, dim=-1)

    def calibrate(self, cosine: Tensor) -> Tensor:
        """``σ(w·s + b)``: the probability that a trial is a target."""
        return torch.sigmoid(self.logistic(cosine[..., None]))[..., 0]

    def forward(self, enroll: Tensor, mask: Tensor | None, test: Tensor) -> Tensor:
        return self.calibrate(self.score(enroll, mask, test))


def leave_one_out_sets(x: Tensor) -> Tensor:
    """``(N, M, D)`` -> ``(N, M, M-1, D)``: entry ``[s, i]`` is speaker s's embeddings without the i-th."""
    n, m, d = x.shape
    if m < 2:
        raise ValueError("leave-one-out trials need at least 2 embeddings per speaker")
    keep = torch.tensor([[j for j in range(m) if j != i] for i in range(m)], device=x.device)
    return x[:, keep]


def leave_one_out_scores(backend: AttentionBackend, x: Tensor) -> tuple[Tensor, Tensor]:
    """The official training trials for a batch of N speakers x M embeddings.

    Returns cosine scores ``(M, N, N)`` where ``[i, a, b]`` scores speaker a's i-th
    embedding against speaker b's set without its i-th embedding, and the labels
    (1 on the diagonal ``a == b``)."""
    n, m, d = x.shape
    centres = backend.aggregate(leave_one_out_sets(x).reshape(n * m, m - 1, d)).view(n, m, d)
    tests = F.normalize(x, dim=-1).transpose(0, 1)  # (M, N, D)
    centres = F.normalize(centres, dim=-1).transpose(0, 1)  # (M, N, D)
    scores = tests @ centres.transpose(1, 2)  # (M, N, N)
    labels = torch.eye(n, device=x.device, dtype=scores.dtype).expand(m, n, n)
    return scores, labels


def backend_loss(backend: AttentionBackend, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Summed binary cross-entropy of the calibrated leave-one-out trials (the official
    ``nn.BCELoss(reduction='sum')``), with the scores and labels."""
    scores, labels = leave_one_out_scores(backend, x)
    probs = backend.calibrate(scores)
    return F.binary_cross_entropy(probs, labels, reduction="sum"), scores, labels
