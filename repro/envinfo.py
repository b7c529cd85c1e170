"""The environment block stored with every run and printed by ``repro env``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

from .paths import SOURCE_ROOT

PACKAGES = (
    "repro", "torch", "torchvision", "torchaudio", "lightning", "torchmetrics", "numpy", "scipy",
    "scikit-learn", "wandb", "typer", "rich", "sacrebleu", "sentencepiece",
)


def git_state(root=SOURCE_ROOT) -> dict:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions(packages=PACKAGES) -> dict:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        info["memory_gb"] = round(kb / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    if "torch" in sys.modules or _torch_importable():
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cudnn"] = torch.backends.cudnn.version()
        else:
            info["gpus"] = []
    return info


def _torch_importable() -> bool:
    try:
        metadata.version("torch")
        return True
    except metadata.PackageNotFoundError:
        return False


def collect(git: dict | None = None) -> dict:
    """``git``: the state taken when the command started (``repro run`` takes it before its
    imports, so an edit made while a run starts up does not mark the run dirty)."""
    return {"git": git if git is not None else git_state(), "packages": versions(), "hardware": hardware()}
