"""Seeded synthetic key/value streams with known population moments.

A stream has a pre-trained map W0, a ground-truth map W_true (the "facts" to write), an anchor
Gram G = n_anchor * Sigma_A (the layer's key statistics on generic text, given as a population
statistic exactly as LLM runs give it), and a key distribution. Rows are (k, v) with

    values = "truth":      v = W_true^T k + noise * eps        (eps ~ N(0, I))
    values = "arbitrary":  v ~ N(0, value_scale^2 I), independent of k

Key distributions (``kind``):

    isotropic    k ~ N(0, I)
    powerlaw     k ~ N(0, Q diag(i^-alpha) Q^T), normalised to trace d_k (like real MLP inputs)
    lowrank      k = U z, U (d_k, rank) orthonormal, z ~ N(0, (d_k/rank) I)
    heavytail    multivariate Student t with ``dof`` > 2 degrees of freedom, covariance I
    anchored     k = sqrt(rho) k_A + sqrt(1 - rho) k_iso, k_A from the anchor's own distribution
    drift        the key covariance moves from one power-law basis to another over ``drift_batches``
    repeated     keys from a fixed pool of ``pool`` keys, values from W_true (+ noise): the same edit again
    conflicting  the same pool, each visit with a fresh value W_true^T k + conflict * eps

:meth:`SyntheticStream.moments` returns (Sigma_KK, Sigma_KV) = (E[k k^T], E[k v^T]) exactly where
they exist (every kind but ``drift``), so the many-edits limit is computed from the population,
never estimated from the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rlsedit.config import Config as BaseConfig

KINDS = ("isotropic", "powerlaw", "lowrank", "heavytail", "anchored", "drift", "repeated", "conflicting")
VALUE_MODES = ("truth", "arbitrary")


@dataclass(frozen=True)
class StreamConfig(BaseConfig):
    """A synthetic stream, validated on construction.

    Attributes:
        kind: key distribution, one of :data:`KINDS`.
        d_k, d_v: key and value dimensions.
        u: rows per batch.
        values: ``"truth"`` (W_true + noise) or ``"arbitrary"``.
        noise: std of the value noise (truth mode).
        value_scale: std of arbitrary values.
        edit_scale: W_true = W0 + edit_scale * N(0, 1/d_k).
        alpha: power-law exponent of the key spectrum (powerlaw, drift).
        rank: rank of lowrank keys.
        dof: Student-t degrees of freedom (heavytail; > 2 for a covariance, > 4 for the rate theorem).
        rho: share of the anchor's distribution in anchored keys, in [0, 1].
        drift_batches: batches over which drift moves from the first basis to the second.
        pool: number of distinct keys (repeated, conflicting).
        conflict: std of the fresh value noise of conflicting edits.
        n_anchor: anchor Gram scale: G = n_anchor * Sigma_A (n_w of docs/method.md section 2).
        anchor_alpha: power-law exponent of Sigma_A's spectrum.
        anchor_rank: if > 0, Sigma_A keeps only its top anchor_rank eigenvalues (a true null space).
        seed: seeds W0, W_true, the bases and the anchor; the rows use ``seed`` and a stream index.
    """

    kind: str = "isotropic"
    d_k: int = 32
    d_v: int = 8
    u: int = 4
    values: str = "truth"
    noise: float = 0.1
    value_scale: float = 1.0
    edit_scale: float = 1.0
    alpha: float = 1.0
    rank: int = 4
    dof: float = 5.0
    rho: float = 0.7
    drift_batches: int = 100
    pool: int = 8
    conflict: float = 1.0
    n_anchor: float = 100.0
    anchor_alpha: float = 1.5
    anchor_rank: int = 0
    seed: int = 0

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.values not in VALUE_MODES:
            raise ValueError(f"values must be one of {VALUE_MODES}, got {self.values!r}")
        for name in ("d_k", "d_v", "u", "rank", "drift_batches", "pool"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rank > self.d_k:
            raise ValueError(f"rank must be <= d_k = {self.d_k}, got {self.rank}")
        if not 0 <= self.anchor_rank <= self.d_k:
            raise ValueError(f"anchor_rank must be in [0, d_k], got {self.anchor_rank}")
        for name in ("noise", "value_scale", "edit_scale", "alpha", "conflict", "n_anchor", "anchor_alpha"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if not self.dof > 2:
            raise ValueError(f"dof must be > 2 (finite covariance), got {self.dof}")
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")

    def to_dict(self) -> dict:
        return asdict(self)


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _power_spectrum(d: int, alpha: float) -> np.ndarray:
    s = np.arange(1, d + 1, dtype=np.float64) ** (-alpha)
    return s * d / s.sum()


class SyntheticStream:
    """The stream described by a :class:`StreamConfig`; every array is float64 torch.

    Attributes: ``W0``, ``W_true`` (d_k, d_v); ``anchor_gram`` G (d_k, d_k); ``Sigma_A`` (the
    anchor's key covariance, for held-out preservation errors tr(D^T Sigma_A D)).
    """

    def __init__(self, config: StreamConfig) -> None:
        self.config = c = config
        rng = np.random.default_rng([c.seed, 0])
        self._W0 = rng.standard_normal((c.d_k, c.d_v)) / math.sqrt(c.d_k)
        self._W_true = self._W0 + c.edit_scale * rng.standard_normal((c.d_k, c.d_v)) / math.sqrt(c.d_k)
        # anchor covariance
        QA = _orthogonal(rng, c.d_k)
        sa = _power_spectrum(c.d_k, c.anchor_alpha)
        if c.anchor_rank:
            sa[c.anchor_rank:] = 0.0
        self._Sigma_A = (QA * sa) @ QA.T
        self._LA = QA * np.sqrt(sa)  # k_A = LA z
        # key distribution factors
        Q1, Q2 = _orthogonal(rng, c.d_k), _orthogonal(rng, c.d_k)
        sp = _power_spectrum(c.d_k, c.alpha)
        self._L1 = Q1 * np.sqrt(sp)
        self._L2 = Q2 * np.sqrt(sp)
        self._U = Q1[:, : c.rank] * math.sqrt(c.d_k / c.rank)
        self._pool = rng.standard_normal((c.pool, c.d_k))

    # -- population ------------------------------------------------------------------------
    @property
    def W0(self) -> torch.Tensor:
        return torch.from_numpy(self._W0.copy())

    @property
    def W_true(self) -> torch.Tensor:
        return torch.from_numpy(self._W_true.copy())

    @property
    def Sigma_A(self) -> torch.Tensor:
        return torch.from_numpy(self._Sigma_A.copy())

    @property
    def anchor_gram(self) -> torch.Tensor:
        """G = n_anchor * Sigma_A (symmetric positive semi-definite)."""
        G = self.config.n_anchor * self._Sigma_A
        return torch.from_numpy(0.5 * (G + G.T))

    def key_covariance(self) -> np.ndarray | None:
        c = self.config
        if c.kind in ("isotropic", "heavytail"):
            return np.eye(c.d_k)
        if c.kind == "powerlaw":
            return self._L1 @ self._L1.T
        if c.kind == "lowrank":
            return self._U @ self._U.T
        if c.kind == "anchored":
            return c.rho * self._Sigma_A + (1.0 - c.rho) * np.eye(c.d_k)
        if c.kind in ("repeated", "conflicting"):
            return self._pool.T @ self._pool / c.pool
        return None  # drift: no single population

    def moments(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(Sigma_KK, Sigma_KV) = (E[k k^T], E[k v^T]) per row, or None where they do not exist."""
        S = self.key_covariance()
        if S is None:
            return None
        S = 0.5 * (S + S.T)
        if self.config.values == "truth":
            X = S @ self._W_true
        else:
            X = np.zeros((self.config.d_k, self.config.d_v))
        return torch.from_numpy(S), torch.from_numpy(X)

    def value_model(self) -> tuple[torch.Tensor, float]:
        """(W_eff, sigma^2) with v = W_eff^T k + sigma eps, eps ~ N(0, I) independent of k.

        "truth": W_eff = W_true and sigma^2 = noise^2 (+ conflict^2 for conflicting keys);
        "arbitrary": W_eff = 0 and sigma^2 = value_scale^2.
        """
        c = self.config
        if c.values == "arbitrary":
            return torch.zeros(c.d_k, c.d_v, dtype=torch.float64), c.value_scale**2
        var = c.noise**2 + (c.conflict**2 if c.kind == "conflicting" else 0.0)
        return self.W_true, var

    def quartic_moment(self, A: np.ndarray | torch.Tensor, B: np.ndarray | torch.Tensor) -> float | None:
        """E[(k^T A k)(k^T B k)] for symmetric A, B, exactly (None for drift, which has no population).

        Gaussian keys (isotropic, powerlaw, lowrank, anchored): tr(A S) tr(B S) + 2 tr(A S B S);
        Student-t keys (heavytail, covariance I): that times (dof - 2) / (dof - 4) (infinite for
        dof <= 4); pooled keys (repeated, conflicting): the mean over the pool.
        """
        c = self.config
        A = np.asarray(A, dtype=np.float64)
        B = np.asarray(B, dtype=np.float64)
        if c.kind in ("repeated", "conflicting"):
            P = self._pool
            return float(np.mean(np.einsum("ij,jk,ik->i", P, A, P) * np.einsum("ij,jk,ik->i", P, B, P)))
        S = self.key_covariance()
        if S is None:
            return None
        AS, BS = A @ S, B @ S
        gauss = float(np.trace(AS) * np.trace(BS) + 2.0 * np.trace(AS @ BS))
        if c.kind == "heavytail":
            return math.inf if c.dof <= 4 else gauss * (c.dof - 2.0) / (c.dof - 4.0)
        return gauss

    # -- samples ---------------------------------------------------------------------------
    def _keys(self, rng: np.random.Generator, n: int, batch_index: int) -> np.ndarray:
        c = self.config
        z = rng.standard_normal((n, c.d_k))
        if c.kind == "isotropic":
            return z
        if c.kind == "powerlaw":
            return z @ self._L1.T
        if c.kind == "lowrank":
            return rng.standard_normal((n, c.rank)) @ self._U.T
        if c.kind == "heavytail":
            w = rng.chisquare(c.dof, size=(n, 1))
            return z * np.sqrt((c.dof - 2.0) / w)
        if c.kind == "anchored":
            zA = rng.standard_normal((n, c.d_k)) @ self._LA.T
            return math.sqrt(c.rho) * zA + math.sqrt(1.0 - c.rho) * z
        if c.kind == "drift":
            s = min(batch_index / c.drift_batches, 1.0)
            z2 = rng.standard_normal((n, c.d_k))
            return math.sqrt(1.0 - s) * (z @ self._L1.T) + math.sqrt(s) * (z2 @ self._L2.T)
        idx = rng.integers(0, c.pool, size=n)  # repeated, conflicting
        return self._pool[idx]

    def _values(self, rng: np.random.Generator, K: np.ndarray) -> np.ndarray:
        c = self.config
        n = K.shape[0]
        if c.values == "arbitrary":
            return c.value_scale * rng.standard_normal((n, c.d_v))
        V = K @ self._W_true + c.noise * rng.standard_normal((n, c.d_v))
        if c.kind == "conflicting":
            V = V + c.conflict * rng.standard_normal((n, c.d_v))
        return V

    def batches(self, n_batches: int, stream: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``n_batches`` batches (K (u, d_k), V (u, d_v)); the same (seed, stream) gives the same rows."""
        rng = np.random.default_rng([self.config.seed, 1, stream])
        for b in range(n_batches):
            K = self._keys(rng, self.config.u, b)
            yield torch.from_numpy(K), torch.from_numpy(self._values(rng, K))

    def rows(self, n: int, stream: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """n independent rows in one matrix pair (for estimating constants; a different stream index)."""
        rng = np.random.default_rng([self.config.seed, 2, stream])
        K = self._keys(rng, n, 0)
        return torch.from_numpy(K), torch.from_numpy(self._values(rng, K))

    def anchor_rows(self, n: int, stream: int = 3) -> torch.Tensor:
        """n keys from the anchor's distribution N(0, Sigma_A) (held-out "generic text")."""
        rng = np.random.default_rng([self.config.seed, 3, stream])
        return torch.from_numpy(rng.standard_normal((n, self.config.d_k)) @ self._LA.T)


def make_stream(**kwargs) -> SyntheticStream:
    """SyntheticStream(StreamConfig(**kwargs))."""
    return SyntheticStream(StreamConfig(**kwargs))
