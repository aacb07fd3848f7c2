"""simulations.real_layer without the model: corpora are fixed and disjoint, the hook always goes away."""

from __future__ import annotations

import pytest
import torch

from simulations.real_layer import RealLayerUnavailable, capture_inputs, docstring_corpus, file_corpus, load_site


def test_docstring_corpus_is_deterministic_and_filtered():
    a = docstring_corpus(("json", "heapq"))
    assert a == docstring_corpus(("json", "heapq"))
    assert a and all(len(p) >= 80 and "\n" not in p and not p.startswith(">>>") for p in a)
    assert len(a) == len(set(a))


def test_file_corpus_splits_paragraphs(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("short\n\n" + "word " * 30 + "\n\n" + "other " * 30 + "\n")
    assert len(file_corpus([f])) == 2


def test_capture_inputs_records_and_always_removes_the_hook():
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with capture_inputs(lin) as got:
        lin(x)
    assert len(got) == 1 and torch.equal(got[0], x)
    with pytest.raises(RuntimeError), capture_inputs(lin):
        raise RuntimeError("inside")
    assert not lin._forward_pre_hooks
    lin(x)
    assert len(got) == 1  # nothing recorded after the block


def test_missing_checkpoint_is_a_named_error(tmp_path):
    with pytest.raises(RealLayerUnavailable, match="no checkpoint"):
        load_site(tmp_path / "absent", "encoder.layer.0.output.dense")
