"""Verdicts: measured values against claims. Pure functions, no torch, so that
``repro check`` recomputes them from stored results alone."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .errors import EXIT_ERROR, EXIT_NOT_REPRODUCED, EXIT_OK
from .recipe import Claim, Tolerance

REPRODUCED = "reproduced"
BETTER = "better"
NOT_REPRODUCED = "not-reproduced"
NOT_MEASURED = "not-measured"
ERROR = "error"
VERDICTS = (REPRODUCED, BETTER, NOT_REPRODUCED, NOT_MEASURED, ERROR)
# Order used when sorting reports: the ones that need attention first.
VERDICT_ORDER = {ERROR: 0, NOT_REPRODUCED: 1, NOT_MEASURED: 2, BETTER: 3, REPRODUCED: 4}


@dataclass(frozen=True)
class ClaimResult:
    claim_id: str
    metric: str
    reported: float
    measured: float | None
    per_seed: tuple[float | None, ...]
    std: float | None
    delta: float | None
    verdict: str
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.claim_id,
            "metric": self.metric,
            "reported": self.reported,
            "measured": self.measured,
            "per_seed": list(self.per_seed),
            "std": self.std,
            "delta": self.delta,
            "verdict": self.verdict,
            "reason": self.reason,
        }


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def aggregate(values: Sequence[float], how: str) -> float:
    if how == "mean":
        return statistics.fmean(values)
    if how == "median":
        return statistics.median(values)
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    raise ValueError(f"unknown aggregate {how!r}")


def judge(claim: Claim, per_seed: Iterable[float | None], errors: Sequence[str] = ()) -> ClaimResult:
    """Verdict for one claim from its per-seed measurements.

    * ``error`` if a unit crashed; ``not-measured`` if fewer seeds gave a finite value
      than the claim requires (a metric measured once, e.g. a deterministic memory
      scaling, has ``None`` for the other seeds and a claim with ``seeds=1``);
    * bound claims: ``reproduced`` when the aggregate is on the ``better`` side of
      ``reported`` (tolerance = allowed slack), else ``not-reproduced``;
    * value claims: ``reproduced`` within tolerance; beyond it ``better`` in the claim's
      direction, otherwise ``not-reproduced``.
    """
    values = tuple(None if v is None else float(v) for v in per_seed)
    finite = [v for v in values if v is not None and _finite(v)]
    bad = [i for i, v in enumerate(values) if v is not None and not _finite(v)]
    std = statistics.stdev(finite) if len(finite) > 1 else None
    base = dict(claim_id=claim.id, metric=claim.metric, reported=claim.reported, per_seed=values, std=std)
    if errors:
        return ClaimResult(measured=None, delta=None, verdict=ERROR, reason="; ".join(errors), **base)
    if bad:  # a diverged or broken measurement is a failure to reproduce, not a missing value
        return ClaimResult(measured=float("nan"), delta=None, verdict=NOT_REPRODUCED,
                           reason=f"non-finite value on seed index {bad}", **base)
    if not finite:
        reason = f"metric {claim.metric} not logged"
        if claim.requires:
            reason += f"; to measure it: {claim.requires}"
        return ClaimResult(measured=None, delta=None, verdict=NOT_MEASURED, reason=reason, **base)
    if len(finite) < claim.seeds:
        measured = aggregate(finite, claim.aggregate)
        return ClaimResult(
            measured=measured,
            delta=measured - claim.reported,
            verdict=NOT_MEASURED,
            reason=f"claim needs {claim.seeds} seeds, {len(finite)} gave a value (use --seeds {claim.seeds})",
            **base,
        )
    measured = aggregate(finite, claim.aggregate)
    delta = measured - claim.reported
    verdict = compare(claim.reported, measured, claim.tolerance, claim.better, claim.bound)
    return ClaimResult(measured=measured, delta=delta, verdict=verdict, **base)


def compare(reported: float, measured: float, tol: Tolerance, better: str | None, bound: bool) -> str:
    width = tol.width(reported)
    delta = measured - reported
    sign = 1.0 if better == "higher" else -1.0
    if bound:
        return REPRODUCED if sign * delta >= -width else NOT_REPRODUCED
    if abs(delta) <= width:
        return REPRODUCED
    if better is not None and sign * delta > 0:
        return BETTER
    return NOT_REPRODUCED


def exit_code(verdicts: Iterable[str]) -> int:
    vs = list(verdicts)
    if ERROR in vs:
        return EXIT_ERROR
    if NOT_REPRODUCED in vs:
        return EXIT_NOT_REPRODUCED
    return EXIT_OK


def counts(verdicts: Iterable[str]) -> dict[str, int]:
    out = {v: 0 for v in VERDICTS}
    for v in verdicts:
        out[v] = out.get(v, 0) + 1
    return {k: n for k, n in out.items() if n}


def judge_all(claims: Sequence[Claim], per_seed: Mapping[str, Sequence[float | None]], errors: Sequence[str] = ()):
    return [judge(c, per_seed.get(c.metric, ()), errors) for c in claims]
