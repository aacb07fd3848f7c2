"""Synthetic key/value streams, experiments on them, the sweep runner and the figures they produce.

Every experiment writes ``config.json``, ``metrics.jsonl`` and ``summary.json`` into its output
folder (``rlsedit simulate EXPERIMENT --out DIR``); ``rlsedit simulate-figures`` draws only from those files.
"""
