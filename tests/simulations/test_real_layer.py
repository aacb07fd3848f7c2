"""simulations.real_layer without the model: corpora are fixed and disjoint, the hook always goes away."""

from __future__ import annotations

import pytest
import torch

from simulations.real_layer import RealLayerUnavailable, collect_keys, docstring_corpus, file_corpus, load_site


def test_docstring_corpus_is_deterministic_and_filtered():
    a = docstring_corpus(("json", "heapq"))
    assert a == docstring_corpus(("json", "heapq"))
    assert a and all(len(p) >= 80 and "\n" not in p and not p.startswith(">>>") for p in a)
    assert len(a) == len(set(a))


def test_file_corpus_splits_paragraphs(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("short\n\n" + "word " * 30 + "\n\n" + "other " * 30 + "\n")
    assert len(file_corpus([f])) == 2


def test_keys_are_read_with_the_shared_hook_which_always_comes_off():
    """collect_keys reads the site's input through Capture: the rows are the module's inputs at the last
    real token (or every real token), and no hook is left on the model, even when the forward fails."""
    from llm_experiments.model.hooks import hook_count

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 3)
            self.site = torch.nn.Linear(3, 2)

        def forward(self, input_ids, attention_mask):
            if input_ids.max() >= 10:
                raise RuntimeError("bad id")
            return self.site(self.embed(input_ids))

    def tok(texts, **kw):
        ids = [[int(c) for c in t] for t in texts]
        n = max(map(len, ids))
        return {"input_ids": torch.tensor([x + [0] * (n - len(x)) for x in ids]),
                "attention_mask": torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids])}

    model = Tiny()
    keys = collect_keys(tok, model, model.site, ["123", "45"], positions="all")
    assert torch.equal(keys, model.embed(torch.tensor([1, 2, 3, 4, 5])).double())
    last = collect_keys(tok, model, model.site, ["123", "45"], positions="last")  # the token before the last
    assert torch.equal(last, model.embed(torch.tensor([2, 4])).double())
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="bad id"):
        collect_keys(lambda texts, **kw: {"input_ids": torch.tensor([[12]]), "attention_mask": torch.tensor([[1]])},
                     model, model.site, ["x"], positions="all")
    assert hook_count(model) == 0


def test_missing_checkpoint_is_a_named_error(tmp_path):
    with pytest.raises(RealLayerUnavailable, match="no checkpoint"):
        load_site(tmp_path / "absent", "encoder.layer.0.output.dense")
