"""Multi-Token Attention (Golovneva, Wang, Weston & Sukhbaatar, 2025; arXiv 2504.00927),
written from the paper (Section 3) with the official code (facebookresearch/RAM,
projects/mta) read for facts such as padding and initialisation only.

Equations are named by content, not number (we could not check the numbering against
the arXiv text); with Â = Q Kᵀ / sqrt(d):

    [attn]      A = Softmax(Mask_-inf(Â))                                   (background)
    [kq-exact]  a_ij = Softmax( Σ_{i'=0}^{c_q-1} Σ_{j'=-⌊c_k/2⌋}^{⌈c_k/2⌉-1}
                        1[i >= j-j'] θ_{i',j'} q_{i-i'} k_{j-j'}ᵀ / sqrt(d) )  (Section 3.1)
    [kq-pre]    A = Softmax(Mask_-inf(Conv2d_θ(Mask_0(Â))))                  (Section 3.1)
    [kq-post]   A = Mask_0(Conv2d_θ(Softmax(Mask_-inf(Â))))                  (Section 3.1)
    [head-mix]  A¹_new = w₁₁ A¹ + w₁₂ A²,  A²_new = w₂₁ A¹ + w₂₂ A²  (c_h=2)  (Section 3.2)

Standard attention ([attn]) scores every (query i, key j) pair from one query and
one key vector: ``A = Softmax(Mask_-inf(Â))``, ``Â = Q Kᵀ / sqrt(d)``. MTA lets each
weight depend on several queries, keys and heads:

* **key-query convolution** (Section 3.1, [kq-exact], [kq-pre], [kq-post]): a per-head 2D convolution with a
  ``c_q x c_k`` kernel ``θ`` over the (query, key) score map. Queries only look back
  (rows ``i, i-1, ..., i-c_q+1``); keys look both ways (``j-⌈c_k/2⌉+1 ... j+⌊c_k/2⌋``
  in the paper's [kq-exact], "pad_key: both" in the official code). The exact causal
  masking of [kq-exact] is replaced, as in the paper ("for simplicity"), by masking the
  future with zeros before the convolution and with -inf after it:

      [kq-pre]  pre-softmax:  A = Softmax(Mask_-inf(Conv2d_θ(Mask_0(Â))))
      [kq-post] post-softmax: A = Mask_0(Conv2d_θ(Softmax(Mask_-inf(Â))))

  Mask_0 zeroes every score with key > query, so a convolution tap that reaches a
  key in the future of its query row reads a zero, and no information flows backwards.
* **head mixing convolution** (Section 3.2, [head-mix]): heads are split into groups of
  ``c_h``; within a group each head's map becomes a learned weighted sum of the
  group's maps (``A¹_new = w₁₁A¹ + w₁₂A²``...), applied to the logits (pre-softmax) or
  to the probabilities (post-softmax).
* **group normalisation with depth scaling and gating** (Section 3, Figure 1): each
  head's output is RMS-normalised on its own (a group norm with one group per head),
  optionally scaled by ``1 - λ_init(l)`` with the layer-dependent ``λ_init`` of the
  Differential Transformer, and multiplied by a scalar sigmoid gate per head and token
  (official code: ``sigmoid(Linear(head_dim, 1)(out))``).

With identity kernels (a 1 at the current query/key tap, an identity head-mixing
matrix) every convolution is the identity and MTA is standard attention; the
toy-task configuration initialises them so ("init_method: identity").

The model is a small pre-norm causal LM as in the official code (lingua): RMSNorm,
rotary position embeddings, SwiGLU feed-forward, tied input/output embeddings; the
attention is standard softmax (``repro.blocks.attention.sdpa_attention``) or MTA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from repro.blocks.attention import causal_mask, sdpa_attention

# ----------------------------------------------------------------------------- MTA pieces


def kq_padding(q_kernel: int, k_kernel: int) -> tuple[int, int, int]:
    """(top, left, right) zero padding of the score map for a ``c_q x c_k`` kernel.

    [kq-exact] sums over query offsets i' = 0..c_q-1 (rows i-i', the past) and key offsets
    j' = -⌊c_k/2⌋..⌈c_k/2⌉-1 (columns j-j'): ⌈c_k/2⌉-1 keys to the left and ⌊c_k/2⌋
    to the right of j. For odd c_k this is the official "both" padding, (c_k-1)/2 each.
    """
    return q_kernel - 1, math.ceil(k_kernel / 2) - 1, k_kernel // 2


def identity_kq_kernel(heads: int, q_kernel: int, k_kernel: int) -> Tensor:
    """(heads, 1, c_q, c_k) kernel that returns its input: 1 at (current query, current key)."""
    top, left, _ = kq_padding(q_kernel, k_kernel)
    w = torch.zeros(heads, 1, q_kernel, k_kernel)
    w[:, 0, top, left] = 1.0
    return w


def key_query_conv(scores: Tensor, kernel: Tensor, keep: Tensor) -> Tensor:
    """Conv2d_θ(Mask_0(scores)) over the (query, key) plane, one kernel per head.

    ``scores`` (B, H, Lq, Lk); ``kernel`` (H, 1, c_q, c_k); ``keep`` (Lq, Lk) boolean,
    True where key j may be seen from query i. Cross-correlation with the padding of
    :func:`kq_padding` gives ``out[i, j] = Σ θ[a, b] s[i - (c_q-1) + a, j - left + b]``,
    i.e. ``θ[c_q-1-i', left-j']`` multiplies ``s[i-i', j-j']`` of [kq-exact].
    """
    heads, _, cq, ck = kernel.shape
    top, left, right = kq_padding(cq, ck)
    x = scores.masked_fill(~keep, 0.0)  # Mask_0: the future contributes nothing
    x = F.pad(x, (left, right, top, 0))
    return F.conv2d(x, kernel.to(x.dtype), groups=heads)


def head_mix(maps: Tensor, weight: Tensor) -> Tensor:
    """[head-mix]: within each group of c_h consecutive heads, head h becomes Σ_h' w[g, h', h] A^h'.

    ``maps`` (B, H, Lq, Lk); ``weight`` (H / c_h, c_h, c_h); identity matrices leave the maps unchanged.
    """
    b, h, lq, lk = maps.shape
    groups, ch, _ = weight.shape
    grouped = maps.reshape(b, groups, ch, lq, lk)
    return torch.einsum("bgpqk,gph->bghqk", grouped, weight.to(maps.dtype)).reshape(b, h, lq, lk)


def multi_token_attention(q: Tensor, k: Tensor, v: Tensor, *, kq_kernel: Tensor | None = None,
                          post_kq_kernel: Tensor | None = None, pre_head_weight: Tensor | None = None,
                          post_head_weight: Tensor | None = None, scale: float | None = None,
                          dropout_p: float = 0.0, return_weights: bool = False):
    """Causal MTA attention weights applied to ``v`` (Section 3, Figure 1).

    Order (as Figure 1 and the official code): pre-softmax key-query conv [kq-pre], pre-softmax
    head mixing, Mask_-inf + softmax, post-softmax key-query conv + Mask_0 [kq-post], post-softmax
    head mixing, dropout, times V. Every piece is optional (None = absent). Shapes as SDPA:
    q (B, H, Lq, d), k (B, H, Lk, d), v (B, H, Lk, dv); causal with the diagonal aligned
    at the end (query i sees keys j <= i + Lk - Lq).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    keep = causal_mask(q.shape[-2], k.shape[-2], q.device)
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # Â of [attn]
    if kq_kernel is not None:
        scores = key_query_conv(scores, kq_kernel, keep)  # [kq-pre], inside the softmax
    if pre_head_weight is not None:
        scores = head_mix(scores, pre_head_weight)  # Section 3.2, pre-softmax variant
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)  # Mask_-inf + softmax
    if post_kq_kernel is not None:
        weights = key_query_conv(weights, post_kq_kernel, keep).masked_fill(~keep, 0.0)  # [kq-post]
    if post_head_weight is not None:
        weights = head_mix(weights, post_head_weight)  # [head-mix] on probabilities
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    out = torch.matmul(weights, v)
    return (out, weights) if return_weights else out


