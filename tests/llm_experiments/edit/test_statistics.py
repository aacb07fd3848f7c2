"""Anchor statistics: E[k k^T] against a direct computation, chunking, the cache and MEMIT imports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from llm_experiments.edit.statistics import (
    SecondMoment,
    StatsCacheMismatchError,
    StatsCacheMissError,
    StatsFormatError,
    TextCorpus,
    cache_path,
    compute_second_moments,
    get_second_moments,
    import_memit_npz,
    key_digest,
    legacy_cache_path,
    load_second_moments,
    read_memit_npz,
)
from tests.llm_fixtures import TINY_CORPUS, tiny_model, tiny_tokenizer


def _direct_sum(model, tok, layer, texts):
    """sum k k^T over every token of every text, each run alone through a raw hook (no padding)."""
    module = model.get_submodule(f"model.layers.{layer}.mlp.down_proj")
    total, count = 0, 0
    seen = {}
    for text in texts:
        handle = module.register_forward_hook(lambda m, args, out: seen.update(k=args[0]))
        with torch.no_grad():
            model(torch.tensor([tok(text)["input_ids"]]))
        handle.remove()
        k = seen["k"][0].double()
        total, count = total + k.T @ k, count + k.shape[0]
    return total, count


@pytest.mark.parametrize("batch_size", [1, 3])
def test_second_moments_equal_a_direct_sum_whatever_the_chunking(batch_size):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    corpus = TextCorpus(texts=TINY_CORPUS, corpus_id="tiny")
    got = compute_second_moments(model, tok, [0, 2], corpus, max_tokens=10**6, batch_size=batch_size,
                                 progress=False)
    for layer in (0, 2):
        expected, count = _direct_sum(model, tok, layer, TINY_CORPUS)
        assert got[layer].count == count
        torch.testing.assert_close(got[layer].mom2, expected, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(got[layer].moment(), expected / count)


def test_max_tokens_counts_tokens_in_corpus_order():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    n_first = len(tok(TINY_CORPUS[0])["input_ids"])
    got = compute_second_moments(model, tok, [1], TextCorpus(texts=TINY_CORPUS), max_tokens=n_first + 3,
                                 batch_size=2, progress=False)[1]
    first, _ = _direct_sum(model, tok, 1, TINY_CORPUS[:1])
    module = model.get_submodule("model.layers.1.mlp.down_proj")
    seen = {}
    handle = module.register_forward_hook(lambda m, args, out: seen.update(k=args[0]))
    with torch.no_grad():
        model(torch.tensor([tok(TINY_CORPUS[1])["input_ids"]]))
    handle.remove()
    k = seen["k"][0, :3].double()
    assert got.count == n_first + 3
    torch.testing.assert_close(got.mom2, first + k.T @ k, rtol=1e-6, atol=1e-8)


def test_corpus_reads_files_lazily_and_hashes_content(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Anna Smith speaks German .\n\nJohn Brown speaks English .\n")
    corpus = TextCorpus(texts=["The city ."], files=[f], corpus_id="mixed")
    assert list(corpus) == ["The city .", "Anna Smith speaks German .", "John Brown speaks English ."]
    assert corpus.sha256() != TextCorpus(texts=["The city ."], corpus_id="mixed").sha256()
    with pytest.raises(FileNotFoundError):
        TextCorpus(files=[tmp_path / "missing.txt"])


def _files(folder, layer):
    """The cache files of a layer (by the key in the JSON beside each)."""
    return sorted(p.name for p in folder.glob("*.safetensors")
                  if json.loads(p.with_suffix(".json").read_text())["layer"] == str(layer))


def test_cache_is_keyed_by_content_reused_and_never_confused(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    corpus = TextCorpus(texts=TINY_CORPUS, corpus_id="tiny")
    first = get_second_moments(model, tok, [0, 1], corpus, tmp_path, max_tokens=40, progress=False)
    assert {m.source for m in first.values()} == {"computed"}
    path = cache_path(tmp_path, first[1].key)
    assert path.name == f"model.layers.1.mlp.down_proj.{key_digest(first[1].key)}.safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["layer"] == "1" and meta["count"] == "40" and meta["corpus_id"] == "tiny"

    again = get_second_moments(model, tok, [0, 1], corpus, tmp_path, max_tokens=40, progress=False)
    assert all(m.source.startswith("cache") for m in again.values())
    assert all(torch.equal(again[k].mom2, first[k].mom2) for k in (0, 1))

    # another token count, corpus, dtype or model is another statistic: computed into its own file,
    # equal to the statistic computed with no cache at all, and the first one is still found
    other = TextCorpus(texts=TINY_CORPUS[:2], corpus_id="tiny")
    variants = [dict(model=model, corpus=corpus, max_tokens=41), dict(model=model, corpus=other, max_tokens=40),
                dict(model=model, corpus=corpus, max_tokens=40, dtype=torch.float32),
                dict(model=tiny_model("llama", seed=1), corpus=corpus, max_tokens=40)]
    for v in variants:
        got = get_second_moments(v["model"], tok, [0], v["corpus"], tmp_path, max_tokens=v["max_tokens"],
                                 dtype=v.get("dtype", torch.float64), progress=False)[0]
        direct = compute_second_moments(v["model"], tok, [0], v["corpus"], max_tokens=v["max_tokens"],
                                        dtype=v.get("dtype", torch.float64), progress=False)[0]
        assert got.source == "computed" and torch.equal(got.mom2, direct.mom2) and got.count == direct.count
    assert len(_files(tmp_path, 0)) == 1 + len(variants)
    assert get_second_moments(model, tok, [0], corpus, tmp_path, max_tokens=40, progress=False)[0].source \
        .startswith("cache")
    # a renamed corpus with the same content is the same statistic
    renamed = TextCorpus(texts=TINY_CORPUS, corpus_id="another name")
    assert get_second_moments(model, tok, [0], renamed, tmp_path, max_tokens=40, progress=False)[0].source \
        .startswith("cache")

    redone = get_second_moments(model, tok, [0], other, tmp_path, max_tokens=40, progress=False, overwrite=True)
    assert redone[0].source == "computed"


def test_a_file_that_holds_another_statistic_than_its_name_is_refused(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    corpus = TextCorpus(texts=TINY_CORPUS, corpus_id="tiny")
    a = get_second_moments(model, tok, [0], corpus, tmp_path / "a", max_tokens=40, progress=False)[0]
    b = get_second_moments(model, tok, [0], corpus, tmp_path / "b", max_tokens=41, progress=False)[0]
    # b's file copied under a's name: the content key in its metadata says what it is
    shutil.copy(cache_path(tmp_path / "b", b.key), cache_path(tmp_path / "a", a.key))
    with pytest.raises(StatsCacheMismatchError, match="max_tokens: cached '41', requested '40'"):
        get_second_moments(model, tok, [0], corpus, tmp_path / "a", max_tokens=40, progress=False)
    cache_path(tmp_path / "a", a.key).write_bytes(b"not safetensors")
    with pytest.raises(StatsFormatError, match="not a readable safetensors"):
        get_second_moments(model, tok, [0], corpus, tmp_path / "a", max_tokens=40, progress=False)
    fixed = get_second_moments(model, tok, [0], corpus, tmp_path / "a", max_tokens=40, progress=False,
                               overwrite=True)[0]
    assert fixed.source == "computed" and torch.equal(fixed.mom2, a.mom2)


def test_a_file_of_the_earlier_layout_is_found_by_its_content(tmp_path):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    corpus = TextCorpus(texts=TINY_CORPUS, corpus_id="tiny")
    m = get_second_moments(model, tok, [0], corpus, tmp_path, max_tokens=40, progress=False)[0]
    legacy = legacy_cache_path(tmp_path, m.key["site"])
    cache_path(tmp_path, m.key).rename(legacy)
    got = get_second_moments(model, tok, [0], corpus, tmp_path, max_tokens=40, progress=False)[0]
    assert got.source.startswith("cache") and torch.equal(got.mom2, m.mom2)
    # ... and only by its content: another token count is computed beside it
    assert get_second_moments(model, tok, [0], corpus, tmp_path, max_tokens=39, progress=False)[0].source \
        == "computed"
    assert legacy.exists()


def _save_checkpoint(model, folder):
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def _checkpoints_share_a_cache(tmp_path, get=None):
    """Two different GPT-2-layout checkpoints saved as a/model and b/model share one cache directory:
    each gets its own statistic (equal to a direct computation), and a copy of the first saved
    elsewhere reuses the first's. Returns the sources seen."""
    from llm_experiments.model.loading import load_model

    get = get or get_second_moments
    cache = tmp_path / "cache"
    corpus = TextCorpus(texts=TINY_CORPUS, corpus_id="tiny")
    a = _save_checkpoint(tiny_model("gpt2", seed=0), tmp_path / "a" / "model")
    b = _save_checkpoint(tiny_model("gpt2", seed=1), tmp_path / "b" / "model")
    sources, moments = [], []
    for folder in (a, b):
        model, tok = load_model(folder)
        m = get(model, tok, [1], corpus, cache, max_tokens=50, progress=False)[1]
        direct = compute_second_moments(model, tok, [1], corpus, max_tokens=50, progress=False)[1]
        assert torch.equal(m.mom2, direct.mom2), folder
        sources.append(m.source)
        moments.append(m)
    assert not torch.equal(moments[0].mom2, moments[1].mom2)
    moved = shutil.copytree(a, tmp_path / "elsewhere" / "renamed")
    model, tok = load_model(moved)
    again = get(model, tok, [1], corpus, cache, max_tokens=50, progress=False)[1]
    assert torch.equal(again.mom2, moments[0].mom2)
    sources.append(again.source)
    return sources


