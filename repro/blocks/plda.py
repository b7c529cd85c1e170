"""Two-covariance PLDA (Brümmer & de Villiers, 2010; Sizov et al., 2014) with the usual
Kaldi-style front (centering, LDA, length normalisation), and closed-form scoring of a
set of enrollment vectors against a test vector.

Model: a speaker variable ``y ~ N(mu, B)``; each of the speaker's vectors
``x_i = y + e_i`` with ``e_i ~ N(0, W)``. Trained by EM (initialised from the
between/within-class scatter). Scoring an enrollment set ``{x_1..x_n}`` against a test
``t`` is the log-likelihood ratio of "same speaker" vs "different speakers"; the
enrollment mean is a sufficient statistic (``x̄ ~ N(y, W/n)``), and after simultaneous
diagonalisation (``A W Aᵀ = I``, ``A B Aᵀ = diag(psi)``) the LLR is a sum of 2-D Gaussian
terms per dimension, evaluated for all models x tests with matrix products
(:meth:`TwoCovPLDA.score`). :meth:`TwoCovPLDA.llr_reference` evaluates the same ratio from
the full joint Gaussian of all ``n + 1`` vectors (scipy), the reference the fast path is
tested against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import eigh


def _scatter(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    classes, inv = np.unique(labels, return_inverse=True)
    mu = x.mean(0)
    means = np.stack([x[inv == c].mean(0) for c in range(len(classes))])
    counts = np.bincount(inv).astype(float)
    dev = means - mu
    between = (dev * counts[:, None]).T @ dev / counts.sum()
    within_dev = x - means[inv]
    within = within_dev.T @ within_dev / len(x)
    return mu, between, within


@dataclass
class TwoCovPLDA:
    """Two-covariance PLDA. ``fit(x, labels)`` by EM; ``score`` / ``llr_reference``."""

    iters: int = 10
    floor: float = 1e-6
    mu: np.ndarray = field(default=None, repr=False)
    B: np.ndarray = field(default=None, repr=False)
    W: np.ndarray = field(default=None, repr=False)

    def fit(self, x: np.ndarray, labels) -> "TwoCovPLDA":
        x = np.asarray(x, dtype=np.float64)
        labels = np.asarray(labels)
        d = x.shape[1]
        self.mu, self.B, self.W = _scatter(x, labels)
        eye = np.eye(d) * self.floor
        self.B, self.W = self.B + eye, self.W + eye
        classes, inv = np.unique(labels, return_inverse=True)
        counts = np.bincount(inv).astype(float)
        sums = np.zeros((len(classes), d))
        np.add.at(sums, inv, x)
        xx = x.T @ x
        for _ in range(self.iters):
            # E-step: posterior of each speaker variable; speakers with the same count share its covariance
            b_inv, w_inv = np.linalg.inv(self.B), np.linalg.inv(self.W)
            ey = np.zeros((len(classes), d))
            s_yy = np.zeros((d, d))  # sum_s E[y yᵀ]
            s_yy_n = np.zeros((d, d))  # sum_s n_s E[y yᵀ]
            for n in np.unique(counts):
                idx = np.where(counts == n)[0]
                cov = np.linalg.inv(b_inv + n * w_inv)
                ey[idx] = (cov @ (b_inv @ self.mu[:, None] + w_inv @ sums[idx].T)).T
                second = len(idx) * cov + ey[idx].T @ ey[idx]
                s_yy += second
                s_yy_n += n * second
            # M-step
            self.mu = ey.mean(0)
            self.B = s_yy / len(classes) - np.outer(self.mu, self.mu)
            cross = sums.T @ ey  # sum_s f_s E[y_s]ᵀ
            self.W = (xx - cross - cross.T + s_yy_n) / len(x)
            self.B, self.W = (self.B + self.B.T) / 2 + eye, (self.W + self.W.T) / 2 + eye
        self._diagonalise()
        return self

    def _diagonalise(self) -> None:
        # generalized eigenproblem B v = psi W v with vᵀ W v = 1: A = Vᵀ gives A W Aᵀ = I, A B Aᵀ = diag(psi)
        psi, v = eigh(self.B, self.W)
        self.A, self.psi = v.T, np.clip(psi, 1e-10, None)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mu) @ self.A.T

    def score(self, enroll_means: np.ndarray, n_enroll, test: np.ndarray) -> np.ndarray:
        """LLR matrix ``(models, tests)`` for enrollment means of ``n_enroll`` vectors each."""
        u = self.transform(enroll_means)
        v = self.transform(test)
        n = np.broadcast_to(np.asarray(n_enroll, dtype=np.float64), (u.shape[0],))
        psi = self.psi[None, :]
        a = psi + 1.0 / n[:, None]  # var of the enrollment mean, per model and dimension
        b = psi + 1.0  # var of a test vector
        det = a * b - psi**2
        const = -0.5 * (np.log(det) - np.log(a) - np.log(b)).sum(1)  # (M,)
        uu = -0.5 * ((b / det - 1.0 / a) * u**2).sum(1)  # (M,)
        cross = (u * psi / det) @ v.T  # (M, T)
        vv = -0.5 * ((a / det - 1.0 / b)) @ (v**2).T  # (M, T)
        return const[:, None] + uu[:, None] + cross + vv

    def llr_reference(self, enroll: np.ndarray, test: np.ndarray) -> float:
        """The same LLR from the joint Gaussian of all ``n + 1`` vectors (slow reference)."""
        from scipy.stats import multivariate_normal

        enroll = np.atleast_2d(np.asarray(enroll, dtype=np.float64))
        n, d = enroll.shape
        stacked = np.concatenate([enroll.reshape(-1), np.asarray(test, dtype=np.float64)])
        mean = np.tile(self.mu, n + 1)
        same = np.kron(np.ones((n + 1, n + 1)), self.B) + np.kron(np.eye(n + 1), self.W)
        diff = same.copy()
        diff[: n * d, n * d:] = 0.0
        diff[n * d:, : n * d] = 0.0
        return float(multivariate_normal(mean, same).logpdf(stacked) - multivariate_normal(mean, diff).logpdf(stacked))


@dataclass
class PLDABackend:
    """Kaldi-style PLDA back-end: subtract the training mean, LDA to ``lda_dim`` (scikit-
    learn), length-normalise, two-covariance PLDA; multi-enrollment scoring by the
    enrollment mean and count (as Kaldi's ``ivector-plda-scoring --num-utts``)."""

    lda_dim: int | None = 150
    iters: int = 10

    def _front(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float64) - self.mean_
        if self.lda_ is not None:
            y = self.lda_.transform(y)
        return y / np.linalg.norm(y, axis=-1, keepdims=True).clip(1e-12) * np.sqrt(y.shape[-1])

    def fit(self, x: np.ndarray, labels) -> "PLDABackend":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        x = np.asarray(x, dtype=np.float64)
        labels = np.asarray(labels)
        self.mean_ = x.mean(0)
        n_classes = len(np.unique(labels))
        dim = min(self.lda_dim or x.shape[1], x.shape[1], n_classes - 1)
        self.lda_ = LinearDiscriminantAnalysis(n_components=dim, solver="eigen", shrinkage=1e-4).fit(
            x - self.mean_, labels) if self.lda_dim else None
        self.plda_ = TwoCovPLDA(iters=self.iters).fit(self._front(x), labels)
        return self

    def score_sets(self, enroll_sets: list[np.ndarray], test: np.ndarray) -> np.ndarray:
        """LLR ``(models, tests)``; each enrollment set is an ``(n_i, d)`` array."""
        means = np.stack([self._front(e).mean(0) for e in enroll_sets])
        counts = np.array([len(e) for e in enroll_sets], dtype=np.float64)
        return self.plda_.score(means, counts, self._front(test))
