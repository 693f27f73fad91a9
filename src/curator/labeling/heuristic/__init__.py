"""The heuristic labeler: all three labels from explicit rules, each firing rule named in `reasons`.

It is an offline baseline to compare the learned model with, a cheap prefilter, and the labeler that lets the
shipped sample train without a network. Pure Python, deterministic, no parser beyond `ast`, no network.
The rules and how they combine: docs/heuristic_labeler.md, rendered from the rules by `doc.py`.

Modules, each importing only those above it:
    rules         `describe`: a rule carries its own documentation
    facts         what every rule looks at, computed once per file
    content_type  the content-type rules, in priority order
    quality       the quality rules, their caps, and the level
    structured    the structured-data signals and the level
    labeler       `label_file` for one file, within size and time bounds
    corpus        a corpus to labeled shards (`python -m curator.labeling.heuristic`)
    doc           the rules' documentation, rendered from the rules
"""

from curator.labeling.heuristic.corpus import label_corpus_heuristic
from curator.labeling.heuristic.labeler import LABELER_NAME, HeuristicLabel, label_file

__all__ = ["LABELER_NAME", "HeuristicLabel", "label_corpus_heuristic", "label_file"]
