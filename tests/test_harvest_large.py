"""The large harvest's near-duplicate removal, decontamination and held-out choice (data/harvest/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HARVEST = Path(__file__).resolve().parents[1] / "data" / "harvest"
sys.path.insert(0, str(HARVEST))
dedup = pytest.importorskip("dedup")  # needs datasketch (a dev dependency)
import harvest_sample  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_near_duplicates_are_dropped_and_distinct_files_kept():
    a = (REPO / "filter.py").read_text()
    edited = a.replace("def ", "def  ").replace("log", "logger")[:-200]  # reformatted, renamed, cut
    other = (REPO / "score.py").read_text()
    sigs = dedup.signatures([a, edited, other])
    assert dedup.near_dedup(["a", "edited", "other"], sigs) == [True, False, True]


def test_humaneval_solutions_count_as_contamination():
    needles = dedup.benchmark_needles()
    assert len(needles["humaneval"]) > 150
    problem = dedup.humaneval_items()[0]
    copied = "import os\n\n" + problem["prompt"] + problem["canonical_solution"].replace("    ", "\t")
    assert dedup.contaminated_by(copied, needles) == "humaneval"
    assert dedup.contaminated_by((REPO / "filter.py").read_text(), needles) is None


def test_heldout_takes_whole_packages_and_skips_huge_ones():
    rows = [{"max_stars_repo_name": f"p{i}"} for i in range(20) for _ in range(10)]
    rows += [{"max_stars_repo_name": "huge"}] * 5000
    chosen = harvest_sample.choose_heldout(rows, "python", 30)
    assert "huge" not in chosen and 3 <= len(chosen) <= 6


def test_large_config_extends_the_sample_config_and_checks_licences():
    settings, packages = harvest_sample.load_config(HARVEST / "packages_large.toml")
    _, base = harvest_sample.load_config(HARVEST / "packages.toml")
    assert settings.heldout_files_per_language > 0 and settings.ignore_package_max_files
    assert [p.name for p in packages[: len(base)]] == [p.name for p in base]
