"""Show, Attend and Tell: beam search on decoders with known outputs, additive
attention against a naive loop, the coco-caption scorers on hand-computed cases, the
doubly stochastic penalty, the hard-attention estimator, the attention-mass geometry,
and the caption datasets' preparation."""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil

import pytest
import torch

from repro.blocks.captioning import BOS, EOS, PAD, AdditiveAttention, Vocab, beam_search, masked_mean

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------- beam search


def markov_step(table: torch.Tensor):
    """A decoder whose next-word distribution depends only on the previous word."""
    logt = torch.log(table)

    def step(tokens, state):
        return logt[tokens], state

    return step


def brute_force(table: torch.Tensor, max_len: int):
    """Best sequence over every word sequence of length max_len (after <eos> only <eos>, at log-prob 0)."""
    v = table.shape[0]
    best, best_seq = -math.inf, None
    for seq in itertools.product(range(v), repeat=max_len):
        prev, score, done = BOS, 0.0, False
        for w in seq:
            if done:
                if w != EOS:
                    score = -math.inf
                continue
            score += math.log(table[prev, w])
            prev, done = w, w == EOS
        if score > best:
            best, best_seq = score, seq
    return best, best_seq


def test_beam_finds_the_better_caption_that_greedy_misses():
    # vocab: 0 pad, 1 bos, 2 eos, 3 unk, 4 "a", 5 "b"; greedy takes "a" (0.55) but
    # every continuation of "a" is weak, while "b <eos>" has probability 0.45 * 0.9
    eps = 1e-6
    t = torch.full((6, 6), eps)
    t[BOS, 4], t[BOS, 5] = 0.55, 0.45
    t[4, 4], t[4, 5], t[4, EOS] = 0.35, 0.3, 0.35
    t[5, EOS], t[5, 4] = 0.9, 0.1
    t[EOS, EOS] = 1.0
    t = t / t.sum(-1, keepdim=True)
    state = {"dummy": torch.zeros(1, 1)}
    greedy = beam_search(markov_step(t), state, 1, beam_size=1, max_len=4)
    beam = beam_search(markov_step(t), state, 1, beam_size=2, max_len=4)
    assert greedy.tokens[0, 0].item() == 4
    assert beam.tokens[0].tolist()[:2] == [5, EOS]
    assert beam.scores[0].item() == pytest.approx(math.log(t[BOS, 5] * t[5, EOS]), rel=1e-5)
    assert beam.scores[0] > greedy.scores[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_exhaustive_search(seed):
    g = torch.Generator().manual_seed(seed)
    v, max_len = 5, 3
    t = torch.rand(v, v, generator=g) ** 3 + 1e-3
    t[EOS] = 1e-9
    t[EOS, EOS] = 1.0
    t = t / t.sum(-1, keepdim=True)
    res = beam_search(markov_step(t), {"x": torch.zeros(2, 1)}, 2, beam_size=v**max_len, max_len=max_len)
    best, seq = brute_force(t, max_len)
    assert res.scores[0].item() == pytest.approx(best, rel=1e-5, abs=1e-5)
    got = res.tokens[0].tolist()
    want = list(seq)
    if EOS in want:  # after <eos> the search pads
        k = want.index(EOS)
        want = want[: k + 1] + [PAD] * (len(want) - k - 1)
    assert got[: len(want)] == want
    assert torch.equal(res.tokens[0], res.tokens[1])  # identical items decode identically


def test_beam_reorders_the_recurrent_state():
    """A decoder whose distribution depends on the whole history through its state (the
    running sum of the words so far): a wrong reordering of states across beams would
    pair a beam with another beam's history. A beam wide enough to be exhaustive must
    find the brute-force optimum."""
    g = torch.Generator().manual_seed(3)
    v, m, max_len = 5, 7, 3
    w = torch.randn(v, v, generator=g) * 2
    u = torch.randn(m, v, generator=g) * 2

    def logp(prev, total):
        out = torch.log_softmax(w[prev] + u[total % m], -1)
        done = prev == EOS
        return torch.where(done.unsqueeze(-1), torch.full_like(out, -1e9).index_fill(-1, torch.tensor([EOS]), 0.0), out)

    def step(tokens, state):
        total = state["s"] + tokens
        return logp(tokens, total), {"s": total}

    res = beam_search(step, {"s": torch.zeros(2, dtype=torch.long)}, 2, beam_size=v**max_len, max_len=max_len)
    best = -math.inf
    for seq in itertools.product(range(v), repeat=max_len):
        prev, total, score = BOS, 0, 0.0
        for wd in seq:
            total += prev
            score += logp(torch.tensor([prev]), torch.tensor([total]))[0, wd].item()
            prev = wd
        best = max(best, score)
    assert res.scores[0].item() == pytest.approx(best, abs=1e-4)


def test_length_normalisation_reranks_finished_beams():
    eps = 1e-9
    t = torch.full((6, 6), eps)
    t[BOS, EOS], t[BOS, 4] = 0.4, 0.6  # "<eos>" alone: log 0.4; "a a <eos>" : log(0.6*0.9*0.9)
    t[4, 4], t[4, EOS] = 0.5, 0.5
    t[EOS, EOS] = 1.0
    t = t / t.sum(-1, keepdim=True)
    plain = beam_search(markov_step(t), {"x": torch.zeros(1, 1)}, 1, beam_size=4, max_len=3)
    normed = beam_search(markov_step(t), {"x": torch.zeros(1, 1)}, 1, beam_size=4, max_len=3, length_norm=True)
    assert plain.tokens[0, 0].item() == EOS  # the short caption wins on total log-prob
    assert normed.tokens[0, 0].item() == 4  # per-word it loses to "a <eos>" (log(0.3)/2 > log(0.4))


# --------------------------------------------------------------------------- attention


def naive_additive(att: AdditiveAttention, feats, query, mask):
    outs, alphas = [], []
    for b in range(feats.shape[0]):
        scores = []
        for i in range(feats.shape[1]):
            h = torch.tanh(att.feat_proj(feats[b, i]) + att.query_proj(query[b]))
            s = att.score(h).squeeze(-1)
            scores.append(s if mask is None or mask[b, i] else torch.tensor(-math.inf))
        a = torch.softmax(torch.stack(scores), 0)
        outs.append((a.unsqueeze(-1) * feats[b]).sum(0))
        alphas.append(a)
    return torch.stack(outs), torch.stack(alphas)


@pytest.mark.parametrize("use_mask", [False, True])
def test_additive_attention_matches_naive_loop(use_mask):
    torch.manual_seed(0)
    att = AdditiveAttention(7, 5, 3).double()
    feats = torch.randn(3, 11, 7, dtype=torch.double, requires_grad=True)
    query = torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    mask = torch.rand(3, 11) > 0.3 if use_mask else None
    if mask is not None:
        mask[:, 0] = True
    z, alpha = att(feats, att.project(feats), query, mask)
    z_ref, alpha_ref = naive_additive(att, feats, query, mask)
    assert torch.allclose(z, z_ref) and torch.allclose(alpha, alpha_ref)
    assert torch.allclose(alpha.sum(-1), torch.ones(3, dtype=torch.double))  # sum_i alpha_ti = 1 (eq. 5)
    if mask is not None:
        assert (alpha[~mask] == 0).all()
    g1 = torch.autograd.grad(z.square().sum(), (feats, query, *att.parameters()))
    g2 = torch.autograd.grad(z_ref.square().sum(), (feats, query, *att.parameters()))
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b)


