"""The NMT encoder-decoder: padding, causality, incremental decoding, head masks, kernels."""

from __future__ import annotations

import copy

import pytest
import torch

from repro.blocks.attention import naive_attention
from repro.blocks.seq2seq import TransformerSeq2Seq
from repro.decoding import beam_search, greedy_search

pytestmark = pytest.mark.unit

PAD, BOS, EOS = 0, 1, 2
SV, TV = 23, 19


def model(norm_first=False, **kw):
    torch.manual_seed(0)
    kw = dict(dim=24, heads=3, encoder_layers=2, decoder_layers=2, ffn_dim=40, dropout=0.1, norm_first=norm_first,
              **kw)
    return TransformerSeq2Seq(kw.pop("src_vocab", SV), kw.pop("tgt_vocab", TV), **kw).eval()


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, SV, (3, 7), generator=g)
    src[1, 4:] = PAD
    src[2, 6:] = PAD
    tgt = torch.randint(3, TV, (3, 6), generator=g)
    tgt[:, 0] = BOS
    return src, tgt


@pytest.mark.parametrize("norm_first", [False, True])
def test_shapes_padding_and_causality(norm_first):
    m = model(norm_first)
    src, tgt = batch()
    logits = m(src, tgt)
    assert logits.shape == (3, 6, TV)
    # sentence 1 alone, without its padding, gives the same logits
    alone = m(src[1:2, :4], tgt[1:2])
    torch.testing.assert_close(logits[1:2], alone, rtol=1e-5, atol=1e-5)
    # turning sentence 1's padding into real tokens changes sentence 1 only
    src2 = src.clone()
    src2[1, 4:] = 5
    torch.testing.assert_close(m(src2, tgt)[[0, 2]], logits[[0, 2]])
    assert not torch.allclose(m(src2, tgt)[1], logits[1])
    # changing future targets leaves the past alone
    tgt2 = tgt.clone()
    tgt2[:, 4:] = 3
    torch.testing.assert_close(m(src, tgt2)[:, :4], logits[:, :4])


@pytest.mark.parametrize("norm_first", [False, True])
def test_incremental_decoding_equals_full_forward(norm_first):
    m = model(norm_first)
    src, tgt = batch(1)
    memory, mask = m.encode(src)
    full = m.decode(tgt, memory, mask)
    state, steps = m.init_state(), []
    for t in range(tgt.shape[1]):
        steps.append(m.decode(tgt[:, t:t + 1], memory, mask, state=state))
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    assert state["step"] == tgt.shape[1] and state["layers"][0]["self"]["k"].shape == (3, 3, 6, 8)
    # a prefix of 3 tokens at once, then single steps
    state = m.init_state()
    chunks = [m.decode(tgt[:, :3], memory, mask, state=state)]
    chunks += [m.decode(tgt[:, t:t + 1], memory, mask, state=state) for t in range(3, tgt.shape[1])]
    torch.testing.assert_close(torch.cat(chunks, 1), full, rtol=1e-5, atol=1e-5)


def test_generate_uses_the_cache_correctly_in_beam_search():
    """Beam search over the incremental decoder (caches reordered between steps) returns
    what it returns over a decoder that re-reads the whole prefix at every step."""
    m = model(tie_output=False)
    src, _ = batch(2)
    fast = m.generate(src, bos=BOS, eos=EOS, beam_size=3, alpha=0.6, max_len_a=1.0, max_len_b=3, n_best=3)
    memory, mask = m.encode(src)

    def slow_step(tokens, st):
        return torch.log_softmax(m.decode(tokens, st["memory"], st["mask"])[:, -1], -1), st

    from repro.decoding import max_lengths
    limit = max_lengths((src != PAD).sum(1), 1.0, 3)
    slow = beam_search(slow_step, {"memory": memory, "mask": mask}, 3, bos=BOS, eos=EOS, beam_size=3,
                       max_len=limit, alpha=0.6, n_best=3)
    for f, s in zip(fast, slow):
        assert [h.tokens for h in f] == [h.tokens for h in s]
        assert [h.score for h in f] == pytest.approx([h.score for h in s], abs=1e-4)
    g = greedy_search(slow_step, {"memory": memory, "mask": mask}, 3, bos=BOS, eos=EOS, max_len=limit)
    assert [h[0].tokens for h in m.generate(src, bos=BOS, eos=EOS, beam_size=1, max_len_a=1.0, max_len_b=3)] == \
        [h.tokens for h in g]


