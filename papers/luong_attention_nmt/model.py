"""Luong, Pham & Manning (EMNLP 2015): attention-based NMT with global and local
attention. Equation numbers follow arXiv 1508.04025v5.

* Section 2: a stacking-LSTM encoder-decoder; log p(y|x) = sum_j log p(y_j|y_<j, s)
  (eq. 1-3), trained on J = sum -log p(y|x) (eq. 4). Optional source reversal
  (Sutskever et al., Table 1 "+ reverse") and dropout on the non-recurrent connections
  (Zaremba et al., "+ dropout").
* Section 3: at each target step the top decoder state h_t gives a context c_t; then
  the attentional hidden state h~_t = tanh(W_c [c_t; h_t]) (eq. 5) and
  p(y_t|y_<t, x) = softmax(W_s h~_t) (eq. 6). Without attention, p = softmax(W_s h_t)
  (eq. 2 with g a softmax layer).
* Section 3.1 global attention: a_t(s) = softmax_s score(h_t, h̄_s) (eq. 7) over all
  source states, with score = dot h_t·h̄_s, general h_t^T W_a h̄_s, or concat
  v_a^T tanh(W_a [h_t; h̄_s]); the location-based variant a_t = softmax(W_a h_t) (eq. 8),
  whose fixed-length vector is cut to the sentence (footnote 6); c_t = sum_s a_t(s) h̄_s.
* Section 3.2 local attention over the window [p_t - D, p_t + D] (cut at the sentence
  boundaries, footnote 8): local-m sets p_t = t; local-p predicts
  p_t = S·sigmoid(v_p^T tanh(W_p h_t)) (eq. 9) and multiplies the window's alignment
  weights by exp(-(s - p_t)^2 / (2σ^2)), σ = D/2 (eq. 10).
* Section 3.3 input feeding: h~_{t-1} is concatenated with the input embedding of the
  next step (the first decoder layer's input grows from n to 2n, footnote 11).
* Decoding: beam search (the authors' decoder, ``testLSTM.m``; the paper does not state
  its beam size) with the official length bounds 0.5-1.5x the source length, and unk
  replacement (Section 4.2, after Luong et al. 2015 / Jean et al. 2015): every <unk> is
  replaced by the dictionary translation of its most-attended source word, or that word
  itself; the alignment of a word is read as in footnote 14.

Positions: source states are kept in the original word order even when the source is
read reversed, so p_t, the location scores and the gold alignments all index original
words; the source <eos> is the last position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import BOS, EOS, PAD, UNK, Vocab

ATTENTIONS = ("none", "global", "local_m", "local_p")
SCORES = ("dot", "general", "concat", "location")

# --------------------------------------------------------------------------- attention (Section 3)


class LuongAttention(nn.Module):
    """Context vectors and alignment weights for queries ``h`` (B, T, H) over source
    states ``mem`` (B, S, H); ``mask`` (B, S) marks real source positions and ``t_idx``
    (T,) the target positions (used by local-m)."""

    def __init__(self, hidden: int, kind: str = "global", score: str = "general", window: int = 10,
                 max_src_len: int = 51) -> None:
        super().__init__()
        if kind not in ATTENTIONS[1:]:
            raise ValueError(f"attention kind must be one of {ATTENTIONS[1:]}, got {kind!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.kind, self.score_fn, self.window, self.max_src_len = kind, score, window, max_src_len
        if score == "general":
            self.W_a = nn.Linear(hidden, hidden, bias=False)  # h_t^T W_a h̄_s
        elif score == "concat":
            self.W_a = nn.Linear(2 * hidden, hidden, bias=False)  # W_a [h_t; h̄_s]
            self.v_a = nn.Linear(hidden, 1, bias=False)
        elif score == "location":
            self.W_a = nn.Linear(hidden, max_src_len, bias=False)  # eq. 8: a_t = softmax(W_a h_t)
        if kind == "local_p":
            self.W_p = nn.Linear(hidden, hidden, bias=False)  # eq. 9
            self.v_p = nn.Linear(hidden, 1, bias=False)

    @property
    def sigma(self) -> float:
        return self.window / 2.0  # "the standard deviation is empirically set as σ = D/2"

    def project(self, mem: Tensor) -> Tensor | None:
        """The source-side factor of the score, computed once per sentence: h̄_s (dot),
        W_a h̄_s (general), the h̄_s half of W_a [h_t; h̄_s] (concat); none for location."""
        if self.score_fn == "dot":
            return mem
        if self.score_fn == "general":
            return self.W_a(mem)
        if self.score_fn == "concat":
            return mem @ self.W_a.weight[:, mem.shape[-1]:].t()
        return None

    def scores(self, h: Tensor, mem: Tensor, keys: Tensor | None = None) -> Tensor:
        """score(h_t, h̄_s) for every (t, s): (B, T, S). Eq. 7's alternatives, eq. 8 for location.
        ``keys`` = ``project(mem)`` when precomputed."""
        if keys is None:
            keys = self.project(mem)
        if self.score_fn in ("dot", "general"):  # h_t^T h̄_s, h_t^T W_a h̄_s
            return torch.bmm(h, keys.transpose(1, 2))
        if self.score_fn == "concat":  # v_a^T tanh(W_a [h_t; h̄_s])
            w_h = self.W_a.weight[:, : h.shape[-1]]
            pre = (h @ w_h.t()).unsqueeze(2) + keys.unsqueeze(1)  # (B, T, S, H)
            return self.v_a(torch.tanh(pre)).squeeze(-1)
        # location: the score depends on h_t only; positions past max_src_len are ignored
        # and shorter sentences use the top part of the vector (footnote 6)
        loc = self.W_a(h)  # (B, T, max_src_len)
        s = mem.shape[1]
        if s <= self.max_src_len:
            return loc[..., :s]
        pad = loc.new_full(loc.shape[:-1] + (s - self.max_src_len,), float("-inf"))
        return torch.cat([loc, pad], -1)

    def positions(self, h: Tensor, src_len: Tensor, t_idx: Tensor) -> Tensor:
        """Aligned source positions p_t (B, T) as real numbers (0-based)."""
        last = (src_len - 1).to(h.dtype).unsqueeze(1)  # index of the last source position
        if self.kind == "local_m":  # p_t = t, kept inside the sentence
            return torch.minimum(t_idx.to(h.dtype).unsqueeze(0).expand(h.shape[0], -1), last)
        # eq. 9, p_t = S * sigmoid(v_p^T tanh(W_p h_t)) in [0, S]; with 0-based positions the
        # sentence spans [0, S-1], so the sigmoid is scaled by S-1 (as the authors' code does)
        return last * torch.sigmoid(self.v_p(torch.tanh(self.W_p(h)))).squeeze(-1)

    def forward(self, h: Tensor, mem: Tensor, mask: Tensor, t_idx: Tensor | None = None,
                src_len: Tensor | None = None, keys: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Returns (context c_t (B, T, H), weights a_t (B, T, S), p_t (B, T) or None)."""
        sc = self.scores(h, mem, keys)
        valid = mask.unsqueeze(1).expand_as(sc)
        p = None
        if self.kind != "global":
            if src_len is None:
                src_len = mask.sum(1)
            if t_idx is None:
                t_idx = torch.arange(h.shape[1], device=h.device)
            p = self.positions(h, src_len, t_idx)
            s_idx = torch.arange(mem.shape[1], device=h.device, dtype=h.dtype).view(1, 1, -1)
            # window [p_t - D, p_t + D] around the integer position floor(p_t) (s is an integer
            # "within the window centered at p_t"); outside the sentence it is cut (footnote 8)
            centre = torch.floor(p).detach().unsqueeze(-1)
            valid = valid & ((s_idx - centre).abs() <= self.window)
        a = torch.softmax(sc.masked_fill(~valid, float("-inf")), dim=-1)  # eq. 7 (over the window if local)
        if self.kind == "local_p":
            s_idx = torch.arange(mem.shape[1], device=h.device, dtype=h.dtype).view(1, 1, -1)
            gauss = torch.exp(-((s_idx - p.unsqueeze(-1)) ** 2) / (2 * self.sigma ** 2))
            a = a * gauss  # eq. 10 (not renormalised: the EMNLP'15 model)
        return torch.bmm(a, mem), a, p


