"""Unit tests: score functions and location attention on hand-computed cases, the local-p
Gaussian window, input feeding, beam search against exhaustive search and a known
answer, greedy == beam 1, masking, the decoder's step path against teacher forcing,
alignment/unk-replacement helpers, the synthetic task and the data layout."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from papers.luong_attention_nmt import data as D
from papers.luong_attention_nmt.model import (
    LuongAttention, LuongNMT, aer_counts, argmax_links, beam_search, greedy_decode, lstm_input_sizes, lstm_step,
    replace_unks, reverse_words,
)
from papers.luong_attention_nmt.recipe import CPU_CONFIG, SMOKE_CONFIG, Config

pytestmark = pytest.mark.unit


def _tiny_cfg(**kw) -> Config:
    base = dict(dataset="synthetic", embed=6, hidden=5, layers=2, dropout=0.0, window=2, attention="global",
                score="general", feed_input=True, reverse=True, beam_size=3, max_len_ratio=1.5, min_len_ratio=0.0)
    base.update(kw)
    return dataclasses.replace(SMOKE_CONFIG, **base)


def _batch(pairs, sv, tv):
    items = []
    for i, (s, t) in enumerate(pairs):
        items.append({"src": torch.tensor(sv.ids(s)), "tgt": torch.tensor(tv.ids(t)), "idx": i, "src_words": s,
                      "ref": " ".join(t), "align": None})
    return D.collate(items)


# --------------------------------------------------------------------------- score functions (eq. 7-8)


def _attn(kind="global", score="dot", hidden=2, window=2, max_src_len=4):
    a = LuongAttention(hidden, kind, score, window, max_src_len)
    return a


def test_dot_score_hand_computed():
    att = _attn(score="dot")
    h = torch.tensor([[[1.0, 0.0]]])  # (B=1, T=1, H=2)
    mem = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, S=2, 2)
    assert torch.allclose(att.scores(h, mem), torch.tensor([[[1.0, 3.0]]]))
    ctx, a, _ = att(h, mem, torch.ones(1, 2, dtype=torch.bool))
    w = torch.softmax(torch.tensor([1.0, 3.0]), 0)
    assert torch.allclose(a[0, 0], w)
    assert torch.allclose(ctx[0, 0], w[0] * mem[0, 0] + w[1] * mem[0, 1])


def test_general_score_hand_computed():
    att = _attn(score="general")
    with torch.no_grad():
        att.W_a.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))  # W_a h̄ = (h̄_2, 2 h̄_1)
    h = torch.tensor([[[1.0, 1.0]]])
    mem = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # h^T W_a h̄_1 = 1*2 + 1*2 = 4 ; h^T W_a h̄_2 = 4 + 6 = 10
    assert torch.allclose(att.scores(h, mem), torch.tensor([[[4.0, 10.0]]]))


def test_concat_score_hand_computed():
    att = _attn(score="concat")
    with torch.no_grad():
        # W_a [h; h̄] with W_a = [[1, 0, 1, 0], [0, 1, 0, -1]], v_a = (1, 2)
        att.W_a.weight.copy_(torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]))
        att.v_a.weight.copy_(torch.tensor([[1.0, 2.0]]))
    h = torch.tensor([[[0.5, -0.5]]])
    mem = torch.tensor([[[1.0, 2.0], [-1.0, 0.0]]])
    want = []
    for hb in mem[0]:
        pre = torch.tensor([0.5 + hb[0], -0.5 - hb[1]])
        want.append(float(torch.tanh(pre)[0] + 2 * torch.tanh(pre)[1]))
    assert torch.allclose(att.scores(h, mem), torch.tensor([[want]]), atol=1e-6)


def test_location_score_uses_h_only_and_is_cut_to_the_sentence():
    att = _attn(score="location", max_src_len=4)
    with torch.no_grad():
        att.W_a.weight.copy_(torch.arange(8, dtype=torch.float).view(4, 2))  # rows (0,1),(2,3),(4,5),(6,7)
    h = torch.tensor([[[1.0, 1.0]]])
    mem3 = torch.randn(1, 3, 2)
    # a_t = softmax(W_a h_t) over the first S entries (footnote 6): scores 1, 5, 9
    assert torch.allclose(att.scores(h, mem3), torch.tensor([[[1.0, 5.0, 9.0]]]))
    _, a, _ = att(h, mem3 * 100, torch.ones(1, 3, dtype=torch.bool))  # source states do not matter
    assert torch.allclose(a[0, 0], torch.softmax(torch.tensor([1.0, 5.0, 9.0]), 0))
    # longer than max_src_len: positions past it get no weight
    _, a6, _ = att(h, torch.randn(1, 6, 2), torch.ones(1, 6, dtype=torch.bool))
    assert torch.all(a6[0, 0, 4:] == 0) and math.isclose(float(a6.detach().sum()), 1.0, rel_tol=1e-6)


# --------------------------------------------------------------------------- local attention (eq. 9-10)


def test_local_p_gaussian_window_hand_computed():
    att = _attn(kind="local_p", score="dot", hidden=2, window=2)
    with torch.no_grad():
        att.v_p.weight.zero_()  # sigmoid(0) = 0.5 -> p_t = (S - 1) / 2
    s = 12
    mem = torch.zeros(1, s, 2)  # all scores 0: uniform alignment over the window
    h = torch.ones(1, 1, 2)
    ctx, a, p = att(h, mem, torch.ones(1, s, dtype=torch.bool))
    assert math.isclose(float(p.detach()), 5.5)
    sig = att.sigma
    assert sig == 1.0  # D / 2
    # window [floor(p) - D, floor(p) + D] = [3, 7]; align = 1/5 each; times exp(-(s-p)^2 / 2 sigma^2)
    want = torch.zeros(s)
    for j in range(3, 8):
        want[j] = 0.2 * math.exp(-((j - 5.5) ** 2) / (2 * sig**2))
    assert torch.allclose(a[0, 0], want, atol=1e-6)


def test_local_p_window_is_cut_at_the_sentence_boundary_and_padding():
    att = _attn(kind="local_p", score="dot", hidden=2, window=2)
    with torch.no_grad():
        att.W_p.weight.fill_(1.0)
        att.v_p.weight.fill_(-50.0)  # sigmoid -> 0: p_t = 0
    mem = torch.randn(2, 6, 2)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    _, a, p = att(torch.ones(2, 1, 2), mem, mask)
    assert torch.allclose(p, torch.zeros(2, 1), atol=1e-6)
    assert torch.all(a[:, 0, 3:] == 0)  # outside [0 - 2, 0 + 2]
    pre = torch.softmax((torch.ones(2, 1, 2) @ mem.transpose(1, 2))[:, 0, :3], -1)
    gauss = torch.exp(-torch.arange(3.0) ** 2 / 2)
    assert torch.allclose(a[:, 0, :3], pre * gauss, atol=1e-6)


def test_local_m_aligns_monotonically_and_clamps():
    att = _attn(kind="local_m", score="dot", hidden=2, window=1)
    mem = torch.randn(1, 5, 2)
    mask = torch.tensor([[True, True, True, False, False]])
    h = torch.randn(1, 4, 2)
    _, a, p = att(h, mem, mask, torch.arange(4))
    assert p.tolist() == [[0.0, 1.0, 2.0, 2.0]]  # p_t = t, clamped to the last real position
    for t, centre in enumerate([0, 1, 2, 2]):
        outside = [j for j in range(5) if abs(j - centre) > 1 or j >= 3]
        assert torch.all(a[0, t, outside] == 0)
        assert math.isclose(float(a[0, t].sum()), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("kind,score", [("global", "dot"), ("global", "general"), ("global", "concat"),
                                        ("global", "location"), ("local_m", "general")])
def test_weights_sum_to_one_and_ignore_padding(kind, score):
    torch.manual_seed(0)
    att = LuongAttention(4, kind, score, window=2, max_src_len=8)
    mem = torch.randn(3, 7, 4)
    lens = torch.tensor([7, 4, 2])
    mask = torch.arange(7).unsqueeze(0) < lens.unsqueeze(1)
    _, a, _ = att(torch.randn(3, 5, 4), mem, mask, torch.arange(5), lens)
    assert torch.allclose(a.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert torch.all(a.masked_select(~mask.unsqueeze(1).expand_as(a)) == 0)


def test_local_p_weights_never_exceed_one_and_ignore_padding():
    torch.manual_seed(0)
    att = LuongAttention(4, "local_p", "general", window=2)
    lens = torch.tensor([7, 3])
    mask = torch.arange(7).unsqueeze(0) < lens.unsqueeze(1)
    _, a, p = att(torch.randn(2, 5, 4), torch.randn(2, 7, 4), mask, None, lens)
    assert torch.all(a.sum(-1) <= 1 + 1e-6) and torch.all(a.sum(-1) > 0)
    assert torch.all(a.masked_select(~mask.unsqueeze(1).expand_as(a)) == 0)
    assert torch.all(p >= 0) and torch.all(p <= (lens - 1).unsqueeze(1))


# --------------------------------------------------------------------------- model pieces


def test_input_feeding_changes_the_decoder_input_size():
    sv, tv = D.Vocab(["a", "b"]), D.Vocab(["x", "y"])
    fed = LuongNMT(_tiny_cfg(feed_input=True), sv, tv)
    plain = LuongNMT(_tiny_cfg(feed_input=False), sv, tv)
    none = LuongNMT(_tiny_cfg(attention="none", feed_input=True), sv, tv)
    assert fed.decoder.input_size == 6 + 5 and lstm_input_sizes(_tiny_cfg(feed_input=True)) == [11, 5]
    assert plain.decoder.input_size == 6 and none.decoder.input_size == 6  # no h~ without attention
    assert not hasattr(none, "attn")


def test_reverse_words_keeps_eos_and_padding():
    x = torch.tensor([[5, 6, 7, 2, 0], [8, 9, 2, 0, 0]])
    lens = torch.tensor([4, 3])
    r = reverse_words(x, lens)
    assert r.tolist() == [[7, 6, 5, 2, 0], [9, 8, 2, 0, 0]]
    assert torch.equal(reverse_words(r, lens), x)


def test_lstm_step_equals_the_fused_lstm():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, 2, batch_first=True)
    x = torch.randn(2, 5, 3)
    ref, (hn, cn) = lstm(x)
    h = torch.zeros(2, 2, 4)
    c = torch.zeros(2, 2, 4)
    outs = []
    for t in range(5):
        o, h, c = lstm_step(lstm, x[:, t], h, c, torch.nn.Identity())
        outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), ref, atol=1e-6)
    assert torch.allclose(h, hn, atol=1e-6) and torch.allclose(c, cn, atol=1e-6)


@pytest.mark.parametrize("attention,score,feed", [("none", "general", False), ("global", "general", True),
                                                  ("global", "location", False), ("local_m", "dot", True),
                                                  ("local_p", "concat", True), ("local_p", "general", False)])
def test_step_path_matches_teacher_forcing(attention, score, feed):
    """Decoding's step function gives the same log-probabilities as the training
    forward pass (eval mode), for every attention type, with and without feeding."""
    torch.manual_seed(1)
    sv, tv = D.Vocab(["a", "b", "c", "d"]), D.Vocab(["w", "x", "y", "z"])
    m = LuongNMT(_tiny_cfg(attention=attention, score=score, feed_input=feed), sv, tv).eval()
    b = _batch([(["a", "b", "c"], ["w", "x"]), (["d"], ["y", "z", "w"])], sv, tv)
    with torch.no_grad():
        logits, _ = m.teacher_forced(b)
        st = m.decode_state(b)
        for t in range(b["tgt_in"].shape[1]):
            logp, st, _ = m.step(b["tgt_in"][:, t], st, t)
            assert torch.allclose(logp, torch.log_softmax(logits[:, t], -1), atol=1e-5)


def test_reversal_changes_the_encoding_but_not_the_positions():
    torch.manual_seed(0)
    sv, tv = D.Vocab(["a", "b", "c"]), D.Vocab(["x"])
    m = LuongNMT(_tiny_cfg(reverse=True), sv, tv).eval()
    fwd = LuongNMT(_tiny_cfg(reverse=False), sv, tv).eval()
    fwd.load_state_dict(m.state_dict())
    b = _batch([(["a", "b", "c"], ["x"])], sv, tv)
    rev_b = dict(b, src=reverse_words(b["src"], b["src_len"]))
    with torch.no_grad():
        mem_r, _ = m.encode(b["src"], b["src_len"])
        mem_f, _ = fwd.encode(rev_b["src"], rev_b["src_len"])
    # reading "c b a </s>" forwards = reading "a b c </s>" reversed; states return to word order
    assert torch.allclose(mem_r, reverse_words(mem_f, b["src_len"]), atol=1e-6)


# --------------------------------------------------------------------------- decoding


def _exhaustive_best(m, batch, max_len):
    """Score every output of at most ``max_len`` words (then </s>) with the step function."""
    words = [i for i in range(len(m.tgt_vocab)) if i not in (D.PAD, D.BOS, D.EOS)]
    best, best_seq = -math.inf, None
    for n in range(max_len + 1):
        for seq in itertools.product(words, repeat=n):
            full = list(seq) + [D.EOS]
            st = m.decode_state(batch)
            tok = torch.tensor([D.BOS])
            total = 0.0
            for t, w in enumerate(full):
                logp, st, _ = m.step(tok, st, t)
                total += float(logp[0, w])
                tok = torch.tensor([w])
            if total > best:
                best, best_seq = total, full
    return best, best_seq


def test_beam_search_equals_exhaustive_search_on_a_tiny_model():
    torch.manual_seed(3)
    sv, tv = D.Vocab(["a", "b"]), D.Vocab(["x", "y"])
    for attention in ("none", "global"):
        m = LuongNMT(_tiny_cfg(attention=attention, init_range=1.5), sv, tv).eval()
        b = _batch([(["a", "b"], ["x"])], sv, tv)
        max_len = torch.tensor([3])
        with torch.no_grad():
            want, seq = _exhaustive_best(m, b, 3)
            hyp = beam_search(m.step, m.decode_state(b), 1, 64, max_len)  # beam wider than the search space
        got = hyp.tokens[0].tolist()
        assert got[: len(seq)] == seq and all(t == D.PAD for t in got[len(seq):])
        assert math.isclose(float(hyp.scores[0]), want, rel_tol=1e-5, abs_tol=1e-5)


def test_beam_search_finds_the_known_better_answer_that_greedy_misses():
    """A fixed bigram table: greedy takes 'a' (0.5) and ends with total 0.5/3, beam
    size 2 keeps 'b' (0.4), whose continuation </s> has probability 1: answer b </s>."""
    a, b_, v = 4, 5, 6
    table = torch.full((v, v), 1e-9)
    table[D.BOS, a], table[D.BOS, b_], table[D.BOS, D.EOS] = 0.5, 0.4, 0.1
    table[a, a], table[a, b_], table[a, D.EOS] = 1 / 3, 1 / 3, 1 / 3
    table[b_, D.EOS] = 1.0
    logt = torch.log(table / table.sum(-1, keepdim=True))

    def step(tokens, state, t):
        return logt[tokens], state, None

    state = {"dummy": torch.zeros(1, 1)}
    beam = beam_search(step, state, 1, 2, torch.tensor([4]))
    greedy = greedy_decode(step, state, 1, torch.tensor([4]))
    assert beam.tokens[0].tolist()[:2] == [b_, D.EOS]
    assert math.isclose(float(beam.scores[0]), math.log(0.4), rel_tol=1e-4)
    assert greedy.tokens[0, 0] == a and float(greedy.scores[0]) < math.log(0.4)


def test_greedy_equals_beam_size_one_and_length_bounds_hold():
    torch.manual_seed(5)
    sv, tv = D.Vocab(list("abcdef")), D.Vocab(list("uvwxyz"))
    m = LuongNMT(_tiny_cfg(attention="local_p", feed_input=True, init_range=1.0, min_len_ratio=0.5), sv, tv).eval()
    b = _batch([(list("abcdef"), ["u"]), (list("ab"), ["v"]), (list("fedcb"), ["w"])], sv, tv)
    max_len, min_len = m.length_bounds(b["src_len"])
    assert max_len.tolist() == [9, 3, 8] and min_len.tolist() == [3, 1, 2]
    with torch.no_grad():
        g = greedy_decode(m.step, m.decode_state(b), 3, max_len, min_len)
        k1 = beam_search(m.step, m.decode_state(b), 3, 1, max_len, min_len)
    n = k1.tokens.shape[1]
    assert torch.equal(g.tokens[:, :n], k1.tokens) and torch.all(g.tokens[:, n:] == D.PAD)
    assert torch.allclose(g.scores, k1.scores, atol=1e-5)
    for row, lo, hi in zip(k1.tokens.tolist(), min_len.tolist(), max_len.tolist()):
        words = row.index(D.EOS)
        assert lo <= words <= hi
    # the attention history follows the chosen hypothesis: one row per output step
    assert k1.attn.shape[:2] == k1.tokens.shape and torch.all(k1.attn.sum(-1) <= 1 + 1e-6)


# --------------------------------------------------------------------------- alignments, unk replacement


def test_argmax_links_and_aer():
    attn = torch.tensor([[0.1, 0.8, 0.05, 0.05],  # step 0 -> word 1
                         [0.6, 0.1, 0.1, 0.2],  # step 1 -> word 0
                         [0.1, 0.1, 0.2, 0.6]])  # step 2 (</s>) -> the source </s> (not a word)
    assert argmax_links(attn, n_src_words=3, n_tgt_words=2) == [(0, 1), (1, 0)]
    assert argmax_links(attn, 3, 2, offset=1) == [(0, 0), (1, 2)]
    inter, n_pred, n_gold = aer_counts([(0, 1), (1, 0)], [(0, 1), (1, 2), (2, 2)])
    assert (inter, n_pred, n_gold) == (1, 2, 3)
    assert math.isclose(1 - 2 * inter / (n_pred + n_gold), 0.6)


def test_unk_replacement_uses_dictionary_then_copies():
    tv = D.Vocab(["das", "ist"])
    ids = [tv.stoi["das"], D.UNK, tv.stoi["ist"], D.UNK, D.EOS]
    attn = torch.zeros(5, 4)
    attn[1, 2] = 1.0  # the first <unk> (step 1) attends source word 2
    attn[3, 0] = 1.0  # the second <unk> attends source word 0
    src = ["Berlin", "is", "house"]
    out = replace_unks(ids, attn, src, tv, {"house": "Haus"}, offset=0)
    assert out == ["das", "Haus", "ist", "Berlin"]
    # footnote 14: with offset 1 the next step's weights are read
    attn2 = torch.roll(attn, 1, 0)
    assert replace_unks(ids, attn2, src, tv, {"house": "Haus"}, offset=1) == out


# --------------------------------------------------------------------------- data


def test_synthetic_gold_alignments_are_translations():
    ex = D.synthetic_split(CPU_CONFIG, "test")
    lex = D.synthetic_lexicon(CPU_CONFIG.data_seed)
    assert ex == D.synthetic_split(CPU_CONFIG, "test")  # deterministic
    n_part = 0
    for e in ex:
        linked = {t for t, _ in e.align}
        for t, s in e.align:
            assert lex[e.src[s]] == e.tgt[t]
        for t, w in enumerate(e.tgt):
            if t not in linked:
                assert w == D.PARTICLE
                n_part += 1
        assert D.FILLER not in [e.src[s] for _, s in e.align]
    assert n_part > 0
    # the verb moves to the end of its clause: not a monotone alignment
    assert any(s1 > s2 for e in ex for (t1, s1), (t2, s2) in zip(e.align, e.align[1:]))


def test_synthetic_splits_share_one_lexicon():
    # train, val and test must be the same "language pair": one bijection for all splits
    lex = D.synthetic_lexicon(CPU_CONFIG.data_seed)
    for split in ("train", "val", "test"):
        for e in D.synthetic_split(CPU_CONFIG, split)[:200]:
            assert all(lex[e.src[s]] == e.tgt[t] for t, s in e.align)


def test_cpu_model_fits_a_few_synthetic_sentences_quickly():
    """The cpu profile's global-attention model (dropout off) drives the token NLL of 32
    training sentences below 0.5 in 150 Adam steps at the profile's rate (measured ~0.1-0.16
    over 3 seeds). With the paper's U[-0.1, 0.1] init this small model stays at ~2 (barely
    below the class-level guess), which is how the first cpu run learned nothing."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(CPU_CONFIG, attention="global", score="general", feed_input=False, dropout=0.0)
    sv, tv = D.synthetic_vocabs(cfg)
    ds = D.TrainSet.from_examples(D.synthetic_split(cfg, "train")[:32], sv, tv)
    batch = D.collate([ds[i] for i in range(len(ds))])
    m = LuongNMT(cfg, sv, tv).train()
    opt = torch.optim.Adam(m.parameters(), lr=cfg.lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(150):
            logits, _ = m.teacher_forced(batch)
            loss, n_tok = m.nll(logits, batch["tgt_out"])
            opt.zero_grad()
            (loss / len(ds)).backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.gradient_clip_val)
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert float(loss) / n_tok < 0.5