def test_masked_mean():
    x = torch.arange(12.0).view(1, 4, 3)
    m = torch.tensor([[True, False, True, False]])
    assert torch.allclose(masked_mean(x, m), (x[0, 0] + x[0, 2]) / 2)


# --------------------------------------------------------------------------- scorers


def test_bleu_and_cider_on_hand_computed_cases():
    pytest.importorskip("pycocoevalcap", reason="the coco-caption scorers come from pycocoevalcap")
    from repro.metrics.caption import score_captions

    # one image, same length: p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0; brevity penalty 1
    s = score_captions({1: ["a b c e"], 2: ["x y z w"]}, {1: "a b c d", 2: "x y z w"}, meteor=False, tokenize=False)
    # corpus BLEU pools both images: p1 = 7/8, p2 = 5/6, p3 = 3/4, p4 = 1/2
    assert s["BLEU-1"] == pytest.approx(100 * 7 / 8, abs=1e-4)
    assert s["BLEU-2"] == pytest.approx(100 * math.sqrt(7 / 8 * 5 / 6), abs=1e-4)
    assert s["BLEU-4"] == pytest.approx(100 * (7 / 8 * 5 / 6 * 3 / 4 * 1 / 2) ** 0.25, abs=1e-4)
    # CIDEr-D: two images with disjoint 2-word captions, hypothesis = reference: each n-gram has
    # df 1 of 2 images, so tf-idf vectors match exactly for n = 1, 2 (cosine 1) and are empty
    # for n = 3, 4 (0): mean 0.5, x10 per image = 5, x100 = 500
    c = score_captions({1: ["a b"], 2: ["c d"]}, {1: "a b", 2: "c d"}, meteor=False, tokenize=False)
    assert c["CIDEr"] == pytest.approx(500.0, abs=1e-6)
    # brevity penalty: hypothesis shorter than the reference
    bp = score_captions({1: ["a b c d e f"]}, {1: "a b c"}, meteor=False, tokenize=False)
    assert bp["BLEU-1"] == pytest.approx(100 * math.exp(1 - 6 / 3), rel=1e-6)


