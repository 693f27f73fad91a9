"""The shipped real-code sample `data/sample/`: its schema, size, licences and manifest.

The sample is harvested by `data/harvest/harvest_sample.py` from the packages in `data/harvest/packages.toml`;
these tests check what is shipped, without any network access.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.data import corpus
from curator.labels import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
MANIFEST = SAMPLE / "MANIFEST.csv"

MIN_FILES_PER_LANGUAGE = 250
MAX_FILES_PER_LANGUAGE = 320
MIN_PACKAGES_PER_LANGUAGE = 10  # repo-grouped splits need several groups per language
MAX_SAMPLE_BYTES = 12 * 1024 * 1024
MIN_FILE_BYTES, MAX_FILE_BYTES = 100, 100_000
# SPDX ids of permissive licences; a manifest licence may be an expression of these joined by AND / OR.
ALLOWED_LICENSES = {
    "MIT",
    "MIT-0",
    "X11",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "Apache-2.0",
    "ISC",
    "PostgreSQL",
    "Zlib",
    "Unlicense",
    "PSF-2.0",
    "CC0-1.0",
    "0BSD",
}
EXPECTED_TYPES = {
    "id": pa.string(),
    "content": pa.string(),
    "max_stars_repo_path": pa.string(),
    "max_stars_repo_name": pa.string(),
    "max_stars_count": pa.int64(),
}


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    out = {}
    for language, path in corpus.corpus_files(SAMPLE):
        table = pq.read_table(path)
        out[language] = pa.concat_tables([out[language], table]) if language in out else table
    return out


@pytest.fixture(scope="module")
def manifest() -> list[dict]:
    with open(MANIFEST, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_every_language_and_only_those(tables):
    assert set(tables) == set(LANGUAGES)
    assert {p.name for p in SAMPLE.iterdir() if p.is_dir()} == set(LANGUAGES)


def test_schema(tables):
    for language, table in tables.items():
        types = {f.name: f.type for f in table.schema}
        assert types == EXPECTED_TYPES, language
        for col in ("id", "content", "max_stars_repo_path", "max_stars_repo_name"):
            assert table[col].null_count == 0, (language, col)


def test_files_and_packages_per_language(tables):
    for language, table in tables.items():
        assert MIN_FILES_PER_LANGUAGE <= table.num_rows <= MAX_FILES_PER_LANGUAGE, (language, table.num_rows)
        repos = set(table["max_stars_repo_name"].to_pylist())
        assert len(repos) >= MIN_PACKAGES_PER_LANGUAGE, (language, len(repos))
        assert all(r.split("/", 1)[0] in ("debian", "npm", "pypi") for r in repos), language


def test_content_is_utf8_nonempty_and_bounded(tables):
    for language, table in tables.items():
        for content in table["content"].to_pylist():
            data = content.encode("utf-8")  # a str column round-trips only valid UTF-8
            assert content.strip(), language
            assert MIN_FILE_BYTES <= len(data) <= MAX_FILE_BYTES, (language, len(data))


def test_no_duplicate_contents_or_ids(tables):
    digests = Counter()
    ids = Counter()
    for table in tables.values():
        digests.update(hashlib.sha1(c.encode()).hexdigest() for c in table["content"].to_pylist())
        ids.update(table["id"].to_pylist())
    assert max(digests.values()) == 1
    assert max(ids.values()) == 1


def test_manifest_matches_sample_one_to_one(tables, manifest):
    rows = {}
    for language, table in tables.items():
        for r in table.to_pylist():
            rows[r["id"]] = (language, r)
    assert len(manifest) == len({m["id"] for m in manifest}) == len(rows)
    for m in manifest:
        language, r = rows[m["id"]]
        assert m["language"] == language
        assert m["path"] == r["max_stars_repo_path"]
        assert r["max_stars_repo_name"] == f"{m['source']}/{m['package']}"
        assert m["sha1"] == hashlib.sha1(r["content"].encode()).hexdigest()
        assert m["version"]


def test_manifest_licences_are_permissive(manifest):
    for m in manifest:
        words = m["license"].replace("(", " ").replace(")", " ").split()
        ids = {w for w in words if w not in ("AND", "OR", "WITH")}
        assert ids and ids <= ALLOWED_LICENSES, (m["source"], m["package"], m["license"])


def test_sample_size_on_disk():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total <= MAX_SAMPLE_BYTES, total


def test_corpus_reader_reads_the_sample():
    rows = list(corpus.iter_corpus(SAMPLE, languages=["sql"]))
    assert rows and all(r["language"] == "sql" for r in rows)
