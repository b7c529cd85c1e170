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
