"""Batched beam search and greedy decoding for sequence-to-sequence models.

The model is seen through one function, ``step(tokens, state) -> (log_probs, state)``:
``tokens`` is ``(N, t)``, every token so far starting with ``bos`` (an incremental
decoder reads only the last column), ``log_probs`` is ``(N, V)`` for the next token.
``state`` is any nest of dicts/lists/tuples whose tensors all have the batch in
dimension 0 (encoder output, padding mask, key/value caches); the search repeats it
for the beams and reorders it as beams are chosen (``reorder_state``). Everything else
in it (ints such as a step counter) is passed through unchanged.

Search (the usual NMT beam search, as in fairseq's ``SequenceGenerator``; our own code):
at each step every live hypothesis is extended by every token; of the 2K best
candidates, those ending in ``eos`` *and ranked within the top K* are finished, and
the K best others continue. A sentence is done when it has K finished hypotheses or
reached its maximum length (then ``eos`` is forced). Finished hypotheses are ranked
by log P(Y|X) / lp(|Y|), |Y| counting the generated tokens including ``eos``:

- ``penalty="gnmt"``: lp = ((5 + |Y|) / 6) ** alpha, Wu et al. (2016), "Google's
  Neural Machine Translation System", Eq. 14 (the coverage term is not implemented);
  the form tensor2tensor's beam search and OpenNMT-py's ``-length_penalty wu`` use.
- ``penalty="power"``: lp = |Y| ** alpha, the normalisation of fairseq (``--lenpen``)
  and Marian (``--normalize``).

``alpha = 0`` ranks by raw log-probability. With ``beam_size=1`` the search is exactly
greedy decoding. The maximum output length (tokens before ``eos``) is per sentence,
``max_len_a * source length + max_len_b`` (``max_lengths``); fairseq uses the padded
batch length instead, which makes results depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Any], "tuple[Tensor, Any]"]


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens, without bos and eos
    score: float  # log_prob / lp(len(tokens) + 1): the ranking score
    log_prob: float  # sum of the token log-probabilities, eos included


def length_penalty(length: int, alpha: float, penalty: str = "gnmt") -> float:
    """lp(|Y|) of the module docstring; ``length`` counts ``eos``."""
    if penalty == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if penalty == "power":
        return float(length) ** alpha
    raise ValueError(f"unknown length penalty {penalty!r} (gnmt | power)")


def max_lengths(src_lengths: Tensor, a: float, b: int, limit: int | None = None) -> Tensor:
    """Per-sentence output limit floor(a * |X| + b) (optionally capped at ``limit``)."""
    out = torch.floor(src_lengths.double() * a + b).long().clamp_min(0)
    return out if limit is None else out.clamp_max(limit)


def reorder_state(state: Any, index: Tensor) -> Any:
    """``state`` with every tensor indexed by ``index`` along dimension 0."""
    if isinstance(state, Tensor):
        return state.index_select(0, index.to(state.device))
    if isinstance(state, dict):
        return {k: reorder_state(v, index) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(reorder_state(v, index) for v in state)
    return state


def _limits(max_len: int | Tensor, batch: int) -> Tensor:
    if isinstance(max_len, Tensor):
        if max_len.shape != (batch,):
            raise ValueError(f"max_len must be an int or a ({batch},) tensor, got shape {tuple(max_len.shape)}")
        return max_len.long().cpu()
    return torch.full((batch,), int(max_len), dtype=torch.long)


@torch.no_grad()
def greedy_search(step: StepFn, state: Any, batch: int, *, bos: int, eos: int, max_len: int | Tensor,
                  device: torch.device | str | None = None, reorder: Callable[[Any, Tensor], Any] = reorder_state,
                  ) -> list[Hypothesis]:
    """Arg-max decoding; one ``Hypothesis`` per sentence (score = log-probability).
    ``eos`` is forced once a sentence has ``max_len`` tokens."""
    del reorder  # no beams to reorder; kept for a signature like beam_search's
    limits = _limits(max_len, batch)
    tokens = torch.full((batch, 1), bos, dtype=torch.long, device=device)
    logp_sum = torch.zeros(batch, dtype=torch.float64)
    done = torch.zeros(batch, dtype=torch.bool)
    out: list[list[int]] = [[] for _ in range(batch)]
    for t in range(int(limits.max()) + 1):
        lp, state = step(tokens, state)
        lp = lp.float().cpu()
        force = limits <= t
        word = torch.where(force, torch.full_like(limits, eos), lp.argmax(-1))
        gained = lp.gather(1, word[:, None])[:, 0].double()
        logp_sum += torch.where(done, torch.zeros_like(gained), gained)
        for b in (~done & (word != eos)).nonzero()[:, 0].tolist():
            out[b].append(int(word[b]))
        done |= word == eos
        if bool(done.all()):
            break
        # finished rows keep feeding eos; their outputs are ignored
        nxt = torch.where(done, torch.full_like(word, eos), word)
        tokens = torch.cat([tokens, nxt[:, None].to(tokens.device)], dim=1)
    return [Hypothesis(out[b], float(logp_sum[b]), float(logp_sum[b])) for b in range(batch)]


@torch.no_grad()
def beam_search(step: StepFn, state: Any, batch: int, *, bos: int, eos: int, beam_size: int,
                max_len: int | Tensor, alpha: float = 0.0, penalty: str = "gnmt", n_best: int = 1,
                device: torch.device | str | None = None, reorder: Callable[[Any, Tensor], Any] = reorder_state,
                ) -> list[list[Hypothesis]]:
    """Batched beam search (see the module docstring); returns for each sentence its
    ``n_best`` finished hypotheses, best first. ``state`` has batch size ``batch``."""
    k = beam_size
    if not 1 <= n_best <= k:
        raise ValueError(f"n_best must be in [1, beam_size={k}], got {n_best}")
    length_penalty(1, alpha, penalty)  # validate the name early
    limits = _limits(max_len, batch)
    state = reorder(state, torch.arange(batch).repeat_interleave(k))
    tokens = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
    # all K beams start as the same prefix: keep one live copy, or the K best would be K copies
    scores = torch.full((batch, k), float("-inf"), dtype=torch.float64)
    scores[:, 0] = 0.0
    done = torch.zeros(batch, dtype=torch.bool)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    base = (torch.arange(batch) * k)[:, None]
    for t in range(int(limits.max()) + 1):  # t = tokens generated so far (bos not counted)
        lp, state = step(tokens, state)
        v = lp.shape[-1]
        if v < 2:
            raise ValueError("the vocabulary needs at least two tokens")
        lp = lp.detach().to("cpu", torch.float64).view(batch, k, v)
        force = limits <= t
        if bool(force.any()):  # at the length limit only eos may follow
            only_eos = torch.full_like(lp, float("-inf"))
            only_eos[..., eos] = lp[..., eos]
            lp = torch.where(force[:, None, None], only_eos, lp)
        cand = (scores[..., None] + lp).view(batch, k * v)
        top, idx = cand.topk(2 * k, dim=1)  # at most K end in eos (one per beam), so >= K others remain
        beam, word = idx // v, idx % v
        is_eos = word == eos
        finish = is_eos[:, :k] & torch.isfinite(top[:, :k]) & ~done[:, None]
        lp_norm = length_penalty(t + 1, alpha, penalty)
        for b, j in finish.nonzero().tolist():
            if len(finished[b]) < k:
                seq = tokens[int(base[b, 0] + beam[b, j]), 1:].tolist()
                s = float(top[b, j])
                finished[b].append(Hypothesis(seq, s / lp_norm, s))
        alive, pick = top.masked_fill(is_eos, float("-inf")).topk(k, dim=1)
        src_beam = (base + beam.gather(1, pick)).view(-1)
        new_words = word.gather(1, pick).view(-1, 1).to(tokens.device)
        tokens = torch.cat([tokens[src_beam.to(tokens.device)], new_words], dim=1)
        done |= force | torch.tensor([len(f) >= k for f in finished])
        scores = alive.masked_fill(done[:, None], float("-inf"))
        if bool(done.all()):
            break
        state = reorder(state, src_beam)
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


__all__ = ["Hypothesis", "beam_search", "greedy_search", "length_penalty", "max_lengths", "reorder_state"]
