"""The run lifecycle (DESIGN.md, "Run lifecycle").

1. resolve recipe + profile, apply ``--set`` overrides;
2. check the data (fixtures are built; real data is never downloaded here);
3. for each seed and arm ("unit"): seed everything, train/test (or measure);
   each finished unit is saved at once, so ``--resume`` skips it, and an
   interrupted unit continues from its ``last.ckpt``;
4. aggregate per-seed values, judge every claim;
5. write ``result.json`` atomically, append the ledger index, finish W&B;
6. the CLI prints the table and exits with the verdicts' code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import config as cfgmod
from . import ledger
from .errors import EXIT_INTERRUPTED, ReproError, UsageError
from .recipe import Profile, Recipe
from .verdict import counts, exit_code, judge_all

log = logging.getLogger("repro")
DEFAULT_BASE_SEED = 0


class Interrupted(ReproError):
    exit_code = EXIT_INTERRUPTED


@dataclass
class RunOptions:
    profile: str = "full"
    seeds: int | None = None
    base_seed: int = DEFAULT_BASE_SEED
    overrides: tuple[str, ...] = ()
    resume: bool = False
    run_id: str | None = None
    wandb: str = "auto"
    runs_root: Path | None = None
    arms: tuple[str, ...] = ()
    trainer: Any = None  # repro.training.TrainerOptions (imported lazily: it pulls torch)
    argv: tuple[str, ...] = ()
    echo: Callable[[str], None] = print
    jobs: int | None = None  # units run at once (worker processes); None: the profile's `jobs`
    threads: int | None = None  # torch threads per worker (default: CPU count // jobs)
    only_unit: str | None = None  # worker mode: run this one unit of a resumed run, then stop
    git: dict | None = None  # git state when the command started (default: taken when the run starts)


@dataclass
class RunContext:
    """What a ``measure`` function (or a custom training flow) receives."""

    recipe: Recipe
    profile: Profile
    cfg: Any
    seed: int
    arm: str
    unit_dir: Path
    run_dir: Path
    data: Mapping[str, Path]
    trainer_options: Any
    tracker: Any
    echo: Callable[[str], None] = print
    first_seed: int = 0  # measurements that need not repeat per seed run on this one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self):
        """The torch device that ``--accelerator`` (default auto) selects."""
        import torch

        acc = getattr(self.trainer_options, "accelerator", "auto")
        if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    def log(self, metrics: Mapping[str, float]) -> None:
        if self.tracker is not None:
            prefix = f"seed{self.seed}/" + (f"{self.arm}/" if self.arm else "")
            self.tracker.log({prefix + k: v for k, v in metrics.items()})

    def fit_and_test(self, model, datamodule, name: str = "", cfg: Any = None) -> dict[str, Any]:
        """Train and test one model with the engine's Trainer (checkpointed under
        this unit, or under ``name`` within it; resumed from ``last.ckpt`` when present).
        ``cfg``: the config whose schedule (max_epochs, max_steps, clipping, ...) the Trainer
        follows, for one stage of a multi-stage recipe; default: the unit's config."""
        from .training import fit_and_test, last_checkpoint, make_trainer

        sub = self.unit_dir / name if name else self.unit_dir
        logger = self.tracker.lightning_logger(f"seed{self.seed}/{self.arm or 'main'}/{name}".rstrip("/")) \
            if self.tracker is not None else None
        trainer = make_trainer(self.cfg if cfg is None else cfg, self.trainer_options, sub, logger=logger)
        return fit_and_test(model, datamodule, trainer, ckpt_path=last_checkpoint(sub))


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None



