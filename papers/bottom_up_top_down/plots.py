"""The cpu analogue's summary figure: CIDEr-D and BLEU-4 of the region (bottom-up
analogue) and grid captioners after cross-entropy, and of the region captioner after
CIDEr optimisation; bars are means, dots are seeds."""

from __future__ import annotations

from pathlib import Path


def _vals(per_seed, key):
    return [v for v in per_seed.get(key, []) if isinstance(v, (int, float)) and v == v]


def plot_summary(per_seed, out_dir) -> None:
    bars = [("grid\nXE", "grid/test/xe/{}"), ("regions\nXE", "updown/test/xe/{}"), ("regions\nSCST", "updown/test/{}")]
    if not any(_vals(per_seed, b[1].format("CIDEr")) for b in bars):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    for ax, metric in zip(axes, ("CIDEr", "BLEU-4")):
        for i, (label, key) in enumerate(bars):
            vs = _vals(per_seed, key.format(metric))
            if vs:
                ax.bar(i, sum(vs) / len(vs), color="#8fb3d9")
                ax.scatter([i] * len(vs), vs, color="k", s=10, zorder=3)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars])
        ax.set_title(f"test {metric} (x100)")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "updown_summary.png", dpi=90)
    plt.close(fig)
