"""The CLI through its real entry points: verbs, exit codes, and the bad-input matrix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.cli import main

pytestmark = pytest.mark.cli
ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def run_cli(*args, capsys):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_all_100(capsys):
    code, out, _ = run_cli("list", capsys=capsys)
    assert code == 0 and out.strip().endswith("100 papers")
    code, out, _ = run_cli("list", "--json", capsys=capsys)
    rows = json.loads(out)
    assert len(rows) == 100 and {r["status"] for r in rows} <= {"implemented", "planned", "nothing-to-reproduce"}


def test_list_filters(capsys):
    code, out, _ = run_cli("list", "--tier", "D", "--json", capsys=capsys)
    rows = json.loads(out)
    assert rows and all(r["tier"] == "D" and r["status"] == "nothing-to-reproduce" and r["reason"] for r in rows)
    _, out, _ = run_cli("list", "memory_eff*", "--json", capsys=capsys)
    assert [r["slug"] for r in json.loads(out)] == ["memory_efficient_attention"]
    _, out, _ = run_cli("list", "--status", "implemented", "--json", capsys=capsys)
    assert "memory_efficient_attention" in {r["slug"] for r in json.loads(out)}
    code, _, err = run_cli("list", "--status", "done", capsys=capsys)
    assert code == 2 and "--status must be one of" in err


def test_unknown_paper_suggests_close_names(capsys):
    code, _, err = run_cli("run", "memory_eficient_attention", capsys=capsys)
    assert code == 2 and "Did you mean: memory_efficient_attention" in err and "Traceback" not in err
    code, _, err = run_cli("info", "xyzzy", capsys=capsys)
    assert code == 2 and "unknown paper" in err


def test_planned_and_survey_papers_cannot_run(capsys):
    code, _, err = run_cli("run", "attentive_survey", capsys=capsys)
    assert code == 2 and "nothing-to-reproduce" in err


def test_info_shows_claims_sources_and_bibtex(capsys):
    code, out, _ = run_cli("info", "memory_efficient_attention", capsys=capsys)
    assert code == 0
    for needle in ("2112.05682", "saving-inference-16k", "Abstract", "assumed", "@article", "profile cpu"):
        assert needle in out
    code, out, _ = run_cli("info", "25", capsys=capsys)  # by catalogue number; a survey
    assert code == 0 and "nothing-to-reproduce" in out


def test_bad_set_key_and_value_and_profile(capsys):
    code, _, err = run_cli("run", "memory_efficient_attention", "-p", "smoke", "--set", "lenghts=1,2", capsys=capsys)
    assert code == 2 and "Did you mean lengths" in err and "head_dim (int)" in err
    code, _, err = run_cli("run", "memory_efficient_attention", "-p", "smoke", "--set", "head_dim=big", capsys=capsys)
    assert code == 2 and "expected an integer" in err
    code, _, err = run_cli("run", "memory_efficient_attention", "-p", "gpu", capsys=capsys)
    assert code == 2 and "has no profile 'gpu'" in err
    code, _, err = run_cli("run", "memory_efficient_attention", "--wandb", "maybe", capsys=capsys)
    assert code == 2


@pytest.mark.smoke
def test_run_check_report_cycle(capsys, tmp_path):
    code, out, _ = run_cli("run", "memory_efficient_attention", "-p", "smoke", "--no-progress", capsys=capsys)
    assert code == 0 and "asserts no paper number" in out
    runs = Path(os.environ["REPRO_RUNS"])
    (result,) = runs.glob("memory_efficient_attention/*/result.json")
    assert json.loads(result.read_text())["status"] == "completed"
    code, out, _ = run_cli("check", "--all", capsys=capsys)
    assert code == 0 and "checked 1 run" in out
    code, out, _ = run_cli("report", "--format", "md", "--smoke", capsys=capsys)
    assert code == 0
    html = tmp_path / "r.html"
    code, _, _ = run_cli("report", "--format", "html", "--smoke", "--out", str(html), capsys=capsys)
    assert code == 0 and "<html" in html.read_text()


def test_env_cite_and_data_verbs(capsys):
    code, out, _ = run_cli("env", "--json", capsys=capsys)
    block = json.loads(out)
    assert code == 0 and block["packages"]["torch"] and "commit" in block["git"]
    code, out, _ = run_cli("cite", "luong_attention_nmt", capsys=capsys)
    assert code == 0 and "1508.04025" in out and out.startswith("@")
    code, out, _ = run_cli("cite", "--suite", capsys=capsys)
    assert code == 0 and "@software" in out
    code, _, err = run_cli("data", "verify", "no_such_dataset", capsys=capsys)
    assert code == 2 and "unknown dataset" in err
    code, out, _ = run_cli("data", "list", capsys=capsys)
    assert code == 0


def test_check_without_runs_is_a_clear_error(capsys):
    code, _, err = run_cli("check", "--all", capsys=capsys)
    assert code == 2 and "no completed runs" in err


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    return env


def test_console_script_list_is_fast_and_torch_free():
    code = ("import sys, time, io, contextlib; t=time.perf_counter(); from repro.cli import main; "
            "buf=io.StringIO();\nwith contextlib.redirect_stdout(buf): rc=main(['list'])\n"
            "print(rc, 'torch' in sys.modules, round(time.perf_counter()-t, 3))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT, check=True)
    rc, torch_loaded, seconds = out.stdout.split()
    assert rc == "0" and torch_loaded == "False"
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-m", "repro", "list"], capture_output=True, text=True, env=_env(), cwd=ROOT)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0 and "100 papers" in proc.stdout
    assert wall < 1.5, f"`repro list` took {wall:.2f}s (goal < 0.5 s on an idle 2-core machine)"


def test_real_entry_point_exit_code_and_no_traceback():
    proc = subprocess.run([PY, "-m", "repro", "run", "nope_paper"], capture_output=True, text=True, env=_env(),
                          cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown paper" in proc.stderr


CTRL_C_SCRIPT = r"""
import sys
sys.path.insert(0, {tests!r})
import toy_recipe
from repro import registry, cli
registry.get_recipe = lambda name: toy_recipe.make_recipe(max_epochs=50, sleep_per_batch=0.02)
sys.exit(cli.main(["run", "toy", "-p", "cpu", "--no-progress", "--wandb", "disabled"]))
"""


SLEEPY_MEASURE_SCRIPT = r"""
import dataclasses, pathlib, sys, time
sys.path.insert(0, {tests!r})
import toy_recipe
from repro import registry, cli

