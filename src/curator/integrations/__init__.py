"""Curator inside other engines' pipelines (datatrove). The top layer of the package: it may use scoring,
tasks and data; nothing in curator imports it, so curator runs without these engines installed."""
