"""The results: one table (markdown and JSON) and one plot, mean and seed-to-seed spread per arm."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path


def aggregate(runs: list[dict]) -> dict:
    """arm -> eval set -> {mean, sd, min, max, n} of bits per byte over seeds, plus the arm's token counts."""
    by_arm: dict[str, list[dict]] = {}
    for r in runs:
        by_arm.setdefault(r["arm"], []).append(r)
    out = {}
    for arm, rs in by_arm.items():
        sets = sorted({k for r in rs for k in r["eval"]})
        stats = {}
        for name in sets + ["heldout_mean"]:
            vals = [_value(r, name) for r in rs]
            vals = [v for v in vals if v is not None]
            if vals:
                stats[name] = {
                    "mean": statistics.fmean(vals),
                    "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    "min": min(vals),
                    "max": max(vals),
                    "n": len(vals),
                }
        out[arm] = {
            "seeds": sorted(r["seed"] for r in rs),
            "subset_tokens": rs[0]["subset_tokens"],
            "train_tokens": rs[0]["train"]["train_tokens"],
            "train_seconds": [r["train"]["train_seconds"] for r in rs],
            "tokens_per_s": [r["train"].get("tokens_per_s") for r in rs],
            "seconds": [r.get("seconds") for r in rs],
            "bits_per_byte": stats,
        }
    return out


def _value(run: dict, name: str) -> float | None:
    if name == "heldout_mean":  # languages weigh equally, whatever their file counts
        vals = [v["bits_per_byte"] for k, v in run["eval"].items() if k.startswith("heldout/")]
        return statistics.fmean(vals) if vals else None
    v = run["eval"].get(name)
    return v["bits_per_byte"] if v else None


def columns(agg: dict) -> list[str]:
    names = sorted({k for a in agg.values() for k in a["bits_per_byte"]})
    first = [n for n in ("humaneval", "mbpp", "heldout_mean") if n in names]
    return first + [n for n in names if n not in first]


def markdown(agg: dict, mbpp_note: str | None = None) -> str:
    cols = columns(agg)
    head = ["arm", "seeds", "subset tokens", "train tokens"] + [c.replace("heldout/", "") for c in cols]
    lines = [
        "Bits per byte of the target text (lower is better), mean ± sd over seeds.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for arm, a in agg.items():
        cells = [arm, str(len(a["seeds"])), f"{a['subset_tokens']:,}", f"{a['train_tokens']:,}"]
        for c in cols:
            s = a["bits_per_byte"].get(c)
            cells.append(f"{s['mean']:.4f} ± {s['sd']:.4f}" if s else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    if mbpp_note:
        lines += ["", mbpp_note]
    lines += ["", timing(agg)]
    return "\n".join(lines) + "\n"


def timing(agg: dict) -> str:
    """One line: how long the runs took, for planning the next ones."""
    secs = [s for a in agg.values() for s in a.get("seconds", []) if s is not None]
    train = [s for a in agg.values() for s in a["train_seconds"]]
    rates = [r for a in agg.values() for r in a.get("tokens_per_s", []) if r]
    line = f"Runs: {len(train)}; training {statistics.fmean(train):.1f} s a run ({min(train)}-{max(train)})"
    if rates:
        line += f", {statistics.fmean(rates):,.0f} tokens/s"
    if secs:
        line += f"; {statistics.fmean(secs):.1f} s a run with its evaluation"
    return line + "."


def plot(agg: dict, path: Path) -> None:
    """Grouped bars: one group per evaluation set, one bar per arm, error bars from the lowest to the highest
    seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = columns(agg)
    arms = list(agg)
    width = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(cols)), 4))
    for i, arm in enumerate(arms):
        xs, ys, lo, hi = [], [], [], []
        for j, c in enumerate(cols):
            s = agg[arm]["bits_per_byte"].get(c)
            if s:
                xs.append(j + i * width)
                ys.append(s["mean"])
                lo.append(s["mean"] - s["min"])
                hi.append(s["max"] - s["mean"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=arm)
    ax.set_xticks([j + width * (len(arms) - 1) / 2 for j in range(len(cols))])
    ax.set_xticklabels([c.replace("heldout/", "") for c in cols], rotation=30, ha="right")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("Held-out likelihood per arm (bars: seed range)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(runs: list[dict], out: Path, mbpp_note: str | None) -> dict:
    agg = aggregate(runs)
    for r in runs:
        for v in r["eval"].values():
            if not math.isfinite(v["bits_per_byte"]):
                raise ValueError(f"{r['arm']} seed {r['seed']}: a non-finite result, see its metrics.json")
    (out / "results.json").write_text(json.dumps({"arms": agg, "runs": runs}, indent=2) + "\n")
    (out / "results.md").write_text(markdown(agg, mbpp_note))
    plot(agg, out / "results.png")
    return agg
