"""The update path as the benchmarks rely on it: in place, no reallocation, float64 small algebra."""

from __future__ import annotations

import torch

from rlsedit.recursion import rls_update


def _state(d_k=40, d_v=6, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    C = torch.eye(d_k, dtype=dtype)
    W = torch.randn(d_k, d_v, generator=g, dtype=dtype)
    K = torch.randn(7, d_k, generator=g, dtype=dtype) / d_k**0.5
    V = torch.randn(7, d_v, generator=g, dtype=dtype)
    return C, W, K, V


def test_inplace_update_writes_into_the_given_tensors():
    C, W, K, V = _state()
    pointers = (C.data_ptr(), W.data_ptr())
    step = rls_update(C, W, K, V, inplace=True)
    assert (step.C.data_ptr(), step.W.data_ptr()) == pointers
    assert step.C.dtype == step.W.dtype == torch.float32


def test_float32_step_matches_the_float64_step_on_the_same_inputs():
    C, W, K, V = _state()
    low = rls_update(C, W, K, V)
    high = rls_update(C.double(), W.double(), K.double(), V.double())
    torch.testing.assert_close(low.W.double(), high.W, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(low.C.double(), high.C, rtol=1e-5, atol=1e-6)
    # the residual after the write is computed in float64 from S^{-1} E
    assert abs(low.residual_after - high.residual_after) <= 1e-5 * high.residual_before
