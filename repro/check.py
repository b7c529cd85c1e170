"""``repro check``: re-judge stored results without training.

Verdicts are recomputed from the stored per-seed values against the claims of the
*current* recipe (so a corrected claim re-judges old runs); a claim that no longer
exists in the recipe is judged by its stored definition. Changes are reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ledger
from .errors import UsageError
from .recipe import Claim, Tolerance
from .verdict import judge


def _stored_claim(c: dict[str, Any]) -> Claim:
    tol = c.get("tolerance") or {"kind": "abs", "value": 0.0, "basis": "assumed", "note": "not stored"}
    return Claim(
        id=c["id"], metric=c["metric"], reported=c["reported"], better=c.get("better"),
        tolerance=Tolerance(**tol), source=c.get("source") or "stored", protocol=c.get("protocol") or "stored",
        unit=c.get("unit", ""), seeds=c.get("seeds_required", 1), aggregate=c.get("aggregate", "mean"),
        kind=c.get("kind", "paper"), bound=c.get("bound", False),
    )


def _current_claims(paper: str, profile: str) -> dict[str, Claim] | None:
    from . import catalogue, registry

    entry = catalogue.by_slug().get(paper)
    if entry is None or entry.status != catalogue.IMPLEMENTED:
        return None
    recipe = registry.get_recipe(paper)
    prof = recipe.profiles.get(profile)
    return {c.id: c for c in prof.claims} if prof else None


def rejudge(result: dict[str, Any]) -> dict[str, Any]:
    current = _current_claims(result["paper"], result["profile"])
    stored = {c["id"]: c for c in result.get("claims", [])}
    ids = list(current) if current is not None else list(stored)
    errors = result.get("errors") or []
    out, changes = [], []
    for cid in ids:
        claim = current[cid] if current is not None else _stored_claim(stored[cid])
        per_seed = result.get("per_seed", {}).get(claim.metric, [])
        res = judge(claim, per_seed, errors=errors).to_json()
        res.update(unit=claim.unit, better=claim.better, bound=claim.bound, kind=claim.kind, aggregate=claim.aggregate,
                   tolerance={"kind": claim.tolerance.kind, "value": claim.tolerance.value,
                              "basis": claim.tolerance.basis, "std": claim.tolerance.std},
                   source=claim.source)
        old = stored.get(cid)
        if old is None:
            changes.append(f"{cid}: new claim, judged {res['verdict']}")
        elif old["verdict"] != res["verdict"]:
            changes.append(f"{cid}: {old['verdict']} -> {res['verdict']}")
        out.append(res)
    for cid in stored:
        if current is not None and cid not in current:
            changes.append(f"{cid}: no longer a claim of the recipe")
    return {"paper": result["paper"], "profile": result["profile"], "run_id": result["run_id"],
            "claims": out, "changes": changes}


def check(target: str | None, runs_root: Path | None = None) -> list[dict[str, Any]]:
    root = runs_root or ledger.runs_root()
    results = [res for _, res in ledger.iter_results(root) if res.get("status") == "completed"]
    if target:
        by_run = [r for r in results if r["run_id"] == target]
        if by_run:
            results = by_run
        else:
            from . import registry

            slug = registry.resolve_slug(target)
            results = [r for r in results if r["paper"] == slug]
    if not results:
        raise UsageError(f"no completed runs{' for ' + target if target else ''} under {root}")
    return [rejudge(r) for r in results]
