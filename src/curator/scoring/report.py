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
from curator.scoring.junk import RULE_NAMES, RULES  # noqa: E402


def _counts(df) -> dict:
    ok = df["error"].isna()
    tokens = df["num_tokens"].fillna(0)
    return {
        "files": int(len(df)),
        "tokens": int(tokens.sum()),
        "errors_dropped": int((~ok).sum()),
        "junk_dropped": int(df["junk"].sum()),
        "junk_tokens_dropped": int(tokens[df["junk"]].sum()),
        "kept_files": int(df["kept"].sum()),
        "kept_tokens": int(tokens[df["kept"]].sum()),
    }


def language_stats(result: LanguageResult) -> dict:
    df = result.scores
    stats = _counts(df)
    stats["where"] = result.where
    stats["token_budget"] = result.budget
    stats["budget_cutoff"] = result.budget_cutoff
    stats["junk_rules"] = result.junk_counts if result.junk_rules else None
    stats["junk_unchecked"] = result.junk_unchecked
    stats["content_types"] = {
        str(ct): {
            k: v for k, v in _counts(g).items() if k in ("files", "tokens", "kept_files", "kept_tokens")
        }
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


def _junk_cell(s: dict) -> str:
    if s["junk_rules"] is None:
        return "off"
    return f"{s['junk_dropped']:,}" + (f" ({s['junk_unchecked']:,} unchecked)" if s["junk_unchecked"] else "")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def write_report(
    report_dir: Path, settings: dict, per_language: dict[str, dict], plots: dict[str, str]
) -> dict:
    """filter_report.json and filter_report.md; returns the JSON object."""
    total = {
        k: sum(s[k] for s in per_language.values())
        for k in ("files", "tokens", "errors_dropped", "junk_dropped", "junk_tokens_dropped", "kept_files",
                  "kept_tokens")
    }  # fmt: skip
    rule_totals = {
        rule: sum((s["junk_rules"] or {}).get(rule, 0) for s in per_language.values()) for rule in RULE_NAMES
    }
    report = {"settings": settings, "total": total, "junk_rules": rule_totals, "languages": per_language}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "filter_report.json").write_text(json.dumps(report, indent=2) + "\n")

    lines = ["# Filter report", "", "Settings:", ""]
    lines += [f"- {k}: `{v}`" for k, v in settings.items() if v not in (None, {}, [])]
    lines += [
        "",
        "Tokens are the classifier's tokens (estimated beyond the tokenized head of very long files). "
        "Rows that could not be scored (errors) and files the junk rules reject are dropped before the filter "
        "expression; quality and structured_data are read clipped to their scales (1-5, 0-3).",
        "",
        "| language | files | kept files | tokens | kept tokens | errors dropped | junk dropped | filter "
        "| budget cutoff |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for lang, s in per_language.items():
        cutoff = "" if s["budget_cutoff"] is None else f"{s['budget_cutoff']:.3f}"
        lines.append(
            f"| {lang} | {s['files']:,} | {s['kept_files']:,} ({_pct(s['kept_files'], s['files'])}) "
            f"| {s['tokens']:,} | {s['kept_tokens']:,} ({_pct(s['kept_tokens'], s['tokens'])}) "
            f"| {s['errors_dropped']:,} | {_junk_cell(s)} | `{s['where'] or ''}` | {cutoff} |"
        )
    lines.append(
        f"| **all** | {total['files']:,} | {total['kept_files']:,} ({_pct(total['kept_files'], total['files'])}) "
        f"| {total['tokens']:,} | {total['kept_tokens']:,} ({_pct(total['kept_tokens'], total['tokens'])}) "
        f"| {total['errors_dropped']:,} | {total['junk_dropped']:,} | | |"
    )
    if any(s["junk_rules"] is not None for s in per_language.values()):
        lines += [
            "",
            "Junk rules (curator.scoring.junk; a file may fail several, so the rules' counts can add up to "
            "more than the files dropped):",
            "",
            "| rule | junk if | files |",
            "|---|---|---:|",
        ]
        lines += [f"| `{r.name}` | `{r.junk_if}` | {rule_totals[r.name]:,} |" for r in RULES]
    else:
        lines += ["", "Junk rules: off (`--no-junk-rules`)."]
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
        failed = {k: v for k, v in (s["junk_rules"] or {}).items() if v}
        if failed:
            lines += ["", "Dropped as junk: " + ", ".join(f"{k} ({v:,})" for k, v in failed.items())]
        lines += [f"- {note}" for note in s["notes"]]
        if lang in plots:
            lines += ["", f"![{lang} scores]({plots[lang]})"]
    (report_dir / "filter_report.md").write_text("\n".join(lines) + "\n")
    return report
