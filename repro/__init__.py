"""repro: reproduce the experiments of attention papers from one command line.

Importing ``repro`` is cheap (no torch); see ``repro.cli``.
"""

__version__ = "0.1.0"
