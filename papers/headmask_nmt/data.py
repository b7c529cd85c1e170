"""Data for the HeadMask recipe. The NMT pipeline (generated toy language with a fixed
lexicon and local reordering; parallel corpora from ``data_scripts`` segmented with a joint
sentencepiece BPE model; batching, decoding, sacreBLEU) is shared with
``rela_sparse_attention`` and lives in ``repro/nmt.py``."""

from repro.nmt import (BOS, EOS, PAD, UNK, NMTData, NMTModule, collate, decoder_input, make_toy,
                       per_example_loss)

__all__ = ["BOS", "EOS", "PAD", "UNK", "NMTData", "NMTModule", "collate", "decoder_input", "make_toy",
           "per_example_loss"]
