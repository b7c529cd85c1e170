"""The cpu analogue's summary figure: BLEU-4 and CIDEr per arm (mean and seeds), and
the attention mass inside the named object's box against the box's area share."""

from __future__ import annotations

from pathlib import Path


def _vals(per_seed, key):
    return [v for v in per_seed.get(key, []) if isinstance(v, (int, float)) and v == v]


def plot_summary(per_seed, out_dir) -> None:
    arms = sorted({k.split("/")[0] for k in per_seed if k.count("/") >= 2 and "/test/" in k})
    if not arms:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, metric in zip(axes[:2], ("BLEU-4", "CIDEr")):
        for i, arm in enumerate(arms):
            vs = _vals(per_seed, f"{arm}/test/{metric}")
            if vs:
                ax.bar(i, sum(vs) / len(vs), color="#8fb3d9")
                ax.scatter([i] * len(vs), vs, color="k", s=10, zorder=3)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_title(f"test {metric} (x100)")
    ax = axes[2]
    mass, area = [], []
    for arm in arms:
        mass.append(_vals(per_seed, f"{arm}/test/attn_mass_in_box"))
        area.append(_vals(per_seed, f"{arm}/test/attn_box_area_fraction"))
    labelled = False
    for i, (m, a) in enumerate(zip(mass, area)):
        if m and a:
            ax.bar(i - 0.2, sum(m) / len(m), width=0.4, color="#d98f8f",
                   label=None if labelled else "attention mass in box")
            ax.bar(i + 0.2, sum(a) / len(a), width=0.4, color="#bbbbbb", label=None if labelled else "box area fraction")
            ax.scatter([i - 0.2] * len(m), m, color="k", s=10, zorder=3)
            labelled = True
    ax.set_xticks(range(len(arms)), arms)
    ax.set_title("named object: mass vs area")
    if labelled:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "captioning_summary.png", dpi=90)
    plt.close(fig)
