"""cpu-profile claim runs: real verdicts on 2 CPU cores. Profiles marked ``slow``
(over ~3 minutes) run with ``make test-all`` / ``make reproduce-cpu`` only; the others
run in CI. A verdict of not-reproduced is a valid result here; errors and claims left
unmeasured are not."""

from __future__ import annotations

import pytest

from repro import catalogue, registry, runner
from repro.training import TrainerOptions


def _cases():
    out = []
    for slug in catalogue.implemented_slugs():
        prof = registry.get_recipe(slug).profiles.get("cpu")
        if prof is None or not prof.claims:
            continue
        marks = [pytest.mark.cpu_claim] + ([pytest.mark.slow] if prof.slow else [])
        out.append(pytest.param(slug, marks=marks, id=slug))
    return out


@pytest.mark.parametrize("slug", _cases())
def test_cpu_profile_gives_computed_verdicts(slug, tmp_path):
    recipe = registry.get_recipe(slug)
    opts = runner.RunOptions(profile="cpu", runs_root=tmp_path, wandb="disabled",
                             trainer=TrainerOptions(progress=False), echo=lambda s: None)
    res = runner.execute(recipe, opts)
    verdicts = {c["id"]: c["verdict"] for c in res["claims"]}
    assert not res["errors"], res["errors"]
    bad = {k: v for k, v in verdicts.items() if v in ("error", "not-measured")}
    assert not bad, f"claims without a computed verdict: {bad}"
    assert res["_exit_code"] in (0, 1)
