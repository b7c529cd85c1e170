"""Shared metric wrappers around maintained libraries (sacrebleu, scikit-learn).
Each function names the implementation it delegates to, so claims can cite it."""
