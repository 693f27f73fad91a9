"""A small corpus in The Stack v3's layout (a row per repository, its files inline), built from the shipped
sample, and the StarCoderData rows it was built from, to compare the flattened reading with.

The schema follows the dataset card of `HuggingFaceCode/stack-v3-train` (see docs/corpora.md): `repo_path`,
`repo_id`, `commit_id`, `github_metadata` (a struct with `stars` among others), `num_files`, and `files`, a list
of structs with `content_id`, `content`, `size_bytes`, `file_path`, `language` (Linguist's name), `is_vendor`,
`license_type`, `detected_licenses`.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curator.data.corpus import iter_corpus

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
LINGUIST = {
    "python": "Python",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "java": "Java",
    "go": "Go",
    "rust": "Rust",
    "sql": "SQL",
    "shell": "Shell",
}
FILE = pa.struct(
    [
        ("content_id", pa.string()),
        ("content", pa.string()),
        ("size_bytes", pa.int64()),
        ("file_path", pa.string()),
        ("language", pa.string()),
        ("is_vendor", pa.bool_()),
        ("license_type", pa.string()),
        ("detected_licenses", pa.list_(pa.string())),
    ]
)
SCHEMA = pa.schema(
    [
        ("repo_path", pa.string()),
        ("repo_id", pa.int64()),
        ("commit_id", pa.string()),
        (
            "github_metadata",
            pa.struct([("branch", pa.string()), ("stars", pa.int32()), ("is_fork", pa.bool_())]),
        ),
        ("num_files", pa.int64()),
        ("files", pa.list_(FILE)),
    ]
)


def make_stack_v3(root: Path, per_language: int = 12, shards: int = 2) -> list[dict]:
    """Write `<root>/data/part-0000N.parquet` from `per_language` files of each sample language,
    grouped into repositories by their package (so repositories mix languages), plus one Markdown file per
    repository, which no curator language reads. Returns the sample rows used, with `language`."""
    seen: dict[str, int] = defaultdict(int)
    rows = []
    for row in iter_corpus(SAMPLE):
        # Every 25th file, so that a language's files come from several packages and land in every shard.
        n = seen[row["language"]]
        seen[row["language"]] += 1
        if n % 25 == 0 and n // 25 < per_language:
            rows.append(row)
    repos: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        repos[row["max_stars_repo_name"]].append(row)
    records = []
    for i, (name, files) in enumerate(sorted(repos.items())):
        inline = [_file(r["max_stars_repo_path"], r["content"], LINGUIST[r["language"]]) for r in files]
        inline.insert(len(inline) // 2, _file("README.md", f"# {name}\n", "Markdown"))
        records.append(
            {
                "repo_path": name,
                "repo_id": 1000 + i,
                "commit_id": hashlib.sha1(name.encode()).hexdigest(),
                "github_metadata": {"branch": "main", "stars": files[0]["max_stars_count"], "is_fork": False},
                "num_files": len(inline),
                "files": inline,
            }
        )
    (root / "data").mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        table = pa.Table.from_pylist(records[s::shards], schema=SCHEMA)
        # Small row groups, so that reading a range of files touches only some of them.
        pq.write_table(table, root / "data" / f"part-{s:05d}.parquet", row_group_size=3)
    return rows


def _file(path: str, content: str, language: str) -> dict:
    return {
        "content_id": hashlib.sha1(content.encode()).hexdigest(),
        "content": content,
        "size_bytes": len(content.encode()),
        "file_path": path,
        "language": language,
        "is_vendor": False,
        "license_type": "permissive",
        "detected_licenses": ["MIT"],
    }
