"""Anchor statistics: the second moment E[k k^T] of each edited layer's keys over a text corpus.

The anchor Gram of the solver is ``K0^T K0 = n_w * E[k k^T]`` (docs/method.md section 2; MEMIT's
``mom2`` statistic). Here it is

- accumulated in a streaming, chunked way: texts are read one at a time (files line by line),
  tokenised, truncated to ``seq_len`` tokens, batched ``batch_size`` sequences at a time; one
  forward pass per batch feeds every edited layer, stopping after the deepest one; only the
  d_k x d_k sums stay in memory. Every non-padding token counts, up to ``max_tokens``;
- cached on disk, keyed by content: one file per statistic in a directory the caller names,
  ``<site path>.<digest>.safetensors`` (the un-normalised sum ``mom2`` and ``count``), where the
  digest is a hash of the statistic's *content key* (below); the whole key is in the file's
  metadata and in a readable ``.json`` beside it. Two checkpoints saved in folders of the same name
  have different fingerprints, hence different files; the same model loaded from anywhere finds
  its statistics again, whatever its path. Other token counts, corpora or layers are other files
  beside them. A file found under a digest whose content key differs (edited by hand, or another
  program's) is refused with :class:`StatsCacheMismatchError` naming every differing field;
  ``overwrite=True`` recomputes instead;
- importable from MEMIT/AlphaEdit's saved statistics (:func:`read_memit_npz`,
  :func:`import_memit_npz`).

The content key (:data:`CONTENT_FIELDS`): the cache format, sha256 of the model's config, a
fingerprint of its weights (:func:`llm_experiments.model.loading.weights_fingerprint`), site path,
layer, the corpus's sha256, requested token count, sequence length and accumulation dtype. The key
also records, without looking them up by them, the model's name or path, its hub revision and the
corpus's name. Statistics must be computed on the unedited model: an edited model has another
fingerprint, so it never finds the unedited model's statistics. Files of the earlier layout
(``<site path>.safetensors``) are still found when their content key matches.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llm_experiments.model.hooks import Capture
from llm_experiments.model.loading import config_hash, input_device, model_name, model_revision, weights_fingerprint
from llm_experiments.model.sites import EditSite, site_for
from llm_experiments.model.tokens import pad_batch, pad_id
from rlsedit.checkpoint import atomic_write

STATS_FORMAT = "rlsedit-mom2-v1"


class StatsCacheMismatchError(ValueError):
    """A cached statistic was produced by something other than what was asked for."""


class StatsCacheMissError(ValueError):
    """No cached statistic (or more than one) for a model's layer where one was to be read."""


class StatsFormatError(ValueError):
    """A statistics file that cannot be read as a second moment (names the file and the problem)."""


@dataclass(frozen=True)
class SecondMoment:
    """Sum of k k^T over ``count`` keys (d_k, d_k); ``moment()`` is E[k k^T].

    ``source`` says where it came from ("computed", "cache", "memit-npz"); ``key`` is its cache key.
    """

    mom2: torch.Tensor
    count: int
    source: str = field(default="computed", compare=False)
    key: dict = field(default_factory=dict, compare=False)

    def moment(self) -> torch.Tensor:
        """E[k k^T] = mom2 / count  # (d_k, d_k)"""
        return self.mom2 / self.count


