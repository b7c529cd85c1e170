"""Training and evaluation of one-layer multi-head softmax attention on in-context linear
regression (the official notebook's protocol, shortened for a CPU):

* training: Adam on the squared error of y_q, a fresh batch of prompts every step
  (online, as in the official ``run_experiment``), prompt length ``cfg.length``;
* test: fresh prompts (a fixed test seed) at several prompt lengths; MSE against the
  noisy y_q, beside the Bayes-optimal predictor and the one-step debiased-GD predictor
  (step fitted by least squares on separate prompts of the training length);
* mechanism: the KQ / OV pattern statistics of the trained weights (``pattern_metrics``).

The loop is plain PyTorch rather than the engine's Lightning Trainer: a ~150-parameter
model trained on a fresh batch per step spends most of its time in per-step framework
overhead under Lightning; there is nothing to checkpoint that a rerun would not redo in
about a minute.
"""

from __future__ import annotations

import math

import torch

from .data import bayes_predict, fit_gd_step, gd_predict, sample_prompts
from .model import MultiHeadSoftmaxRegressor, pattern_metrics


def train(cfg, seed: int) -> tuple[MultiHeadSoftmaxRegressor, list[float]]:
    torch.manual_seed(seed)
    model = MultiHeadSoftmaxRegressor(cfg.d, cfg.heads)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(10_000 + seed)
    curve = []
    running = 0.0
    for step in range(1, cfg.steps + 1):
        p = sample_prompts(cfg.batch_size, cfg.length, cfg.d, cfg.noise_var, gen)
        loss = ((model(p["z"], p["zq"]) - p["yq"]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        if step % cfg.log_every == 0:
            curve.append(running / cfg.log_every)
            running = 0.0
    return model, curve


@torch.no_grad()
def evaluate(model, cfg) -> dict[str, float]:
    out: dict[str, float] = {}
    f64 = torch.float64
    fit = sample_prompts(cfg.test_prompts, cfg.length, cfg.d, cfg.noise_var,
                         torch.Generator().manual_seed(cfg.data_seed + 7), dtype=f64)
    eta = fit_gd_step(fit["x"], fit["y"], fit["xq"], fit["yq"])
    out["gd_step"] = eta
    for length in cfg.test_lengths:
        p = sample_prompts(cfg.test_prompts, length, cfg.d, cfg.noise_var,
                           torch.Generator().manual_seed(cfg.data_seed + 1000 + length), dtype=f64)
        yq = p["yq"]
        preds = {
            "model": model(p["z"].float(), p["zq"].float()).double(),
            "bayes": bayes_predict(p["x"], p["y"], p["xq"], cfg.noise_var),
            "gd": gd_predict(p["x"], p["y"], p["xq"], eta),
        }
        for name, pred in preds.items():
            out[f"{name}/mse_L{length}"] = float(((pred - yq) ** 2).mean())
    return out


def measure(cfg, ctx) -> dict[str, float]:
    model, curve = train(cfg, ctx.seed)
    metrics = evaluate(model, cfg)
    metrics.update({f"pattern/{k}": v for k, v in pattern_metrics(model).items()})
    metrics["train/final_loss"] = curve[-1] if curve else math.nan
    return metrics
