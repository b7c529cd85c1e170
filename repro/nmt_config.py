"""The configuration of the shared NMT pipeline (``repro.nmt``); no torch import here, so
recipes (``rela_sparse_attention``, ``headmask_nmt``) can subclass it at module level."""

from __future__ import annotations

from dataclasses import dataclass

from repro.recipe import TrainConfig


@dataclass(frozen=True)
class NMTConfig(TrainConfig):
    task: str = "toy"  # toy (generated language with gold alignments) | corpus (data_dir parallel text)
    # toy task
    n_words: int = 40
    min_len: int = 4
    max_len: int = 10
    train_size: int = 20_000
    val_size: int = 300
    importance_size: int = 500  # held-out pairs for head-importance scores (never the test set)
    test_size: int = 1_000
    data_seed: int = 29  # the toy language (lexicon)
    # corpus task
    src_lang: str = "ro"
    tgt_lang: str = "en"
    bpe_vocab: int = 32_000  # joint sentencepiece BPE (repro.bpe), an upper bound
    bpe_sentences: int = 2_000_000  # training lines sampled to learn BPE (0 = all)
    max_sent_len: int = 256  # training pairs longer than this (BPE pieces + </s>) are dropped
    max_train_pairs: int = 0  # >0: only the first n training lines (quick checks)
    max_eval_sents: int = 0  # >0: only the first n dev/test sentences
    val_set: str = "newsdev2016"
    test_set: str = "newstest2016"
    # model: TransformerSeq2Seq, shared embeddings/output
    dim: int = 64
    heads: int = 4
    layers: int = 2
    ffn_dim: int = 128
    dropout: float = 0.1
    attn_dropout: float = 0.0
    norm_first: bool = True
    max_positions: int = 512
    label_smoothing: float = 0.1
    # optimisation: Adam(0.9, 0.98), linear warm-up then inverse square root
    lr: float = 2e-3
    warmup_steps: int = 100
    batch_size: int = 64
    max_tokens: int = 0  # >0: batches of at most this many padded tokens (TokenBatchSampler)
    eval_batch_size: int = 250
    max_epochs: int = 1_000  # max_steps ends training first
    max_steps: int = 400
    log_every_n_steps: int = 50
    check_val_every_n_epoch: int = 1_000
    checkpoint_every_n_epochs: int = 0
    # decoding and scoring
    beam_size: int = 1
    lenpen: float = 0.6
    max_len_a: float = 1.2
    max_len_b: int = 10
    bleu_tokenize: str = "13a"
