"""Recipe: Effective Approaches to Attention-based Neural Machine Translation
(Luong, Pham & Manning, EMNLP 2015).

Training recipe. ``full`` trains the Table 1 systems that are configurations of one
model (base, + reverse, + dropout, + global (location), + feed input, local-p (general)
+ feed input, and its unk-replaced output) on the Stanford WMT'14 English-German data
and claims the paper's newstest2014 BLEU and perplexity. ``cpu`` is a labelled analogue
on a synthetic translation task with known word alignments; its expectations were
written before the first run (README, "Claims and tolerances"). No torch import here.
"""

from __future__ import annotations

from dataclasses import dataclass

from repro.recipe import Claim, Paper, Profile, Recipe, Tolerance, TrainConfig


@dataclass(frozen=True)
class Config(TrainConfig):
    dataset: str = "wmt14_en_de"  # wmt14_en_de (prepared Stanford files) | synthetic (cpu analogue)
    src_lang: str = "en"
    tgt_lang: str = "de"
    max_vocab: int = 50000  # "top 50K most frequent words for both languages"
    max_train_len: int = 50  # "filter out sentence pairs whose lengths exceed 50 words"
    max_train_pairs: int = 0  # >0: only the first n training lines (quick checks)
    max_eval_sents: int = 0  # >0: only the first n dev/test sentences (quick checks)
    val_set: str = "newstest2013"  # the paper's development set
    test_set: str = "newstest2014"  # the paper's test set (2737 sentences)
    # model (Section 4.1: 4 layers, 1000 cells, 1000-d embeddings)
    embed: int = 1000
    hidden: int = 1000
    layers: int = 4
    attention: str = "local_p"  # none | global | local_m | local_p
    score: str = "general"  # dot | general | concat | location
    feed_input: bool = True  # Section 3.3
    reverse: bool = True  # read the source backwards (Table 1 "+ reverse")
    dropout: float = 0.2  # "dropout with probability 0.2 for our LSTMs"
    window: int = 10  # D: "we empirically set the window size D = 10"
    init_range: float = 0.1  # "uniformly initialized in [-0.1, 0.1]"
    # uniform: every parameter ~ U[-init_range, init_range] (the paper, for its 1000-d model);
    # torch: PyTorch's defaults (embeddings N(0, 1), LSTM/linear U[+-1/sqrt(fan)]), used by the
    # small cpu model, which barely leaves the paper's init in its few hundred steps (README, cpu)
    init: str = "uniform"  # uniform | torch
    # optimisation (Section 4.1): plain SGD, lr 1, halve every epoch after epoch 5 (dropout models: 8)
    optimizer: str = "sgd"  # sgd | adam
    halve_after: int = 8  # epochs at the full rate before halving every epoch (0: never)
    # decoding: beam search; the paper states no beam size (authors' test.sh example: 12)
    beam_size: int = 12
    max_len_ratio: float = 1.5  # authors' decoder: output length <= 1.5 x source length
    min_len_ratio: float = 0.5  # ... and >= 0.5 x source length
    eval_batch_size: int = 32
    torch_threads: int = 0  # >0: intra-op CPU threads while fitting/testing (1 is fastest for small models)
    # synthetic task (cpu analogue)
    n_train: int = 6000
    n_val: int = 200
    n_test: int = 500
    data_seed: int = 36
    # TrainConfig overrides: dropout models train 12 epochs, mini-batch 128, gradient norm <= 5
    max_epochs: int = 12
    batch_size: int = 128
    lr: float = 1.0
    gradient_clip_val: float | None = 5.0


PAPER = Paper(
    slug="luong_attention_nmt",
    title="Effective Approaches to Attention-based Neural Machine Translation",
    arxiv="1508.04025",
    year=2015,
    authors=("Minh-Thang Luong", "Hieu Pham", "Christopher D. Manning"),
    venue="EMNLP 2015",
    code="https://github.com/lmthang/nmt.matlab",
)

# --------------------------------------------------------------------------- full profile

