"""Recipe discovery. Each ``papers/<slug>/recipe.py`` defines ``RECIPE``; it is
imported only when that paper is resolved, never at start-up. ``papers/index.json``
is a generated summary (profiles, claim ids, datasets) that a consistency test
rebuilds and compares, so a stale index fails CI.
"""

from __future__ import annotations

import importlib
import json

from . import catalogue
from .errors import UsageError
from .recipe import Recipe


def unknown_paper_message(name: str) -> str:
    close = catalogue.suggest(name)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"unknown paper {name!r}.{hint} (`repro list` shows all 100)"


def resolve_slug(name: str) -> str:
    entry = catalogue.lookup(name)
    if entry is None:
        raise UsageError(unknown_paper_message(name))
    return entry.slug


def get_recipe(name: str) -> Recipe:
    slug = resolve_slug(name)
    entry = catalogue.by_slug()[slug]
    if entry.status != catalogue.IMPLEMENTED:
        why = entry.reason if entry.status == catalogue.NOTHING else "no recipe has been written yet"
        raise UsageError(f"{slug} is in the catalogue ({entry.status}) but cannot be run: {why}")
    module = importlib.import_module(f"papers.{slug}.recipe")
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise UsageError(f"papers/{slug}/recipe.py defines no RECIPE (a repro.recipe.Recipe)")
    if recipe.slug != slug:
        raise UsageError(f"papers/{slug}/recipe.py registers slug {recipe.slug!r}")
    return recipe


def all_recipes() -> list[Recipe]:
    return [get_recipe(slug) for slug in catalogue.implemented_slugs()]


def build_index() -> dict:
    index = {}
    for recipe in all_recipes():
        index[recipe.slug] = {
            "title": recipe.paper.title,
            "arxiv": recipe.paper.arxiv,
            "style": "training" if recipe.is_training else "measurement",
            "datasets": list(recipe.datasets()),
            "profiles": {
                name: {
                    "claims": [c.id for c in prof.claims],
                    "seeds": prof.seeds,
                    "slow": prof.slow,
                    "budget_minutes": prof.budget_minutes,
                    "datasets": list(prof.datasets),
                }
                for name, prof in recipe.profiles.items()
            },
        }
    return index


def render_index() -> str:
    return json.dumps(build_index(), indent=2, sort_keys=True) + "\n"


def write_index() -> None:
    from .ledger import atomic_write_text

    atomic_write_text(catalogue.INDEX_FILE, render_index())