# --------------------------------------------------------------------------- helpers


def reverse_words(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse the first ``lengths - 1`` positions of every row (the words), keeping the
    last real position (<eos>) and the padding in place. Works on (B, S) and (B, S, H);
    applying it twice is the identity."""
    b, s = x.shape[:2]
    pos = torch.arange(s, device=x.device).unsqueeze(0).expand(b, -1)
    n_words = (lengths.to(x.device) - 1).unsqueeze(1)
    idx = torch.where(pos < n_words, n_words - 1 - pos, pos)
    if x.dim() == 3:
        idx = idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return x.gather(1, idx)


def lstm_step(lstm: nn.LSTM, x: Tensor, h: Tensor, c: Tensor, drop: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
    """One time step of a stacked ``nn.LSTM`` (batch_first, its own weights and gate
    order i, f, g, o) for inputs ``x`` (B, I) and states ``h``, ``c`` (L, B, H): cheaper
    than calling the fused module on length-1 sequences, and the same function (tested).
    ``drop`` is applied between layers, as ``nn.LSTM(dropout=...)`` does."""
    hs, cs = [], []
    inp = x
    for layer in range(lstm.num_layers):
        gates = F.linear(inp, getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"bias_ih_l{layer}")) + \
            F.linear(h[layer], getattr(lstm, f"weight_hh_l{layer}"), getattr(lstm, f"bias_hh_l{layer}"))
        i, f, g, o = gates.chunk(4, -1)
        c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        hs.append(h_new)
        cs.append(c_new)
        inp = drop(h_new) if layer < lstm.num_layers - 1 else h_new
    return inp, torch.stack(hs), torch.stack(cs)


def lstm_input_sizes(cfg) -> list[int]:
    """Per-layer input sizes of the decoder (footnote 11: 2n for the first layer with
    input feeding, n for the others; here the embedding size m stands for n)."""
    feed = cfg.feed_input and cfg.attention != "none"
    return [cfg.embed + (cfg.hidden if feed else 0)] + [cfg.hidden] * (cfg.layers - 1)


# --------------------------------------------------------------------------- decoding

StepFn = Callable[[Tensor, dict, int], tuple[Tensor, dict, "Tensor | None"]]


@dataclass
class Hypotheses:
    tokens: Tensor  # (B, T): words then </s>, PAD after it
    scores: Tensor  # (B,) total log-probability
    attn: Tensor | None  # (B, T, S) alignment weights of every output step


def _constrain(logp: Tensor, t: int, min_len: Tensor, max_len: Tensor) -> Tensor:
    """No <pad>/<s>; no </s> before ``min_len`` words; only </s> once ``max_len`` words
    have been emitted (the authors' decoder bounds, 0.5x and 1.5x the source length).
    ``logp`` is (B, K, V); the lengths are (B,)."""
    logp = logp.clone()
    logp[..., PAD] = float("-inf")
    logp[..., BOS] = float("-inf")
    early = (t < min_len).view(-1, 1)
    logp[..., EOS] = torch.where(early, torch.full_like(logp[..., EOS], float("-inf")), logp[..., EOS])
    late = (t >= max_len).view(-1, 1, 1)
    only_eos = torch.full_like(logp, float("-inf"))
    only_eos[..., EOS] = logp[..., EOS]
    return torch.where(late, only_eos, logp)


def beam_search(step: StepFn, state: dict[str, Tensor], batch: int, beam_size: int, max_len: Tensor,
                min_len: Tensor | None = None) -> Hypotheses:
    """Left-to-right beam search over ``step(tokens (N,), state, t) -> (log-probs (N, V),
    state, attn (N, S) | None)``; ``state`` tensors have leading dimension ``batch`` and
    are repeated per beam and reordered as beams are chosen. A beam that emitted </s>
    keeps its score (it may only extend with </s> at log-prob 0), so finished and open
    hypotheses compete on total log-probability; the best finished one is returned.
    ``beam_size=1`` is greedy decoding."""
    k = beam_size
    dev = next(iter(state.values())).device
    max_len = max_len.to(dev)
    min_len = torch.zeros_like(max_len) if min_len is None else min_len.to(dev)
    state = {n: v.repeat_interleave(k, 0) for n, v in state.items()}
    tokens = torch.full((batch * k,), BOS, dtype=torch.long, device=dev)
    scores = torch.full((batch, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep one live copy
    done = torch.zeros(batch, k, dtype=torch.bool, device=dev)
    seqs = torch.empty(batch, k, 0, dtype=torch.long, device=dev)
    attn_hist: Tensor | None = None
    base = (torch.arange(batch, device=dev) * k).unsqueeze(1)
    for t in range(int(max_len.max()) + 1):
        logp, state, attn = step(tokens, state, t)
        v = logp.shape[-1]
        logp = _constrain(logp.float().view(batch, k, v), t, min_len, max_len)
        frozen = torch.full_like(logp, float("-inf"))
        frozen[..., EOS] = 0.0
        logp = torch.where(done.unsqueeze(-1), frozen, logp)
        cand = (scores.unsqueeze(-1) + logp).view(batch, k * v)
        scores, idx = cand.topk(k, dim=-1)
        beam, word = idx // v, idx % v
        flat = (base + beam).view(-1)
        state = {n: x.index_select(0, flat) for n, x in state.items()}
        prev_done = done.gather(1, beam)
        seqs = torch.cat([seqs.gather(1, beam.unsqueeze(-1).expand(-1, -1, seqs.shape[-1])),
                          torch.where(prev_done, torch.full_like(word, PAD), word).unsqueeze(-1)], -1)
        if attn is not None:
            a = attn.view(batch, k, 1, -1)
            if attn_hist is None:
                attn_hist = a
            else:
                attn_hist = torch.cat([attn_hist.gather(1, beam.view(batch, k, 1, 1).expand(
                    -1, -1, attn_hist.shape[2], attn_hist.shape[3])), a.gather(1, beam.view(batch, k, 1, 1).expand(
                        -1, -1, 1, a.shape[-1]))], 2)
        done = prev_done | (word == EOS)
        tokens = word.view(-1)
        if bool(done.all()):
            break
    best = scores.argmax(-1)
    rows = torch.arange(batch, device=dev)
    return Hypotheses(seqs[rows, best], scores[rows, best],
                      attn_hist[rows, best] if attn_hist is not None else None)


def greedy_decode(step: StepFn, state: dict[str, Tensor], batch: int, max_len: Tensor,
                  min_len: Tensor | None = None) -> Hypotheses:
    """Pick the most probable word at every step (reference for ``beam_size=1``)."""
    dev = next(iter(state.values())).device
    max_len = max_len.to(dev)
    min_len = torch.zeros_like(max_len) if min_len is None else min_len.to(dev)
    tokens = torch.full((batch,), BOS, dtype=torch.long, device=dev)
    total = torch.zeros(batch, device=dev)
    done = torch.zeros(batch, dtype=torch.bool, device=dev)
    out, attns = [], []
    for t in range(int(max_len.max()) + 1):
        logp, state, attn = step(tokens, state, t)
        logp = _constrain(logp.float().unsqueeze(1), t, min_len, max_len).squeeze(1)
        best, word = logp.max(-1)
        total = total + torch.where(done, torch.zeros_like(best), best)
        out.append(torch.where(done, torch.full_like(word, PAD), word))
        if attn is not None:
            attns.append(attn)
        done = done | (word == EOS)
        tokens = word
        if bool(done.all()):
            break
    return Hypotheses(torch.stack(out, 1), total, torch.stack(attns, 1) if attns else None)


# --------------------------------------------------------------------------- alignments and unk replacement


def argmax_links(attn: Tensor, n_src_words: int, n_tgt_words: int, offset: int = 0) -> list[tuple[int, int]]:
    """One link per target word: its most-attended source *word* (the source </s> is not
    a word), read from output step t + ``offset`` (footnote 14: 0 for the predicted word,
    1 for the input word of the next step)."""
    rows = attn[:, :n_src_words]
    last = rows.shape[0] - 1
    return [(t, int(rows[min(t + offset, last)].argmax())) for t in range(n_tgt_words)]


def aer_counts(pred: list[tuple[int, int]], gold: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(|A ∩ S|, |A|, |S|): with sure links only (P = S),
    AER = 1 - 2|A ∩ S| / (|A| + |S|) (Och & Ney 2003)."""
    g = set(map(tuple, gold))
    return sum(1 for x in pred if tuple(x) in g), len(pred), len(g)


def replace_unks(ids: list[int], attn: Tensor | None, src_words: list[str], tgt_vocab: Vocab,
                 dictionary: dict[str, str], offset: int) -> list[str]:
    """Words of a hypothesis with every <unk> replaced by the dictionary translation of
    its most-attended source word, or by that word itself."""
    words = []
    for t, i in enumerate(ids):
        i = int(i)
        if i == EOS:
            break
        if i in (PAD, BOS):
            continue
        if i == UNK and attn is not None and src_words:
            row = attn[min(t + offset, attn.shape[0] - 1), :len(src_words)]
            src = src_words[int(row.argmax())]
            words.append(dictionary.get(src, src))
        else:
            words.append(tgt_vocab.itos[i])
    return words


# --------------------------------------------------------------------------- the model


class LuongNMT(L.LightningModule):
    """Stacking-LSTM encoder-decoder with optional Luong attention and input feeding,
    trained with teacher forcing (eq. 4), tested with beam search and BLEU."""

    def __init__(self, cfg, src_vocab: Vocab, tgt_vocab: Vocab, dictionary: dict[str, str] | None = None) -> None:
        super().__init__()
        if cfg.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {cfg.attention!r}")
        self.cfg, self.src_vocab, self.tgt_vocab = cfg, src_vocab, tgt_vocab
        self.dictionary = dictionary or {}
        h, m, n_layers = cfg.hidden, cfg.embed, cfg.layers
        self.use_attn = cfg.attention != "none"
        self.feed = bool(cfg.feed_input and self.use_attn)
        lstm_drop = cfg.dropout if n_layers > 1 else 0.0  # between stacked layers
        self.src_emb = nn.Embedding(len(src_vocab), m, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(len(tgt_vocab), m, padding_idx=PAD)
        self.encoder = nn.LSTM(m, h, n_layers, batch_first=True, dropout=lstm_drop)
        self.decoder = nn.LSTM(lstm_input_sizes(cfg)[0], h, n_layers, batch_first=True, dropout=lstm_drop)
        if self.use_attn:
            self.attn = LuongAttention(h, cfg.attention, cfg.score, cfg.window, cfg.max_train_len + 1)
            self.W_c = nn.Linear(2 * h, h, bias=False)  # eq. 5
        self.W_s = nn.Linear(h, len(tgt_vocab), bias=False)  # eq. 6 (eq. 2 without attention)
        self.drop = nn.Dropout(cfg.dropout)
        # "uniformly initialized in [-0.1, 0.1]": right for the paper's 1000-d model, where a
        # unit's pre-activation sums 1000 such products; with the cpu profile's 32-d embeddings
        # and 64 units the inputs stay ~30x smaller than PyTorch's N(0, 1) embeddings, and the
        # model learned nothing in its ~300 Adam steps (BLEU < 1, attention at chance). The
        # cpu profile therefore keeps PyTorch's fan-in-scaled defaults (init="torch").
        if cfg.init == "uniform":
            for p in self.parameters():
                nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
        elif cfg.init != "torch":
            raise ValueError(f"init must be uniform or torch, got {cfg.init!r}")
        # footnote 14: a content-based model's alignment for the word y_t is the one computed
        # at the next step (where y_t is the input); the location-based one at step t
        self.align_offset = 0 if cfg.score == "location" else 1
        self._saved_threads: int | None = None
        self._reset_test()

    # -- threads: a small recurrent model runs faster (and far more steadily on a loaded
    # 2-core machine) on one intra-op thread; the setting is restored when the stage ends
    def setup(self, stage: str) -> None:
        if self.cfg.torch_threads > 0 and self._saved_threads is None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.cfg.torch_threads)

    def teardown(self, stage: str) -> None:
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    # -- encoder (Section 2)
    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        x = reverse_words(src, src_len) if self.cfg.reverse else src
        emb = self.drop(self.src_emb(x))
        packed = nn.utils.rnn.pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        if self.cfg.reverse:  # back to the original word order (see the module docstring)
            out = reverse_words(out, src_len)
        return out, state

    # -- attentional output (eq. 5-6)
    def attend(self, h: Tensor, mem: Tensor, mask: Tensor, t_idx: Tensor, src_len: Tensor,
               keys: Tensor | None = None):
        if not self.use_attn:
            return h, None
        c, a, _ = self.attn(h, mem, mask, t_idx, src_len, keys)
        return torch.tanh(self.W_c(torch.cat([c, h], -1))), a

    def logits(self, h_tilde: Tensor) -> Tensor:
        return self.W_s(self.drop(h_tilde))

    def teacher_forced(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) for every target position given the reference prefix, and the
        alignment weights (B, T, S)."""
        src, src_len, tgt_in = batch["src"], batch["src_len"], batch["tgt_in"]
        mem, state = self.encode(src, src_len)
        mask = src != PAD
        emb = self.tgt_emb(tgt_in)
        n_t = tgt_in.shape[1]
        if not self.feed:  # every step at once: h_t does not depend on h~_{t-1}
            h, _ = self.decoder(self.drop(emb), state)
            h_tilde, a = self.attend(h, mem, mask, torch.arange(n_t, device=src.device), src_len)
            return self.logits(h_tilde), a
        feed = emb.new_zeros(emb.shape[0], self.cfg.hidden)
        hs, cs = state
        keys = self.attn.project(mem)
        outs, attns = [], []
        for t, e in enumerate(emb.unbind(1)):  # input feeding (Section 3.3): [emb(y_{t-1}); h~_{t-1}]
            x = self.drop(torch.cat([e, feed], -1))
            h, hs, cs = lstm_step(self.decoder, x, hs, cs, self.drop)
            feed, a = self.attend(h.unsqueeze(1), mem, mask, torch.full((1,), t, device=src.device), src_len, keys)
            feed = feed.squeeze(1)
            outs.append(feed)
            attns.append(a.squeeze(1))
        return self.logits(torch.stack(outs, 1)), torch.stack(attns, 1)

    def nll(self, logits: Tensor, tgt_out: Tensor) -> tuple[Tensor, int]:
        """Summed token NLL (eq. 4) and the number of target tokens (words + </s>)."""
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tgt_out.reshape(-1),
                               ignore_index=PAD, reduction="sum")
        return loss, int((tgt_out != PAD).sum())

    # -- decoding
    def decode_state(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        mem, (h, c) = self.encode(batch["src"], batch["src_len"])
        b = mem.shape[0]
        st = {"h": h.transpose(0, 1).contiguous(), "c": c.transpose(0, 1).contiguous(), "mem": mem,
              "mask": batch["src"] != PAD, "src_len": batch["src_len"].to(mem.device),
              "feed": mem.new_zeros(b, self.cfg.hidden)}
        keys = self.attn.project(mem) if self.use_attn else None
        if keys is not None:
            st["keys"] = keys
        return st

    def step(self, tokens: Tensor, st: dict[str, Tensor], t: int):
        x = self.tgt_emb(tokens)
        if self.feed:
            x = torch.cat([x, st["feed"]], -1)
        h, hn, cn = lstm_step(self.decoder, self.drop(x), st["h"].transpose(0, 1), st["c"].transpose(0, 1), self.drop)
        h = h.unsqueeze(1)
        h_tilde, a = self.attend(h, st["mem"], st["mask"], torch.full((1,), t, device=x.device), st["src_len"],
                                 st.get("keys"))
        logp = torch.log_softmax(self.logits(h_tilde.squeeze(1)).float(), -1)
        new = dict(st, h=hn.transpose(0, 1), c=cn.transpose(0, 1), feed=h_tilde.squeeze(1))
        return logp, new, (a.squeeze(1) if a is not None else None)

    def length_bounds(self, src_len: Tensor) -> tuple[Tensor, Tensor]:
        words = (src_len - 1).float()
        max_len = torch.ceil(words * self.cfg.max_len_ratio).long().clamp_min(1)
        min_len = torch.floor(words * self.cfg.min_len_ratio).long()
        return max_len, torch.minimum(min_len, max_len)

    @torch.no_grad()
    def translate(self, batch: dict[str, Any], beam_size: int | None = None) -> Hypotheses:
        max_len, min_len = self.length_bounds(batch["src_len"])
        k = beam_size or self.cfg.beam_size
        return beam_search(self.step, self.decode_state(batch), batch["src"].shape[0], k, max_len, min_len)

    # -- Lightning
    def training_step(self, batch, batch_idx):
        logits, _ = self.teacher_forced(batch)
        loss, n_tok = self.nll(logits, batch["tgt_out"])
        b = batch["src"].shape[0]
        loss = loss / b  # per sentence: the gradient norm clipped at 5 is the batch-normalised one
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=b)
        self.log("train/ppl", torch.exp(loss.detach() * b / max(n_tok, 1)), batch_size=b)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = [0.0, 0]

    def validation_step(self, batch, batch_idx):
        logits, _ = self.teacher_forced(batch)
        loss, n_tok = self.nll(logits, batch["tgt_out"])
        self._val[0] += float(loss)
        self._val[1] += n_tok
        self.log("val/loss", loss / batch["src"].shape[0], batch_size=batch["src"].shape[0])

    def on_validation_epoch_end(self) -> None:
        if self._val[1]:
            self.log("val/ppl", math.exp(self._val[0] / self._val[1]))

    def _reset_test(self) -> None:
        self._t = {"nll": 0.0, "tok": 0, "hyps": [], "hyps_unk": [], "refs": [], "inter": 0, "pred": 0,
                   "gold": 0, "inter_next": 0, "pred_next": 0, "correct": 0, "n_gold": 0, "example": None}

    def on_test_epoch_start(self) -> None:
        self._reset_test()

    def test_step(self, batch, batch_idx):
        r = self._t
        logits, attn = self.teacher_forced(batch)
        loss, n_tok = self.nll(logits, batch["tgt_out"])
        r["nll"] += float(loss)
        r["tok"] += n_tok
        if attn is not None and batch.get("align") is not None and batch["align"][0] is not None:
            self._alignment_stats(batch, attn)
        hyp = self.translate(batch)
        for i, ids in enumerate(hyp.tokens.tolist()):
            r["hyps"].append(" ".join(self.tgt_vocab.words(ids)))
            r["refs"].append(batch["ref"][i])
            if self.use_attn:
                a = hyp.attn[i] if hyp.attn is not None else None
                r["hyps_unk"].append(" ".join(replace_unks(ids, a, batch["src_words"][i], self.tgt_vocab,
                                                           self.dictionary, self.align_offset)))

    def _alignment_stats(self, batch, attn: Tensor) -> None:
        """Forced decoding of the reference (Section 5.4): each target word is linked to
        its most-attended source word; AER against the gold links."""
        r = self._t
        for i, gold in enumerate(batch["align"]):
            n_src = int(batch["src_len"][i]) - 1
            n_tgt = int(batch["tgt_len"][i]) - 1
            a = attn[i, : n_tgt + 1].float().cpu()
            pred = argmax_links(a, n_src, n_tgt, offset=0)
            inter, n_pred, n_gold = aer_counts(pred, gold)
            r["inter"] += inter
            r["pred"] += n_pred
            r["gold"] += n_gold
            nxt = aer_counts(argmax_links(a, n_src, n_tgt, offset=1), gold)
            r["inter_next"] += nxt[0]
            r["pred_next"] += nxt[1]
            gold_of = dict(gold)
            r["correct"] += sum(1 for t, s in pred if gold_of.get(t) == s)
            r["n_gold"] += len(gold_of)
            if r["example"] is None:
                r["example"] = (a[:n_tgt, :n_src].clone(), gold, batch["src_words"][i], batch["ref"][i].split())

    def on_test_epoch_end(self) -> None:
        from repro.metrics.text import corpus_bleu

        r = self._t
        if r["tok"]:
            self.log("test/ppl", math.exp(r["nll"] / r["tok"]))
        if r["hyps"]:
            # tokenized BLEU: the text is already tokenized, so sacreBLEU with tokenize="none"
            # counts n-grams exactly as multi-bleu.perl does (case-sensitive, one reference)
            self.log("test/bleu", corpus_bleu(r["hyps"], r["refs"], tokenize="none").score)
            if r["hyps_unk"]:
                self.log("test/bleu_unk", corpus_bleu(r["hyps_unk"], r["refs"], tokenize="none").score)
        if r["pred"] + r["gold"]:
            self.log("test/aer", 1.0 - 2.0 * r["inter"] / (r["pred"] + r["gold"]))
            self.log("test/aer_next", 1.0 - 2.0 * r["inter_next"] / (r["pred_next"] + r["gold"]))
            self.log("test/align_acc", r["correct"] / max(r["n_gold"], 1))
        if r["example"] is not None:
            self._alignment_figure(*r["example"])

    def _alignment_figure(self, attn: Tensor, gold, src_words, tgt_words) -> None:
        """Appendix A style: alignment weights of the first test sentence, gold links
        marked, into <run>/figures (only inside an engine run)."""
        from pathlib import Path

        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return
        root = Path(trainer.default_root_dir)
        if root.parent.name != "units":
            return
        out = root.parent.parent / "figures"
        out.mkdir(parents=True, exist_ok=True)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(0.35 * len(src_words) + 2, 0.35 * len(tgt_words) + 1.5))
        ax.imshow(attn.numpy(), cmap="gray_r", vmin=0, vmax=1, aspect="auto")
        ax.scatter([s for _, s in gold], [t for t, _ in gold], marker="o", facecolors="none", edgecolors="red",
                   s=60, label="gold")
        ax.set_xticks(range(len(src_words)), src_words, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tgt_words)), tgt_words, fontsize=7)
        ax.set_title(f"{self.cfg.attention} ({self.cfg.score})", fontsize=8)
        ax.legend(fontsize=6, loc="lower left")
        fig.tight_layout()
        fig.savefig(out / f"alignment_{root.name}.png", dpi=90)
        plt.close(fig)

    def configure_optimizers(self):
        if self.cfg.optimizer == "adam":
            opt = torch.optim.Adam(self.parameters(), lr=self.cfg.lr)
        elif self.cfg.optimizer == "sgd":  # "plain SGD"
            opt = torch.optim.SGD(self.parameters(), lr=self.cfg.lr)
        else:
            raise ValueError(f"optimizer must be sgd or adam, got {self.cfg.optimizer!r}")
        halve_after = self.cfg.halve_after

        def factor(epoch: int) -> float:  # full rate for `halve_after` epochs, then halve every epoch
            return 1.0 if halve_after <= 0 else 0.5 ** max(0, epoch - halve_after + 1)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
