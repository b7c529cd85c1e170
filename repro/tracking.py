"""Weights & Biases, on the engine's terms.

* mode ``auto`` (default): ``$WANDB_MODE`` if set, else ``online`` when an API key is
  configured (``$WANDB_API_KEY`` or a ``wandb login`` entry in ~/.netrc), else ``offline``;
* ``online`` init has a timeout (``$REPRO_WANDB_INIT_TIMEOUT``, default 20 s) and falls
  back to ``offline`` with a warning, so a missing network never hangs or fails a run;
* one W&B run per ``repro run`` (grouped by paper); each trained unit logs through a
  Lightning ``WandbLogger`` attached to it with a ``seed<k>/<arm>`` prefix.

We create the run ourselves instead of ``WandbLogger(offline=True)``, which would set
``WANDB_MODE=dryrun`` for the whole process (ecosystem notes, section 3).
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

MODES = ("auto", "disabled", "offline", "online")
log = logging.getLogger("repro")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("disabled", "offline", "online"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if _has_api_key() else "offline"


class Tracker:
    """A W&B run (or nothing, when disabled) for one ``repro run``."""

    def __init__(self, mode: str, run_dir: Path, name: str, group: str, config: dict[str, Any], tags: list[str]):
        self.mode = resolve_mode(mode)
        self.run = None
        self.note = ""
        if self.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb
        except ImportError:  # pragma: no cover - wandb is a dependency
            self.mode, self.note = "disabled", "wandb not installed"
            return
        timeout = float(os.environ.get("REPRO_WANDB_INIT_TIMEOUT", "20"))
        kwargs = dict(
            project=os.environ.get("WANDB_PROJECT", "repro"),
            entity=os.environ.get("WANDB_ENTITY") or None,
            name=name, group=group, tags=tags, config=config, dir=str(run_dir), job_type="repro-run",
            reinit="finish_previous",
        )
        try:
            self.run = wandb.init(mode=self.mode, settings=wandb.Settings(init_timeout=timeout), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure to reach W&B must not stop the run
            if self.mode != "online":
                self.mode, self.note = "disabled", f"W&B init failed: {exc}"
                log.warning("W&B disabled for this run: %s", exc)
                return
            log.warning("W&B online init failed (%s); logging offline instead", exc)
            self.note = f"online init failed ({type(exc).__name__}); logged offline"
            self.mode = "offline"
            try:
                self.run = wandb.init(mode="offline", **kwargs)
            except Exception as exc2:  # noqa: BLE001
                self.mode, self.note = "disabled", f"W&B init failed: {exc2}"
                return
        self.run.define_metric("trainer/global_step")
        self.run.define_metric("*", step_metric="trainer/global_step", step_sync=True)

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    @property
    def url(self) -> str | None:
        if self.run is None or self.mode != "online":
            return None
        return getattr(self.run, "url", None)

    def lightning_logger(self, prefix: str):
        if self.run is None:
            return None
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(experiment=self.run, prefix=prefix, log_model=False)

    def log(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.log(metrics)

    def finish(self, summary: dict[str, Any], claims: list[dict[str, Any]], exit_code: int = 0) -> None:
        if self.run is None:
            return
        try:
            import wandb

            self.run.summary.update(summary)
            if claims:
                cols = ["id", "metric", "reported", "measured", "delta", "verdict"]
                table = wandb.Table(columns=cols, data=[[c.get(k) for k in cols] for c in claims])
                self.run.log({"claims": table})
            self.run.finish(exit_code=exit_code)
        except Exception as exc:  # noqa: BLE001
            log.warning("W&B finish failed: %s", exc)

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "run_id": self.run_id, "url": self.url, "note": self.note}
