"""In-context linear regression prompts (He, Pan, Chen & Yang, ICML 2025, arXiv 2503.12734;
setting of the official notebook ``icl_linear.ipynb``):

    x_1..x_L, x_q ~ N(0, I_d),  beta ~ N(0, I_d / d),  y_i = beta^T x_i + eps_i,  eps_i ~ N(0, sigma^2)

Tokens are z_i = (x_i, y_i) in R^{d+1}; the query token is z_q = (x_q, 0); the target is
the noisy y_q = beta^T x_q + eps_q. The official defaults: d = 5, L = 40 (8 d), sigma^2 =
0.1, fresh prompts for every training step.

Baselines on the same prompts (``bayes_predict``, ``gd_predict``):

* Bayes-optimal (posterior mean under the true prior = ridge with penalty sigma^2 d):
      beta_hat = (X^T X + sigma^2 d I)^{-1} X^T y
* one-step debiased gradient descent from zero with step eta:
      y_hat = eta * (1/L) sum_i y_i x_i^T x_q
"""

from __future__ import annotations

import torch


def sample_prompts(n: int, length: int, d: int, noise_var: float, generator: torch.Generator,
                   dtype=torch.float32) -> dict[str, torch.Tensor]:
    """``z`` (n, L, d+1), ``zq`` (n, d+1), ``yq`` (n,) in ``dtype``, and the raw ``x``,
    ``y``, ``xq``, ``beta`` (same dtype) for the baselines."""
    x = torch.randn(n, length, d, generator=generator, dtype=dtype)
    xq = torch.randn(n, d, generator=generator, dtype=dtype)
    beta = torch.randn(n, d, generator=generator, dtype=dtype) / d**0.5
    sd = noise_var**0.5
    y = torch.einsum("nld,nd->nl", x, beta) + sd * torch.randn(n, length, generator=generator, dtype=dtype)
    yq = (xq * beta).sum(-1) + sd * torch.randn(n, generator=generator, dtype=dtype)
    z = torch.cat([x, y[..., None]], dim=-1)
    zq = torch.cat([xq, torch.zeros(n, 1, dtype=dtype)], dim=-1)
    return {"z": z, "zq": zq, "yq": yq, "x": x, "y": y, "xq": xq, "beta": beta}


def bayes_predict(x: torch.Tensor, y: torch.Tensor, xq: torch.Tensor, noise_var: float) -> torch.Tensor:
    d = x.shape[-1]
    gram = x.transpose(-1, -2) @ x + noise_var * d * torch.eye(d, dtype=x.dtype)
    beta_hat = torch.linalg.solve(gram, (x.transpose(-1, -2) @ y[..., None]))[..., 0]
    return (beta_hat * xq).sum(-1)


def gd_feature(x: torch.Tensor, y: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """(1/L) sum_i y_i x_i^T x_q: the one-step GD prediction with unit step."""
    return torch.einsum("nl,nld,nd->n", y, x, xq) / x.shape[1]


def fit_gd_step(x, y, xq, yq) -> float:
    """Least-squares step eta for the one-step GD predictor on the given prompts."""
    f = gd_feature(x, y, xq)
    return float((f * yq).sum() / (f * f).sum())


def gd_predict(x, y, xq, eta: float) -> torch.Tensor:
    return eta * gd_feature(x, y, xq)