def test_two_checkpoints_saved_under_one_folder_name_never_collide(tmp_path):
    sources = _checkpoints_share_a_cache(tmp_path)
    assert sources[:2] == ["computed", "computed"] and sources[2].startswith("cache")
    assert len(_files(tmp_path / "cache", 1)) == 2


def test_mutants_of_the_cache_key_fail_the_two_checkpoint_check(tmp_path, monkeypatch):
    from llm_experiments.edit import statistics

    # keyed by the site alone (the earlier layout, one file per folder): the second checkpoint collides
    monkeypatch.setattr(statistics, "cache_path", lambda d, key: legacy_cache_path(d, key["site"]))
    with pytest.raises(StatsCacheMismatchError, match="weights_fingerprint"):
        _checkpoints_share_a_cache(tmp_path / "one")
    monkeypatch.undo()
    # keyed by the model's path as well: the copy saved elsewhere does not find its statistics
    monkeypatch.setattr(statistics, "CONTENT_FIELDS", (*statistics.CONTENT_FIELDS, "model_name"))
    sources = _checkpoints_share_a_cache(tmp_path / "two")
    assert sources[2] == "computed"


def _memit_npz(path, mom2, count, prefix="mom2."):
    np.savez(path, **{f"{prefix}mom2": mom2, f"{prefix}count": np.array(count),
                      f"{prefix}constructor": np.array("util.runningstats.SecondMoment()")})


