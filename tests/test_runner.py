"""The run lifecycle on a toy training recipe: determinism, resume, errors, arms, ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import toy_recipe as T
from repro import ledger, runner
from repro.errors import EXIT_ERROR, EXIT_OK, UsageError
from repro.recipe import Claim, Tolerance
from repro.training import TrainerOptions

pytestmark = pytest.mark.unit


def _run(recipe, root: Path, **kw):
    opts = runner.RunOptions(profile=kw.pop("profile", "cpu"), runs_root=root, wandb="disabled",
                             trainer=TrainerOptions(progress=False), echo=lambda s: None, **kw)
    return runner.execute(recipe, opts)


def test_same_seed_same_metrics(tmp_path):
    a = _run(T.make_recipe(seeds=2), tmp_path)
    b = _run(T.make_recipe(seeds=2), tmp_path)
    assert a["per_seed"]["test/mse"] == b["per_seed"]["test/mse"]
    assert a["per_seed"]["test/mse"][0] != a["per_seed"]["test/mse"][1]  # seeds differ
    assert a["run_id"] != b["run_id"]


def test_result_schema_ledger_and_claims(tmp_path):
    res = _run(T.make_recipe(claims=[T.MSE_CLAIM]), tmp_path)
    stored = json.loads(Path(res["_path"]).read_text())
    assert ledger.validate_result(stored) == []
    assert stored["claims"][0]["verdict"] == "reproduced" and res["_exit_code"] == EXIT_OK
    assert stored["environment"]["packages"]["torch"]
    assert stored["units"]["seed0"]["training"]["epochs"] == 4
    assert stored["units"]["seed0"]["training"]["global_step"] == 32
    assert 0 < stored["cpu_time_s"] and stored["torch_threads"] >= 1  # cost beside the wall time
    (entry,) = ledger.read_index(tmp_path)
    assert entry["run_id"] == res["run_id"] and entry["verdicts"] == {"reproduced": 1}
    assert json.loads((tmp_path / "toy" / res["run_id"] / "run.json").read_text())["status"] == "completed"


def test_resume_after_interrupt_equals_straight_run(tmp_path):
    straight = _run(T.make_recipe(dropout=0.3, max_epochs=4), tmp_path / "a")
    flag = tmp_path / "interrupted.flag"
    recipe = T.make_recipe(dropout=0.3, max_epochs=4, interrupt_at_epoch=2, interrupt_flag=str(flag))
    with pytest.raises(runner.Interrupted) as exc:
        _run(recipe, tmp_path / "b")
    assert "--resume --run-id" in exc.value.hint
    (run_dir,) = (tmp_path / "b" / "toy").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    ckpts = list(run_dir.glob("units/seed0/checkpoints/*.ckpt"))
    assert ckpts, "Ctrl-C must leave a resumable checkpoint"
    assert not (run_dir / "result.json").exists() and ledger.read_index(tmp_path / "b") == []
    resumed = _run(recipe, tmp_path / "b", resume=True)
    assert resumed["run_id"] == run_dir.name
    a, b = straight["metrics"]["test/mse"], resumed["metrics"]["test/mse"]
    assert abs(a - b) <= 1e-4, (a, b)
    assert resumed["units"]["seed0"]["training"]["epochs"] == 4


def test_resume_skips_finished_units(tmp_path):
    flag = tmp_path / "flag"
    recipe = T.make_recipe(seeds=2, interrupt_at_epoch=1, interrupt_flag=str(flag), interrupt_seed=1)
    with pytest.raises(runner.Interrupted):
        _run(recipe, tmp_path)
    (run_dir,) = (tmp_path / "toy").iterdir()
    assert (run_dir / "units/seed0/metrics.json").exists()
    assert not (run_dir / "units/seed1/metrics.json").exists()
    seen = []
    opts = runner.RunOptions(profile="cpu", runs_root=tmp_path, wandb="disabled", resume=True,
                             trainer=TrainerOptions(progress=False), echo=seen.append)
    res = runner.execute(recipe, opts)
    assert any("seed0" in s and "reusing" in s for s in seen)
    assert len(res["per_seed"]["test/mse"]) == 2 and res["_exit_code"] == EXIT_OK
    with pytest.raises(UsageError, match="no unfinished"):
        _run(recipe, tmp_path, resume=True)


def test_unit_failure_is_recorded_as_error(tmp_path):
    res = _run(T.make_recipe(claims=[T.MSE_CLAIM], fail=True), tmp_path)
    assert res["claims"][0]["verdict"] == "error" and res["_exit_code"] == EXIT_ERROR
    assert "deliberate failure" in res["errors"][0]
    assert (tmp_path / "toy" / res["run_id"] / "units" / "seed0" / "error.log").exists()


def test_arms_prefix_metrics_and_derive(tmp_path):
    gap = Claim(id="gap", metric="gap", reported=0.0, better="higher", bound=True,
                tolerance=Tolerance("abs", 10.0, "assumed", "toy"), source="toy", protocol="toy")
    recipe = T.make_recipe(
        claims=[gap], arms={"slow": {"lr": 0.001}, "fast": {"lr": 0.05}},
        derive=lambda m: {"gap": m["slow/test/mse"] - m["fast/test/mse"]},
        metrics=("gap", "slow/test/mse", "fast/test/mse"),
    )
    res = _run(recipe, tmp_path)
    assert set(res["units"]) == {"seed0-slow", "seed0-fast"}
    assert res["metrics"]["gap"] == pytest.approx(res["metrics"]["slow/test/mse"] - res["metrics"]["fast/test/mse"])
    assert res["metrics"]["gap"] > 0 and res["claims"][0]["verdict"] == "reproduced"
    only = _run(recipe, tmp_path, arms=("fast",))
    assert set(only["units"]) == {"seed0-fast"} and only["claims"][0]["verdict"] == "error"


def test_seeded_sampler_accepts_any_int_seed_and_is_epoch_deterministic():
    from repro.training import SeededRandomSampler

    s = SeededRandomSampler(10, seed=2**63 - 25)  # e.g. a default torch.initial_seed()
    s.set_epoch(3)
    first = list(s)
    s.set_epoch(3)
    assert list(s) == first and sorted(first) == list(range(10))
    s.set_epoch(4)
    assert list(s) != first


def test_arm_reads_another_dataset_of_the_profile(tmp_path):
    from repro.recipe import Profile

    cfg = T.ToyConfig()
    arms = {"a": {"lr": 0.5}, "b": {"data_dir": "@second"}}
    profile = Profile("full", cfg, "toy", datasets=("first", "second"), arms=arms)
    data = {"first": tmp_path / "first", "second": tmp_path / "second"}
    assert runner.arm_config(profile, cfg, "a", data).lr == 0.5
    assert runner.arm_config(profile, cfg, "b", data).data_dir == str(tmp_path / "second")
    assert runner.arm_config(profile, cfg, "", data) is cfg
    with pytest.raises(ValueError, match="not one of the profile's datasets"):
        Profile("full", cfg, "toy", datasets=("first",), arms={"b": {"data_dir": "@second"}})


def test_run_of_some_arms_needs_only_their_datasets(tmp_path, monkeypatch):
    import data_scripts
    from repro.recipe import Profile

    asked = []
    monkeypatch.setattr(data_scripts, "ensure", lambda ds, fixture=False: asked.append(ds) or tmp_path / ds)
    arms = {"a": {"data_dir": "@first"}, "b": {"data_dir": "@second"}}
    profile = Profile("full", T.ToyConfig(), "toy", datasets=("first", "second"), arms=arms)
    cfg, data = runner.attach_data(profile, T.ToyConfig(), ["b"])
    assert asked == ["second"] and set(data) == {"second"}
    asked.clear()
    runner.attach_data(profile, T.ToyConfig(), ["a", "b"])
    assert asked == ["first", "second"]


def test_run_records_the_git_state_taken_when_the_command_started(tmp_path):
    started = {"commit": "0" * 40, "dirty": False}
    res = _run(T.make_recipe(), tmp_path, git=started)
    assert res["environment"]["git"] == started
    assert _run(T.make_recipe(), tmp_path)["environment"]["git"].keys() == {"commit", "dirty"}
