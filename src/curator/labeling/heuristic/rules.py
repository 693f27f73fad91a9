"""What a rule says about itself, so that the rules' documentation is rendered from the rules (see `doc`)."""

from __future__ import annotations


def describe(doc: str, delta: str | None = None):
    """Attach what a rule fires on (and, for a quality rule, how it moves the level) to the rule function."""

    def attach(fn):
        fn.doc = doc
        fn.delta = delta
        return fn

    return attach
