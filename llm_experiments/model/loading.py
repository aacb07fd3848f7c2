"""Load local Hugging Face causal LMs, and identify a model's weights for caches and checkpoints.

Nothing is downloaded: :func:`load_model` reads a local checkpoint directory (``config.json``,
weights, tokenizer files) with ``local_files_only=True``. Large models can be spread over devices
with ``device_map`` (that needs the ``accelerate`` package; without it the option is refused
with an error saying so, never silently dropped).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch
from torch import nn

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


class ModelPathError(FileNotFoundError):
    """The checkpoint path does not exist or is not a Hugging Face model directory."""


def resolve_model_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """``None`` or ``"auto"`` (the checkpoint's own dtype) pass through; names map to torch dtypes."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)} or 'auto', got {dtype!r}")
    return DTYPES[dtype]


def check_model_path(path: str | Path) -> Path:
    """``path`` as a Path if it is a checkpoint directory (it holds ``config.json``), else :class:`ModelPathError`."""
    path = Path(path)
    if not path.exists():
        raise ModelPathError(f"model path {str(path)!r} does not exist")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelPathError(f"model path {str(path)!r} is not a Hugging Face checkpoint directory "
                             "(no config.json in it)")
    return path


def load_model(path: str | Path, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
               device_map: str | dict | None = None, load_tokenizer: bool = True):
    """Load ``(model, tokenizer)`` from a local checkpoint directory, in eval mode.

    Args:
        path: a directory written by ``save_pretrained`` (must hold ``config.json``).
        device: where to put the model (ignored only when ``device_map`` places it instead).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"float64"``, a torch dtype, ``"auto"``
            (the checkpoint's dtype) or ``None`` (float32, transformers' default).
        device_map: passed to ``from_pretrained`` (e.g. ``"auto"``) to shard a large model over the
            available devices; needs ``accelerate``.
        load_tokenizer: also load the tokenizer from the same directory (``None`` if False).
    """
    from transformers import AutoModelForCausalLM

    path = check_model_path(path)
    kwargs: dict = {"local_files_only": True}
    torch_dtype = resolve_model_dtype(dtype)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if device_map is not None:
        if importlib.util.find_spec("accelerate") is None:
            raise ImportError("device_map needs the 'accelerate' package (pip install accelerate); "
                              "without device_map the model is loaded on `device`")
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if device_map is None:
        model = model.to(device)
    model.eval()
    tokenizer = load_tokenizer_from(path) if load_tokenizer else None
    return model, tokenizer


# Tokenizers saved from a bare ``PreTrainedTokenizerFast`` (such as
# :func:`llm_experiments.model.tokenizer.build_word_tokenizer`'s) record one of these classes. AutoTokenizer
# then falls back to the *model's* tokenizer class (Qwen2Tokenizer for a qwen2 config), which rebuilds
# the tokenizer with that family's pre-tokenizer and changes the ids; they are loaded as saved instead.
_GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer_from(path: str | Path):
    """The tokenizer saved in ``path``, as saved (see ``_GENERIC_TOKENIZER_CLASSES``)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    config_file = path / "tokenizer_config.json"
    if config_file.is_file() and (path / "tokenizer.json").is_file():
        tokenizer_class = json.loads(config_file.read_text()).get("tokenizer_class")
        if tokenizer_class in _GENERIC_TOKENIZER_CLASSES:
            return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def input_device(model: nn.Module) -> torch.device:
    """The device inputs must go to (that of the input embeddings, also under a device_map)."""
    return model.get_input_embeddings().weight.device


def model_name(model: nn.Module) -> str:
    """The model's name or path as recorded in its config ("" for a model built from a config)."""
    return str(getattr(model.config, "_name_or_path", "") or "")


def model_revision(model: nn.Module) -> str:
    """The hub commit hash the checkpoint came from, when transformers recorded one, else ""."""
    return str(getattr(model.config, "_commit_hash", "") or "")


def config_hash(model: nn.Module) -> str:
    """sha256 of the model's config as sorted JSON (without the name/path and commit entries)."""
    cfg = model.config.to_dict()
    for k in ("_name_or_path", "_commit_hash", "transformers_version"):
        cfg.pop(k, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def weights_fingerprint(model: nn.Module, *, sample: int = 4096) -> str:
    """A fingerprint of every parameter: name, shape, dtype, float64 sum and 2-norm, and
    the bytes of an evenly strided sample of at most ``sample`` entries, hashed with sha256.

    Cheap enough for an 8B model on its own device (one reduction per parameter), and changed by
    any edit of a weight in practice; it is a fingerprint, not a hash of every byte.
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            stride = max(1, flat.numel() // sample)
            picked = flat[::stride][:sample].to(device="cpu", dtype=torch.float64)
            stats = torch.stack([flat.sum(dtype=torch.float64),  # float64 accumulation, no float64 copy
                                 torch.linalg.vector_norm(flat, dtype=torch.float64)]).cpu()
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}".encode())
            h.update(stats.numpy().tobytes())
            h.update(picked.numpy().tobytes())
    return h.hexdigest()
