"""TF-IDF statistics for Consistency: fitted on reference texts, or MEMIT's released files as they are."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


class TfidfError(ValueError):
    """TF-IDF statistics that cannot be built (no document, no term)."""


_TFIDF_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn TfidfVectorizer's default token_pattern


@dataclass(frozen=True, eq=False)
class TfidfStats:
    """TF-IDF statistics: ``vocabulary`` (term -> column) and ``idf`` (one weight per column).

    Same transform as a scikit-learn ``TfidfVectorizer`` with its defaults (lowercase, terms of two
    or more word characters, raw counts x idf, L2 normalisation), so MEMIT's ``idf.npy`` and
    ``tfidf_vocab.json`` (its ``idf_`` and ``vocabulary_``) are used as they are.
    """

    vocabulary: Mapping[str, int]
    idf: np.ndarray

    def __post_init__(self) -> None:
        idf = np.asarray(self.idf)
        if idf.dtype.kind not in "iuf":  # bool, complex, strings, records, objects
            raise ValueError(f"idf must hold real numbers, got dtype {idf.dtype}")
        idf = idf.astype(np.float64)
        if idf.ndim != 1:
            raise ValueError(f"idf must be 1-D, got shape {idf.shape}")
        if not np.all(np.isfinite(idf)) or np.any(idf <= 0):
            raise ValueError("idf must be finite and positive")
        vocab = dict(self.vocabulary)
        cols = list(vocab.values())
        if not all(isinstance(t, str) for t in vocab) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in cols
        ):
            raise ValueError("vocabulary must map strings to integer columns")
        if sorted(cols) != list(range(len(idf))):
            raise ValueError(f"vocabulary columns must be 0..{len(idf) - 1}, each once ({len(cols)} terms)")
        object.__setattr__(self, "idf", idf)
        object.__setattr__(self, "vocabulary", vocab)

    @classmethod
    def fit(cls, documents: Iterable[str]) -> TfidfStats:
        """Statistics of a corpus, with scikit-learn's smoothed idf: ln((1 + n) / (1 + df)) + 1."""
        docs = [set(_TFIDF_TOKEN.findall(d.lower())) for d in documents]
        if not docs:
            raise TfidfError("TfidfStats.fit needs at least one document")
        df = Counter(t for d in docs for t in d)
        if not df:
            raise TfidfError("TfidfStats.fit: no document holds a term (two or more word characters)")
        terms = sorted(df)
        idf = np.array([math.log((1 + len(docs)) / (1 + df[t])) + 1.0 for t in terms])
        return cls({t: i for i, t in enumerate(terms)}, idf)

    def vector(self, text: str) -> np.ndarray:
        """The L2-normalised TF-IDF vector of ``text`` (all zeros when it has no known term)."""
        v = np.zeros(len(self.idf))
        for term in _TFIDF_TOKEN.findall(text.lower()):
            col = self.vocabulary.get(term)
            if col is not None:
                v[col] += 1.0
        if len(self.idf):
            v *= self.idf / self.idf.max()  # scaled: no product overflows; the normalisation drops the scale
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else v

    def similarity(self, text_a: str, text_b: str) -> float:
        """Cosine similarity of the two TF-IDF vectors; 0 when either has no known term."""
        return float(self.vector(text_a) @ self.vector(text_b))