def test_corpus_cider_equals_pycocoevalcap_on_its_own_corpus():
    pytest.importorskip("pycocoevalcap", reason="the coco-caption scorers come from pycocoevalcap")
    from pycocoevalcap.cider.cider import Cider

    from repro.metrics.caption import CorpusCiderD

    refs = [["a red circle above a blue square", "a blue square below a red circle"],
            ["a green triangle to the left of a white circle", "there is a green triangle"],
            ["a yellow square", "a yellow square to the right of a red triangle"]]
    hyps = ["a red circle above a square", "a green triangle", "a yellow square to the right of a red circle"]
    ours = CorpusCiderD(refs).scores(hyps, refs)
    _, theirs = Cider().compute_score({i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)})
    assert ours == pytest.approx(list(theirs), rel=1e-9)


@pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer and METEOR need Java")
def test_java_scorers_tokenizer_and_meteor():
    pytest.importorskip("pycocoevalcap", reason="the coco-caption scorers come from pycocoevalcap")
    from repro.metrics.caption import ptb_tokenize, score_captions

    assert ptb_tokenize({"x": ["A Man, riding a horse."]})["x"] == ["a man riding a horse"]
    s = score_captions({1: ["a man is riding a horse on the beach"], 2: ["two dogs play in the snow"]},
                       {1: "a man is riding a horse on the beach", 2: "a cat sleeps"})
    assert 0 < s["METEOR"] < 100 and s["BLEU-1"] < 100
    same = score_captions({1: ["a man is riding a horse"], 2: ["two dogs play in snow"]},
                          {1: "a man is riding a horse", 2: "two dogs play in snow"})
    # identical sentences: METEOR's only loss is the fragmentation penalty 0.5 (1 chunk / m words)^3
    assert same["METEOR"] > 99.0 and same["BLEU-4"] == pytest.approx(100.0, abs=1e-4)


# --------------------------------------------------------------------------- the paper's pieces


def _tiny_cfg(**kw):
    from papers.show_attend_tell.recipe import PROFILES

    return dataclasses.replace(PROFILES["smoke"].config, dataset="scenes", **kw)


def test_doubly_stochastic_penalty_by_hand():
    from papers.show_attend_tell.model import doubly_stochastic_penalty

    alphas = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]])  # (B=1, T=3, L=3)
    mask = torch.tensor([[True, True, False]])  # the third step is padding
    # sum_t alpha = [0.5, 1.0, 0.5] -> (0.5^2 + 0 + 0.5^2) = 0.5
    assert doubly_stochastic_penalty(alphas, mask).item() == pytest.approx(0.5)


def test_hard_attention_estimator_is_unbiased():
    """The surrogate's gradient, averaged over samples s ~ alpha, equals the gradient of
    the exact expected log-likelihood sum_s alpha_s log p(y|s) w.r.t. the attention logits."""
    from papers.show_attend_tell.model import hard_attention_surrogate

    torch.manual_seed(0)
    logits = torch.randn(5, requires_grad=True)
    nll_of = torch.tensor([2.0, 0.5, 3.0, 1.0, 0.1])  # -log p(y | s) per location
    alpha = torch.softmax(logits, 0)
    exact = torch.autograd.grad((alpha * nll_of).sum(), logits)[0]  # d E[NLL] / d logits
    n = 40000
    s = torch.multinomial(alpha.detach().expand(n, -1), 1).squeeze(1)
    alpha_n = torch.softmax(logits, 0).expand(n, -1)
    sur = hard_attention_surrogate(
        nll=nll_of[s], log_alpha_sampled=torch.log(alpha_n.gather(1, s[:, None])), step_mask=torch.ones(n, 1),
        baseline=torch.tensor(1.0), alphas=alpha_n.unsqueeze(1), lambda_r=1.0, lambda_e=0.0)
    mc = torch.autograd.grad(sur, logits)[0]
    assert torch.allclose(mc, exact, atol=0.03), (mc, exact)


