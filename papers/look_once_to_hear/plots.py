"""The paper's comparison of enrollment conditions (noisy vs clean enrollment), drawn from
a finished run's per-seed metrics, with the wrong-speaker control beside them."""

from __future__ import annotations

from pathlib import Path

BARS = (("test/si_snri", "noisy enrollment\n(target in front)"),
        ("test/si_snri_clean_enroll", "clean enrollment"),
        ("test/si_snri_wrong_enroll", "noisy enrollment\nof the interferer"))


def enrollment_bars(per_seed, out_dir) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [(label, [v for v in per_seed.get(key, []) if v is not None]) for key, label in BARS]
    rows = [(label, vals) for label, vals in rows if vals]
    if not rows:
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (label, vals) in enumerate(rows):
        ax.bar(i, float(np.mean(vals)), color="C0" if i < 2 else "C3", alpha=0.7)
        ax.scatter([i] * len(vals), vals, color="k", s=12, zorder=3)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.set_ylabel("SI-SNRi (dB)")
    ax.set_title("Target speech hearing: SI-SNRi by enrollment (bars: mean, dots: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "si_snri_by_enrollment.png", dpi=120)
    plt.close(fig)
