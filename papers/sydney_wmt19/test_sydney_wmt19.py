"""Unit tests for the sydney_wmt19 pipeline pieces: round-trip (Cycle Translation)
scoring and filtering, the Big/Small mixtures (composition, up-sampling share,
determinism), the similarity metrics, and the model/decoder wiring on a tiny model."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import torch

from papers.sydney_wmt19.data import EOS, PAD, decoder_input, pad_batch
from papers.sydney_wmt19.model import (
    NMTModule, big_small_construction, cycle_filter, cycle_scores, sentence_similarity)
from papers.sydney_wmt19.recipe import FULL_CLAIMS, SMOKE, Config

pytestmark = pytest.mark.unit

GENUINE = [(f"fi {i}", f"en {i}") for i in range(10)]
SYNTH = [("x a", "the cat sat on the mat"), ("x b", "a dog runs in the park"), ("x c", "birds fly south")]


def test_similarity_is_sacrebleu():
    assert sentence_similarity("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(100.0)
    assert sentence_similarity("zzz", "the cat sat on the mat") < 5.0
    assert 0 < sentence_similarity("the cat sat", "the cat sat on the mat", "chrf") < 100
    with pytest.raises(ValueError):
        sentence_similarity("a", "a", "ter")


def test_cycle_scores_compare_the_round_trip_with_the_genuine_target():
    perfect = {"x a": "the cat sat on the mat", "x b": "a dog runs in the park", "x c": "rain falls"}
    seen = []

    def forward(xs):
        seen.extend(xs)
        return [perfect[x] for x in xs]

    scores = cycle_scores(SYNTH, forward)
    assert seen == ["x a", "x b", "x c"]  # the synthetic sources are what is translated back
    assert scores[0] == pytest.approx(100.0) and scores[1] == pytest.approx(100.0) and scores[2] < 20
    assert cycle_filter(SYNTH, scores, 50.0) == SYNTH[:2]
    with pytest.raises(ValueError):
        cycle_filter(SYNTH, scores[:2], 50.0)


def test_big_small_construction_composition():
    scores = [90.0, 10.0, 60.0]
    mixes = big_small_construction(GENUINE, SYNTH, scores, threshold=50.0)
    assert Counter(mixes["big"]) == Counter(GENUINE + SYNTH)
    assert Counter(mixes["small"]) == Counter(GENUINE + [SYNTH[0], SYNTH[2]])
    again = big_small_construction(GENUINE, SYNTH, scores, threshold=50.0)
    assert mixes == again  # seeded shuffle: deterministic


def test_genuine_upsampling_reaches_the_share():
    synth = [(f"s{i}", f"t{i}") for i in range(50)]
    mixes = big_small_construction(GENUINE, synth, [100.0] * 50, threshold=0.0, genuine_share=0.6, seed=3)
    big = mixes["big"]
    n_gen = sum(p in set(GENUINE) for p in big)
    assert n_gen / len(big) >= 0.6
    assert n_gen == 75  # ceil(0.6 * 50 / 0.4) = 75: 7 whole copies + 5 sampled
    counts = Counter(p for p in big if p in set(GENUINE))
    assert set(counts.values()) <= {7, 8}
    with pytest.raises(ValueError):
        big_small_construction(GENUINE, synth, [0.0] * 50, 0.0, genuine_share=1.0)


def test_tiny_model_trains_and_decodes():
    torch.manual_seed(0)
    cfg = Config(dim=16, heads=2, layers=1, ffn_dim=32, dropout=0.0, attn_dropout=0.0, max_positions=64,
                 warmup_steps=1, lr=3e-3, beam_size=2, max_len_a=1.0, max_len_b=2)
    m = NMTModule(cfg, 12)
    src = pad_batch([[4, 5, 6], [7, 8]])
    batch = {"src": src, "tgt": src.clone()}
    assert decoder_input(batch["tgt"]).tolist() == [[2, 4, 5, 6], [2, 7, 8, PAD]]
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(m._loss(batch))
    for _ in range(60):
        opt.zero_grad()
        loss = m._loss(batch)
        loss.backward()
        opt.step()
    assert float(loss) < first
    m.eval()
    hyps = m.net.generate(src, bos=2, eos=EOS, beam_size=2, max_len_a=1.0, max_len_b=2)
    assert len(hyps) == 2 and all(len(h[0].tokens) <= 5 for h in hyps)


def test_recipe_has_the_abstract_number_and_imports_no_torch():
    claim = FULL_CLAIMS[0]
    assert claim.reported == 33.0 and "Abstract" in claim.source and claim.known_gap
    assert "case:mixed" in claim.protocol and "tok:13a" in claim.protocol
    assert SMOKE.cycle_translation and SMOKE.max_steps == 3
    code = "import sys, papers.sydney_wmt19.recipe; assert 'torch' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_signature_in_the_protocol_is_sacrebleus():
    from repro.metrics.text import corpus_bleu

    sig = corpus_bleu(["a b c"], ["a b c"]).signature
    assert sig in FULL_CLAIMS[0].protocol


# ---------------------------------------------------------------------------- ensembles (cpu analogue)
def _tiny_net(seed: int, vocab: int = 11):
    from repro.blocks.seq2seq import TransformerSeq2Seq

    torch.manual_seed(seed)
    return TransformerSeq2Seq(vocab, vocab, dim=16, heads=2, encoder_layers=1, decoder_layers=2, ffn_dim=24,
                              dropout=0.0, norm_first=True, share_embeddings=True, pad_id=PAD,
                              max_positions=32).eval()


def _awkward_src():
    return pad_batch([[4, 5, 6, 7, 8], [9], [10, 4, 4]])  # lengths 6 / 2 / 4 with </s>, padded


def test_ensemble_of_one_is_the_model_itself():
    from papers.sydney_wmt19.model import ensemble_generate

    net, src = _tiny_net(0), _awkward_src()
    for beam in (1, 3):
        ours = ensemble_generate([net], src, bos=2, eos=EOS, beam_size=beam, alpha=1.0, penalty="power",
                                 max_len_a=1.0, max_len_b=3)
        ref = net.generate(src, bos=2, eos=EOS, beam_size=beam, alpha=1.0, penalty="power", max_len_a=1.0,
                           max_len_b=3)
        assert [[h.tokens for h in hs] for hs in ours] == [[h.tokens for h in hs] for hs in ref]
        assert [hs[0].score for hs in ours] == pytest.approx([hs[0].score for hs in ref], abs=1e-5)
    twice = ensemble_generate([net, net], src, bos=2, eos=EOS, beam_size=3, max_len_a=1.0, max_len_b=3)
    assert [h[0].tokens for h in twice] == [h[0].tokens for h in ensemble_generate([net], src, bos=2, eos=EOS,
                                                                                    beam_size=3, max_len_a=1.0,
                                                                                    max_len_b=3)]


def test_ensemble_greedy_decoding_matches_a_naive_average_of_probabilities():
    """Reference without incremental state: at every step, run each member on the whole
    prefix, average the members' probabilities, take the argmax."""
    from papers.sydney_wmt19.model import ensemble_generate

    nets, src = [_tiny_net(1), _tiny_net(2), _tiny_net(3)], _awkward_src()
    steps = 5
    ours = ensemble_generate(nets, src, bos=2, eos=EOS, beam_size=1, max_len_a=0.0, max_len_b=steps)
    for b in range(src.shape[0]):
        one = src[b:b + 1, : int((src[b] != PAD).sum())]
        prefix, score = [2], 0.0
        for _ in range(steps):
            with torch.no_grad():
                probs = torch.stack([torch.softmax(n(one, torch.tensor([prefix]))[0, -1], -1) for n in nets]).mean(0)
            tok = int(probs.argmax())
            score += float(torch.log(probs[tok]))
            prefix.append(tok)
            if tok == EOS:
                break
        got = ours[b][0].tokens
        assert got == prefix[1:][: len(got)] and (got[-1] == EOS or len(got) == steps)
        assert len(got) == len(prefix) - 1


