"""Sequential Attention for feature selection (Yasuda, Bateni, Chen, Fahrbach, Fu &
Mirrokni, ICLR 2023, arXiv 2209.14881), in PyTorch. Written from the paper's description;
the official TensorFlow code (google-research/sequential_attention) was read for the
schedule and the baselines' settings only.

The paper's delta is a feature mask:

* **Sequential Attention** (the algorithm): a trainable softmax over the *unselected*
  features multiplies the input, selected features pass with weight 1. Training is split
  into a warm-up (10 % of the steps, mask = 1 everywhere; official ``start_percentage``)
  and k equal phases. At the end of each phase the unselected feature with the largest
  attention weight joins the selected set and the attention logits are re-initialised
  (official ``reset_weights``), so each selection is conditioned on the features chosen so
  far: greedy forward selection inside one training run. Note: the official code makes
  the selection for phase t at its *start*, so its first pick uses untrained logits; we
  select at the *end* of each phase, after the weights were trained, as the algorithm is
  described (README).
* **Linear adaptation** (the paper's theory): for least squares, the model
  y ~ X_S b_S + X_C (softmax(w) * b_C) with an l2 penalty (lambda/2)||b_C||^2 on the
  candidates' coefficients. For fixed w the optimal b is a ridge solve, so we train w on
  the exact profile objective F(w) = min_b L(b, w) by gradient descent from the official
  near-uniform initialisation and select argmax softmax(w). The abstract states that this
  adaptation is equivalent to Orthogonal Matching Pursuit (README, "The theorem").
* **Baselines**: the one-shot attention mask of Liao, Latty & Yang (LLY; an MLP
  128-64-d with LeakyReLU(0.2) whose batch-averaged output is softmaxed, top-k at the
  end; the paper's attention baseline, settings from the official benchmark code), and a
  random k-subset.

The masked softmax (``masked_softmax``) is the fast path; ``masked_softmax_reference`` is
its explicit reference (tested for outputs and gradients).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn


# ----------------------------------------------------------------------------- masks


def masked_softmax(logits: Tensor, candidates: Tensor) -> Tensor:
    """Softmax over the entries where ``candidates`` is 1, exactly 0 elsewhere (the
    official ``_softmax_with_mask``: shift by the max, exponentiate, zero, renormalise)."""
    z = logits.masked_fill(candidates <= 0, float("-inf"))
    if not torch.isfinite(z).any():
        return torch.zeros_like(logits)
    return torch.softmax(z, dim=-1)


def masked_softmax_reference(logits: Tensor, candidates: Tensor) -> Tensor:
    """exp(l_i - max l) * c_i / sum_j exp(l_j - max l) * c_j, written out."""
    e = torch.exp(logits - logits.max()) * candidates
    s = e.sum()
    return e / s if s > 0 else torch.zeros_like(e)


class SequentialAttentionMask(nn.Module):
    """The Sequential Attention feature mask (see module docstring).

    ``forward(progress)`` takes the fraction of training done (0..1, non-decreasing) and
    returns the weights to multiply the features with. State (logits, selected mask,
    selection order) lives in parameters/buffers, so a checkpoint resumes exactly.
    """

    def __init__(self, num_features: int, num_select: int, start: float = 0.1, stop: float = 1.0,
                 init_std: float = 1e-5, reset: bool = True) -> None:
        super().__init__()
        if not 0 < num_select <= num_features:
            raise ValueError(f"need 0 < num_select <= num_features, got {num_select}, {num_features}")
        self.num_features, self.num_select = num_features, num_select
        self.start, self.stop, self.init_std, self.reset = start, stop, init_std, reset
        self.logits = nn.Parameter(torch.randn(num_features) * init_std)
        self.register_buffer("selected", torch.zeros(num_features))
        self.register_buffer("order", torch.full((num_select,), -1, dtype=torch.long))

    @property
    def num_selected(self) -> int:
        return int((self.order >= 0).sum())

    def phase(self, progress: float) -> int:
        """-1 during warm-up, else the index of the current selection phase (0..k-1)."""
        frac = (progress - self.start) / (self.stop - self.start)
        if frac < 0:
            return -1
        return min(int(math.floor(frac * self.num_select)), self.num_select - 1)

    def candidate_weights(self) -> Tensor:
        return masked_softmax(self.logits, 1.0 - self.selected)

    @torch.no_grad()
    def select_next(self) -> int:
        """Add the unselected feature with the largest attention weight; reset the logits."""
        i = int(torch.argmax(self.candidate_weights()))
        self.order[self.num_selected] = i
        self.selected[i] = 1.0
        if self.reset:
            self.logits.copy_(torch.randn(self.num_features, device=self.logits.device) * self.init_std)
        return i

    def catch_up(self, progress: float) -> None:
        """Make the selections for every phase that has ended by ``progress``."""
        done = self.num_select if progress >= self.stop else max(self.phase(progress), 0)
        while self.num_selected < done:
            self.select_next()

    def forward(self, progress: float, update: bool = True) -> Tensor:
        """``update=False`` (evaluation) reads the current mask without selecting."""
        if update:
            self.catch_up(progress)
        if self.phase(progress) < 0:
            return torch.ones_like(self.logits)
        return self.candidate_weights() + self.selected

    def selected_indices(self) -> list[int]:
        return [int(i) for i in self.order if i >= 0]


class LiaoLattyYangMask(nn.Module):
    """One-shot attention baseline (LLY): MLP(d -> 128 -> 64 -> d, LeakyReLU 0.2) on the
    batch, averaged over the batch, softmaxed into a global feature weighting."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_features, 128), nn.LeakyReLU(0.2), nn.Linear(128, 64), nn.LeakyReLU(0.2),
            nn.Linear(64, num_features), nn.LeakyReLU(0.2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.net(x).mean(0), dim=-1)


