"""Data for the ReLA recipe (the pipeline lives in ``nmt.py``, shared with ``headmask_nmt``):

* ``task="toy"`` (cpu analogue): a generated translation language with a known word
  alignment (a fixed lexicon and swapped adjacent word pairs), so the cross-attention can
  be scored against the gold alignment as the paper scores it against RWTH De-En gold
  alignments (Sec. 5, AER).
* ``task="corpus"`` (full / smoke): WMT16 Romanian-English from
  ``data_scripts/wmt16_ro_en.py`` (its fixture in smoke), joint sentencepiece BPE.
"""

from repro.nmt import BOS, EOS, PAD, UNK, NMTData, collate, decoder_input, make_toy, per_example_loss, toy_words

__all__ = ["BOS", "EOS", "PAD", "UNK", "NMTData", "collate", "decoder_input", "make_toy", "per_example_loss",
           "toy_words"]