def test_greedy_ensemble_selection_by_hand():
    from papers.sydney_wmt19.model import greedy_ensemble

    table = {(0,): 10.0, (1,): 12.0, (2,): 11.0, (0, 1): 12.5, (1, 2): 13.0, (0, 1, 2): 12.9}
    calls = []

    def score(idx):
        calls.append(tuple(idx))
        return table[tuple(sorted(idx))]

    chosen, best, singles = greedy_ensemble(3, score)
    assert chosen == [1, 2] and best == 13.0 and singles == [10.0, 12.0, 11.0]  # 0+1+2 (12.9) does not improve
    assert (1, 2, 0) in calls  # the third model was tried
    # no addition helps: the best single model alone; ties go to the lower index
    chosen, best, _ = greedy_ensemble(3, lambda idx: 5.0 if len(idx) == 1 else 4.0)
    assert chosen == [0] and best == 5.0
    with pytest.raises(ValueError):
        greedy_ensemble(0, score)


def test_cpu_corpus_splits_by_name_and_is_deterministic():
    from papers.sydney_wmt19.data import CPU_TEMPLATES, cpu_corpus, pycountry_fi_en_names

    pytest.importorskip("pycountry")
    names = pycountry_fi_en_names()
    assert len(names) > 600 and {k for k, _, _ in names} == set(CPU_TEMPLATES)
    c = cpu_corpus(0.15, 0.15, 21)
    assert c == cpu_corpus(0.15, 0.15, 21)
    assert len(c["train"]) + len(c["dev"]) + len(c["test"]) == 2 * len(names)

    def en_names(pairs):  # strip the English templates back to the name
        out = set()
        for _, en in pairs:
            for kind in CPU_TEMPLATES.values():
                for _, t in kind:
                    pre, post = t.split("{}")
                    if en.startswith(pre) and en.endswith(post):
                        out.add(en[len(pre): len(en) - len(post)])
        return out

    train, test = en_names(c["train"]), en_names(c["test"])
    assert len(test) > 100 and not (test & train)  # every test name is unseen in training


def test_cpu_profile_is_an_ensemble_analogue_with_expectations():
    from papers.sydney_wmt19.recipe import PROFILES

    cpu = PROFILES["cpu"]
    assert cpu.seeds >= 3 and cpu.config.ensemble_size == 3 and cpu.config.corpus == "pycountry"
    for claim in cpu.claims:
        assert claim.kind == "expectation" and claim.bound and "expectation stated before running" in claim.source
    assert PROFILES["smoke"].config.ensemble_size > 1  # smoke logs the claimed gap metrics


def test_plot_draws_the_ensemble_figure(tmp_path):
    pytest.importorskip("matplotlib")
    from papers.sydney_wmt19.recipe import plot

    per_seed = {"member0/test/bleu": [20.0, 21.0], "member1/test/bleu": [22.0, 19.0],
                "single/test/bleu_mean": [21.0, 20.0], "single/test/bleu_best_dev": [22.0, 21.0],
                "ensemble/test/bleu": [23.0, 22.5], "greedy/test/bleu": [23.0, 21.0]}
    plot(per_seed, tmp_path)
    assert (tmp_path / "ensemble_bleu.png").stat().st_size > 1000
    plot({"test/bleu": [1.0]}, tmp_path / "none")  # full/smoke without ensemble metrics: nothing drawn
