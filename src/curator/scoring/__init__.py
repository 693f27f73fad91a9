"""Scoring a corpus with a trained classifier (runner), and filtering it by the scores (filtering, report).

Submodules are imported where used: filtering needs neither torch nor transformers.
"""
