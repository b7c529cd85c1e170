"""Catalogue, recipes, index, READMEs and CITATION.cff stay consistent (speechbrain-style
recipe-index tests; mmpretrain-style metafile lint)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from repro import catalogue, registry, report

pytestmark = pytest.mark.consistency
ROOT = Path(__file__).resolve().parents[1]


def test_catalogue_has_the_100_seed_papers():
    entries = catalogue.load()
    assert len(entries) == 100
    assert [e.id for e in entries] == list(range(1, 101))
    slugs = [e.slug for e in entries]
    assert len(set(slugs)) == 100 and all(re.fullmatch(r"[a-z][a-z0-9_]*", s) for s in slugs)


@pytest.mark.parametrize("entry", catalogue.load(), ids=lambda e: e.slug)
def test_catalogue_entry_is_complete(entry):
    assert entry.title and entry.year >= 1990 and entry.authors
    assert entry.tier in "ABCD"
    assert re.fullmatch(r"(\d{4}\.\d{4,5})?", entry.arxiv), entry.arxiv
    assert entry.code == "" or entry.code.startswith("https://")
    if entry.tier == "D":
        assert entry.kind != "experiment" and entry.reason.strip(), "tier D needs the reason"
        assert entry.status == catalogue.NOTHING
    else:
        assert entry.kind == "experiment"
        assert entry.status in (catalogue.IMPLEMENTED, catalogue.PLANNED)


def test_every_paper_folder_is_in_the_catalogue():
    slugs = {e.slug for e in catalogue.load()}
    for d in catalogue.recipe_dirs():
        assert d.name in slugs, f"papers/{d.name} is not in papers/catalogue.toml"


def test_recipes_import_without_torch():
    code = ("import sys; from repro import registry; rs = registry.all_recipes(); "
            "assert 'torch' not in sys.modules, 'a recipe.py imports torch at module level'; print(len(rs))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(catalogue.implemented_slugs())


@pytest.mark.parametrize("slug", catalogue.implemented_slugs())
def test_recipe_contract(slug):
    recipe = registry.get_recipe(slug)
    entry = catalogue.by_slug()[slug]
    assert recipe.paper.title and recipe.paper.arxiv == entry.arxiv
    assert "smoke" in recipe.profiles and not recipe.profiles["smoke"].claims
    assert "full" in recipe.profiles or "full" in recipe.skips, "no full profile: say why in Recipe.skips"
    for profile, claim in recipe.all_claims():
        assert claim.source.strip() and claim.protocol.strip()
        assert claim.tolerance.basis and claim.tolerance.note.strip()
        assert claim.metric in recipe.metrics
        if claim.kind == "paper" and profile == "full":
            assert "expectation" not in claim.source.lower()
    readme = catalogue.PAPERS_DIR / slug / "README.md"
    assert readme.exists(), f"papers/{slug}/README.md is missing"


def test_index_json_is_up_to_date():
    current = catalogue.INDEX_FILE.read_text() if catalogue.INDEX_FILE.exists() else ""
    assert current == registry.render_index(), "papers/index.json is stale: run `repro index`"


@pytest.mark.parametrize("slug", catalogue.implemented_slugs())
def test_readme_results_block_is_generated_from_results(slug):
    text = (catalogue.PAPERS_DIR / slug / "README.md").read_text()
    assert report.START in text and report.END in text, "README needs the generated results block"
    block = text[text.index(report.START): text.index(report.END) + len(report.END)]
    assert block == report.readme_block(slug), "README results are stale: run `repro report --update-readmes`"


def test_suite_readme_table_is_generated_from_results():
    text = (ROOT / "README.md").read_text()
    assert report.SUITE_START in text and report.SUITE_END in text, "README.md needs the generated suite table"
    block = text[text.index(report.SUITE_START): text.index(report.SUITE_END) + len(report.SUITE_END)]
    assert block == report.suite_block(), "README.md suite table is stale: run `repro report --update-readmes`"


def test_blessed_results_are_valid_and_judged_by_current_claims():
    from repro import ledger
    from repro.check import rejudge

    for (paper, profile), res in report.blessed_results().items():
        assert ledger.validate_result(res) == [], f"results/{paper}/{profile}.json"
        rejudged = rejudge(res)
        assert not rejudged["changes"], f"results/{paper}/{profile}.json was judged by other claims: " \
                                        f"{rejudged['changes']} (re-run, then `repro report --update-readmes`)"


def test_citation_cff_is_valid_cff_1_2():
    from cffconvert.cli.create_citation import create_citation

    citation = create_citation(str(ROOT / "CITATION.cff"), None)
    citation.validate()
    assert citation.cffobj["cff-version"] == "1.2.0"


def test_blessed_results_are_canonical_runs_of_the_current_profiles():
    """A committed result must be the profile's own run: no --set, every arm and seed, and the
    profile's current config (a profile changed after its run needs a new run)."""
    stale = {f"results/{p}/{prof}.json": why for (p, prof), res in report.blessed_results().items()
             if (why := report.not_canonical(res))}
    assert not stale, stale
