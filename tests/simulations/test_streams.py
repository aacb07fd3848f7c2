"""simulations.streams: seeded, validated, and their population moments are the true ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulations.streams import KINDS, StreamConfig, make_stream


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_rows_other_seed_other_rows(kind):
    a = [b for b in make_stream(kind=kind, d_k=5, d_v=2, u=3, seed=4).batches(3)]
    b = [b for b in make_stream(kind=kind, d_k=5, d_v=2, u=3, seed=4).batches(3)]
    c = [b for b in make_stream(kind=kind, d_k=5, d_v=2, u=3, seed=5).batches(3)]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    assert a[0][0].shape == (3, 5) and a[0][1].shape == (3, 2) and a[0][0].dtype == torch.float64


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "drift"])
@pytest.mark.parametrize("values", ["truth", "arbitrary"])
def test_moments_match_a_large_sample(kind, values):
    """Sample moments from an independent stream fall within a few standard errors of the exposed ones."""
    s = make_stream(kind=kind, d_k=4, d_v=2, values=values, dof=9.0, seed=1)
    S, X = s.moments()
    n = 40_000
    K, V = s.rows(n)
    # per-entry standard error of a sample mean of k_i k_j (or k_i v_j)
    se_kk = (K[:, :, None] * K[:, None, :]).std(0) / n**0.5
    se_kv = (K[:, :, None] * V[:, None, :]).std(0) / n**0.5
    assert ((K.T @ K / n - S).abs() <= 6 * se_kk + 1e-12).all()
    assert ((K.T @ V / n - X).abs() <= 6 * se_kv + 1e-12).all()
    assert torch.allclose(S, S.T)
    assert float(torch.linalg.eigvalsh(S)[0]) >= -1e-12


def test_drift_has_no_single_population_and_moves():
    s = make_stream(kind="drift", d_k=4, d_v=1, u=4000, drift_batches=2)
    assert s.moments() is None
    first, _, last = (K for K, _ in s.batches(3))
    assert not torch.allclose(first.T @ first / 4000, last.T @ last / 4000, atol=0.2)


def test_anchor_gram_is_n_anchor_times_sigma_a_and_can_have_a_null_space():
    s = make_stream(d_k=6, n_anchor=50.0, anchor_rank=2)
    ev = torch.linalg.eigvalsh(s.anchor_gram)
    assert int((ev > 1e-9 * ev[-1]).sum()) == 2
    assert torch.allclose(s.anchor_gram, 50.0 * s.Sigma_A)
    K = s.anchor_rows(20_000)
    assert torch.allclose(K.T @ K / 20_000, s.Sigma_A, atol=0.1 * float(s.Sigma_A.abs().max()))


def test_repeated_and_conflicting_edits_reuse_the_pool_keys():
    s = make_stream(kind="conflicting", d_k=5, d_v=2, u=50, pool=3, conflict=2.0)
    K, V = next(s.batches(1))
    assert len({tuple(k.tolist()) for k in K}) <= 3
    same = [i for i in range(1, 50) if torch.equal(K[i], K[0])]
    assert same and not torch.allclose(V[same[0]], V[0])  # the same key with a new value


@pytest.mark.parametrize("bad, match", [
    ({"kind": "nope"}, "kind must be one of"),
    ({"d_k": 0}, "d_k must be >= 1"),
    ({"rank": 9, "d_k": 4}, "rank must be <= d_k"),
    ({"dof": 2.0}, "dof must be > 2"),
    ({"rho": 1.5}, "rho must be in"),
    ({"noise": -1.0}, "noise must be finite"),
    ({"values": "x"}, "values must be one of"),
])
def test_bad_configs_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        StreamConfig(**bad)


def test_config_is_frozen():
    c = StreamConfig()
    with pytest.raises(AttributeError):
        c.d_k = 3  # type: ignore[misc]
    assert np.isclose(StreamConfig(**c.to_dict()).noise, c.noise)