_NO_DROPOUT = {"dropout": 0.0, "max_epochs": 10, "halve_after": 5}  # "10 epochs ... after 5 epochs"
_DROPOUT = {"dropout": 0.2, "max_epochs": 12, "halve_after": 8}  # "For dropout models, 12 epochs ... after 8"
FULL_ARMS = {
    "base": {"attention": "none", "feed_input": False, "reverse": False, **_NO_DROPOUT},
    "reverse": {"attention": "none", "feed_input": False, "reverse": True, **_NO_DROPOUT},
    "reverse_dropout": {"attention": "none", "feed_input": False, "reverse": True, **_DROPOUT},
    "global_location": {"attention": "global", "score": "location", "feed_input": False, "reverse": True,
                        **_DROPOUT},
    "global_location_feed": {"attention": "global", "score": "location", "feed_input": True, "reverse": True,
                             **_DROPOUT},
    "localp_general_feed": {"attention": "local_p", "score": "general", "feed_input": True, "reverse": True,
                            **_DROPOUT},
}
# Table 1 (WMT'14 En->De, newstest2014): (arm, row label, perplexity, tokenized BLEU)
TABLE1 = (
    ("base", "Base", 10.6, 11.3),
    ("reverse", "Base + reverse", 9.9, 12.6),
    ("reverse_dropout", "Base + reverse + dropout", 8.1, 14.0),
    ("global_location", "Base + reverse + dropout + global attention (location)", 7.3, 16.8),
    ("global_location_feed", "Base + reverse + dropout + global attention (location) + feed input", 6.4, 18.1),
    ("localp_general_feed", "Base + reverse + dropout + local-p attention (general) + feed input", 5.9, 19.0),
)
UNK_ROW = "Base + reverse + dropout + local-p attention (general) + feed input + unk replace"

_FULL_PROTO = (
    "Stanford-preprocessed WMT'14 En->De (data_scripts/wmt14_en_de): train 4.5M pairs, pairs with a side > 50 "
    "words dropped, 50K-word vocabularies (vocab.50K.*, other words -> <unk>); 4x1000 LSTMs, 1000-d embeddings, "
    "U[-0.1,0.1] init, plain SGD lr 1, batch 128, gradient norm <= 5, 10 epochs halving after 5 (dropout 0.2 "
    "models: 12 / 8); the checkpoint after the last epoch is tested on newstest2014 (Stanford copy, 2737 "
    "sentences). "
)
_BLEU_PROTO = _FULL_PROTO + (
    "Beam search, beam 12 (the paper states none; 12 is the authors' test.sh example), output 0.5-1.5x source "
    "length. Tokenized, case-sensitive BLEU of the tokenized output against the tokenized reference: sacreBLEU "
    "2.x corpus_bleu with tokenize='none' (force=True), which counts n-grams as multi-bleu.perl does "
    "(repro.metrics.text.corpus_bleu); the paper used tokenizer.perl + multi-bleu.perl."
)
_PPL_PROTO = _FULL_PROTO + (
    "Perplexity = exp(sum of token NLL / number of target tokens) on newstest2014 with teacher forcing, tokens "
    "= words (out-of-vocabulary ones as <unk>) + </s>; the paper gives no definition beyond 'perplexities'."
)
_BLEU_TOL = Tolerance(
    "abs", 1.0, "assumed",
    "Assumed: the paper reports single runs without a seed spread; +-1.0 BLEU is our allowance for seed and "
    "implementation variance of a 7-10-day SGD run (GPU port of the authors' Matlab code), flagged as an "
    "assumption.",
)
_PPL_TOL = Tolerance(
    "rel", 0.05, "assumed",
    "Assumed: no spread reported; +-5% relative allows for seed variance and for the unstated details of the "
    "perplexity computation (treatment of <unk> and </s>).",
)


def _full_claims() -> tuple[Claim, ...]:
    out = []
    for arm, row, ppl, bleu in TABLE1:
        out.append(Claim(
            id=f"{arm}-bleu", metric=f"{arm}/test/bleu", reported=bleu, better="higher", tolerance=_BLEU_TOL,
            unit="BLEU", source=f"Table 1, row '{row}' (BLEU)", protocol=_BLEU_PROTO))
        out.append(Claim(
            id=f"{arm}-ppl", metric=f"{arm}/test/ppl", reported=ppl, better="lower", tolerance=_PPL_TOL,
            source=f"Table 1, row '{row}' (Ppl)", protocol=_PPL_PROTO))
    out.append(Claim(
        id="localp_general_feed-unk-bleu", metric="localp_general_feed/test/bleu_unk", reported=20.9,
        better="higher", tolerance=_BLEU_TOL, unit="BLEU", source=f"Table 1, row '{UNK_ROW}'",
        protocol=_BLEU_PROTO + " Unk replacement (Section 4.2, after Luong et al. 2015 and Jean et al. 2015): each "
        "<unk> in the output becomes the dict.en-de translation of the source word with the highest alignment "
        "weight (for content-based scores the weights of the next step, footnote 14), or that word if the "
        "dictionary lacks it."))
    return tuple(out)


