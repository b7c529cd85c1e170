"""Registry-parametrized tests over every recipe (timm-style): the smoke profile runs
end to end, its metrics cover every claimed metric, and each training recipe's tiny
model (its smoke config) trains: forward, backward, every parameter gets a finite
gradient, and the state dict round-trips."""

from __future__ import annotations

import math

import pytest

from repro import catalogue, ledger, registry, runner
from repro.training import TrainerOptions

SLUGS = catalogue.implemented_slugs()


def _covered(metric: str, logged: set[str], arms: list[str], recipe) -> bool:
    if metric in logged:
        return True
    smoke_arms = recipe.profiles["smoke"].arms if "smoke" in recipe.profiles else {}
    if any(f"{a}/{metric}" in logged for a in smoke_arms):  # logged by one of the smoke profile's arms
        return True
    head, _, rest = metric.partition("/")
    if head in arms and (rest in logged or any(k.endswith("/" + rest) for k in logged)):
        return True
    if recipe.derive is not None and arms:  # derived across arms: feed the smoke metrics as every arm
        base = {k.partition("/")[2] if k.partition("/")[0] in arms else k: v for k, v in
                ((k, v) for k, v in _SMOKE_METRICS.get(recipe.slug, {}).items())}
        fake = {f"{a}/{k}": v for a in arms for k, v in base.items()}
        try:
            return metric in recipe.derive(fake)
        except Exception:  # noqa: BLE001
            return False
    return False


_SMOKE_METRICS: dict[str, dict[str, float]] = {}


@pytest.mark.smoke
@pytest.mark.parametrize("slug", SLUGS)
def test_smoke_profile_runs_and_covers_claimed_metrics(slug, tmp_path):
    recipe = registry.get_recipe(slug)
    opts = runner.RunOptions(profile="smoke", runs_root=tmp_path, wandb="disabled",
                             trainer=TrainerOptions(progress=False), echo=lambda s: None)
    res = runner.execute(recipe, opts)
    assert res["_exit_code"] == 0 and not res["errors"], res["errors"]
    assert ledger.validate_result(res) == []
    logged = {k for k, v in res["metrics"].items() if v is not None}
    _SMOKE_METRICS[slug] = dict(res["metrics"])
    assert logged, "the smoke run logged no metric"
    missing = []
    for profile_name, claim in recipe.all_claims():
        if claim.requires:  # measurable only after a manual step (e.g. SPICE's CoreNLP jars)
            continue
        arms = list(recipe.profiles[profile_name].arms)
        if not _covered(claim.metric, logged, arms, recipe):
            missing.append(f"{profile_name}:{claim.metric}")
    assert not missing, f"claimed metrics never logged by the smoke pipeline: {missing}"


@pytest.mark.unit
@pytest.mark.parametrize("slug", [s for s in SLUGS if registry.get_recipe(s).is_training])
def test_tiny_model_trains_and_round_trips(slug):
    import torch

    recipe = registry.get_recipe(slug)
    smoke = recipe.profiles["smoke"]
    arm_cfgs = [smoke.config] if not smoke.arms else [
        runner.cfgmod.replace_fields(smoke.config, dict(ov)) for ov in smoke.arms.values()]
    for cfg in arm_cfgs:
        cfg, _ = runner.attach_data(smoke, cfg)
        torch.manual_seed(0)
        model = recipe.build_model(cfg)
        dm = recipe.build_data(cfg)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        model.train()
        loss = model.training_step(batch, 0)
        loss = loss["loss"] if isinstance(loss, dict) else loss
        assert torch.isfinite(loss), "non-finite loss on the tiny model"
        loss.backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not no_grad, f"parameters without gradient: {no_grad}"
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"non-finite gradients: {bad}"
        clone = recipe.build_model(cfg)
        clone.load_state_dict(model.state_dict())
        model.eval()
        clone.eval()
        with torch.no_grad():
            a, b = model.training_step(batch, 0), clone.training_step(batch, 0)
        a = a["loss"] if isinstance(a, dict) else a
        b = b["loss"] if isinstance(b, dict) else b
        assert math.isclose(float(a), float(b), rel_tol=0, abs_tol=0), "state dict does not round-trip"


@pytest.mark.unit
@pytest.mark.parametrize("slug", SLUGS)
def test_lazy_hooks_resolve(slug):
    """A hook named as "module:function" (``repro.recipe.lazy``) must point at a real function."""
    from repro.recipe import lazy

    recipe = registry.get_recipe(slug)
    for hook in ("measure", "build_model", "build_data", "derive", "plot"):
        fn = getattr(recipe, hook, None)
        if isinstance(fn, lazy):
            assert callable(fn.resolve()), f"{slug}.{hook} -> {fn!r}"
