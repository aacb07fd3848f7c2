"""Hugging Face models: edit sites, hooks, keys, target values, editing streams and evaluation.

Everything that knows about transformers lives here; the solver core (:mod:`rlsedit`) does not.
"""
