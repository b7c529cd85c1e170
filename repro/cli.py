"""The ``repro`` command line.

Imports are lazy: ``repro list`` reads the catalogue only (no torch, no papers), and
torch/Lightning load only for verbs that train or measure.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, ReproError, UsageError

# In logs and pipes (no terminal) rich would wrap at 80 columns; tables need more.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Reproduce the experiments of attention papers and judge the papers' numbers.",
)
data_app = typer.Typer(no_args_is_help=True, help="Datasets: list, download, verify, prepare, fixture, status.")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        console.print(f"repro {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """repro: reproduce attention papers from one command line."""


# ---------------------------------------------------------------------------- list / info / cite


@app.command("list")
def list_cmd(
    pattern: Optional[str] = typer.Argument(None, help="Glob or substring over slug and title."),
    tier: Optional[str] = typer.Option(None, help="A, B, C or D."),
    family: Optional[str] = typer.Option(None, help="Substring of the paper's family."),
    status: Optional[str] = typer.Option(None, help="implemented, planned or nothing-to-reproduce."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """List the papers of the catalogue."""
    from . import catalogue

    if status and status not in catalogue.STATUSES:
        raise UsageError(f"--status must be one of {', '.join(catalogue.STATUSES)}")
    if tier and tier.upper() not in "ABCD":
        raise UsageError("--tier must be A, B, C or D")
    entries = []
    for e in catalogue.load():
        if pattern:
            pat = pattern.lower()
            hay = f"{e.slug} {e.title}".lower()
            if not (fnmatch.fnmatch(e.slug, pat) or pat in hay):
                continue
        if tier and e.tier != tier.upper():
            continue
        if family and family.lower() not in e.family.lower():
            continue
        if status and e.status != status:
            continue
        entries.append(e)
    if as_json:
        print(json.dumps([{"id": e.id, "slug": e.slug, "title": e.title, "arxiv": e.arxiv, "tier": e.tier,
                           "family": e.family, "status": e.status, "reason": e.status_note} for e in entries],
                         indent=1))
        return EXIT_OK
    if not sys.stdout.isatty():  # plain, grep-friendly columns when piped
        width = max([len(e.slug) for e in entries] + [4])
        for e in entries:
            print(f"{e.id:>3}  {e.slug:<{width}}  {e.tier}  {e.status:<20}  {e.arxiv or '-':<10}  {e.title}")
        print(f"{len(entries)} papers")
        return EXIT_OK
    from rich.table import Table

    table = Table(header_style="bold", title=f"{len(entries)} papers")
    table.add_column("#", justify="right")
    table.add_column("slug", no_wrap=True)
    table.add_column("tier")
    table.add_column("status", no_wrap=True)
    table.add_column("arXiv", no_wrap=True)
    table.add_column("title", overflow="fold")
    style = {"implemented": "green", "planned": "dim", "nothing-to-reproduce": "yellow"}
    for e in entries:
        table.add_row(str(e.id), e.slug, e.tier, f"[{style[e.status]}]{e.status}[/]", e.arxiv or "—", e.title)
    console.print(table)
    return EXIT_OK


@app.command()
def info(paper: str = typer.Argument(..., help="Slug, catalogue number or arXiv id.")) -> int:
    """Paper details: BibTeX, official code, claims (source, protocol, tolerance basis), profiles, data."""
    from rich.panel import Panel
    from rich.table import Table

    from . import catalogue, registry

    slug = registry.resolve_slug(paper)
    entry = catalogue.by_slug()[slug]
    console.print(Panel.fit(f"[bold]{entry.title}[/bold]\n{', '.join(entry.authors)}\n"
                            f"{entry.venue or 'arXiv'} {entry.year} · arXiv {entry.arxiv or '—'} · tier {entry.tier}"
                            f" · {entry.family}", title=f"#{entry.id} {slug}"))
    console.print(f"official code: {entry.code or 'none known'}")
    console.print(f"status: {entry.status}" + (f" — {entry.status_note}" if entry.status_note else ""))
    if entry.status != catalogue.IMPLEMENTED:
        from .recipe import make_bibtex

        console.print("\n" + make_bibtex(slug, entry.title, entry.authors, entry.year, entry.arxiv, entry.venue))
        return EXIT_OK
    recipe = registry.get_recipe(slug)
    import data_scripts

    for name, prof in recipe.profiles.items():
        budget = f"~{prof.budget_minutes:g} min on 2 CPU cores" if name != "full" else (
            f"~{prof.gpu_hours:g} GPU-hours" if prof.gpu_hours else "GPU")
        console.print(f"\n[bold]profile {name}[/bold] ({budget}; seeds {prof.seeds}"
                      f"{'; slow' if prof.slow else ''}): {prof.description}")
        if prof.arms:
            console.print(f"  arms: {', '.join(prof.arms)}")
        for ds in prof.datasets:
            st = data_scripts.status(ds)
            where = "fixture (built on demand)" if prof.use_fixtures else (
                "ready" if st["ready"] else f"not ready: run `repro data download {ds}`")
            console.print(f"  dataset {ds}: {where}")
        if not prof.claims:
            continue
        if not sys.stdout.isatty():  # plain blocks: readable in logs and grep-friendly
            for c in prof.claims:
                kind = " (our expectation)" if c.kind == "expectation" else ""
                print(f"  claim {c.id}{kind}\n    metric:    {c.metric}\n    target:    {c.describe_target()}"
                      f" ({c.seeds} seed(s), {c.aggregate})\n    source:    {c.source}\n"
                      f"    protocol:  {c.protocol}\n    tolerance: {c.tolerance.basis}: {c.tolerance.note}"
                      + (f"\n    known gap: {c.known_gap}" if c.known_gap else "")
                      + (f"\n    requires:  {c.requires}" if c.requires else ""))
            continue
        table = Table(header_style="bold", show_lines=True)
        for col in ("claim", "metric", "target", "source", "protocol", "tolerance basis"):
            table.add_column(col, overflow="fold")
        for c in prof.claims:
            kind = " (our expectation)" if c.kind == "expectation" else ""
            gap = f"\nknown gap: {c.known_gap}" if c.known_gap else ""
            gap += f"\nrequires: {c.requires}" if c.requires else ""
            table.add_row(c.id + kind, c.metric, c.describe_target() + f"\n{c.seeds} seed(s), {c.aggregate}",
                          c.source, c.protocol, f"{c.tolerance.basis}: {c.tolerance.note}{gap}")
        console.print(table)
    if recipe.skips:
        console.print("\n[bold]not covered[/bold]")
        for k, why in recipe.skips.items():
            console.print(f"  {k}: {why}")
    console.print("\n" + recipe.paper.bibtex_entry())
    return EXIT_OK


@app.command()
def cite(
    paper: Optional[str] = typer.Argument(None, help="Slug; omit with --suite."),
    suite: bool = typer.Option(False, "--suite", help="Cite the repro suite itself (CITATION.cff)."),
) -> int:
    """Print BibTeX for a paper (or for the suite)."""
    from . import catalogue, registry
    from .paths import SOURCE_ROOT
    from .recipe import make_bibtex

    if suite or not paper:
        cff = (SOURCE_ROOT / "CITATION.cff").read_text()
        title = next((ln.split(":", 1)[1].strip().strip('"') for ln in cff.splitlines() if ln.startswith("title:")),
                     "repro")
        version = next((ln.split(":", 1)[1].strip() for ln in cff.splitlines() if ln.startswith("version:")), "")
        print(f"@software{{repro,\n  title   = {{{title}}},\n  version = {{{version}}},\n"
              f"  note    = {{See CITATION.cff}}\n}}")
        return EXIT_OK
    slug = registry.resolve_slug(paper)
    e = catalogue.by_slug()[slug]
    if e.status == catalogue.IMPLEMENTED:
        print(registry.get_recipe(slug).paper.bibtex_entry())
    else:
        print(make_bibtex(slug, e.title, e.authors, e.year, e.arxiv, e.venue))
    return EXIT_OK


# ---------------------------------------------------------------------------- run


@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def run(
    paper: str = typer.Argument(..., help="Slug, catalogue number or arXiv id."),
    profile: str = typer.Option("full", "--profile", "-p", help="full (paper's setting), cpu or smoke."),
    seeds: Optional[int] = typer.Option(None, help="Number of seeds (default: what the claims need)."),
    seed: int = typer.Option(0, help="First seed; seeds are seed, seed+1, ..."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: key=value (repeatable)."),
    arm: List[str] = typer.Option([], "--arm", help="Run only these arms of the profile (repeatable)."),
    accelerator: str = typer.Option("auto", help="auto, cpu, gpu, ..."),
    devices: str = typer.Option("auto", help="Lightning devices: auto, N or a list."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Lightning num_nodes."),
    strategy: str = typer.Option("auto", help="Lightning strategy: auto, ddp, fsdp, ..."),
    precision: Optional[str] = typer.Option(None, help="Lightning precision, e.g. 32-true, bf16-mixed."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic algorithms (slower)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished run (or --run-id)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Name of the run to resume (or to create)."),
    wandb: str = typer.Option("auto", help="W&B mode: auto, disabled, offline, online."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Ledger root (default $REPRO_RUNS or ./runs)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Rich progress bar."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="CPU threads for torch (default: torch's choice; 1 helps on a busy machine)."),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", help="Units (seed x arm) run at once in worker processes, each with --threads or "
        "CPU count / jobs threads (default: the profile's setting, usually 1)."),
    unit: Optional[str] = typer.Option(None, "--unit", hidden=True, help="Worker mode (internal)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show library logs."),
) -> int:
    """Train/measure a paper's profile, judge its claims, write the ledger."""
    from . import envinfo

    git = envinfo.git_state()  # the code this run imports: taken before the (slow) imports below
    from . import registry
    from .tracking import MODES

    if wandb not in MODES:
        raise UsageError(f"--wandb must be one of {', '.join(MODES)}")
    recipe = registry.get_recipe(paper)
    from . import runner

    runner.resolve_profile(recipe, profile)
    runner.quiet_libraries(verbose)
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be >= 1")
    if unit is not None and not (resume and run_id):
        raise UsageError("--unit is internal: it needs --resume --run-id")
    if threads is not None:
        if threads < 1:
            raise UsageError("--threads must be >= 1")
        import torch

        torch.set_num_threads(threads)
    from .training import TrainerOptions

    topts = TrainerOptions(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                           precision=precision, deterministic=deterministic, progress=progress)
    opts = runner.RunOptions(
        profile=profile, seeds=seeds, base_seed=seed, overrides=tuple(set_), resume=resume, run_id=run_id,
        wandb=wandb, runs_root=runs_dir, arms=tuple(arm), trainer=topts, argv=("repro", *sys.argv[1:]),
        echo=lambda s: console.print(f"[dim]{escape(s)}[/dim]"), jobs=jobs, threads=threads, only_unit=unit,
        git=git,
    )
    console.print(f"[bold]repro run {recipe.slug}[/bold] --profile {profile}")
    result = runner.execute(recipe, opts)
    if unit is not None:
        return result["_exit_code"]
    _print_result(result)
    return result["_exit_code"]