# --------------------------------------------------------------------------- cpu profile (labelled analogue)

CPU_CONFIG = Config(
    dataset="synthetic", embed=32, hidden=64, layers=2, dropout=0.1, window=5, reverse=True,
    init="torch", optimizer="adam", lr=3e-3, halve_after=0, max_epochs=10, batch_size=64, gradient_clip_val=5.0,
    beam_size=4, eval_batch_size=100, torch_threads=1, n_train=4000, n_val=200, n_test=400, data_seed=36,
)
CPU_ARMS = {
    "no_attention": {"attention": "none", "feed_input": False},
    "global_general": {"attention": "global", "score": "general", "feed_input": False},
    "local_p": {"attention": "local_p", "score": "general", "feed_input": True},
}
_CPU_PROTO = (
    "Synthetic translation with known alignments (papers/luong_attention_nmt/data.py): a toy grammar of 65 "
    "source words (+ a filler), one target word per source word, adjectives moved after their noun (local swap) "
    "and verbs to the end of their clause (long-distance move), a dropped source filler word (p~0.2/clause) and "
    "an inserted target particle (p=0.3/clause) as noise; 4,000 train / 400 test sentences of one or two "
    "clauses (5-23 source words), data seed 36. 2x64 LSTMs, 32-d embeddings, source reversed, dropout 0.1, "
    "PyTorch's default init (not the paper's U[-0.1,0.1], under which this small model learns nothing in the "
    "budget), Adam 3e-3, batch 64, 10 epochs, gradient norm <= 5; beam 4, output 0.5-1.5x source length. Arms: "
    "no_attention (eq. 2), global_general (global attention, general score, eq. 5-7), local_p (local-p, general "
    "score, D=5, input feeding: the paper's best single system, eq. 5-10). "
)
_GAP_TOL = Tolerance(
    "abs", 0.0, "definition",
    "Stated before running: attention beats the same network without attention by at least 5 BLEU in every "
    "seed (aggregate = min over 3 seeds), no slack. 5 BLEU is the paper's own attention gain on WMT (+5.0 over "
    "the non-attentional system, Section 4.2); long-distance reordering should make the gap larger here.",
)
_AER_TOL = Tolerance(
    "abs", 0.0, "definition",
    "Stated before running: AER <= 0.20 (mean over 3 seeds), no slack: well below the paper's 0.34-0.39 on "
    "real data (Table 6) because every aligned word here has exactly one gold source word, and far from the "
    "~0.9 of attention that ignores the source; inserted particles alone cost ~0.01-0.02.",
)
CPU_CLAIMS = (
    Claim(
        id="global-beats-no-attention", metric="gap/bleu_global", reported=5.0, better="higher", bound=True,
        tolerance=_GAP_TOL, kind="expectation", seeds=3, aggregate="min", unit="BLEU points",
        source="expectation stated before running; scales down Table 1 / Section 4.2 (global attention over "
               "the non-attentional reverse+dropout system)",
        protocol=_CPU_PROTO + "Metric: tokenized BLEU (sacreBLEU, tokenize='none') of global_general minus "
                              "no_attention, per seed.",
    ),
    Claim(
        id="local-p-beats-no-attention", metric="gap/bleu_local_p", reported=5.0, better="higher", bound=True,
        tolerance=_GAP_TOL, kind="expectation", seeds=3, aggregate="min", unit="BLEU points",
        source="expectation stated before running; scales down Table 1's '5.0 BLEU over non-attentional "
               "systems' of local-p (general) + feed input",
        protocol=_CPU_PROTO + "Metric: BLEU(local_p) - BLEU(no_attention), per seed.",
    ),
    Claim(
        id="global-attention-aligns", metric="global_general/test/aer", reported=0.20, better="lower", bound=True,
        tolerance=_AER_TOL, kind="expectation", seeds=3, aggregate="mean",
        source="expectation stated before running; analogue of Section 5.4 / Table 6 (AER of attention "
               "alignments against gold alignments)",
        protocol=_CPU_PROTO + "As Section 5.4: force-decode the 400 test references, link every target word "
                              "to its most-attended source word (alignment weights of the step that predicts "
                              "it), AER = 1 - 2|A∩S|/(|A|+|S|) against the gold links (sure only), corpus "
                              "level.",
    ),
    Claim(
        id="local-p-attention-aligns", metric="local_p/test/aer", reported=0.20, better="lower", bound=True,
        tolerance=_AER_TOL, kind="expectation", seeds=3, aggregate="mean",
        source="expectation stated before running; analogue of Section 5.4 / Table 6 (local-p (general) AER)",
        protocol=_CPU_PROTO + "AER of local_p's forced-decoding alignments, as for global_general.",
    ),
)

