"""Shared fixtures: small labeled shards made from real Python files (the standard library's), with made-up
but learnable labels, in the labeled-shard layout `<root>/<split>/<language>.parquet`."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.data.shards import LABELED_COLUMNS, SPLITS


def _made_up_labels(path: Path, content: str) -> tuple[int, int, str]:
    """Labels a model can pick up from the text, so a short run shows a signal."""
    docs = content.count('"""') + content.count("# ")
    lines = max(1, content.count("\n"))
    quality = 1 + min(4, round(8 * docs / lines))
    data_words = ("json", "csv", "xml", "pickle", "struct", "sqlite", "schema", "serializ", "parse")
    structured_data = min(3, sum(word in content for word in data_words))
    if path.name.startswith("test") or "/test" in str(path):
        content_type = "test"
    elif "__main__" in content:
        content_type = "script"
    elif path.name == "__init__.py":
        content_type = "config"
    else:
        content_type = "library"
    return quality, structured_data, content_type


def make_labeled_shards(root: Path, n_files: int = 240, row_group_size: int = 40) -> Path:
    """Python files of the standard library as labeled shards."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rows = []
    # Every 4th file, so that packages, tests and scripts all show up.
    for path in sorted(stdlib.rglob("*.py"))[::4]:
        if "site-packages" in path.parts or len(rows) == n_files:
            continue
        try:
            content = path.read_text(encoding="utf-8")[:6000]
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(stdlib)
        repo = f"stdlib/{rel.parent}"
        quality, structured_data, content_type = _made_up_labels(rel, content)
        rows.append(
            {
                "id": f"py-{len(rows):05d}",
                "language": "python",
                "repo": repo,
                "path": str(rel),
                "content": content,
                "quality": quality,
                "structured_data": structured_data,
                "content_type": content_type,
                "labeler": "test-fixture",
            }
        )
    # Files dealt round-robin into 60/20/20 splits: the test set needs every split filled at this size (real
    # shards keep whole repositories together, which is not what these tests are about).
    for i, r in enumerate(rows):
        r["split"] = ("train", "train", "train", "val", "test")[i % 5]
    for split in SPLITS:
        table = pa.Table.from_pylist([r for r in rows if r["split"] == split]).select(list(LABELED_COLUMNS))
        path = root / split / "python.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=row_group_size)
    return root


@pytest.fixture(scope="session")
def labeled_root(tmp_path_factory) -> Path:
    return make_labeled_shards(tmp_path_factory.mktemp("labeled"))
