"""Editing configurations: the published settings (docs/method.md section 6), and the tiny models'.

==============  ===============  ==========================================================
model           edited layers    source
==============  ===============  ==========================================================
Llama-3-8B      4, 5, 6, 7, 8    RLSEdit's and AlphaEdit's released Llama3-8B configs
Qwen2.5-7B      7, 8, 9, 10, 11  RLSEdit's released Qwen2.5-7B config
==============  ===============  ==========================================================

Editors:

- ``rlsedit``: lam = 0, mu = 1, anchor Gram 15000 * E[k k^T] (RLSEdit's configs; the authors write
  the weights squared, lam^2 and mu^2, which is the same at 0 and 1);
- ``memit``: the same prior, restarted every batch (MEMIT's ``mom2_update_weight`` = 15000);
- ``alphaedit``: ``L2`` = 10, ``nullspace_threshold`` = 2e-2 on E[k k^T] (AlphaEdit's Llama3-8B.json).

Values (all editors): 25 Adam steps, lr 0.1, clamp 0.75, weight decay 0.5, KL factor 0.0625 at
the subject's last token. Steps, lr and clamp are those docs/method.md section 6 gives for the authors' setup; the
weight decay and KL factor come from AlphaEdit's Llama3-8B.json (RLSEdit's own were not available). For
Qwen2.5-7B no separate value settings were available; Llama's are used. ROME and FT have no
published setting for this protocol here, so :func:`preset` refuses them rather than invent one.

``preset("tiny", editor)`` is the default of ``rlsedit edit`` on the tiny fact models (every editor,
:data:`TINY_EDITOR_OPTIONS`): one edited layer (0, where the tiny models keep their facts) at the
subject's last token, the bare prompt as the only context (a word-level tokenizer knows no English
prefix), batches of 50, anchor ``mu * n_w * E[kk^T]`` with ``mu * n_w = 10``, target deltas up to
1.5 x the hidden state's norm after 60 Adam steps at lr 0.3, no decay on them (docs/edit-benchmark.md
says how these were chosen).
"""

from __future__ import annotations

from llm_experiments.edit.session import EditingConfig
from llm_experiments.edit.values import ValueConfig

MODEL_LAYERS: dict[str, tuple[int, ...]] = {
    "llama3-8b": (4, 5, 6, 7, 8),
    "qwen2.5-7b": (7, 8, 9, 10, 11),
}

EDITOR_OPTIONS: dict[str, dict] = {
    "rlsedit": {"lam": 0.0, "mu": 1.0},
    "memit": {"lam": 0.0, "mu": 1.0},
    "alphaedit": {"l2": 10.0, "threshold": 2e-2},
}

N_W = 15000.0
BATCH_SIZE = 100

TINY_EDITOR_OPTIONS: dict[str, dict] = {
    "rlsedit": {"lam": 1e-3, "mu": 1.0},
    "memit": {"lam": 1e-3, "mu": 1.0},
    "rome": {"lam": 1e-3, "mu": 1.0},
    "alphaedit": {"l2": 10.0, "threshold": 0.1},
    "ft": {"steps": 25, "lr": 1.0, "norm_bound": None},
}
TINY_VALUES = ValueConfig(steps=60, lr=0.3, kl_factor=0.0625, clamp_factor=1.5, weight_decay=0.0)

# The architectures' shapes, from the models' published config.json files: what `rlsedit bench-llm-edit
# --arch` builds with random weights where no checkpoint is at hand (the edited down_proj is
# intermediate_size x hidden_size, d_k x d_v).
ARCHITECTURES: dict[str, dict] = {
    "llama3-8b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
                  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                  "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_position_embeddings": 8192,
                  "tie_word_embeddings": False},
    "qwen2.5-7b": {"model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                   "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                   "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
                   "tie_word_embeddings": False},
}


PRESETS = ("tiny", *MODEL_LAYERS)


def preset(model: str, editor: str = "rlsedit", **changes) -> EditingConfig:
    """The configuration for ``model`` ("tiny", "llama3-8b", "qwen2.5-7b") and ``editor``.

    ``changes`` override fields of the result (e.g. ``batch_size=10``), validated as usual.
    """
    if model == "tiny":
        if editor not in TINY_EDITOR_OPTIONS:
            raise ValueError(f"unknown editor {editor!r}; the tiny preset has {sorted(TINY_EDITOR_OPTIONS)}")
        config = EditingConfig(editor=editor, layers=(0,), batch_size=50, fact_token="subject_last",
                               context_templates=("{}",), values=TINY_VALUES,
                               editor_options=TINY_EDITOR_OPTIONS[editor], n_w=10.0, solver_dtype="float64")
        return config.replace(**changes) if changes else config
    if model not in MODEL_LAYERS:
        raise ValueError(f"no preset for model {model!r}; presets: {sorted(MODEL_LAYERS)}")
    if editor not in EDITOR_OPTIONS:
        raise ValueError(f"no published setting for editor {editor!r} in this protocol; presets exist for "
                         f"{sorted(EDITOR_OPTIONS)} (build an EditingConfig for the others)")
    config = EditingConfig(
        editor=editor,
        layers=MODEL_LAYERS[model],
        batch_size=BATCH_SIZE,
        fact_token="subject_last",
        values=ValueConfig(steps=25, lr=0.1, clamp_factor=0.75, kl_factor=0.0625, weight_decay=0.5),
        editor_options=EDITOR_OPTIONS[editor],
        n_w=N_W,
        solver_dtype="float64",
    )
    return config.replace(**changes) if changes else config