def _print_result(result: dict) -> None:
    from .display import claims_table, fmt
    from .verdict import counts

    claims = result["claims"]
    if claims:
        console.print(claims_table(claims, title=f"{result['paper']} · {result['profile']} · {result['run_id']}"))
        summary = ", ".join(f"{n} {v}" for v, n in counts(c["verdict"] for c in claims).items())
        console.print(f"verdicts: {summary}")
    else:
        keys = sorted(result["metrics"])
        shown = ", ".join(f"{k}={fmt(result['metrics'][k])}" for k in keys[:8])
        more = f" (+{len(keys) - 8} more in result.json)" if len(keys) > 8 else ""
        console.print(f"{result['profile']} profile asserts no paper number; {len(keys)} metrics: {escape(shown)}{more}")
    for e in result.get("errors", []):
        err_console.print(f"[magenta]error[/magenta] {e}")
    wb = result.get("wandb", {})
    console.print(f"ledger: {result['_path']}  (W&B: {wb.get('mode')}{' ' + wb['url'] if wb.get('url') else ''})")


# ---------------------------------------------------------------------------- check / report / env


@app.command()
def check(
    target: Optional[str] = typer.Argument(None, help="A paper slug or a run id."),
    all_: bool = typer.Option(False, "--all", help="Every completed run in the ledger."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Ledger root."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> int:
    """Recompute verdicts from stored results (no training), against the current claims."""
    from . import check as checkmod

    if not target and not all_:
        raise UsageError("give a paper, a run id, or --all")
    outcomes = checkmod.check(target if not all_ else None, runs_dir)
    if as_json:
        print(json.dumps(outcomes, indent=1, default=str))
    else:
        from .display import claims_table

        for o in outcomes:
            console.print(claims_table(o["claims"], title=f"{o['paper']} · {o['profile']} · {o['run_id']}"))
            for note in o["changes"]:
                console.print(f"[yellow]changed[/yellow] {note}")
        console.print(f"checked {len(outcomes)} run(s)")
    from .verdict import exit_code

    return exit_code(c["verdict"] for o in outcomes for c in o["claims"])


@app.command()
def report(
    format_: str = typer.Option("term", "--format", "-f", help="term, md or html."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to a file (default: stdout; html: report.html)."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Ledger root."),
    update_readmes: bool = typer.Option(
        False, "--update-readmes", help="Bless the latest cpu/full runs into results/ and regenerate README tables."),
    smoke: bool = typer.Option(False, "--smoke", help="Include smoke runs."),
) -> int:
    """Tables (and an HTML page with plots) across all papers, from the ledger."""
    from . import report as rep

    if format_ not in ("term", "md", "html"):
        raise UsageError("--format must be term, md or html")
    if update_readmes:
        from . import catalogue

        skipped: list[str] = []
        changed = rep.bless(runs_dir, skipped=skipped)
        for c in changed:
            console.print(f"blessed {c}")
        for s in skipped:
            console.print(f"[dim]not blessed: {s}[/dim]")
        for slug in catalogue.implemented_slugs():
            if rep.update_readme(slug, catalogue.PAPERS_DIR / slug / "README.md"):
                console.print(f"updated papers/{slug}/README.md")
        from .paths import SOURCE_ROOT

        if rep.update_suite_readme(SOURCE_ROOT / "README.md"):
            console.print("updated README.md (suite table)")
    results = rep.collect(runs_dir, include_smoke=smoke)
    if not results:
        console.print("no completed runs yet: try `repro run memory_efficient_attention --profile cpu`")
        return EXIT_OK
    if format_ == "term":
        console.print(rep.render_term(results))
    elif format_ == "md":
        text = rep.render_md(results)
        (out.write_text(text) if out else print(text, end=""))
    else:
        out = out or Path("report.html")
        out.write_text(rep.render_html(results, rep.figures_of(results, runs_dir)))
        console.print(f"wrote {out}")
    return EXIT_OK


@app.command()
def env(as_json: bool = typer.Option(False, "--json")) -> int:
    """The environment block to paste into an issue."""
    from . import envinfo, paths

    block = envinfo.collect()
    block["paths"] = {"REPRO_DATA": str(paths.data_root()), "REPRO_RUNS": str(paths.runs_root())}
    if as_json:
        print(json.dumps(block, indent=1))
    else:
        for section, values in block.items():
            console.print(f"[bold]{section}[/bold]")
            for k, v in values.items():
                console.print(f"  {k}: {v}")
    return EXIT_OK


# ---------------------------------------------------------------------------- data


@data_app.command("list")
def data_list() -> int:
    """Known datasets and their state."""
    from rich.table import Table

    import data_scripts

    table = Table(header_style="bold")
    for col in ("dataset", "size", "licence", "real data", "fixture", "description"):
        table.add_column(col, overflow="fold")
    for name in data_scripts.names():
        mod = data_scripts.load(name)
        st = data_scripts.status(name)
        real = "ready" if st["ready"] else ("manual step" if mod.INFO.gated else "not downloaded")
        table.add_row(name, mod.INFO.size, mod.INFO.licence, real, "built" if st["fixture"] else "—",
                      mod.INFO.description)
    console.print(table)
    return EXIT_OK


@data_app.command("download")
def data_download(name: str) -> int:
    """Download, verify (checksums) and prepare a dataset; resumes an interrupted download."""
    import data_scripts

    root = data_scripts.download(name)
    console.print(f"[green]{name} ready[/green] at {root}")
    return EXIT_OK


@data_app.command("verify")
def data_verify(name: str) -> int:
    """Check the raw files of a dataset (checksums, sizes, counts)."""
    import data_scripts

    mod = data_scripts.load(name)
    mod.verify(data_scripts.root_of(name))
    console.print(f"[green]{name}: raw files verified[/green]")
    return EXIT_OK


@data_app.command("prepare")
def data_prepare(name: str) -> int:
    """Verify, then prepare files already placed (e.g. after a manual, licence-gated step)."""
    import data_scripts

    root = data_scripts.prepare(name)
    console.print(f"[green]{name} ready[/green] at {root}")
    return EXIT_OK


@data_app.command("fixture")
def data_fixture(name: str, force: bool = typer.Option(False, "--force", help="Rebuild.")) -> int:
    """Build the tiny synthetic stand-in of a dataset (same on-disk layout)."""
    import data_scripts

    root = data_scripts.build_fixture(name, force=force)
    console.print(f"[green]{name} fixture ready[/green] at {root}")
    return EXIT_OK


@data_app.command("status")
def data_status(name: Optional[str] = typer.Argument(None)) -> int:
    """Whether a dataset (or each) is ready."""
    import data_scripts

    for n in [name] if name else data_scripts.names():
        data_scripts.load(n)
        st = data_scripts.status(n)
        state = "ready" if st["ready"] else f"not ready ({st['problem']})"
        console.print(f"{n}: {state} at {st['root']}; fixture {'built' if st['fixture'] else 'not built'}")
    return EXIT_OK


# ---------------------------------------------------------------------------- dev


@app.command("index", hidden=True)
def index_cmd(check_only: bool = typer.Option(False, "--check")) -> int:
    """Regenerate papers/index.json (developers)."""
    from . import catalogue, registry

    text = registry.render_index()
    current = catalogue.INDEX_FILE.read_text() if catalogue.INDEX_FILE.exists() else ""
    if check_only:
        if text != current:
            raise UsageError("papers/index.json is stale: run `repro index`")
        return EXIT_OK
    registry.write_index()
    console.print("wrote papers/index.json")
    return EXIT_OK


# ---------------------------------------------------------------------------- entry point


_MAIN_PID = os.getpid()


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    # Schedulers (SLURM preemption, `timeout`, docker stop) send SIGTERM: treat it like Ctrl-C, so a
    # run stops at once with its finished units and last checkpoint kept and a --resume hint.
    if os.getpid() != _MAIN_PID:
        # a forked child inherited this handler (a multiprocessing pool that a library ends with
        # terminate(), a DataLoader worker): die of the signal as it would have without repro
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("WANDB_SILENT", "true")
    global _MAIN_PID
    if threading.current_thread() is threading.main_thread():
        _MAIN_PID = os.getpid()
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        rv = app(args=argv, prog_name="repro", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return EXIT_ERROR if exc.exit_code == 1 else exc.exit_code
    except ReproError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc.message}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[bold]→[/bold] {exc.hint}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: short message, traceback on request
        if os.environ.get("REPRO_DEBUG"):
            raise
        err_console.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc}")
        err_console.print("Set REPRO_DEBUG=1 for the traceback, and include `repro env` in a bug report.")
        return EXIT_ERROR
    return rv if isinstance(rv, int) else EXIT_OK


def entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