# --------------------------------------------------------------------------- smoke (tiny config)

SMOKE_CONFIG = Config(
    dataset="wmt14_en_de", embed=16, hidden=24, layers=2, dropout=0.1, window=3, optimizer="adam", lr=1e-2,
    halve_after=0, max_epochs=1, batch_size=32, beam_size=2, eval_batch_size=16, max_vocab=300, torch_threads=1,
    n_train=64, n_val=16, n_test=16,
)

PROFILES = {
    "full": Profile(
        "full", Config(),
        "The paper's WMT'14 En->De setting (Section 4.1) for the six Table 1 systems that are configurations of "
        "one model, newstest2014 BLEU and perplexity; unk replacement on the local-p system.",
        claims=_full_claims(), datasets=("wmt14_en_de",), seeds=1, arms=FULL_ARMS, gpu_hours=250.0,
    ),
    "cpu": Profile(
        "cpu", CPU_CONFIG,
        "Labelled analogue: a synthetic translation task with known alignments (local swaps, verb-final "
        "reordering, noise words); no attention vs global (general) vs local-p (general) + feed input, "
        "3 seeds; BLEU gap and AER of the attention weights.",
        claims=CPU_CLAIMS, seeds=3, arms=CPU_ARMS, slow=True, budget_minutes=10,
    ),
    "smoke": Profile(
        "smoke", SMOKE_CONFIG,
        "Wiring only: one epoch of a tiny model on the wmt14_en_de fixture (arm local_p: real file layout, "
        "pycountry phrase pairs; BLEU, perplexity, unk replacement) and on a few synthetic sentences (arm "
        "global_general: alignment metrics).",
        datasets=("wmt14_en_de",), use_fixtures=True,
        # arm names follow the cpu arms they exercise (local_p on the fixture, global_general on synthetic
        # sentences), so the registry test can feed the smoke metrics through `derive`
        arms={"local_p": {"dataset": "wmt14_en_de", "attention": "local_p", "score": "general", "feed_input": True},
              "global_general": {"dataset": "synthetic", "attention": "global", "score": "general",
                                 "feed_input": False}},
        budget_minutes=1.0,
    ),
}

METRICS = (
    "test/bleu", "test/bleu_unk", "test/ppl", "test/aer", "test/aer_next", "test/align_acc", "val/ppl",
    *(f"{arm}/test/{k}" for arm in FULL_ARMS for k in ("bleu", "ppl")),
    "localp_general_feed/test/bleu_unk",
    *(f"{arm}/test/bleu" for arm in CPU_ARMS),
    "global_general/test/aer", "local_p/test/aer",
    "gap/bleu_global", "gap/bleu_local_p",
)


def _build_model(cfg):
    from .data import build_dictionary, build_vocabs
    from .model import LuongNMT

    src, tgt = build_vocabs(cfg)
    return LuongNMT(cfg, src, tgt, build_dictionary(cfg))


def _build_data(cfg):
    from .data import build_datamodule

    return build_datamodule(cfg)


def _derive(m):
    out = {}
    base = m.get("no_attention/test/bleu")
    for arm, key in (("global_general", "gap/bleu_global"), ("local_p", "gap/bleu_local_p")):
        v = m.get(f"{arm}/test/bleu")
        if v is not None and base is not None:
            out[key] = v - base
    return out


RECIPE = Recipe(
    paper=PAPER, config_cls=Config, profiles=PROFILES, metrics=METRICS, build_model=_build_model,
    build_data=_build_data, derive=_derive,
    skips={
        "table1-ensemble": "Table 1 'Ensemble 8 models + unk replace' (23.0 BLEU): the paper does not list the "
                           "8 models' settings ('different attention approaches, with and without dropout etc.'), "
                           "so it is not claimed; the 20.9 single-model row is.",
        "table2-wmt15": "Table 2 (25.9 NIST BLEU on newstest2015, the same ensemble) needs mteval-v13a and the "
                        "ensemble; not claimed.",
        "tables3-4-6": "Table 3 (De->En), Table 4 (other attention/score combinations) and Table 6 (AER on the "
                       "RWTH Europarl gold alignments, not distributed with the data) are not claimed; every "
                       "variant of Table 4 can be trained with --set attention=... score=... .",
        "local-attention-cost": "local attention is computed as masked global attention (the same numbers); the "
                                "paper's computational saving is not reproduced or claimed.",
    },
)