# -- corpus --------------------------------------------------------------------------------------
class TextCorpus:
    """Texts to accumulate statistics over: a list of strings and/or local text files.

    Files are read lazily, one non-empty line per text (a paragraph per line, as in wikitext dumps),
    in the order given. ``corpus_id`` is a free name recorded in the cache key; the content's
    sha256 is recorded too, so a renamed corpus with other content is still told apart.
    """

    def __init__(self, texts: Sequence[str] = (), files: Sequence[str | Path] = (), corpus_id: str = "") -> None:
        self.texts = tuple(texts)
        self.files = tuple(Path(f) for f in files)
        if not all(isinstance(t, str) for t in self.texts):
            raise TypeError("texts must be strings")
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"corpus files not found: {missing}")
        if not self.texts and not self.files:
            raise ValueError("a corpus needs texts or files")
        self.corpus_id = corpus_id

    def __iter__(self) -> Iterator[str]:
        yield from (t for t in self.texts if t.strip())
        for f in self.files:
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield line.rstrip("\n")

    def sha256(self) -> str:
        h = hashlib.sha256()
        for t in self:
            h.update(t.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()


# -- the key -------------------------------------------------------------------------------------
def stats_key(model: nn.Module, layer: int, corpus: TextCorpus, *, max_tokens: int, seq_len: int,
              dtype: torch.dtype, site: EditSite | None = None, fingerprint: str | None = None,
              corpus_sha256: str | None = None) -> dict[str, str]:
    """The cache key (all values strings) of a statistic of ``layer`` over ``corpus``."""
    site = site or site_for(model)
    return {
        "format": STATS_FORMAT,
        "model_name": model_name(model),
        "model_revision": model_revision(model),
        "config_sha256": config_hash(model),
        "weights_fingerprint": fingerprint or weights_fingerprint(model),
        "site": site.module_path(layer),
        "layer": str(layer),
        "corpus_id": corpus.corpus_id,
        "corpus_sha256": corpus_sha256 or corpus.sha256(),
        "max_tokens": str(max_tokens),
        "seq_len": str(seq_len),
        "dtype": str(dtype).removeprefix("torch."),
    }


#: the key fields that decide what a statistic is; the others (model_name, model_revision,
#: corpus_id) only describe it, so a model moved elsewhere or a corpus renamed finds it again
CONTENT_FIELDS = ("format", "config_sha256", "weights_fingerprint", "site", "layer", "corpus_sha256",
                  "max_tokens", "seq_len", "dtype")
#: the fields that say whose statistic it is (:func:`load_second_moments`)
MODEL_FIELDS = ("format", "config_sha256", "weights_fingerprint", "site", "layer")


def key_digest(key: dict[str, str]) -> str:
    """A short hash of the key's content fields: the cache file's name (16 hex digits)."""
    content = {f: key.get(f) for f in CONTENT_FIELDS}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _site_name(site_path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", site_path)


def cache_path(cache_dir: str | Path, key: dict[str, str]) -> Path:
    """``cache_dir/<site>.<digest>.safetensors``: where the statistic with ``key`` lives."""
    return Path(cache_dir) / f"{_site_name(key['site'])}.{key_digest(key)}.safetensors"


def legacy_cache_path(cache_dir: str | Path, site_path: str) -> Path:
    """The earlier layout, one file per site whatever its key: ``cache_dir/<site>.safetensors``."""
    return Path(cache_dir) / f"{_site_name(site_path)}.safetensors"


def save_tensors_atomic(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """A safetensors file written with the project's one atomic write (:func:`rlsedit.atomic_write`)."""
    from safetensors.torch import save

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        for k in fh.keys():
            tensors[k] = fh.get_tensor(k)
    return tensors, metadata


# -- the cache -----------------------------------------------------------------------------------
def save_moment(cache_dir: str | Path, key: dict[str, str], moment: SecondMoment) -> Path:
    """Write ``moment`` under ``key`` (safetensors + a JSON copy of the key)."""
    path = cache_path(cache_dir, key)
    meta = {**key, "count": str(moment.count), "source": moment.source}
    save_tensors_atomic(path, {"mom2": moment.mom2}, meta)
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True).encode())
    return path


def _read_cached(path: Path) -> SecondMoment:
    try:
        tensors, meta = load_tensors(path)
    except Exception as exc:
        raise StatsFormatError(f"{path}: not a readable safetensors statistics file ({exc})") from exc
    if meta.get("format") != STATS_FORMAT or "mom2" not in tensors or "count" not in meta:
        raise StatsFormatError(f"{path}: not an {STATS_FORMAT} file")
    source = meta.pop("source", "cache")
    count = int(meta.pop("count"))
    return SecondMoment(tensors["mom2"], count, source=f"cache ({source})", key=meta)


def _cached_key(path: Path) -> dict[str, str] | None:
    """The key in a cache file's metadata (its header only), or None if it is not a readable one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception:  # any unreadable file is simply not a match
        return None
    return meta if meta.get("format") == STATS_FORMAT else None


def _cache_files(cache_dir: str | Path) -> list[Path]:
    folder = Path(cache_dir)
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def _same(key: dict[str, str], other: dict[str, str], fields: Iterable[str]) -> bool:
    return all(other.get(f) == key.get(f) for f in fields)


def load_moment(cache_dir: str | Path, key: dict[str, str]) -> SecondMoment | None:
    """The cached statistic for ``key``'s content; None when the cache holds none.

    Looks at ``cache_path(cache_dir, key)``, then at the directory's other files (the earlier
    layout, a renamed file) for one with the same content key. A file at the key's own path whose
    content key differs raises :class:`StatsCacheMismatchError` naming each differing field.
    """
    path = cache_path(cache_dir, key)
    if path.exists():
        cached = _read_cached(path)
        diffs = [f"{k}: cached {cached.key.get(k)!r}, requested {key.get(k)!r}" for k in CONTENT_FIELDS
                 if cached.key.get(k) != key.get(k)]
        if diffs:
            raise StatsCacheMismatchError(f"{path} holds another statistic than its name says ({'; '.join(diffs)})")
        return cached
    for other in _cache_files(cache_dir):
        found = _cached_key(other)
        if found is not None and _same(key, found, CONTENT_FIELDS):
            return _read_cached(other)
    return None


# -- computation ---------------------------------------------------------------------------------
def _token_batches(tokenizer, corpus: TextCorpus, seq_len: int, batch_size: int) -> Iterator[list[list[int]]]:
    batch: list[list[int]] = []
    for text in corpus:
        ids = tokenizer(text, truncation=True, max_length=seq_len)["input_ids"]
        if ids:
            batch.append(list(ids))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def default_seq_len(model: nn.Module) -> int:
    n = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return int(min(n or 1024, 1024))


def compute_second_moments(model: nn.Module, tokenizer, layers: Sequence[int], corpus: TextCorpus, *,
                           max_tokens: int, seq_len: int | None = None, batch_size: int = 8,
                           dtype: torch.dtype = torch.float64, progress: bool = True,
                           site: EditSite | None = None) -> dict[int, SecondMoment]:
    """Accumulate sum k k^T of each layer's site input over the corpus's tokens (streaming)."""
    from tqdm.auto import tqdm

    site = site or site_for(model)
    if model.training:
        raise ValueError("the model is in training mode (dropout would change the statistics); call model.eval()")
    layers = sorted(set(layers))
    if not layers:
        raise ValueError("layers must not be empty")
    if max_tokens < 1 or batch_size < 1:
        raise ValueError("max_tokens and batch_size must be >= 1")
    seq_len = seq_len or default_seq_len(model)
    d_k, _ = site.dims(model)
    for layer in layers:
        site.module(model, layer)  # asserts the layout
    device = input_device(model)
    paths = {layer: site.module_path(layer) for layer in layers}
    sums = {layer: torch.zeros(d_k, d_k, dtype=dtype, device=site.parameter(model, layer).device)
            for layer in layers}
    count = 0
    bar = tqdm(total=max_tokens, unit="tok", desc="E[kk^T]", disable=not progress)
    with torch.no_grad():
        for batch in _token_batches(tokenizer, corpus, seq_len, batch_size):
            ids, mask = pad_batch(batch, pad_id(tokenizer), device)
            take = min(int(mask.sum()), max_tokens - count)
            with Capture(model, list(paths.values()), inputs=True, stop=True) as cap:
                cap.run(input_ids=ids, attention_mask=mask)
            keep = mask.reshape(-1).bool()
            for layer, path in paths.items():
                k = cap.inputs[path].reshape(-1, d_k)[keep.to(cap.inputs[path].device)][:take]
                k = k.to(dtype=dtype, device=sums[layer].device)
                sums[layer].addmm_(k.T, k)  # (d_k, rows) @ (rows, d_k)
            count += take
            bar.update(take)
            if count >= max_tokens:
                break
    bar.close()
    if count == 0:
        raise ValueError("the corpus gave no tokens")
    return {layer: SecondMoment(sums[layer], count) for layer in layers}


def get_second_moments(model: nn.Module, tokenizer, layers: Sequence[int], corpus: TextCorpus,
                       cache_dir: str | Path, *, max_tokens: int, seq_len: int | None = None, batch_size: int = 8,
                       dtype: torch.dtype = torch.float64, progress: bool = True,
                       overwrite: bool = False) -> dict[int, SecondMoment]:
    """Load each layer's statistic from ``cache_dir`` or compute (all missing layers in one pass) and save.

    The cache is keyed by content (:func:`load_moment`): another model, corpus, token count or
    dtype is another file. A file at the key's path that holds another statistic
    (:class:`StatsCacheMismatchError`) or cannot be read (:class:`StatsFormatError`) is refused
    unless ``overwrite``, which recomputes and replaces it. The returned statistics say in
    ``source`` whether they came from the cache.
    """
    site = site_for(model)
    seq_len = seq_len or default_seq_len(model)
    fingerprint = weights_fingerprint(model)
    corpus_sha = corpus.sha256()
    keys = {layer: stats_key(model, layer, corpus, max_tokens=max_tokens, seq_len=seq_len, dtype=dtype, site=site,
                             fingerprint=fingerprint, corpus_sha256=corpus_sha) for layer in sorted(set(layers))}
    out: dict[int, SecondMoment] = {}
    if not overwrite:
        for layer, key in keys.items():
            cached = load_moment(cache_dir, key)
            if cached is not None:
                out[layer] = cached
    missing = [layer for layer in keys if layer not in out]
    if missing:
        fresh = compute_second_moments(model, tokenizer, missing, corpus, max_tokens=max_tokens, seq_len=seq_len,
                                       batch_size=batch_size, dtype=dtype, progress=progress, site=site)
        for layer, m in fresh.items():
            m = SecondMoment(m.mom2, m.count, source="computed", key=keys[layer])
            save_moment(cache_dir, keys[layer], m)
            out[layer] = m
    return out


def load_second_moments(model: nn.Module, layers: Sequence[int], cache_dir: str | Path) -> dict[int, SecondMoment]:
    """Load this model's cached statistics whatever corpus produced them.

    For each layer, the one file in ``cache_dir`` whose model fields (:data:`MODEL_FIELDS`: config,
    weights fingerprint, site, layer) are this model's, wherever the model was loaded from; its
    corpus is reported in the result's ``key``. For statistics imported with
    :func:`import_memit_npz`, or computed by ``rlsedit llm-stats`` over a corpus not at hand.
    Raises :class:`StatsCacheMissError` when a layer has no such file, or several (other corpora or
    token counts: keep one per directory).
    """
    site = site_for(model)
    fingerprint = weights_fingerprint(model)
    files = [(path, _cached_key(path)) for path in _cache_files(cache_dir)]
    out = {}
    for layer in sorted(set(layers)):
        want = {"format": STATS_FORMAT, "config_sha256": config_hash(model), "weights_fingerprint": fingerprint,
                "site": site.module_path(layer), "layer": str(layer)}
        found = [(path, key) for path, key in files if key is not None and _same(want, key, MODEL_FIELDS)]
        if not found:
            others = sum(1 for _, key in files if key is not None and key.get("layer") == str(layer))
            raise StatsCacheMissError(
                f"{cache_dir}: no statistics of layer {layer} for this model"
                + (f" ({others} of other weights or configs)" if others else ""))
        if len(found) > 1:
            listed = "; ".join(f"{p.name}: corpus {k.get('corpus_id')!r}, {k.get('max_tokens')} tokens"
                               for p, k in found)
            raise StatsCacheMissError(f"{cache_dir}: {len(found)} statistics of layer {layer} for this model "
                                      f"({listed}); keep one of them per directory")
        out[layer] = _read_cached(found[0][0])
    return out


# -- MEMIT / AlphaEdit statistics -----------------------------------------------------------------
def read_memit_npz(path: str | Path, *, d_k: int | None = None) -> SecondMoment:
    """Read a second moment saved by MEMIT/AlphaEdit's ``layer_stats`` (an ``.npz``).

    Assumed format (from the public ``util/runningstats.py`` of ROME/MEMIT): ``numpy.savez`` of a
    ``CombinedStat`` state dict, whose entries are prefixed with the statistic's name:
    ``mom2.mom2`` is the *un-normalised* sum of k k^T (d_k, d_k), ``mom2.count`` the number of
    token keys summed, ``mom2.constructor`` a string. A bare ``SecondMoment`` state (``mom2``,
    ``count``) is read too. E[k k^T] = mom2 / count, as their ``SecondMoment.moment()``.
    """
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise StatsFormatError(f"{path}: not a readable .npz file ({exc})") from exc
    with data:
        names = set(data.files)
        for prefix in ("mom2.", ""):
            if f"{prefix}mom2" in names and f"{prefix}count" in names:
                mom2 = np.asarray(data[f"{prefix}mom2"])
                count = np.asarray(data[f"{prefix}count"])
                break
        else:
            raise StatsFormatError(f"{path}: no 'mom2.mom2'/'mom2.count' (or 'mom2'/'count') entries; "
                                   f"found {sorted(names)}")
    if mom2.ndim != 2 or mom2.shape[0] != mom2.shape[1]:
        raise StatsFormatError(f"{path}: mom2 must be square, got shape {mom2.shape}")
    if d_k is not None and mom2.shape[0] != d_k:
        raise StatsFormatError(f"{path}: mom2 is {mom2.shape[0]} x {mom2.shape[0]}, the site's d_k is {d_k}")
    if count.size != 1 or not float(count) > 0 or float(count) != int(count):
        raise StatsFormatError(f"{path}: count must be one positive integer, got {count!r}")
    if not np.isfinite(mom2).all():
        raise StatsFormatError(f"{path}: mom2 has non-finite entries")
    t = torch.from_numpy(mom2.astype(np.float64))
    if not torch.allclose(t, t.T, rtol=1e-5, atol=1e-8 * float(t.abs().max())):
        raise StatsFormatError(f"{path}: mom2 is not symmetric")
    return SecondMoment(t, int(count), source="memit-npz")


def import_memit_npz(path: str | Path, cache_dir: str | Path, model: nn.Module, layer: int, *,
                     corpus_id: str, seq_len: int = 0, overwrite: bool = False) -> SecondMoment:
    """Import MEMIT/AlphaEdit's statistic of ``layer`` into ``cache_dir`` for ``model``.

    Their files do not record which weights produced them: the caller vouches that they belong to
    ``model`` (the key records this model's fingerprint, ``corpus_id`` as given and the npz file's
    sha256 as the corpus hash). An existing cache file is refused unless ``overwrite``.
    """
    site = site_for(model)
    d_k, _ = site.dims(model)
    m = read_memit_npz(path, d_k=d_k)
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    key = {
        "format": STATS_FORMAT, "model_name": model_name(model), "model_revision": model_revision(model),
        "config_sha256": config_hash(model), "weights_fingerprint": weights_fingerprint(model),
        "site": site.module_path(layer), "layer": str(layer), "corpus_id": corpus_id,
        "corpus_sha256": f"npz:{sha}", "max_tokens": str(m.count), "seq_len": str(seq_len), "dtype": "float64",
    }
    target = cache_path(cache_dir, key)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (this file was imported for this model before); "
                              "pass overwrite=True to replace it")
    m = SecondMoment(m.mom2, m.count, source="memit-npz", key=key)
    save_moment(cache_dir, key, m)
    return m