def measure(cfg, ctx):
    pathlib.Path({flag!r}).write_text("measuring")
    time.sleep(60)
    return {{"test/mse": 0.0}}

recipe = dataclasses.replace(toy_recipe.make_recipe(), build_model=None, build_data=None, measure=measure)
registry.get_recipe = lambda name: recipe
sys.exit(cli.main(["run", "toy", "-p", "cpu", "--no-progress", "--wandb", "disabled"]))
"""


@pytest.mark.cli
def test_sigterm_outside_lightning_is_an_interruption(tmp_path):
    """SIGTERM (a scheduler's stop) during a measurement, where no Lightning handler is active,
    ends the run as `interrupted` with a resume hint instead of killing it mid-write."""
    flag = tmp_path / "measuring.flag"
    script = tmp_path / "run_sleepy.py"
    script.write_text(SLEEPY_MEASURE_SCRIPT.format(tests=str(ROOT / "tests"), flag=str(flag)))
    runs = Path(os.environ["REPRO_RUNS"])
    proc = subprocess.Popen([PY, str(script)], env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not flag.exists():
        time.sleep(0.1)
    assert flag.exists(), "the measurement never started"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "--resume --run-id" in err and "Traceback" not in err
    (run_dir,) = runs.glob("toy/*")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path, sig):
    script = tmp_path / "run_toy.py"
    script.write_text(CTRL_C_SCRIPT.format(tests=str(ROOT / "tests")))
    runs = Path(os.environ["REPRO_RUNS"])
    proc = subprocess.Popen([PY, str(script)], env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(runs.glob("toy/*/units/seed0/checkpoints/last.ckpt")):
        time.sleep(0.2)
    assert list(runs.glob("toy/*/units/seed0/checkpoints/last.ckpt")), "no checkpoint appeared"
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "--resume --run-id" in err and "Traceback" not in err
    (run_dir,) = runs.glob("toy/*")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert list(run_dir.glob("units/seed0/checkpoints/*.ckpt"))
    assert not (run_dir / "result.json").exists()


def test_jobs_run_units_in_workers_with_the_same_results(tmp_path):
    """--jobs 2 runs the units in worker processes; the run's metrics equal a sequential run's
    (attention_sdm's cpu profile is deterministic and takes seconds)."""
    out = {}
    for jobs in ("1", "2"):
        runs = tmp_path / f"jobs{jobs}"
        proc = subprocess.run([PY, "-m", "repro", "run", "attention_sdm", "-p", "cpu", "--jobs", jobs, "--runs-dir",
                               str(runs), "--wandb", "disabled", "--no-progress"], capture_output=True, text=True,
                              env=_env(), cwd=ROOT, timeout=600)
        assert proc.returncode == 0, proc.stderr
        (res,) = runs.glob("attention_sdm/*/result.json")
        out[jobs] = json.loads(res.read_text())
    assert "(worker)" in proc.stdout and list(runs.glob("attention_sdm/*/units/seed1/worker.log"))
    assert proc.stdout.count("reusing its metrics") == 3 and "runs again here" not in proc.stdout  # workers did it
    timing = ("time", "ms", "speed", "throughput")
    seq, par = ({k: v for k, v in r["per_seed"].items() if not any(t in k for t in timing)} for r in out.values())
    assert seq == par
    assert [c["verdict"] for c in out["1"]["claims"]] == [c["verdict"] for c in out["2"]["claims"]]


def test_unit_flag_is_internal():
    proc = subprocess.run([PY, "-m", "repro", "run", "attention_sdm", "-p", "cpu", "--unit", "seed0"],
                          capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert proc.returncode == 2 and "--unit is internal" in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_in_a_forked_child_ends_the_child_quietly():
    """Pool workers forked during a run inherit repro's SIGTERM handler; a library that ends
    its pool with terminate() must see them die of the signal, not raise KeyboardInterrupt."""
    import multiprocessing as mp

    from repro import cli

    previous = signal.signal(signal.SIGTERM, cli._sigterm_as_interrupt)
    try:
        ctx = mp.get_context("fork")
        proc = ctx.Process(target=time.sleep, args=(30,))
        proc.start()
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(10)
        assert proc.exitcode == -signal.SIGTERM  # killed by the signal (default action), no traceback
        with pytest.raises(KeyboardInterrupt):  # the main process still turns it into an interruption
            cli._sigterm_as_interrupt(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)