# ------------------------------------------------------------------------ MLP models


class FeatureSelectionMLP(nn.Module):
    """The paper's classifier (official default: one hidden layer of 67 units) with a
    feature mask in front. ``selector``: "sa" (Sequential Attention), "lly" (one-shot
    attention) or "fixed" (a given 0/1 mask: the refit on selected features).
    ``forward(x, progress, update)``: ``progress`` is the fraction of training done (drives
    the Sequential Attention schedule), ``update`` allows selections (training only)."""

    def __init__(self, num_features: int, num_classes: int, selector: str, *, num_select: int = 0,
                 fixed_mask: Tensor | None = None, hidden: int = 67, start: float = 0.1) -> None:
        super().__init__()
        self.selector_kind = selector
        self.mlp = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        if selector == "sa":
            self.selector = SequentialAttentionMask(num_features, num_select, start=start)
        elif selector == "lly":
            self.selector = LiaoLattyYangMask(num_features)
        elif selector == "fixed":
            if fixed_mask is None:
                raise ValueError("selector='fixed' needs fixed_mask")
            self.register_buffer("fixed_mask", fixed_mask.float().clone())
        else:
            raise ValueError(f"unknown selector {selector!r}")

    def mask(self, x: Tensor, progress: float = 1.0, update: bool = False) -> Tensor:
        if self.selector_kind == "sa":
            return self.selector(progress, update=update)
        if self.selector_kind == "lly":
            return self.selector(x)
        return self.fixed_mask

    def forward(self, x: Tensor, progress: float = 1.0, update: bool = False) -> Tensor:
        return self.mlp(x * self.mask(x, progress, update))

    @torch.no_grad()
    def lly_scores(self, x: Tensor) -> Tensor:
        """The LLY attention over the whole training set (the official top-k input)."""
        return self.selector(x)


