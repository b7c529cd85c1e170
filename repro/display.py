"""Rendering of verdict tables (terminal via rich, Markdown for READMEs)."""

from __future__ import annotations

import math
from typing import Any, Iterable

VERDICT_STYLE = {
    "reproduced": "bold green",
    "better": "bold cyan",
    "not-reproduced": "bold red",
    "not-measured": "yellow",
    "error": "bold magenta",
}


def fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.{digits}g}"
    return str(x)


def measured_cell(c: dict[str, Any]) -> str:
    vals = [v for v in c.get("per_seed", []) if v is not None]
    if c.get("measured") is None:
        return "—"
    text = fmt(c["measured"])
    agg = c.get("aggregate", "mean")
    if len(vals) > 1 and agg == "mean":
        text += f" ± {fmt(c['std'], 2)} (n={len(vals)})" if c.get("std") is not None else f" (n={len(vals)})"
    elif len(vals) > 1:
        text += f" ({agg} of {len(vals)})"
    return text


def target_cell(c: dict[str, Any]) -> str:
    tol = c.get("tolerance") or {}
    unit = f" {c['unit']}" if c.get("unit") else ""
    if c.get("bound"):
        op = "≥" if c.get("better") == "higher" else "≤"
        width = _width(c)
        slack = f" (slack {fmt(width)})" if width else ""
        return f"{op} {fmt(c['reported'])}{unit}{slack}"
    kind, value = tol.get("kind"), tol.get("value")
    if kind == "abs":
        band = f" ± {fmt(value)}"
    elif kind == "rel":
        band = f" ± {fmt(value * 100)}%"
    elif kind == "sigma":
        band = f" ± {fmt(value)}σ"
    else:
        band = ""
    return f"{fmt(c['reported'])}{unit}{band}"


def _width(c: dict[str, Any]) -> float:
    tol = c.get("tolerance") or {}
    kind, value = tol.get("kind"), tol.get("value") or 0.0
    if kind == "rel":
        return value * abs(c["reported"])
    if kind == "sigma":
        return value * (tol.get("std") or 0.0)
    return value


def claims_table(claims: Iterable[dict[str, Any]], title: str = ""):
    from rich.table import Table

    table = Table(title=title or None, show_lines=False, header_style="bold")
    table.add_column("claim")
    table.add_column("paper / expected", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("Δ", justify="right")
    table.add_column("verdict")
    for c in claims:
        style = VERDICT_STYLE.get(c["verdict"], "")
        label = c["id"] + (" [dim](expectation)[/dim]" if c.get("kind") == "expectation" else "")
        verdict = f"[{style}]{c['verdict']}[/{style}]" if style else c["verdict"]
        if c.get("reason") and c["verdict"] in ("not-measured", "error"):
            verdict += f"\n[dim]{c['reason'][:80]}[/dim]"
        table.add_row(label, target_cell(c), measured_cell(c), fmt(c.get("delta")), verdict)
    return table


def markdown_claims(claims: Iterable[dict[str, Any]]) -> str:
    rows = ["| claim | source | paper / expected | measured (mean ± std, n) | Δ | verdict |", "|---|---|---|---|---|---|"]
    for c in claims:
        src = c.get("source", "").replace("|", "\\|")
        kind = " (expectation)" if c.get("kind") == "expectation" else ""
        rows.append(
            f"| `{c['id']}`{kind} | {src} | {target_cell(c)} | {measured_cell(c)} | {fmt(c.get('delta'))} "
            f"| **{c['verdict']}** |"
        )
    return "\n".join(rows)
