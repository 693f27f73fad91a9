from pathlib import Path

import numpy as np
import pytest

from curator.labels import (
    CONTENT_TYPES,
    LABEL_SETS,
    QUALITY,
    STRUCTURED_DATA,
    rubric_markdown,
    validate_labels,
)

REPO = Path(__file__).resolve().parents[1]


def test_docs_rubric_is_the_one_in_code():
    text = (REPO / "docs/rubric.md").read_text()
    assert text.split("\n", 1)[1] == rubric_markdown(), (
        "docs/rubric.md is stale: python -m curator.labels > docs/rubric.md"
    )


def test_levels_round_half_up_and_clip():
    assert QUALITY.to_levels([0.2, 1.49, 1.5, 2.5, 3.5, 4.49, 9]).tolist() == [1, 1, 2, 3, 4, 4, 5]
    assert STRUCTURED_DATA.to_levels(np.array([-1.0, 0.5, 2.5, 3.7])).tolist() == [0, 1, 3, 3]


def test_every_label_set_maps_every_content_type():
    for label_set in LABEL_SETS.values():
        assert set(label_set.mapping) == set(CONTENT_TYPES)
        assert set(label_set.mapping.values()) == set(label_set.classes)
    assert LABEL_SETS["coarse"].index("script") == LABEL_SETS["coarse"].index("library")


@pytest.mark.parametrize(
    "labels, problem",
    [
        ((3, 1, "library"), None),
        ((6, 1, "library"), "quality"),
        ((3, 4, "test"), "structured_data"),
        ((3.0, 1, "test"), "integer"),
        ((True, 1, "test"), "integer"),
        ((3, 1, "docs"), "content_type"),
    ],
)
def test_validate_labels(labels, problem):
    problems = validate_labels(*labels)
    assert (problems == []) if problem is None else any(problem in p for p in problems)