def test_hard_attention_samples_one_location_and_trains():
    from papers.show_attend_tell.data import build_datamodule, build_vocab
    from papers.show_attend_tell.model import ShowAttendTell

    cfg = _tiny_cfg(attention="hard", n_train=8, n_val=4, n_test=4, batch_size=4)
    model = ShowAttendTell(cfg, build_vocab(cfg))
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    model._sampling = True
    enc = model.encode(batch)
    state = model.init_state(enc)
    model._log_sampled = []
    z, alpha, logs = model.context(enc["a"], enc["proj"], state["h"])
    beta = torch.sigmoid(model.f_beta(state["h"]))
    # z_t = beta_t a_{s_t}: one of the annotation vectors, scaled by the gate
    match = ((enc["a"] * beta.unsqueeze(1) - z.unsqueeze(1)).abs().amax(-1) < 1e-6).any(1)
    assert match.all() and logs is not None and (logs <= 0).all()
    model._sampling = False
    out = model.teacher_forced(batch)
    model._sampling = True
    out = model.teacher_forced(batch)
    reg = model.extra_loss(out["alphas"], batch, out)
    (model.nll(out) + reg).backward()
    assert model.att.score.weight.grad is not None and torch.isfinite(model.att.score.weight.grad).all()


def test_soft_attention_and_mean_arm_shapes():
    from papers.show_attend_tell.data import build_datamodule, build_vocab
    from papers.show_attend_tell.model import ShowAttendTell

    for kind in ("soft", "mean"):
        cfg = _tiny_cfg(attention=kind, n_train=4, n_val=4, n_test=4, batch_size=4)
        model = ShowAttendTell(cfg, build_vocab(cfg))
        dm = build_datamodule(cfg)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        out = model.teacher_forced(batch)
        assert out["logits"].shape[:2] == batch["caption"][:, 1:].shape
        if kind == "soft":
            assert torch.allclose(out["alphas"].sum(-1), torch.ones(out["alphas"].shape[:2]), atol=1e-5)
        else:
            assert out["alphas"] is None


def test_cell_overlap_geometry():
    from papers.show_attend_tell.model import ShowAttendTell

    boxes = torch.tensor([[[8.0, 16.0, 16.0, 24.0], [0.0, 0.0, 12.0, 8.0]]])  # 48px image, 6x6 grid of 8px
    frac = ShowAttendTell.cell_overlap(boxes, 6, 48.0)
    assert frac.shape == (1, 2, 36)
    assert frac[0, 0, 2 * 6 + 1].item() == pytest.approx(1.0) and frac[0, 0].sum().item() == pytest.approx(1.0)
    assert frac[0, 1, 0].item() == pytest.approx(1.0) and frac[0, 1, 1].item() == pytest.approx(0.5)


def test_vgg_encoder_cuts_at_conv5_4_before_the_last_pool():
    from papers.show_attend_tell.model import VGGConv54

    enc = VGGConv54(pretrained=False)
    layers = list(enc.features)
    assert isinstance(layers[-1], torch.nn.ReLU) and isinstance(layers[-2], torch.nn.Conv2d)
    assert layers[-2].in_channels == layers[-2].out_channels == 512
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in layers) == 4
    a = enc(torch.randn(1, 3, 64, 64))
    assert a.shape == (1, 16, 512)  # 64 / 16 = 4x4 grid; 224 gives the paper's 14x14 = 196
    assert not any(p.requires_grad for p in enc.parameters())


def test_vocab_roundtrip_and_unknown_words():
    v = Vocab(["a", "red", "circle"])
    ids = v.encode(["a", "blue", "circle"], max_len=5)
    assert ids[0] == BOS and ids[-1] == EOS and ids[2] == 3
    assert v.decode(ids + [PAD, 7]) == "a <unk> circle"


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", ["flickr8k", "flickr30k", "coco_captions"])
def test_caption_dataset_fixture_prepares_the_shared_layout(name, tmp_path, monkeypatch):
    import json

    import data_scripts

    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    root = data_scripts.build_fixture(name, force=True)
    caps = json.loads((root / "captions.json").read_text())
    vocab = json.loads((root / "vocab.json").read_text())
    splits = {im["split"] for im in caps["images"]}
    assert splits == {"train", "val", "test"}  # COCO's "restval" is folded into train
    for im in caps["images"]:
        assert (root / im["file"]).exists() and len(im["sentences"]) == len(im["tokens"]) == 3
    counts = {}
    for im in caps["images"]:
        if im["split"] == "train":
            for toks in im["tokens"]:
                for w in toks:
                    counts[w] = counts.get(w, 0) + 1
    assert vocab["words"] == sorted([w for w, c in counts.items() if c >= vocab["min_count"]],
                                    key=lambda w: (-counts[w], w))


def test_missing_split_images_are_reported(tmp_path):
    import zipfile

    from data_scripts import _captions as C
    from repro.errors import ChecksumError

    z = tmp_path / "imgs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("Flicker8k_Dataset/1.jpg", b"x")
    C.check_images_present("t", [z], ["1.jpg"])
    with pytest.raises(ChecksumError):
        C.check_images_present("t", [z], ["1.jpg", "2.jpg"])
