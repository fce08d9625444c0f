"""Item-item models over the interaction matrix: EASE^R (closed form) and item-kNN (cosine).

Both produce a *sparse* neighbour matrix ``W`` (courses x courses, CSR, top-k per source row), so
that a learner's item score is ``x_u @ W`` where ``x_u`` holds the learner's course weights. A
dense 10k x 10k float64 matrix is 800 MB; top-100 per course is ~12 MB. EASE^R needs the dense
Gram inverse while training, so it is used up to ``EASE_MAX_ITEMS`` courses; above that the
item component falls back to sparse item-kNN, which never builds a dense item x item matrix.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

EASE_MAX_ITEMS = 4000


def matrix(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, n_users: int, n_items: int
) -> sparse.csr_matrix:
    """Learner x course CSR matrix; duplicate pairs keep their largest value."""
    coo = sparse.coo_matrix((values, (users, items)), shape=(n_users, n_items))
    out = coo.tocsr()
    out.sum_duplicates()
    return out


def ease_dense(x: sparse.spmatrix, lam: float) -> np.ndarray:
    """EASE^R weights (Steck 2019): B = I - P diagMat(1/diag(P)), P = (X'X + lam I)^-1."""
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def top_k_rows(dense: np.ndarray, k: int) -> sparse.csr_matrix:
    """Keep the ``k`` entries of largest magnitude in each row (EASE^R weights can be negative)."""
    n, m = dense.shape
    k = min(k, m)
    if k <= 0 or n == 0:
        return sparse.csr_matrix((n, m))
    cols = np.argpartition(-np.abs(dense), k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(dense, cols, axis=1)
    rows = np.repeat(np.arange(n), k)
    keep = vals.ravel() != 0
    return sparse.csr_matrix(
        (vals.ravel()[keep], (rows[keep], cols.ravel()[keep])), shape=(n, m)
    )


def _top_k_sparse(sim: sparse.coo_matrix, k: int) -> sparse.csr_matrix:
    """Row-wise top-k of a sparse matrix without densifying it (one lexsort, no Python loop)."""
    sim = sim.tocoo()
    keep = sim.data > 0
    row, col, val = sim.row[keep], sim.col[keep], sim.data[keep]
    order = np.lexsort((-val, row))
    row, col, val = row[order], col[order], val[order]
    counts = np.bincount(row, minlength=sim.shape[0])
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    top = (np.arange(len(row)) - starts) < k
    return sparse.csr_matrix((val[top], (row[top], col[top])), shape=sim.shape)


def knn(x: sparse.spmatrix, k: int = 100, shrink: float = 10.0, alpha: float = 0.5):
    """Item-kNN: asymmetric cosine ``c_ij / (n_i^a n_j^(1-a) + shrink)``, top-k per row, sparse."""
    x = sparse.csr_matrix(x, dtype=np.float64)
    co = (x.T @ x).tocoo()
    off = co.row != co.col
    r, c, v = co.row[off], co.col[off], co.data[off]
    norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    den = norm[r] ** (2 * alpha) * norm[c] ** (2 * (1 - alpha)) + shrink
    sim = sparse.coo_matrix((v / np.maximum(den, 1e-12), (r, c)), shape=co.shape)
    return _top_k_sparse(sim, k)


def ease(x: sparse.spmatrix, lam: float = 200.0, k: int = 100) -> sparse.csr_matrix:
    """EASE^R weights pruned to the top-k per source course (sparse)."""
    return top_k_rows(ease_dense(x, lam), k)


def neighbours(
    x: sparse.spmatrix, method: str = "auto", k: int = 100, lam: float = 200.0,
    shrink: float = 10.0,
) -> sparse.csr_matrix:
    """The item component's neighbour matrix: EASE^R when the catalogue is small, else kNN."""
    if method == "auto":
        method = "ease" if x.shape[1] <= EASE_MAX_ITEMS else "knn"
    if method == "ease":
        return ease(x, lam, k)
    if method == "knn":
        return knn(x, k, shrink)
    raise ValueError(f"unknown item method {method!r}")


def row_scores(w: sparse.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_r weights[r] * W[rows[r]]`` as a dense vector, without building a sparse product."""
    n = w.shape[1]
    if len(rows) == 0:
        return np.zeros(n)
    starts, ends = w.indptr[rows], w.indptr[rows + 1]
    lengths = ends - starts
    if lengths.sum() == 0:
        return np.zeros(n)
    idx = np.repeat(ends - lengths.cumsum(), lengths) + np.arange(lengths.sum())
    return np.bincount(w.indices[idx], w.data[idx] * np.repeat(weights, lengths), minlength=n)