def depth_scale(layer: int) -> float:
    """1 - λ_init(l), λ_init = 0.8 - 0.6 exp(-0.3 l) with 0-based layer index l (the
    Differential Transformer's layer-dependent scaling, used by MTA's group norm)."""
    return 1.0 - (0.8 - 0.6 * math.exp(-0.3 * layer))


# ----------------------------------------------------------------------------- the LM


def rope_tables(length: int, head_dim: int, theta: float, device=None) -> tuple[Tensor, Tensor]:
    """cos/sin tables (length, head_dim/2) of rotary position embeddings."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    ang = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv)
    return ang.cos(), ang.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[..., :d/2], x[..., d/2:]) by position-dependent angles."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def _trunc_normal_(w: Tensor, std: float) -> None:
    nn.init.trunc_normal_(w, mean=0.0, std=std, a=-3 * std, b=3 * std)


class Attention(nn.Module):
    """Causal multi-head self-attention, standard (SDPA) or MTA (Section 3)."""

    def __init__(self, cfg, layer: int) -> None:
        super().__init__()
        dim, heads = cfg.dim, cfg.heads
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, cfg.attn_dropout
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        mta_layers = tuple(cfg.mta_layers) or tuple(range(cfg.layers))
        self.mta = cfg.attention == "mta" and layer in mta_layers
        self.kq_kernel = self.post_kq_kernel = self.pre_head = self.post_head = None
        self.norm = self.gate = None
        self.out_scale = 1.0
        if self.mta:
            if cfg.q_kernel > 0 and cfg.k_kernel > 0:  # Section 3.1, pre-softmax
                self.kq_kernel = nn.Parameter(identity_kq_kernel(heads, cfg.q_kernel, cfg.k_kernel))
            if cfg.post_q_kernel > 0 and cfg.post_k_kernel > 0:  # Section 3.1, post-softmax
                self.post_kq_kernel = nn.Parameter(
                    identity_kq_kernel(heads, cfg.post_q_kernel, cfg.post_k_kernel))
            if cfg.head_kernel > 0:  # Section 3.2
                if heads % cfg.head_kernel:
                    raise ValueError(f"heads {heads} not divisible by head_kernel {cfg.head_kernel}")
                eye = torch.eye(cfg.head_kernel).repeat(heads // cfg.head_kernel, 1, 1)
                if cfg.head_mix_pre_softmax:
                    self.pre_head = nn.Parameter(eye)
                else:
                    self.post_head = nn.Parameter(eye)
            if cfg.group_norm:  # Section 3, Figure 1: one normalisation group per head
                self.norm = nn.RMSNorm(self.head_dim, eps=1e-5)
                self.out_scale = depth_scale(layer) if cfg.depth_scale else 1.0
            if cfg.gating:  # Figure 1: scalar gate per head
                self.gate = nn.Linear(self.head_dim, 1)
        self.reset_parameters(dim)

    def reset_parameters(self, dim: int) -> None:
        std = dim ** -0.5  # official: truncated normal, std dim^-1/2, for all projections
        for w in (self.wq, self.wk, self.wv, self.wo):
            _trunc_normal_(w.weight, std)
        if self.gate is not None:
            _trunc_normal_(self.gate.weight, std)
            nn.init.zeros_(self.gate.bias)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        p = self.dropout if self.training else 0.0
        if not self.mta:
            return sdpa_attention(q, k, v, causal=True, dropout_p=p)
        return multi_token_attention(q, k, v, kq_kernel=self.kq_kernel, post_kq_kernel=self.post_kq_kernel,
                                     pre_head_weight=self.pre_head, post_head_weight=self.post_head,
                                     dropout_p=p)

    def head_outputs(self, out: Tensor) -> Tensor:
        """Group norm (+ depth scaling) and gating of the per-head outputs (B, H, L, dh)."""
        if self.norm is not None:
            out = self.norm(out) * self.out_scale
        if self.gate is not None:
            out = out * torch.sigmoid(self.gate(out))
        return out

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, n, d = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        q = apply_rope(split(self.wq(x)), cos, sin)
        k = apply_rope(split(self.wk(x)), cos, sin)
        out = self.head_outputs(self.attend(q, k, split(self.wv(x))))
        return self.wo(out.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        _trunc_normal_(self.w1.weight, dim ** -0.5)
        _trunc_normal_(self.w3.weight, dim ** -0.5)
        _trunc_normal_(self.w2.weight, hidden ** -0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def ffn_hidden(dim: int, multiple_of: int = 256, multiplier: float = 1.0) -> int:
    """lingua's SwiGLU width: 2/3 of 4*dim, times the multiplier, rounded up to a multiple."""
    hidden = int(multiplier * int(2 * 4 * dim / 3))
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then h + ffn(norm(h))."""

    def __init__(self, cfg, layer: int) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(cfg.dim, eps=1e-5)
        self.attention = Attention(cfg, layer)
        self.ffn_norm = nn.RMSNorm(cfg.dim, eps=1e-5)
        self.feed_forward = FeedForward(cfg.dim, cfg.ffn_hidden or ffn_hidden(cfg.dim))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin)
        return h + self.feed_forward(self.ffn_norm(h))


class TransformerLM(nn.Module):
    """Causal LM: embeddings, ``cfg.layers`` pre-norm blocks, final RMSNorm, tied output."""

    def __init__(self, cfg, vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.head_dim = cfg.dim // cfg.heads
        self.embed = nn.Embedding(vocab, cfg.dim)
        _trunc_normal_(self.embed.weight, cfg.dim ** -0.5)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=1e-5)
        self.output = None
        if not cfg.tie_weights:
            self.output = nn.Linear(cfg.dim, vocab, bias=False)
            _trunc_normal_(self.output.weight, cfg.dim ** -0.5)

    def forward(self, tokens: Tensor, positions: slice | None = None) -> Tensor:
        """Logits (B, L, vocab); with ``positions`` only those positions' logits."""
        cos, sin = rope_tables(tokens.shape[1], self.head_dim, self.cfg.rope_theta, tokens.device)
        h = self.embed(tokens)
        for layer in self.layers:
            h = layer(h, cos, sin)
        h = self.norm(h if positions is None else h[:, positions])
        return F.linear(h, self.embed.weight if self.output is None else self.output.weight)


