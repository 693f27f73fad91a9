"""The filter report: what was kept per language and content type, and score histograms of all vs kept."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the machines that filter
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from curator.labels import QUALITY, STRUCTURED_DATA  # noqa: E402
from curator.scoring.filtering import LanguageResult  # noqa: E402


def _counts(df) -> dict:
    ok = df["error"].isna()
    tokens = df["num_tokens"].fillna(0)
    return {
        "files": int(len(df)),
        "tokens": int(tokens.sum()),
        "errors_dropped": int((~ok).sum()),
        "kept_files": int(df["kept"].sum()),
        "kept_tokens": int(tokens[df["kept"]].sum()),
    }


def language_stats(result: LanguageResult) -> dict:
    df = result.scores
    stats = _counts(df)
    stats["where"] = result.where
    stats["token_budget"] = result.budget
    stats["budget_cutoff"] = result.budget_cutoff
    stats["content_types"] = {
        str(ct): {k: v for k, v in _counts(g).items() if k != "errors_dropped"}
        for ct, g in df[df["error"].isna()].groupby("content_type", sort=True)
    }
    stats["errors"] = {str(k): int(v) for k, v in df["error"].dropna().value_counts().items()}
    stats["notes"] = result.notes
    return stats


def plot_language(result: LanguageResult, path: Path) -> None:
    """Histograms of quality and structured_data, all scored files vs kept, and kept share per content type."""
    df = result.scores[result.scores["error"].isna()]
    kept = df[df["kept"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, head in zip(axes[:2], (QUALITY, STRUCTURED_DATA), strict=True):
        values = df[head.name].to_numpy(dtype=float)
        lo = min(head.lo - 0.5, np.nanmin(values, initial=head.lo))
        hi = max(head.hi + 0.5, np.nanmax(values, initial=head.hi))
        bins = np.linspace(lo, hi, 41)
        ax.hist(values, bins=bins, color="#bbbbbb", label=f"all ({len(df):,})")
        ax.hist(
            kept[head.name].to_numpy(dtype=float), bins=bins, color="#2b7bba", label=f"kept ({len(kept):,})"
        )
        ax.set_title(f"{result.language}: {head.name}")
        ax.set_xlabel(f"score ({head.lo}-{head.hi})")
        ax.legend()
    types = df["content_type"].value_counts()
    kept_types = kept["content_type"].value_counts().reindex(types.index, fill_value=0)
    axes[2].barh(types.index.astype(str), types.to_numpy(), color="#bbbbbb", label="all")
    axes[2].barh(types.index.astype(str), kept_types.to_numpy(), color="#2b7bba", label="kept")
    axes[2].set_title(f"{result.language}: content_type (files)")
    axes[2].invert_yaxis()
    axes[2].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def write_report(
    report_dir: Path, settings: dict, per_language: dict[str, dict], plots: dict[str, str]
) -> dict:
    """filter_report.json and filter_report.md; returns the JSON object."""
    total = {
        k: sum(s[k] for s in per_language.values())
        for k in ("files", "tokens", "errors_dropped", "kept_files", "kept_tokens")
    }
    report = {"settings": settings, "total": total, "languages": per_language}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "filter_report.json").write_text(json.dumps(report, indent=2) + "\n")

    lines = ["# Filter report", "", "Settings:", ""]
    lines += [f"- {k}: `{v}`" for k, v in settings.items() if v not in (None, {}, [])]
    lines += [
        "",
        "Tokens are the classifier's tokens (estimated beyond the tokenized head of very long files).",
        "",
        "| language | files | kept files | tokens | kept tokens | errors dropped | filter | budget cutoff |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for lang, s in per_language.items():
        cutoff = "" if s["budget_cutoff"] is None else f"{s['budget_cutoff']:.3f}"
        lines.append(
            f"| {lang} | {s['files']:,} | {s['kept_files']:,} ({_pct(s['kept_files'], s['files'])}) "
            f"| {s['tokens']:,} | {s['kept_tokens']:,} ({_pct(s['kept_tokens'], s['tokens'])}) "
            f"| {s['errors_dropped']:,} | `{s['where'] or ''}` | {cutoff} |"
        )
    lines.append(
        f"| **all** | {total['files']:,} | {total['kept_files']:,} ({_pct(total['kept_files'], total['files'])}) "
        f"| {total['tokens']:,} | {total['kept_tokens']:,} ({_pct(total['kept_tokens'], total['tokens'])}) "
        f"| {total['errors_dropped']:,} | | |"
    )
    for lang, s in per_language.items():
        lines += [
            "",
            f"## {lang}",
            "",
            "| content_type | files | kept files | tokens | kept tokens |",
            "|---|---:|---:|---:|---:|",
        ]
        for ct, c in s["content_types"].items():
            lines.append(
                f"| {ct} | {c['files']:,} | {c['kept_files']:,} ({_pct(c['kept_files'], c['files'])}) "
                f"| {c['tokens']:,} | {c['kept_tokens']:,} ({_pct(c['kept_tokens'], c['tokens'])}) |"
            )
        if s["errors"]:
            lines += ["", "Dropped for errors: " + ", ".join(f"{k} ({v:,})" for k, v in s["errors"].items())]
        lines += [f"- {note}" for note in s["notes"]]
        if lang in plots:
            lines += ["", f"![{lang} scores]({plots[lang]})"]
    (report_dir / "filter_report.md").write_text("\n".join(lines) + "\n")
    return report
