"""The recipe contract: what a paper declares (see ../DESIGN.md, "The recipe contract").

A paper registers one :class:`Recipe` in ``papers/<slug>/recipe.py``. Nothing in this
module imports torch: ``repro list`` and ``repro info`` read recipes without touching
the papers' models, which are imported only inside ``build_model`` / ``measure``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

Better = Literal["higher", "lower"]
TolKind = Literal["abs", "rel", "sigma"]
# What a tolerance rests on. `analysis`: an error analysis written in the recipe/README;
# `paper_std` / `rerun_std`: a spread reported by the paper or measured over our re-runs;
# `definition`: the claim is a bound that the paper (or our stated expectation) defines;
# `assumed`: a stated assumption, flagged as such in `repro info`.
TolBasis = Literal["analysis", "paper_std", "rerun_std", "definition", "assumed"]
Aggregate = Literal["mean", "median", "min", "max"]
ClaimKind = Literal["paper", "expectation"]

PROFILE_NAMES = ("full", "cpu", "smoke")


@dataclass(frozen=True)
class TrainConfig:
    """Fields every training recipe shares; a recipe's config subclasses this.

    Schedules are in epochs (or steps where the paper states steps), never tied to
    the number of devices, so a run on 8 GPUs means the same thing as one on 1.
    """

    max_epochs: int = 1
    max_steps: int = -1
    batch_size: int = 32
    lr: float = 1e-3
    gradient_clip_val: float | None = None
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    num_workers: int = 0
    checkpoint_every_n_epochs: int = 1  # 0: checkpoint only on Ctrl-C/crash (tiny, fast models)
    data_dir: str = ""  # filled by the runner with the profile's (first) dataset folder


@dataclass(frozen=True)
class Tolerance:
    """How far a measurement may sit from the reported value and still count.

    ``abs``: |measured - reported| <= value. ``rel``: <= value * |reported|.
    ``sigma``: <= value * std, where ``std`` is the spread named by ``basis``.
    """

    kind: TolKind
    value: float
    basis: TolBasis
    note: str
    std: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("abs", "rel", "sigma"):
            raise ValueError(f"tolerance kind must be abs|rel|sigma, got {self.kind!r}")
        if self.basis not in ("analysis", "paper_std", "rerun_std", "definition", "assumed"):
            raise ValueError(f"unknown tolerance basis {self.basis!r}")
        if not (self.value >= 0 and math.isfinite(self.value)):
            raise ValueError("tolerance value must be finite and >= 0")
        if self.kind == "sigma" and not self.std:
            raise ValueError("a sigma tolerance needs std (the spread it is measured in)")
        if not self.note.strip():
            raise ValueError("a tolerance needs a note saying why it has this size")

    def width(self, reported: float) -> float:
        if self.kind == "abs":
            return self.value
        if self.kind == "rel":
            return self.value * abs(reported)
        return self.value * float(self.std)  # sigma

    def describe(self) -> str:
        if self.kind == "abs":
            return f"±{self.value:g}"
        if self.kind == "rel":
            return f"±{self.value * 100:g}% rel"
        return f"±{self.value:g}σ (σ={self.std:g})"


@dataclass(frozen=True)
class Claim:
    """One number a paper reports (``kind="paper"``), or, for a ``cpu`` analogue, an
    expectation this recipe states before running (``kind="expectation"``).

    ``bound=True`` makes ``reported`` a threshold: the measurement must lie on the
    ``better`` side of it (within tolerance) and can never be "better" than a bound.
    """

    id: str
    metric: str
    reported: float
    better: Better | None
    tolerance: Tolerance
    source: str
    protocol: str
    unit: str = ""
    seeds: int = 1
    aggregate: Aggregate = "mean"
    kind: ClaimKind = "paper"
    bound: bool = False
    known_gap: str = ""  # non-empty: we know we cannot meet it (reason / issue link); never widens tolerance
    note: str = ""
    # What a user must do before this metric can be measured at all (a licence-gated jar, an
    # evaluation server upload); shown by `repro info` and as the reason of a not-measured verdict.
    requires: str = ""

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ValueError(f"claim {self.id}: source must name the table/row (or the stated expectation)")
        if not self.protocol.strip():
            raise ValueError(f"claim {self.id}: protocol must say how the number is measured")
        if self.better not in ("higher", "lower", None):
            raise ValueError(f"claim {self.id}: better must be 'higher', 'lower' or None")
        if self.bound and self.better is None:
            raise ValueError(f"claim {self.id}: a bound needs a direction (better)")
        if self.seeds < 1:
            raise ValueError(f"claim {self.id}: seeds must be >= 1")
        if self.aggregate not in ("mean", "median", "min", "max"):
            raise ValueError(f"claim {self.id}: unknown aggregate {self.aggregate!r}")
        if self.kind not in ("paper", "expectation"):
            raise ValueError(f"claim {self.id}: kind must be 'paper' or 'expectation'")

    def describe_target(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.bound:
            op = ">=" if self.better == "higher" else "<="
            slack = self.tolerance.width(self.reported)
            return f"{op} {self.reported:g}{unit}" + (f" (slack {slack:g})" if slack else "")
        return f"{self.reported:g}{unit} {self.tolerance.describe()}"


@dataclass(frozen=True)
class Profile:
    """A named configuration of a recipe.

    ``arms`` names variants trained/measured side by side within each seed (e.g.
    ``{"softmax": {"attention": "softmax"}, "mta": {"attention": "mta"}}``); their
    metrics are logged as ``<arm>/<key>``. Without arms a profile has one unnamed run.
    An arm's ``data_dir="@<dataset>"`` reads another of the profile's ``datasets``.
    """

    name: str
    config: Any  # a dataclass instance: the recipe's config with this profile's values
    description: str
    claims: tuple[Claim, ...] = ()
    datasets: tuple[str, ...] = ()  # data_scripts datasets; smoke profiles use their fixtures
    seeds: int = 1
    arms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    use_fixtures: bool = False  # True for smoke: build each dataset's fixture instead of the real data
    slow: bool = False  # cpu profiles longer than ~3 minutes: CI runs them only as time allows
    budget_minutes: float = 10.0  # what a 2-core CPU is expected to need (cpu/smoke)
    gpu_hours: float | None = None  # full profiles: rough single-GPU estimate, shown by `repro info`
    # Units run at once when `repro run` gets no --jobs (capped by the CPU count): for profiles
    # whose units are latency-bound small models, two one-thread units use 2 cores far better
    # than one two-thread unit.
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.name not in PROFILE_NAMES:
            raise ValueError(f"profile name must be one of {PROFILE_NAMES}, got {self.name!r}")
        if not dataclasses.is_dataclass(self.config) or isinstance(self.config, type):
            raise TypeError(f"profile {self.name}: config must be a dataclass instance")
        if self.name == "smoke" and self.claims:
            raise ValueError("a smoke profile proves wiring and asserts no paper number: no claims")
        for arm in self.arms:
            ds = self.arm_dataset(arm)
            if ds is not None and ds not in self.datasets:
                raise ValueError(f"profile {self.name}: arm {arm!r} reads dataset {ds!r}, which is not one "
                                 f"of the profile's datasets {self.datasets}")
        ids = [c.id for c in self.claims]
        if len(ids) != len(set(ids)):
            raise ValueError(f"profile {self.name}: duplicate claim ids")

    def arm_dataset(self, arm: str) -> str | None:
        """The dataset an arm names with ``data_dir="@<dataset>"``, else None."""
        ref = self.arms.get(arm, {}).get("data_dir")
        return ref[1:] if isinstance(ref, str) and ref.startswith("@") else None


@dataclass(frozen=True)
class Paper:
    slug: str
    title: str
    arxiv: str
    year: int
    authors: tuple[str, ...]
    venue: str = ""
    code: str = ""  # official code URL; "" if none
    bibtex: str = ""  # generated from the fields when empty

    def bibtex_entry(self) -> str:
        if self.bibtex:
            return self.bibtex.strip()
        return make_bibtex(self.slug, self.title, self.authors, self.year, self.arxiv, self.venue)


class lazy:
    """A recipe hook given as ``"module:function"``, imported on its first call.

    Recipe modules must not import torch at module level (``repro list``/``info`` read
    them), so hooks that live in ``model.py``/``experiment.py`` are named, not imported:
    ``measure=lazy(".experiment:measure", __package__)``.
    """

    def __init__(self, target: str, package: str | None = None) -> None:
        module, sep, name = target.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"lazy target must be 'module:function', got {target!r}")
        self.target, self.package = target, package
        self._module, self._name = module, name

    def resolve(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self._module, self.package), self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy({self.target!r}, {self.package!r})"


def make_bibtex(
    slug: str, title: str, authors: tuple[str, ...] | list[str], year: int, arxiv: str, venue: str = ""
) -> str:
    first = (authors[0].split()[-1] if authors else slug).lower()
    first = "".join(ch for ch in first if ch.isalnum())
    key = f"{first}{year}{slug.split('_')[0]}"
    lines = [f"@article{{{key},", f"  title   = {{{{{title}}}}},"]
    if authors:
        lines.append(f"  author  = {{{' and '.join(authors)}}},")
    lines.append(f"  year    = {{{year}}},")
    if venue and not venue.lower().startswith("arxiv"):
        lines.append(f"  journal = {{{venue}}},")
    if arxiv:
        lines.append(f"  eprint  = {{{arxiv}}},")
        lines.append("  archivePrefix = {arXiv},")
        lines.append(f"  url     = {{https://arxiv.org/abs/{arxiv}}},")
        if not venue or venue.lower().startswith("arxiv"):
            lines.append(f"  journal = {{arXiv preprint arXiv:{arxiv}}},")
    lines.append("}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Recipe:
    """Everything ``repro`` needs to run and judge one paper.

    Exactly one of two execution styles:

    * training: ``build_model(cfg) -> LightningModule`` and ``build_data(cfg) ->
      LightningDataModule``; the engine fits, tests, and reads the logged metrics;
    * measurement: ``measure(cfg, ctx) -> dict[str, float]`` for experiments that are
      not a training run (exact identities, memory/speed scaling). ``ctx`` is a
      :class:`repro.runner.RunContext`.

    ``derive(metrics) -> dict`` may add metrics computed across arms of one seed
    (e.g. a gap between two variants). ``plot(per_seed, out_dir)`` draws the paper's
    figure from the finished run. ``metrics`` lists every key claims may use.
    """

    paper: Paper
    config_cls: type
    profiles: Mapping[str, Profile]
    metrics: tuple[str, ...]
    build_model: Callable[[Any], Any] | None = None
    build_data: Callable[[Any], Any] | None = None
    measure: Callable[[Any, Any], Mapping[str, float]] | None = None
    derive: Callable[[Mapping[str, float]], Mapping[str, float]] | None = None
    # plot(per_seed, out_dir): draw the paper's figure(s) from the run's per-seed metrics
    # ({metric: [value per seed]}) as PNG files in out_dir (= run_dir/figures).
    plot: Callable[[Mapping[str, list], Any], None] | None = None
    skips: Mapping[str, str] = field(default_factory=dict)  # capability -> reason, shown by `repro info`

    def __post_init__(self) -> None:
        training = self.build_model is not None and self.build_data is not None
        if training == (self.measure is not None):
            raise ValueError(f"{self.paper.slug}: give build_model+build_data, or measure, not both/neither")
        if not self.profiles:
            raise ValueError(f"{self.paper.slug}: a recipe needs at least one profile")
        for key, prof in self.profiles.items():
            if key != prof.name:
                raise ValueError(f"{self.paper.slug}: profile key {key!r} != name {prof.name!r}")
            if not isinstance(prof.config, self.config_cls):
                raise TypeError(f"{self.paper.slug}/{key}: config is not a {self.config_cls.__name__}")
            for claim in prof.claims:
                if claim.metric not in self.metrics:
                    raise ValueError(
                        f"{self.paper.slug}/{key}: claim {claim.id} uses metric {claim.metric!r} "
                        f"that the recipe does not declare in `metrics`"
                    )

    @property
    def slug(self) -> str:
        return self.paper.slug

    @property
    def is_training(self) -> bool:
        return self.measure is None

    def all_claims(self) -> list[tuple[str, Claim]]:
        return [(p.name, c) for p in self.profiles.values() for c in p.claims]

    def datasets(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for p in self.profiles.values():
            for d in p.datasets:
                seen[d] = None
        return tuple(seen)
