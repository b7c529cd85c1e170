"""A Transformer encoder-decoder for machine translation, built from the shared blocks.

Vaswani et al. (2017), "Attention Is All You Need", Section 3: token embeddings scaled
by sqrt(d_model) (3.4) plus fixed sinusoidal positions (3.5), dropout on their sum;
N encoder blocks (self-attention + FFN) and N decoder blocks (causal self-attention,
attention over the encoder output, FFN); post-norm residuals by default as in the
paper, pre-norm (``norm_first=True``, with a final LayerNorm on each stack, as
fairseq's ``--encoder/decoder-normalize-before``) as an option; the pre-softmax linear
map optionally tied to the target embedding, and source/target embeddings optionally
shared (3.4, one joint BPE vocabulary).

Papers swap the attention kernel by name or callable (``attention="sdpa"|"naive"|...``,
see ``repro.blocks.attention``), gate individual heads with ``head_mask`` (Michel et
al. 2019 prune heads of the three attention kinds separately: ``"encoder"``,
``"decoder"`` self-attention and ``"cross"`` encoder-decoder attention) and read every
head's attention probabilities with ``need_weights=True``.

Conventions: right-padded batches, ``pad_id`` marks padding; the decoder input is the
target shifted right behind ``bos``. Target padding needs no mask: with right padding
and causal attention a real position never sees a later padding position.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MultiHeadAttention, get_attention
from .transformer import TransformerBlock, sinusoidal_positions

HeadMask = dict[str, Tensor]  # "encoder" | "decoder" | "cross" -> (layers, heads)


def pad_right(seqs: list[list[int]], pad: int, append: int | None = None) -> Tensor:
    """``(N, longest)`` long tensor of the sequences right-padded with ``pad``, each first
    closed by ``append`` (e.g. <eos>) when given."""
    rows = [list(s) + ([append] if append is not None else []) for s in seqs]
    out = torch.full((len(rows), max(1, max((len(r) for r in rows), default=0))), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def shift_right(tgt: Tensor, bos: int, eos: int, pad: int) -> Tensor:
    """Teacher-forcing decoder input: the target shifted right behind ``bos``; ``eos`` is never
    an input (the position after it becomes ``pad``)."""
    prev = torch.full_like(tgt, pad)
    prev[:, 0] = bos
    prev[:, 1:] = tgt[:, :-1]
    prev[prev == eos] = pad
    return prev


class DecoderBlock(TransformerBlock):
    """A ``TransformerBlock`` with cross-attention whose forward also keeps the
    incremental-decoding cache and returns both attention maps."""

    def __init__(self, dim: int, heads: int, **kw: Any) -> None:
        super().__init__(dim, heads, cross_attention=True, **kw)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None, *,  # type: ignore[override]
                cache: dict[str, dict[str, Tensor]] | None = None, head_mask: Tensor | None = None,
                cross_head_mask: Tensor | None = None, need_weights: bool = False):
        c_self = c_cross = None
        if cache is not None:
            c_self, c_cross = cache.setdefault("self", {}), cache.setdefault("cross", {})
        # one new query attends every cached key: the end-aligned causal mask is all-True then
        causal = x.shape[1] > 1
        x, w_self = self._sub(x, self.norm1, lambda h: self.attn(
            h, causal=causal, need_weights=need_weights, head_mask=head_mask, cache=c_self))
        x, w_cross = self._sub(x, self.norm_cross, lambda h: self.cross(
            h, context, mask=context_mask, need_weights=need_weights, head_mask=cross_head_mask, cache=c_cross))
        x, _ = self._sub(x, self.norm2, self.ffn)
        return (x, w_self, w_cross) if need_weights else x


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer; defaults are the base model of Vaswani et al.
    (Table 3: d=512, 8 heads, 6+6 layers, FFN 2048, dropout 0.1, ReLU, post-norm).

    ``attention``: a registered kernel name or an ``fn(q, k, v, mask, causal=...)``.
    ``attn_dropout``: dropout on the attention weights (fairseq's
    ``--attention-dropout``; 0 in the paper's base model).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, dim: int = 512, heads: int = 8, encoder_layers: int = 6,
                 decoder_layers: int = 6, ffn_dim: int = 2048, dropout: float = 0.1, *, attn_dropout: float = 0.0,
                 attention: str | Callable[..., Tensor] = "sdpa", norm_first: bool = False,
                 share_embeddings: bool = False, tie_output: bool = True, activation: type[nn.Module] = nn.ReLU,
                 pad_id: int = 0, max_positions: int = 1024) -> None:
        super().__init__()
        attn = get_attention(attention) if isinstance(attention, str) else attention
        self.dim, self.heads, self.pad_id, self.norm_first = dim, heads, pad_id, norm_first
        self.src_embed = nn.Embedding(src_vocab, dim, padding_idx=pad_id)
        if share_embeddings:
            if src_vocab != tgt_vocab:
                raise ValueError(f"shared embeddings need one vocabulary, got {src_vocab} and {tgt_vocab}")
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(tgt_vocab, dim, padding_idx=pad_id)
        block = dict(ffn_dim=ffn_dim, dropout=dropout, attn=attn, norm_first=norm_first, activation=activation,
                     attn_dropout=attn_dropout)
        self.encoder = nn.ModuleList(TransformerBlock(dim, heads, **block) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(dim, heads, **block) for _ in range(decoder_layers))
        self.encoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.out_proj = None if tie_output else nn.Linear(dim, tgt_vocab, bias=False)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_positions(max_positions, dim), persistent=False)
        # embeddings ~ N(0, d^-1/2) so that the sqrt(d) scaling gives unit variance (as fairseq's Embedding)
        for emb in (self.src_embed, self.tgt_embed):
            nn.init.normal_(emb.weight, 0.0, dim ** -0.5)
            with torch.no_grad():
                emb.weight[pad_id].zero_()
        if self.out_proj is not None:
            nn.init.normal_(self.out_proj.weight, 0.0, dim ** -0.5)

    # ------------------------------------------------------------------ pieces
    def set_attention(self, attention: str | Callable[..., Tensor]) -> None:
        """Swap the kernel of every attention layer (e.g. ``"naive"`` for a reference run)."""
        fn = get_attention(attention) if isinstance(attention, str) else attention
        for m in list(self.modules()):
            if isinstance(m, MultiHeadAttention):
                if not isinstance(fn, nn.Module):
                    m._modules.pop("attn", None)  # a module kernel installed earlier is a registered child
                m.attn = fn

    def _embed(self, embed: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        n = tokens.shape[1]
        pe = self.pe[offset:offset + n] if offset + n <= self.pe.shape[0] else \
            sinusoidal_positions(offset + n, self.dim, tokens.device)[offset:]
        return self.drop(embed(tokens) * math.sqrt(self.dim) + pe.to(embed.weight.dtype))

    def source_mask(self, src: Tensor) -> Tensor:
        """Boolean key-padding mask ``(B, 1, 1, S)``, True on real tokens."""
        return (src != self.pad_id)[:, None, None, :]

    def output_layer(self, x: Tensor) -> Tensor:
        return F.linear(x, self.tgt_embed.weight) if self.out_proj is None else self.out_proj(x)

    # ------------------------------------------------------------------ encoder / decoder
    def encode(self, src: Tensor, *, head_mask: HeadMask | None = None, need_weights: bool = False):
        """Returns ``(memory (B, S, D), memory_mask (B, 1, 1, S))`` and, with
        ``need_weights``, the per-layer self-attention probabilities ``(B, H, S, S)``."""
        mask = self.source_mask(src)
        hm = (head_mask or {}).get("encoder")
        x, weights = self._embed(self.src_embed, src), []
        for i, block in enumerate(self.encoder):
            out = block(x, mask=mask, need_weights=need_weights, head_mask=None if hm is None else hm[i])
            x = out[0] if need_weights else out
            if need_weights:
                weights.append(out[1])
        x = self.encoder_norm(x)
        return (x, mask, weights) if need_weights else (x, mask)

    def decode(self, prev_tokens: Tensor, memory: Tensor, memory_mask: Tensor | None = None, *,
               state: dict[str, Any] | None = None, head_mask: HeadMask | None = None,
               need_weights: bool = False):
        """Logits ``(B, T, V)`` for the decoder input ``prev_tokens``.

        Incremental decoding: pass ``state=model.init_state()`` and then only the new
        tokens on each call; the keys/values of earlier steps live in ``state`` (and are
        reordered by ``repro.decoding.reorder_state`` in beam search)."""
        offset = 0 if state is None else state["step"]
        hm, chm = (head_mask or {}).get("decoder"), (head_mask or {}).get("cross")
        x, w_self, w_cross = self._embed(self.tgt_embed, prev_tokens, offset), [], []
        for i, block in enumerate(self.decoder):
            out = block(x, memory, memory_mask, cache=None if state is None else state["layers"][i],
                        head_mask=None if hm is None else hm[i], cross_head_mask=None if chm is None else chm[i],
                        need_weights=need_weights)
            if need_weights:
                x, ws, wc = out
                w_self.append(ws)
                w_cross.append(wc)
            else:
                x = out
        if state is not None:
            state["step"] = offset + prev_tokens.shape[1]
        logits = self.output_layer(self.decoder_norm(x))
        return (logits, {"decoder": w_self, "cross": w_cross}) if need_weights else logits

    def init_state(self) -> dict[str, Any]:
        return {"step": 0, "layers": [{} for _ in self.decoder]}

    def forward(self, src: Tensor, prev_tokens: Tensor, *, head_mask: HeadMask | None = None,
                need_weights: bool = False):
        """Teacher-forced logits ``(B, T, V)``; with ``need_weights`` also
        ``{"encoder": [...], "decoder": [...], "cross": [...]}`` of ``(B, H, Lq, Lk)``."""
        if need_weights:
            memory, mask, w_enc = self.encode(src, head_mask=head_mask, need_weights=True)
            logits, w = self.decode(prev_tokens, memory, mask, head_mask=head_mask, need_weights=True)
            return logits, {"encoder": w_enc, **w}
        memory, mask = self.encode(src, head_mask=head_mask)
        return self.decode(prev_tokens, memory, mask, head_mask=head_mask)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, src: Tensor, *, bos: int, eos: int, beam_size: int = 4, alpha: float = 0.6,
                 penalty: str = "gnmt", max_len_a: float = 1.0, max_len_b: int = 50, n_best: int = 1,
                 head_mask: HeadMask | None = None):
        """Beam search (greedy when ``beam_size == 1``) with an incremental decoder;
        returns ``repro.decoding.Hypothesis`` lists (``n_best`` per sentence, best first).
        Output length is at most ``max_len_a * source length + max_len_b`` tokens."""
        from ..decoding import beam_search, greedy_search, max_lengths

        memory, mask = self.encode(src, head_mask=head_mask)
        state = {"memory": memory, "mask": mask, "dec": self.init_state()}

        def step(tokens: Tensor, st: dict[str, Any]):
            logits = self.decode(tokens[:, -1:], st["memory"], st["mask"], state=st["dec"], head_mask=head_mask)
            return torch.log_softmax(logits[:, -1].float(), dim=-1), st

        limit = max_lengths((src != self.pad_id).sum(1), max_len_a, max_len_b)
        if beam_size == 1:
            hyps = greedy_search(step, state, src.shape[0], bos=bos, eos=eos, max_len=limit, device=src.device)
            return [[h] for h in hyps]
        return beam_search(step, state, src.shape[0], bos=bos, eos=eos, beam_size=beam_size, max_len=limit,
                           alpha=alpha, penalty=penalty, n_best=n_best, device=src.device)