def test_kernel_swap_and_per_head_weights():
    m = model()
    src, tgt = batch(3)
    ref = m(src, tgt)
    naive = model(attention="naive")
    torch.testing.assert_close(naive(src, tgt), ref, rtol=1e-5, atol=1e-5)
    m.set_attention(naive_attention)
    torch.testing.assert_close(m(src, tgt), ref, rtol=1e-5, atol=1e-5)
    m.set_attention("sdpa")
    logits, w = m(src, tgt, need_weights=True)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
    assert [len(w[k]) for k in ("encoder", "decoder", "cross")] == [2, 2, 2]
    assert w["encoder"][0].shape == (3, 3, 7, 7) and w["decoder"][1].shape == (3, 3, 6, 6)
    assert w["cross"][0].shape == (3, 3, 6, 7)
    for ws in w.values():
        for x in ws:
            torch.testing.assert_close(x.sum(-1), torch.ones(x.shape[:-1]))
    assert (w["cross"][1][1, ..., 4:] == 0).all() and (w["encoder"][0][2, ..., 6:] == 0).all()  # padding
    assert (w["decoder"][0].triu(1) == 0).all()  # causal
    with pytest.raises(KeyError, match="unknown attention"):
        model(attention="nope")


def test_head_mask_ones_is_identity_and_zero_head_removes_it():
    m = model(norm_first=True)
    src, tgt = batch(4)
    ref = m(src, tgt)
    ones = {k: torch.ones(2, 3) for k in ("encoder", "decoder", "cross")}
    torch.testing.assert_close(m(src, tgt, head_mask=ones), ref)
    for kind, layer, head in [("encoder", 0, 1), ("decoder", 1, 2), ("cross", 0, 0)]:
        hm = {k: v.clone() for k, v in ones.items()}
        hm[kind][layer, head] = 0.0
        masked = m(src, tgt, head_mask=hm)
        assert not torch.allclose(masked, ref)
        # the same network with that head's slice of the output projection removed
        pruned = copy.deepcopy(m)
        blocks = pruned.encoder if kind == "encoder" else pruned.decoder
        mha = blocks[layer].cross if kind == "cross" else blocks[layer].attn
        with torch.no_grad():
            mha.out_proj.weight[:, head * 8:(head + 1) * 8] = 0.0
        torch.testing.assert_close(masked, pruned(src, tgt), rtol=1e-6, atol=1e-6)
    # head masks also apply during incremental decoding
    hm = {"decoder": torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.5]]), "cross": torch.rand(2, 3)}
    memory, mask = m.encode(src)
    full = m.decode(tgt, memory, mask, head_mask=hm)
    state = m.init_state()
    inc = torch.cat([m.decode(tgt[:, t:t + 1], memory, mask, state=state, head_mask=hm) for t in range(6)], 1)
    torch.testing.assert_close(inc, full, rtol=1e-5, atol=1e-5)


def test_embeddings_tying_sharing_and_scaling():
    m = model(share_embeddings=True, src_vocab=SV, tgt_vocab=SV)
    assert m.src_embed is m.tgt_embed
    assert m.out_proj is None
    n_tied = sum(p.numel() for p in m.parameters())
    untied = model(tie_output=False)
    # untied: its own target embedding and output projection, TV x 24 each
    assert sum(p.numel() for p in untied.parameters()) == n_tied + 2 * TV * 24
    assert (m.src_embed.weight[PAD] == 0).all()
    assert m.src_embed.weight.std().item() == pytest.approx(24 ** -0.5, rel=0.2)
    with pytest.raises(ValueError, match="one vocabulary"):
        model(share_embeddings=True)
    assert not any(k.endswith("pe") for k in m.state_dict())  # positions are not parameters


def test_training_mode_dropout_and_gradients():
    m = model(attn_dropout=0.2).train()
    src, tgt = batch(5)
    a, b = m(src, tgt), m(src, tgt)
    assert not torch.allclose(a, b)
    torch.nn.functional.cross_entropy(a.reshape(-1, TV), tgt.roll(-1, 1).reshape(-1)).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.set_attention("naive")
    m(src, tgt, need_weights=True)[0].sum().backward()  # naive kernel + weight dropout path


@pytest.mark.unit
def test_pad_right_and_shift_right_by_hand():
    from repro.blocks.seq2seq import pad_right, shift_right

    assert pad_right([[5, 6], [7]], pad=0, append=3).tolist() == [[5, 6, 3], [7, 3, 0]]
    assert pad_right([[5, 6], [7]], pad=0).tolist() == [[5, 6], [7, 0]]
    tgt = torch.tensor([[5, 6, 3], [7, 3, 0]])
    assert shift_right(tgt, bos=2, eos=3, pad=0).tolist() == [[2, 5, 6], [2, 7, 0]]