def _run_workers(recipe: Recipe, profile: Profile, rdir: Path, root: Path, seeds, arms, opts: RunOptions,
                 jobs: int) -> None:
    """Run the unfinished units ``jobs`` at a time, each in a worker process
    (``repro run ... --resume --run-id R --unit U``); the caller's loop then finds their
    ``metrics.json`` and reuses them, and re-runs in-process any unit a worker did not
    finish, so errors are recorded exactly as in a sequential run. Workers log to
    ``units/<unit>/worker.log`` and do not report to W&B."""
    import subprocess

    pending = [f"seed{s}" + (f"-{a}" if a else "") for s in seeds for a in arms]
    pending = [u for u in pending if not (rdir / "units" / u / "metrics.json").exists()]
    threads = opts.threads or max(1, (os.cpu_count() or 1) // jobs)
    base = [sys.executable, "-m", "repro", "run", recipe.slug, "--profile", profile.name, "--resume",
            "--run-id", rdir.name, "--runs-dir", str(root), "--wandb", "disabled", "--no-progress",
            "--threads", str(threads)]
    if opts.trainer is not None:
        base += ["--accelerator", str(opts.trainer.accelerator), "--devices", str(opts.trainer.devices)]
        if opts.trainer.precision:
            base += ["--precision", str(opts.trainer.precision)]
        if opts.trainer.deterministic:
            base.append("--deterministic")
    running: list[tuple[str, subprocess.Popen, Any]] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                unit = pending.pop(0)
                (rdir / "units" / unit).mkdir(parents=True, exist_ok=True)
                logf = open(rdir / "units" / unit / "worker.log", "w")  # noqa: SIM115 - closed below
                opts.echo(f"[{unit}] running (worker)")
                running.append((unit, subprocess.Popen([*base, "--unit", unit], stdout=logf,
                                                       stderr=subprocess.STDOUT), logf))
            time.sleep(0.2)
            for item in list(running):
                unit, proc, logf = item
                if proc.poll() is not None:
                    logf.close()
                    running.remove(item)
                    if proc.returncode != 0:
                        opts.echo(f"[{unit}] worker exited {proc.returncode} (see "
                                  f"{rdir / 'units' / unit / 'worker.log'}); it runs again here")
    except BaseException:
        for _, proc, logf in running:
            proc.terminate()
        for _, proc, logf in running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            logf.close()
        raise

def _seed_list(opts: RunOptions, profile: Profile) -> list[int]:
    needed = max([profile.seeds, *[c.seeds for c in profile.claims]])
    n = opts.seeds if opts.seeds is not None else needed
    if n < 1:
        raise UsageError("--seeds must be >= 1")
    return [opts.base_seed + i for i in range(n)]


def resolve_profile(recipe: Recipe, name: str) -> Profile:
    if name not in recipe.profiles:
        raise UsageError(
            f"{recipe.slug} has no profile {name!r}; it has: {', '.join(recipe.profiles)}"
        )
    return recipe.profiles[name]


def attach_data(profile: Profile, cfg: Any, arms: list[str] | None = None) -> tuple[Any, dict[str, Path]]:
    """Locate the profile's datasets (building fixtures for smoke profiles; real data
    is never downloaded here) and fill ``cfg.data_dir`` with the first one if empty.
    When every arm of the run names its dataset (``data_dir="@<dataset>"``), only those
    datasets are needed: ``--arm coco-soft`` does not ask for Flickr8k."""
    import data_scripts

    needed = list(profile.datasets)
    named = [profile.arm_dataset(a) for a in (arms or [])]
    if named and None not in named:
        needed = [ds for ds in profile.datasets if ds in named]
    data = {ds: data_scripts.ensure(ds, fixture=profile.use_fixtures) for ds in needed}
    if data and hasattr(cfg, "data_dir") and not getattr(cfg, "data_dir"):
        cfg = dataclasses.replace(cfg, data_dir=str(next(iter(data.values()))))
    return cfg, data


def arm_config(profile: Profile, cfg: Any, arm: str, data: dict[str, Path]) -> Any:
    """The config of one arm: the profile's arm overrides on top of ``cfg``. An arm that
    trains on another of the profile's datasets says so with ``data_dir="@<dataset>"``,
    which becomes that dataset's prepared folder (or fixture)."""
    if not arm:
        return cfg
    values = dict(profile.arms.get(arm, {}))
    ds = profile.arm_dataset(arm)
    if ds is not None:
        values["data_dir"] = str(data[ds])  # Profile validated that the name is one of its datasets
    return cfgmod.replace_fields(cfg, values)


def _find_resumable(paper: str, profile: str, root: Path) -> Path | None:
    candidates = []
    for run_json in sorted((root / paper).glob("*/run.json")):
        try:
            state = json.loads(run_json.read_text())
        except (OSError, ValueError):
            continue
        if state.get("profile") == profile and state.get("status") in ("running", "interrupted", "failed"):
            candidates.append(run_json.parent)
    return candidates[-1] if candidates else None


def _arms(profile: Profile, only: tuple[str, ...]) -> list[str]:
    arms = list(profile.arms) or [""]
    if only:
        unknown = [a for a in only if a not in profile.arms]
        if unknown:
            raise UsageError(f"unknown arm(s) {', '.join(unknown)}; this profile has: {', '.join(profile.arms)}")
        arms = [a for a in arms if a in only]
    return arms


def _prefix(arm: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{arm}/{k}" if arm else k: v for k, v in metrics.items()}


def execute(recipe: Recipe, opts: RunOptions) -> dict[str, Any]:
    """Run a recipe's profile end to end; returns the stored result (with its path)."""
    from . import envinfo
    from .tracking import Tracker
    from .training import TrainerOptions

    topts = opts.trainer or TrainerOptions()
    root = opts.runs_root or ledger.runs_root()
    profile = resolve_profile(recipe, opts.profile)

    # 1. run folder: new, or the one being resumed (with its stored config)
    if opts.resume:
        if opts.run_id:
            rdir = ledger.run_dir(recipe.slug, opts.run_id, root)
            if not (rdir / "run.json").exists():
                raise UsageError(f"no run {opts.run_id} of {recipe.slug} under {root}")
        else:
            rdir = _find_resumable(recipe.slug, profile.name, root)
            if rdir is None:
                raise UsageError(f"no unfinished {profile.name} run of {recipe.slug} to resume under {root}")
        state = json.loads((rdir / "run.json").read_text())
        if state.get("status") == "completed":
            raise UsageError(f"run {rdir.name} is already complete; `repro check {rdir.name}` re-judges it")
        if state["profile"] != profile.name:
            raise UsageError(f"run {rdir.name} is a {state['profile']} run, not {profile.name}")
        base_cfg = cfgmod.apply_overrides(profile.config, state["overrides"])
        if opts.overrides and list(opts.overrides) != state["overrides"]:
            raise UsageError("--resume continues with the stored config; drop --set or start a new run")
        cfg = base_cfg
        seeds = state["seeds"]
        arms = state["arms"]
        run_id = rdir.name
        started = state["started"]
        overrides = state["overrides"]
    else:
        cfg = cfgmod.apply_overrides(profile.config, opts.overrides)
        seeds = _seed_list(opts, profile)
        arms = _arms(profile, opts.arms)
        run_id = opts.run_id or ledger.new_run_id()
        rdir = ledger.run_dir(recipe.slug, run_id, root)
        if rdir.exists():
            raise UsageError(f"run folder {rdir} exists already")
        started = time.time()
        overrides = list(opts.overrides)

    # 2. data: fixtures are built, real data must be present (else DataMissing -> exit 3)
    cfg, data = attach_data(profile, cfg, arms)

    rdir.mkdir(parents=True, exist_ok=True)
    run_state = {
        "run_id": run_id, "paper": recipe.slug, "profile": profile.name, "status": "running",
        "overrides": overrides, "seeds": seeds, "arms": arms, "started": started,
        "argv": list(opts.argv), "pid": os.getpid(),
    }
    if opts.only_unit is None:  # a worker leaves the run's state to the process that started it
        ledger.atomic_write_json(rdir / "run.json", run_state)

    env = envinfo.collect(git=opts.git)
    cfg_dict = cfgmod.to_dict(cfg)
    tracker = Tracker(
        opts.wandb, rdir, name=f"{recipe.slug}-{profile.name}-{run_id}", group=recipe.slug,
        config={"paper": recipe.slug, "profile": profile.name, "run_id": run_id, **cfg_dict},
        tags=[profile.name],
    )

    per_unit: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    t0, cpu0 = time.time(), _cpu_seconds()
    try:
        jobs = opts.jobs if opts.jobs is not None else min(profile.jobs, os.cpu_count() or 1)
        if opts.only_unit is None and jobs > 1:
            _run_workers(recipe, profile, rdir, root, seeds, arms, opts, jobs)
        for seed in seeds:
            for arm in arms:
                unit = f"seed{seed}" + (f"-{arm}" if arm else "")
                if opts.only_unit is not None and unit != opts.only_unit:
                    continue
                udir = rdir / "units" / unit
                done = udir / "metrics.json"
                if done.exists():
                    per_unit[unit] = json.loads(done.read_text())
                    opts.echo(f"[{unit}] done earlier; reusing its metrics")
                    continue
                arm_cfg = arm_config(profile, cfg, arm, data)
                opts.echo(f"[{unit}] running")
                u0 = time.time()
                try:
                    out = _run_unit(recipe, profile, arm_cfg, seed, arm, udir, rdir, data, topts, tracker, opts,
                                    seeds[0])
                except (KeyboardInterrupt, Interrupted):
                    raise
                except SystemExit as exc:  # Lightning turns Ctrl-C into SystemExit(1) after saving
                    raise Interrupted(f"interrupted in {unit}") from exc
                except ReproError:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded, the other units still run
                    udir.mkdir(parents=True, exist_ok=True)
                    (udir / "error.log").write_text(traceback.format_exc())
                    errors.append(f"{unit}: {type(exc).__name__}: {exc}")
                    opts.echo(f"[{unit}] error: {type(exc).__name__}: {exc} (see {udir / 'error.log'})")
                    continue
                out["wall_time_s"] = round(time.time() - u0, 3)
                out["seed"], out["arm"] = seed, arm
                ledger.atomic_write_json(done, out)
                per_unit[unit] = out
                _remove_checkpoints(udir)
    except (KeyboardInterrupt, Interrupted) as exc:
        if opts.only_unit is not None:
            raise
        run_state["status"] = "interrupted"
        ledger.atomic_write_json(rdir / "run.json", run_state)
        tracker.finish({"status": "interrupted"}, [], exit_code=EXIT_INTERRUPTED)
        raise Interrupted(
            f"run {run_id} interrupted; finished units and the last checkpoint are kept",
            hint=f"repro run {recipe.slug} --profile {profile.name} --resume --run-id {run_id}",
        ) from exc
    except BaseException:
        if opts.only_unit is not None:
            raise
        run_state["status"] = "failed"
        ledger.atomic_write_json(rdir / "run.json", run_state)
        tracker.finish({"status": "failed"}, [], exit_code=2)
        raise

    if opts.only_unit is not None:  # worker: the unit's metrics.json (or error.log) is its result
        tracker.finish({"status": "worker"}, [], exit_code=2 if errors else 0)
        return {"_exit_code": 2 if errors else 0, "run_id": run_id, "worker_unit": opts.only_unit,
                "errors": errors}

    # 4. aggregate and judge
    per_seed: dict[str, list[float | None]] = {}
    seed_metrics: list[dict[str, float]] = []
    for seed in seeds:
        merged: dict[str, float] = {}
        for arm in arms:
            unit = f"seed{seed}" + (f"-{arm}" if arm else "")
            if unit in per_unit:
                merged.update(_prefix(arm, per_unit[unit]["metrics"]))
        if recipe.derive is not None:
            try:
                merged.update(recipe.derive(dict(merged)))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"derive (seed {seed}): {type(exc).__name__}: {exc}")
        seed_metrics.append(merged)
    keys = sorted({k for m in seed_metrics for k in m})
    for key in keys:
        per_seed[key] = [m.get(key) for m in seed_metrics]
    metrics = {}
    for key, vals in per_seed.items():
        finite = [v for v in vals if isinstance(v, (int, float)) and v == v]
        if finite:
            metrics[key] = sum(finite) / len(finite)

    if recipe.plot is not None:
        try:
            fig_dir = rdir / "figures"
            fig_dir.mkdir(parents=True, exist_ok=True)
            recipe.plot(per_seed, fig_dir)
        except Exception as exc:  # noqa: BLE001 - a figure must not cost the verdicts
            opts.echo(f"figure failed: {type(exc).__name__}: {exc}")
    results = judge_all(profile.claims, per_seed, errors=[e for e in errors])
    claims_json = []
    for claim, res in zip(profile.claims, results):
        entry = res.to_json()
        entry.update(
            unit=claim.unit, better=claim.better, bound=claim.bound, kind=claim.kind,
            tolerance=dataclasses.asdict(claim.tolerance), aggregate=claim.aggregate,
            seeds_required=claim.seeds, source=claim.source, protocol=claim.protocol, known_gap=claim.known_gap,
            requires=claim.requires,
        )
        claims_json.append(entry)

    wall = round(time.time() - t0, 3)
    result = {
        "run_id": run_id,
        "paper": recipe.slug,
        "profile": profile.name,
        "status": "completed",
        "argv": list(opts.argv),
        "config": cfg_dict,
        "config_hash": cfgmod.config_hash(cfg),
        "overrides": overrides,
        "seeds": seeds,
        "arms": arms,
        "deterministic": bool(getattr(topts, "deterministic", False)),
        "trainer": topts.to_json() if hasattr(topts, "to_json") else {},
        "data": {k: {"path": str(v), "fixture": profile.use_fixtures} for k, v in data.items()},
        "metrics": metrics,
        "per_seed": per_seed,
        "units": {u: {k: v for k, v in o.items() if k != "metrics"} for u, o in per_unit.items()},
        "claims": claims_json,
        "errors": errors,
        "environment": env,
        "wandb": tracker.info(),
        "wall_time_s": wall if not opts.resume else round(time.time() - started, 3),
        # CPU seconds of this process and its children (this session, not a resumed run's earlier
        # part): unlike the wall time it does not grow when other jobs share the machine, and for
        # a one-thread run it equals the wall time on an idle core.
        "cpu_time_s": round(_cpu_seconds() - cpu0, 3),
        "torch_threads": _torch_threads(),
        "started": started,
        "finished": time.time(),
    }
    code = exit_code(c["verdict"] for c in claims_json)
    if errors and code == 0:
        code = 2
    tracker.finish(
        {"verdicts": counts(c["verdict"] for c in claims_json), **{f"final/{k}": v for k, v in metrics.items()}},
        claims_json, exit_code=code,
    )
    result["wandb"] = tracker.info()
    path = ledger.write_result(result, root)
    ledger.append_index(ledger.index_entry(result), root)
    run_state["status"] = "completed"
    ledger.atomic_write_json(rdir / "run.json", run_state)
    result["_path"] = str(path)
    result["_exit_code"] = code
    return result


def _run_unit(recipe, profile, cfg, seed, arm, udir: Path, rdir: Path, data, topts, tracker, opts,
              first_seed: int) -> dict[str, Any]:
    from .training import seed_everything

    udir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    if topts is not None and getattr(topts, "deterministic", False):
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    ctx = RunContext(recipe, profile, cfg, seed, arm, udir, rdir, data, topts, tracker, echo=opts.echo,
                     first_seed=first_seed)
    if recipe.measure is not None:
        metrics = dict(recipe.measure(cfg, ctx))
        ctx.log(metrics)
        return {"metrics": {k: float(v) for k, v in metrics.items()}, "training": None}
    model = recipe.build_model(cfg)
    datamodule = recipe.build_data(cfg)
    return ctx.fit_and_test(model, datamodule)


def _remove_checkpoints(udir: Path) -> None:
    """A finished unit's metrics are stored; its checkpoints are kept only with
    ``REPRO_KEEP_CHECKPOINTS=1`` (they can be large)."""
    if os.environ.get("REPRO_KEEP_CHECKPOINTS") == "1":
        return
    for ck in udir.rglob("checkpoints"):
        if ck.is_dir():
            shutil.rmtree(ck, ignore_errors=True)


def quiet_libraries(verbose: bool = False) -> None:
    level = logging.INFO if verbose else logging.WARNING
    # Lightning sets its loggers to INFO when it is imported, so import it first or the
    # levels set here are overwritten ("GPU available: ...", tips, limit_* notices).
    import lightning.pytorch  # noqa: F401

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=r".*_pytree.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning\..*")
        warnings.filterwarnings("ignore", message=r".*there is no last checkpoint available.*")
        warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")
    sys.stdout.flush()
