"""Reproduction recipes for the shipped models (``python -m sparse_lens.training.recipes.shipped_models``)."""
