"""ReLA: the kernel against a loop-by-loop reference (outputs and gradients, awkward
shapes, padding and causal masks), RMSNorm and the gate, null attention, the recorded
baselines, incremental decoding, the analysis, the toy data and the recipe."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from papers.rela_sparse_attention.model import (GatedRMSNorm, ProbKernel, ReLAKernel, attention_layers,
                                                attention_statistics, install, recording, rela_reference,
                                                rela_weights)
from repro.nmt import (BOS, EOS, FIRST_WORD, PAD, NMTData, collate, decoder_input,
                                              make_toy, toy_words)
from repro.blocks.attention import causal_mask, sdpa_attention
from repro.blocks.seq2seq import TransformerSeq2Seq

unit = pytest.mark.unit


def _qkv(b=2, h=3, lq=5, lk=7, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return mk(b, h, lq, d), mk(b, h, lk, d), mk(b, h, lk, d)


@unit
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("gate", [True, False])
def test_rela_kernel_matches_loop_reference_outputs_and_gradients(causal, gate):
    lq, lk = (6, 6) if causal else (5, 7)
    q, k, v = _qkv(lq=lq, lk=lk)
    pad = torch.tensor([[True] * lk, [True] * (lk - 2) + [False] * 2])  # second example right-padded
    mask = pad[:, None, None, :]
    kern = ReLAKernel(3 * 4, gate=gate).double()
    with torch.no_grad():
        kern.norm.scale.uniform_(0.5, 1.5)
    allowed = pad[:, None, :].expand(2, lq, lk)
    if causal:
        allowed = allowed & causal_mask(lq, lk)
    qs, ks, vs = (t.clone().requires_grad_(True) for t in (q, k, v))
    out = kern(qs, ks, vs, mask, causal=causal)
    qr, kr, vr = (t.clone().requires_grad_(True) for t in (q, k, v))
    ref = rela_reference(qr, kr, vr, allowed, kern.norm)
    assert torch.allclose(out, ref, atol=1e-10, rtol=1e-9)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), [qs, ks, vs, kern.norm.scale])
    kern.zero_grad()
    grads_ref = torch.autograd.grad((ref * w).sum(), [qr, kr, vr, kern.norm.scale])
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-8)


@unit
def test_rela_weights_are_relu_of_scaled_scores_and_zero_where_masked():
    q, k, _ = _qkv()
    w = rela_weights(q, k, torch.tensor([[True] * 6 + [False], [True] * 7])[:, None, None, :])
    s = q @ k.transpose(-2, -1) / math.sqrt(4)
    assert torch.equal(w[1], F.relu(s[1]))
    assert torch.all(w[0, ..., 6] == 0) and torch.equal(w[0, ..., :6], F.relu(s[0, ..., :6]))
    assert (w == 0).any() and (w > 0).any()  # sparse but not empty


@unit
def test_rmsnorm_matches_torch_and_gate_is_sigmoid_of_input():
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    n = GatedRMSNorm(12, gate=False, eps=1e-8).double()
    with torch.no_grad():
        n.scale.uniform_(0.5, 2.0)
    assert torch.allclose(n(x), F.rms_norm(x, (12,), n.scale, eps=1e-8), atol=1e-12)
    y = n(x)
    assert torch.allclose((y / n.scale).pow(2).mean(-1), torch.ones(3, 5, dtype=torch.float64), atol=1e-6)
    g = GatedRMSNorm(12, gate=True).double()
    with torch.no_grad():
        g.scale.copy_(n.scale)
    assert torch.allclose(g(x), n(x) * torch.sigmoid(g.gate * x), atol=1e-12)
    assert g.gate.abs().max() <= math.sqrt(3 / 12)  # Glorot-uniform init of a vector of size d


@unit
def test_null_attention_gives_zero_output_without_nans():
    q = torch.ones(1, 1, 2, 4, dtype=torch.float64)
    k = -torch.ones(1, 1, 3, 4, dtype=torch.float64)  # every score negative: attend to nothing
    v = torch.randn(1, 1, 3, 4, dtype=torch.float64)
    kern = ReLAKernel(4).double()
    qs = q.clone().requires_grad_(True)
    out = kern(qs, k, v)
    assert torch.all(out == 0)
    out.sum().backward()
    assert torch.isfinite(qs.grad).all()


@unit
@pytest.mark.parametrize("kind", ["softmax", "sparsemax", "entmax15"])
def test_prob_kernels_are_distributions_over_allowed_keys(kind):
    pytest.importorskip("entmax")
    q, k, v = _qkv(lq=6, lk=6)
    kern = ProbKernel(kind).double()
    kern.record = True
    pad = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]
    out = kern(q, k, v, pad, causal=True)
    w = kern.last_weights
    assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-6)
    allowed = pad & causal_mask(6, 6)
    assert torch.all(w.masked_select(~allowed.expand_as(w)) == 0)
    assert torch.allclose(out, w @ v, atol=1e-12)
    if kind == "softmax":
        assert torch.allclose(out, sdpa_attention(q, k, v, pad, causal=True), atol=1e-10)
    else:
        assert (w.masked_select(allowed.expand_as(w)) == 0).any()  # sparse


def _net(attention="rela", seed=0):
    torch.manual_seed(seed)
    net = TransformerSeq2Seq(20, 20, dim=12, heads=3, encoder_layers=2, decoder_layers=2, ffn_dim=16, dropout=0.0,
                             norm_first=True, share_embeddings=True, pad_id=PAD, max_positions=32)
    install(net, attention)
    return net.double().eval()


@unit
def test_install_gives_each_layer_its_own_kernel_and_all_parameters_learn():
    net = _net()
    kernels = [m.attn for ms in attention_layers(net).values() for m in ms]
    assert len(kernels) == 6 and all(isinstance(k, ReLAKernel) for k in kernels)
    assert len({id(k) for k in kernels}) == 6
    src = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, PAD]])
    tgt = torch.tensor([[10, 11, 12, EOS], [13, EOS, PAD, PAD]])
    net.train()
    F.cross_entropy(net(src, decoder_input(tgt)).transpose(1, 2), tgt, ignore_index=PAD).backward()
    for name, p in net.named_parameters():
        if "embed" in name:
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@unit
@pytest.mark.parametrize("attention", ["rela", "entmax15", "softmax"])
def test_incremental_decoding_matches_teacher_forcing(attention):
    if attention == "entmax15":
        pytest.importorskip("entmax")
    net = _net(attention)
    src = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD]])
    prev = torch.tensor([[BOS, 11, 12, 13], [BOS, 14, 15, 16]])
    full = net(src, prev)
    memory, mask = net.encode(src)
    state = net.init_state()
    steps = [net.decode(prev[:, t:t + 1], memory, mask, state=state)[:, 0] for t in range(prev.shape[1])]
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-9)


@unit
def test_recording_restores_the_sdpa_path():
    net = _net("softmax")
    before = [m.attn for ms in attention_layers(net).values() for m in ms]
    with recording(net) as kernels:
        assert all(isinstance(k, ProbKernel) for ks in kernels.values() for k in ks)
    after = [m.attn for ms in attention_layers(net).values() for m in ms]
    assert after == before and all(a is sdpa_attention for a in after)
    assert "attn" not in dict(net.named_modules()).get("encoder.0.attn")._modules


@unit
def test_attention_statistics_counts_zeros_nulls_and_alignment():
    net = _net("rela")
    t = make_toy(6, 12, 3, 5, seed=1, lexicon_seed=2)
    batch = collate([{k: v[i] for k, v in t.items()} | {"idx": i} for i in range(6)])
    fwd = lambda n, b: n(b["src"], decoder_input(b["tgt"]))  # noqa: E731
    stats = attention_statistics(net, [batch], fwd)
    # recompute the encoder sparsity by hand from recorded weights
    with recording(net) as kernels:
        fwd(net, batch)
        real = batch["src"] != PAD
        valid = (real[:, None, :, None] & real[:, None, None, :])
        zeros = sum(int(((k.last_weights == 0) & valid).sum()) for k in kernels["encoder"])
        total = sum(int(valid.expand_as(k.last_weights).sum()) for k in kernels["encoder"])
    assert stats["attn/sparsity_encoder"] == pytest.approx(zeros / total)
    assert 0.0 <= stats["attn/null_rate"] <= 1.0
    assert 0.0 <= stats["align/mean_head_acc"] <= stats["align/best_head_acc"] <= 100.0
    soft = attention_statistics(_net("softmax"), [batch], fwd)
    assert soft["attn/sparsity"] == 0.0 and soft["attn/null_rate"] == 0.0  # softmax is dense


@unit
def test_toy_translation_follows_lexicon_and_swapped_alignment():
    t = make_toy(50, 15, 3, 8, seed=3, lexicon_seed=4)
    t2 = make_toy(50, 15, 3, 8, seed=5, lexicon_seed=4)
    lex = {}
    for tt in (t, t2):
        for s, y, a in zip(tt["src"], tt["tgt"], tt["align"]):
            n = int((s >= FIRST_WORD).sum())
            assert int(s[n]) == EOS and int(y[n]) == EOS
            for j in range(n):
                i = int(a[j])
                assert i == (j ^ 1 if (j ^ 1) < n else j)
                lex.setdefault(int(s[i]), int(y[j]))
                assert lex[int(s[i])] == int(y[j])  # one fixed lexicon across splits
    assert len(set(lex.values())) == len(lex)  # a bijection
    assert toy_words([FIRST_WORD + 3, FIRST_WORD, EOS, 9]) == "w3 w0"


@unit
def test_corpus_pipeline_on_the_fixture(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    import data_scripts
    from papers.rela_sparse_attention.recipe import SMOKE

    root = data_scripts.build_fixture("wmt16_ro_en")
    dm = NMTData(dataclasses.replace(SMOKE, data_dir=str(root)), seed=0)
    dm.setup()
    assert len(dm.refs["test"]) == 8 and dm.vocab_size > 10
    b = next(iter(dm.train_dataloader()))
    assert b["src"].shape[0] == SMOKE.batch_size and (b["tgt"] == EOS).sum() == SMOKE.batch_size
    ids = dm.splits["test"][0]["tgt"]
    assert dm.detok(ids) == dm.refs["test"][0]  # BPE round-trips the raw reference


@unit
def test_corpus_bpe_is_repro_bpe_cached_with_its_special_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    import data_scripts
    import repro.bpe
    from papers.rela_sparse_attention.recipe import SMOKE

    root = data_scripts.build_fixture("wmt16_ro_en")
    cfg = dataclasses.replace(SMOKE, data_dir=str(root))
    dm = NMTData(cfg, seed=0)
    dm.setup()
    sp = dm.sp
    assert isinstance(sp, repro.bpe.BPEModel) and sp.path.parent == root / "bpe"
    # one source of truth: the model's ids are repro.bpe's constants, which repro.nmt re-exports
    assert (sp.pad_id, sp.unk_id, sp.bos_id, sp.eos_id) == (PAD, repro.bpe.UNK_ID, BOS, EOS)
    assert (PAD, repro.bpe.UNK_ID, BOS, EOS) == (0, 1, 2, 3)
    assert all(x[-1] == EOS and EOS not in x[:-1] for x in dm.splits["train"].src)
    # cached: a second datamodule loads the same file instead of training again
    stamp = sp.path.stat().st_mtime_ns
    dm2 = NMTData(cfg, seed=1)
    dm2.setup()
    assert dm2.sp.path == sp.path and sp.path.stat().st_mtime_ns == stamp
    # max_train_pairs: the model is learned on exactly the first n training lines
    dm3 = NMTData(dataclasses.replace(cfg, max_train_pairs=50), seed=0)
    dm3.setup()
    assert dm3.sp.path != sp.path and len(dm3.splits["train"]) <= 50
    head = (root / "bpe" / f"train.{cfg.src_lang}.first50").read_text(encoding="utf-8").splitlines()
    assert head == (root / f"train.{cfg.src_lang}").read_text(encoding="utf-8").splitlines()[:50]


@unit
def test_recipe_is_consistent():
    import sys

    from papers.rela_sparse_attention.recipe import RECIPE, derive

    assert {"cpu", "smoke", "full"} <= set(RECIPE.profiles)
    assert RECIPE.profiles["cpu"].seeds >= 3
    m = {"rela/test/bleu": 90.0, "softmax/test/bleu": 91.5, "rela/align/best_head_acc": 80.0,
         "entmax15/align/best_head_acc": 70.0}
    d = derive(m)
    assert d["gap/bleu_rela_minus_softmax"] == pytest.approx(-1.5)
    assert d["gap/align_rela_minus_entmax15"] == pytest.approx(10.0)
    assert "papers.rela_sparse_attention.recipe" in sys.modules


@unit
def test_plot_draws_the_figure(tmp_path):
    from papers.rela_sparse_attention.recipe import plot

    per_seed = {f"{a}/attn/{s}_{k}": [0.1, 0.2, None] for a in ("softmax", "rela", "entmax15")
                for s in ("sparsity", "null_rate") for k in ("encoder", "decoder", "cross")}
    per_seed |= {f"{a}/test/bleu": [50.0, 60.0, 55.0] for a in ("softmax", "rela", "entmax15")}
    plot(per_seed, tmp_path)
    assert (tmp_path / "sparsity_null_bleu.png").stat().st_size > 1000


@unit
def test_token_batching_path_of_the_full_profile(tmp_path, monkeypatch):
    """The full profile batches by tokens (TokenBatchSampler); run that path on the fixture."""
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    import data_scripts
    from papers.rela_sparse_attention.recipe import FULL

    root = data_scripts.build_fixture("wmt16_ro_en")
    cfg = dataclasses.replace(FULL, data_dir=str(root), bpe_vocab=300, max_tokens=200)
    dm = NMTData(cfg, seed=1)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert sum(b["src"].shape[0] for b in batches) == len(dm.splits["train"])
    for b in batches:
        assert b["src"].shape[0] * max(b["src"].shape[1], b["tgt"].shape[1]) <= 200