# ----------------------------------------------------------------------------- Lightning


def build_module(cfg):
    import lightning as L

    from .data import TaskSpec, answer_slice

    class FindBlockLM(L.LightningModule):
        """Trains the LM on the answer tokens only and reports the toy task's error rate:
        the percentage of examples with any wrong greedy answer token (teacher forcing)."""

        def __init__(self) -> None:
            super().__init__()
            self.cfg = cfg
            self.spec = TaskSpec(cfg.n_blocks, cfg.block_len, cfg.query_len, cfg.n_letters)
            self.answer = answer_slice(self.spec)
            self.model = TransformerLM(cfg, self.spec.vocab)
            self._counts: dict[str, list[float]] = {}

        def _answer_logits(self, batch):
            tokens = batch[0].long()
            x, y = tokens[:, :-1], tokens[:, 1:]
            return self.model(x, self.answer), y[:, self.answer]

        def training_step(self, batch, _):
            logits, target = self._answer_logits(batch)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
            self.log("train/loss", loss, prog_bar=True)
            return loss

        def _eval_step(self, batch, split: str) -> None:
            logits, target = self._answer_logits(batch)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="sum")
            wrong = logits.argmax(-1) != target
            c = self._counts.setdefault(split, [0.0, 0.0, 0.0, 0.0, 0.0])
            c[0] += float(loss)
            c[1] += float(wrong.sum())  # wrong tokens
            c[2] += float(wrong.any(-1).sum())  # wrong examples
            c[3] += float(wrong[:, 0].sum())  # wrong first answer letter
            c[4] += float(target.shape[0])

        def _eval_end(self, split: str) -> None:
            loss, tok, ex, first, n = self._counts.pop(split, [0.0, 0.0, 0.0, 0.0, 0.0])
            if not n:
                return
            per_ex = self.spec.block_len + 1
            self.log(f"{split}/loss", loss / (n * per_ex))
            self.log(f"{split}/error_rate", 100.0 * ex / n)
            self.log(f"{split}/token_error_rate", 100.0 * tok / (n * per_ex))
            self.log(f"{split}/first_letter_error_rate", 100.0 * first / n)

        def validation_step(self, batch, _):
            self._eval_step(batch, "val")

        def on_validation_epoch_end(self):
            self._eval_end("val")

        def test_step(self, batch, _):
            self._eval_step(batch, "test")

        def on_test_epoch_end(self):
            self._eval_end("test")

        def configure_optimizers(self):
            # official toy config: AdamW, lr 1e-4, weight decay 0, beta2 0.98, linear warmup
            # (1000 steps) then a constant rate
            opt = torch.optim.AdamW(self.parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2),
                                    weight_decay=cfg.weight_decay)
            warm = max(1, cfg.warmup_steps)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return FindBlockLM()