def train_and_test(model: FeatureSelectionMLP, data, *, epochs: int, lr: float, batch_size: int, seed: int) -> float:
    """Adam on cross-entropy with minibatches in a seeded order (``SeededRandomSampler``,
    as every recipe), ``progress`` = step / total steps; the last phase's selection is made
    at the end. Returns the test accuracy (torchmetrics MulticlassAccuracy, micro)."""
    from repro.training import SeededRandomSampler

    x_tr, y_tr = data.splits["train"]
    sampler = SeededRandomSampler(len(x_tr), seed)
    per_epoch = math.ceil(len(x_tr) / batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    total = epochs * per_epoch
    step = 0
    model.train()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)))
        for b in range(per_epoch):  # the batches a DataLoader over this sampler would yield
            idx = order[b * batch_size:(b + 1) * batch_size]
            loss = F.cross_entropy(model(x_tr[idx], progress=step / total, update=True), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    if model.selector_kind == "sa":
        model.selector.catch_up(1.0)  # the last phase's selection
    model.eval()
    x_te, y_te = data.splits["test"]
    with torch.no_grad():
        pred = model(x_te).argmax(-1)
    acc = torchmetrics.functional.classification.multiclass_accuracy(pred, y_te, num_classes=10, average="micro")
    return float(acc)


# ------------------------------------------------------------- linear adaptation / OMP


def omp_sequence(X: Tensor, y: Tensor, k: int) -> list[int]:
    """Orthogonal Matching Pursuit, written out: pick argmax |X_j^T r|, refit least squares
    on the selected columns, repeat (Pati, Rezaiifar & Krishnaprasad 1993). A second
    reference next to scikit-learn's ``orthogonal_mp``."""
    n, d = X.shape
    sel: list[int] = []
    r = y.clone()
    for _ in range(k):
        corr = (X.T @ r).abs()
        if sel:
            corr[sel] = -1.0
        j = int(torch.argmax(corr))
        sel.append(j)
        Xs = X[:, sel]
        coef = torch.linalg.lstsq(Xs, y.unsqueeze(-1)).solution.squeeze(-1)
        r = y - Xs @ coef
    return sel


def profile_objective(w: Tensor, X: Tensor, y: Tensor, selected: list[int], lam: float,
                      gram: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """F(w) = min_b 1/2||y - X_S b_S - X_C (softmax(w) * b_C)||^2 + lam/2 ||b_C||^2, with the
    inner minimum solved exactly (ridge on the candidates only, selected coefficients
    unpenalised). ``w`` holds one logit per candidate (all features not in ``selected``).

    With Z = X_[S,C] diag(1, s) the minimum is 1/2 y'y - 1/2 z'(Z'Z + Lambda)^-1 z, z = Z'y,
    and Z'Z, z only need the Gram matrix X'X, X'y (``gram``, precomputed once per problem)."""
    d = X.shape[1]
    G, c, yy = gram if gram is not None else (X.T @ X, X.T @ y, y @ y)
    chosen = set(selected)
    idx = torch.tensor(list(selected) + [j for j in range(d) if j not in chosen], dtype=torch.long)
    scale = torch.cat([torch.ones(len(selected), dtype=X.dtype), torch.softmax(w, dim=-1)])
    M = G[idx][:, idx] * scale[:, None] * scale[None, :]
    pen = torch.cat([torch.zeros(len(selected), dtype=X.dtype), torch.full((d - len(selected),), lam, dtype=X.dtype)])
    z = c[idx] * scale
    return 0.5 * yy - 0.5 * z @ torch.linalg.solve(M + torch.diag(pen), z)


def sequential_attention_linear(X: Tensor, y: Tensor, k: int, lam: float, *, steps: int = 400, lr: float = 0.5,
                                stop_weight: float = 0.99, init_std: float = 1e-5,
                                generator: torch.Generator | None = None) -> tuple[list[int], list[float]]:
    """The linear adaptation: for each of k steps, train the candidates' attention logits on
    the profile objective by normalised gradient descent (w <- w - lr * g / max|g|; one
    global step size, so the trajectory is the gradient flow's, only re-timed) from the
    official N(0, init_std^2) start, until the largest attention weight reaches
    ``stop_weight`` or ``steps`` run out; select its argmax. Returns the selection order
    and the final top attention weight of every step."""
    d = X.shape[1]
    gram = (X.T @ X, X.T @ y, y @ y)
    selected: list[int] = []
    top_weights: list[float] = []
    for _ in range(k):
        cand = [j for j in range(d) if j not in set(selected)]
        w = (torch.randn(len(cand), dtype=X.dtype, generator=generator) * init_std).requires_grad_()
        for _ in range(steps):
            obj = profile_objective(w, X, y, selected, lam, gram)
            (g,) = torch.autograd.grad(obj, w)
            with torch.no_grad():
                w -= lr * g / g.abs().max().clamp_min(1e-300)
                if torch.softmax(w, -1).max() >= stop_weight:
                    break
        s = torch.softmax(w.detach(), -1)
        top_weights.append(float(s.max()))
        selected.append(cand[int(torch.argmax(s))])
    return selected, top_weights


def global_minimiser_choice(X: Tensor, y: Tensor, selected: list[int], lam: float) -> int:
    """The vertex of the simplex with the lowest profile objective: with s = e_j the inner
    problem is 1-sparse and F = 1/2||r||^2 - 1/2 (x_j^T r)^2 / (||P x_j||^2 + lam), where r is
    the least-squares residual on the selected columns and P projects them out. (A
    diagnostic of the theory; the trained attention is what the claim checks.)"""
    if selected:
        Xs = X[:, selected]
        Q, _ = torch.linalg.qr(Xs)
        r = y - Q @ (Q.T @ y)
        Xp = X - Q @ (Q.T @ X)
    else:
        r, Xp = y, X
    gain = (X.T @ r) ** 2 / ((Xp * Xp).sum(0) + lam)
    gain[selected] = -1.0
    return int(torch.argmax(gain))