def test_vocab_replaces_file_specials_and_maps_unknown_words(tmp_path):
    p = tmp_path / "vocab"
    p.write_text("<unk>\n<s>\n</s>\nthe\nhouse\n")
    v = D.Vocab.from_file(p)
    assert v.itos == ["<pad>", "<s>", "</s>", "<unk>", "the", "house"]
    assert v.ids(["the", "castle"]) == [4, D.UNK]
    assert len(D.Vocab.from_file(p, max_words=1)) == 5


def test_prepared_layout_is_read_with_the_length_filter(tmp_path):
    from data_scripts import wmt14_en_de as W

    W.make_fixture(tmp_path)
    W.prepare(tmp_path)
    cfg = dataclasses.replace(SMOKE_CONFIG, data_dir=str(tmp_path), max_train_len=3)
    sv, tv = D.build_vocabs(cfg)
    ds, dropped = D.encode_train(tmp_path, cfg, sv, tv)
    lines = (tmp_path / "train.en").read_text().splitlines()
    de = (tmp_path / "train.de").read_text().splitlines()
    keep = sum(1 for a, b in zip(lines, de) if len(a.split()) <= 3 and len(b.split()) <= 3)
    assert len(ds) == keep and dropped == len(lines) - keep > 0
    assert D.build_dictionary(cfg)  # dict.en-de is read
