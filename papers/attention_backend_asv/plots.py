"""The paper's comparison as a figure: EER and minDCF of the three back-ends per encoder
(mean over seeds, one dot per seed), drawn from a finished run's per-seed metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

BACKENDS = ("cosine", "plda", "attention")


def backend_bars(per_seed: Mapping[str, list], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = sorted({k.split("/")[0] for k in per_seed if k.endswith("/attention/eer")})
    if not arms:
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    width = 0.8 / len(BACKENDS)
    for ax, metric, label in ((axes[0], "eer", "EER (%)"), (axes[1], "min_dcf", "minDCF (p=0.01)")):
        for j, b in enumerate(BACKENDS):
            for i, arm in enumerate(arms):
                vals = [v for v in per_seed.get(f"{arm}/{b}/{metric}", []) if v is not None]
                if not vals:
                    continue
                x = i + (j - 1) * width
                ax.bar(x, float(np.mean(vals)), width, color=f"C{j}", label=b if i == 0 else None)
                ax.plot([x] * len(vals), vals, "k.", ms=4)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Back-ends on the same embeddings (bars: mean over seeds, dots: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "backends_eer_mindcf.png", dpi=120)
    plt.close(fig)