def test_memit_npz_is_read_and_imported_into_the_cache(tmp_path):
    model = tiny_model("llama")
    g = np.random.default_rng(0)
    keys = g.standard_normal((50, 32)).astype(np.float32)
    npz = tmp_path / "model.layers.1.mlp.down_proj_float32_mom2_100000.npz"
    _memit_npz(npz, keys.T @ keys, 50)
    m = read_memit_npz(npz, d_k=32)
    torch.testing.assert_close(m.moment(), torch.from_numpy((keys.T @ keys).astype(np.float64)) / 50)

    cache = tmp_path / "cache"
    import_memit_npz(npz, cache, model, 1, corpus_id="wikipedia (MEMIT)")
    loaded = load_second_moments(model, [1], cache)[1]
    assert loaded.count == 50 and loaded.key["corpus_id"] == "wikipedia (MEMIT)"
    torch.testing.assert_close(loaded.mom2, m.mom2)
    with pytest.raises(StatsCacheMissError, match=r"no statistics of layer 1 for this model \(1 of other weights"):
        load_second_moments(tiny_model("llama", seed=3), [1], cache)
    with pytest.raises(FileExistsError):
        import_memit_npz(npz, cache, model, 1, corpus_id="again")
    # a second statistic of the same layer (another corpus) makes the choice ambiguous: refused, both named
    get_second_moments(model, tiny_tokenizer(), [1], TextCorpus(texts=TINY_CORPUS, corpus_id="tiny"), cache,
                       max_tokens=30, progress=False)
    with pytest.raises(StatsCacheMissError, match=r"2 statistics of layer 1 .*'wikipedia \(MEMIT\)', 50 tokens.*"
                                                  r"'tiny', 30 tokens"):
        load_second_moments(model, [1], cache)

    bare = tmp_path / "bare.npz"
    _memit_npz(bare, keys.T @ keys, 50, prefix="")
    assert read_memit_npz(bare).count == 50


@pytest.mark.parametrize("problem", ["keys", "d_k", "count", "asymmetric", "not-npz"])
def test_bad_memit_files_are_refused_by_name(tmp_path, problem):
    path = tmp_path / "stats.npz"
    mom2 = np.eye(32)
    if problem == "keys":
        np.savez(path, something=mom2)
    elif problem == "d_k":
        _memit_npz(path, np.eye(16), 5)
    elif problem == "count":
        _memit_npz(path, mom2, 0)
    elif problem == "asymmetric":
        mom2[0, 1] = 1.0
        _memit_npz(path, mom2, 5)
    else:
        path.write_text("not an npz")
    with pytest.raises(StatsFormatError, match=r"stats\.npz"):
        read_memit_npz(path, d_k=32)


def test_second_moment_is_a_plain_value():
    m = SecondMoment(torch.eye(3, dtype=torch.float64) * 4, 2)
    assert torch.equal(m.moment(), torch.eye(3, dtype=torch.float64) * 2)
