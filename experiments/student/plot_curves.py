"""Learning curves of the student on the gold set: metric against the number of reading labels, and the labeler
arms (heuristic, both) beside them, mean and spread over seeds.

    python experiments/student/plot_curves.py     # reads results/{run1,run2,curves}; writes learning_curves.png
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
METRICS = [("quality/spearman", "quality Spearman"), ("structured_data/spearman", "structured_data Spearman"),
           ("content_type/accuracy", "content_type accuracy"), ("content_type/macro_f1", "content_type macro F1")]  # fmt: skip
# The heuristic labeler itself on the gold set (experiments/heuristic_vs_gold).
TEACHER = {"quality/spearman": 0.309, "structured_data/spearman": 0.590, "content_type/accuracy": 0.755,
           "content_type/macro_f1": 0.448}  # fmt: skip
TRAIN_ROWS = 1794  # the reading labels' train split


def load():
    rows = []
    for name in ("run1", "run2", "curves"):
        rows += json.loads((RESULTS / name / "results.json").read_text()) if (RESULTS / name).is_dir() else []
        f = RESULTS / f"{name}.json"
        rows += json.loads(f.read_text()) if f.is_file() else []
    return [r for r in rows if "gold" in r]


def main():
    rows = load()
    recipes = {"base": "quickstart recipe (128 tokens, top layer)",
               "path_len512_markers_unfrozen_e6": "path + markers, 512 tokens, all layers, 6 epochs"}  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        for recipe, label in recipes.items():
            pts = []
            for data, n in [
                ("reading-250", 250),
                ("reading-500", 500),
                ("reading-1000", 1000),
                ("reading", TRAIN_ROWS),
            ]:
                v = [r["gold"][key] for r in rows if r["recipe"] == recipe and r["data"] == data]
                if v:
                    pts.append((n, np.mean(v), np.std(v)))
            if pts:
                n, m, s = map(np.array, zip(*pts, strict=True))
                line = ax.errorbar(n, m, yerr=s, marker="o", capsize=3, label=f"{label}: reading")
                for data, marker in (("heuristic", "x"), ("both", "s")):
                    v = [r["gold"][key] for r in rows if r["recipe"] == recipe and r["data"] == data]
                    if v:
                        ax.errorbar([TRAIN_ROWS], [np.mean(v)], yerr=[np.std(v)], marker=marker, capsize=3,
                                    color=line[0].get_color(), linestyle="none", label=f"{label}: {data}")  # fmt: skip
        ax.axhline(TEACHER[key], color="grey", linestyle="--", label="heuristic labeler itself")
        ax.set_xscale("log")
        ax.set_xlabel("training labels")
        ax.set_title(title + " on gold")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "learning_curves.png", dpi=110)
    print(HERE / "learning_curves.png")


if __name__ == "__main__":
    main()
