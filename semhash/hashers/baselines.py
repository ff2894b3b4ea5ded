"""Baseline hashers: random-hyperplane LSH, PCA-sign and ITQ, the yardsticks for the learned codes.

Learned codes are only worth their training time if they beat the simple ways of making binary
codes, so these three sit behind the same Hasher interface as the autoencoder and can be chosen
wherever a hasher is (`semhash index CORPUS --hasher itq`). Each is a linear map of the centred
features, `logits = (x - mean) @ W`, bit i = logit i > 0, and they differ only in `W`:

- `lsh`: `bits` random Gaussian directions, each scaled to unit length (Charikar's sign random
  projections through the data mean). The logit is the signed distance to the hyperplane.
- `pca`: the top `bits` principal directions (PCA-sign, the subspace a linear autoencoder learns).
- `itq`: the PCA directions followed by the orthogonal rotation R that iterative quantization
  (Gong & Lazebnik 2011) learns: B = sign(V R), then R from the SVD of V^T B (orthogonal
  Procrustes), alternated `iterations` times from a seeded random rotation. `quantization_loss`
  records the mean squared quantization error ||B - V R||^2 / n of the codes before the first and
  after every iteration; each step minimises it over B or R, so it never rises.

Sparse input (TF-IDF, tens of thousands of rows and columns) is never densified: centring is
folded into the product, `X @ W - mean @ W`. Principal directions come from the eigenvectors of
the covariance matrix where the feature dimension is at most `COVARIANCE_MAX_DIM` (accumulated
in row chunks), otherwise from a seeded randomized SVD of the implicitly centred matrix (Halko,
Martinsson & Tropp 2011). Each direction's sign is fixed (largest entry positive), so dense and
sparse copies of the same data give the same codes. Codes depend only on the data and the seed.

Saved state, no pickle: `baseline.json` (name, bits, settings, training history) beside
`mean.npy` and `projection.npy` (and `rotation.npy` for ITQ), read back with allow_pickle=False.
"""
from __future__ import annotations

import json
import time
from abc import abstractmethod
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ..errors import ConfigError, ModelError
from .base import Features, Hasher

STATE_FILE = "baseline.json"
STATE_FORMAT = 1
COVARIANCE_MAX_DIM = 2048  # above this, a randomized SVD instead of a dim x dim covariance matrix
CHUNK_ELEMENTS = 1 << 22  # dense rows are centred and multiplied in chunks of about this many values


# --- linear algebra on possibly sparse, implicitly centred features ------------------------------------------

def check_features(X: Features) -> Features:
    """A 2-D float array or a CSR matrix; anything else is a ModelError."""
    if sp.issparse(X):
        X = X.tocsr()
    else:
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise ModelError(f"features must be numbers, got an array of {X.dtype}")
    if X.ndim != 2:
        raise ModelError(f"features must be a 2-D (items, dimensions) array, got shape {X.shape}")
    return X


def column_mean(X: Features) -> np.ndarray:
    """(dim,) float64 mean of the rows."""
    if sp.issparse(X):
        return np.asarray(X.sum(axis=0, dtype=np.float64)).ravel() / X.shape[0]
    return X.mean(axis=0, dtype=np.float64)


def _row_chunks(X: np.ndarray):
    step = max(1, CHUNK_ELEMENTS // max(1, X.shape[1]))
    for start in range(0, X.shape[0], step):
        yield start, X[start:start + step]


def project(X: Features, mean: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(X - mean) @ W as float64, without densifying sparse X or copying all of dense X at once."""
    if sp.issparse(X):
        return np.asarray(X @ W, dtype=np.float64) - mean @ W
    out = np.empty((X.shape[0], W.shape[1]), dtype=np.float64)
    for start, chunk in _row_chunks(X):
        out[start:start + len(chunk)] = (chunk.astype(np.float64) - mean) @ W
    return out


def project_transpose(X: Features, mean: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """(X - mean)^T @ Y as float64, (dim, Y.shape[1])."""
    if sp.issparse(X):
        return np.asarray(X.T @ Y, dtype=np.float64) - np.outer(mean, Y.sum(axis=0))
    out = np.zeros((X.shape[1], Y.shape[1]), dtype=np.float64)
    for start, chunk in _row_chunks(X):
        out += (chunk.astype(np.float64) - mean).T @ Y[start:start + len(chunk)]
    return out


def covariance(X: Features, mean: np.ndarray) -> np.ndarray:
    """(dim, dim) float64 covariance of the rows (divided by n)."""
    n = X.shape[0]
    if sp.issparse(X):
        X64 = X.astype(np.float64)  # the product in float64, as the dense path accumulates
        gram = (X64.T @ X64).toarray()
        return (gram - n * np.outer(mean, mean)) / n
    cov = np.zeros((X.shape[1], X.shape[1]), dtype=np.float64)
    for _, chunk in _row_chunks(X):
        c = chunk.astype(np.float64) - mean
        cov += c.T @ c
    return cov / n


def fix_signs(components: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive (an eigenvector's sign is arbitrary)."""
    rows = np.argmax(np.abs(components), axis=0)
    signs = np.sign(components[rows, np.arange(components.shape[1])])
    signs[signs == 0] = 1.0
    return components * signs


def randomized_components(X: Features, mean: np.ndarray, k: int, seed: int, oversample: int = 10,
                          power_iterations: int = 7) -> np.ndarray:
    """Top-k right singular vectors of the centred X, (dim, k), by a seeded randomized SVD."""
    n, dim = X.shape
    width = min(k + oversample, n, dim)
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(project(X, mean, rng.standard_normal((dim, width))))
    for _ in range(power_iterations):  # subspace iteration, re-orthonormalised each half step
        Z, _ = np.linalg.qr(project_transpose(X, mean, Q))
        Q, _ = np.linalg.qr(project(X, mean, Z))
    _, _, vt = np.linalg.svd(project_transpose(X, mean, Q).T, full_matrices=False)
    return vt[:k].T


def principal_components(X: Features, mean: np.ndarray, k: int, seed: int = 0,
                         method: str = "auto") -> np.ndarray:
    """The top-k principal directions of X's rows as (dim, k) float64 columns, largest variance first.

    method: "covariance" (exact eigenvectors of the dim x dim covariance), "randomized" (seeded
    randomized SVD, for high-dimensional data) or "auto" (covariance up to COVARIANCE_MAX_DIM)."""
    n, dim = X.shape
    if k > min(n, dim):
        raise ConfigError(f"principal directions: {k} bits need at least {k} feature dimensions and {k} training "
                          f"items, the data has {dim} dimensions and {n} items; use fewer bits or the lsh hasher")
    if method == "auto":
        method = "covariance" if dim <= COVARIANCE_MAX_DIM else "randomized"
    if method == "covariance":
        _, vectors = scipy.linalg.eigh(covariance(X, mean), subset_by_index=[dim - k, dim - 1])
        components = vectors[:, ::-1]
    elif method == "randomized":
        components = randomized_components(X, mean, k, seed)
    else:
        raise ConfigError(f"unknown PCA method {method!r}; choose auto, covariance or randomized")
    return fix_signs(np.ascontiguousarray(components))


def random_rotation(k: int, rng: np.random.Generator) -> np.ndarray:
    """A (k, k) random orthogonal matrix (QR of a Gaussian matrix, signs fixed so it is Haar-distributed)."""
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def itq_rotation(V: np.ndarray, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Gong & Lazebnik's iterative quantization of V (n, k): the rotation R and the loss ||B - VR||^2 / n
    of the codes B = sign(VR) before the first and after every iteration (non-increasing)."""
    n = V.shape[0]
    R = random_rotation(V.shape[1], rng)

    def codes_and_loss(R: np.ndarray) -> tuple[np.ndarray, float]:
        VR = V @ R
        B = np.where(VR > 0, 1.0, -1.0)  # the same side of 0 as the hasher's bits
        return B, float(np.square(B - VR).sum() / n)

    B, loss = codes_and_loss(R)
    losses = [loss]
    for _ in range(iterations):
        U, _, Wt = np.linalg.svd(V.T @ B)  # orthogonal Procrustes: argmax_R tr(B^T V R) = U W^T
        R = U @ Wt
        B, loss = codes_and_loss(R)
        losses.append(loss)
    return R, losses


# --- the hashers ------------------------------------------------------------------------------------------------

class LinearHasher(Hasher):
    """A hasher whose logits are (x - mean) @ projection. Subclasses choose the projection."""

    def __init__(self, bits: int = 32, seed: int = 0):
        super().__init__(bits)
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
            raise ConfigError(f"seed must be from 0 to {2 ** 32 - 1}, got {seed!r}")
        self.seed = int(seed)
        self.mean: np.ndarray | None = None  # (dim,) float64
        self.projection: np.ndarray | None = None  # (dim, bits) float64
        self.history: dict = {}

    @abstractmethod
    def _fit_projection(self, X: Features) -> np.ndarray:
        """The (dim, bits) projection for centred X (self.mean is set); may record extras in self.history."""

    def fit(self, X: Features, output_type: str = "real", progress: bool = True) -> LinearHasher:
        """Fit on the rows of X (output_type and progress do not apply: fitting takes seconds)."""
        X = check_features(X)
        if X.shape[0] < 2:
            raise ModelError(f"the {self.name} hasher needs at least 2 training items, got {X.shape[0]}")
        if not sp.issparse(X) and not np.isfinite(X).all():
            raise ModelError("features contain NaN or infinite values")
        start = time.perf_counter()
        self.history = {}
        self.mean = column_mean(X)
        self.projection = np.ascontiguousarray(self._fit_projection(X), dtype=np.float64)
        self.history.update(trained_on=int(X.shape[0]), seconds=round(time.perf_counter() - start, 3))
        return self

    @property
    def dim(self) -> int | None:
        return None if self.projection is None else self.projection.shape[0]

    def logits(self, X: Features) -> np.ndarray:
        if self.projection is None:
            raise ModelError(f"the {self.name} hasher is not fitted yet")
        X = check_features(X)
        if X.shape[1] != self.dim:
            raise ModelError(f"features have {X.shape[1]} dimensions, the model expects {self.dim}")
        return project(X, self.mean, self.projection).astype(np.float32)

    # --- saving -------------------------------------------------------------------------------------------
    def settings(self) -> dict:
        """Constructor arguments besides bits (saved, and shown by describe)."""
        return {"seed": self.seed}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "projection": self.projection}

    def save(self, directory: Path) -> None:
        if self.projection is None:
            raise ModelError(f"the {self.name} hasher is not fitted yet")
        directory = Path(directory)
        state = {"format": STATE_FORMAT, "name": self.name, "bits": self.bits, "settings": self.settings(),
                 "history": self.history}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        for key, array in self._arrays().items():
            np.save(directory / f"{key}.npy", array, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> LinearHasher:
        directory = Path(directory)
        try:
            state = json.loads((directory / STATE_FILE).read_text())
            if state.get("name") != cls.name:
                raise ValueError(f"it holds a {state.get('name')!r} hasher")
            if state.get("format", 0) > STATE_FORMAT:
                raise ValueError(f"format {state.get('format')} is newer than this semhash reads; upgrade semhash")
            h = cls(bits=state["bits"], **state["settings"])
            arrays = {key: np.load(directory / f"{key}.npy", allow_pickle=False) for key in h._arrays()}
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as e:
            raise ModelError(f"cannot load the {cls.name} hasher from {directory} ({e})") from None
        mean, projection = arrays.pop("mean"), arrays.pop("projection")
        if mean.ndim != 1 or projection.shape != (len(mean), h.bits):
            raise ModelError(f"cannot load the {cls.name} hasher from {directory} (arrays of shapes {mean.shape} "
                             f"and {projection.shape} do not fit {h.bits} bits)")
        h.mean, h.projection, h.history = mean, projection, state.get("history", {})
        h._restore(arrays)
        return h

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take back the extra arrays of `_arrays` after loading."""

    def describe(self) -> dict:
        d = super().describe()
        d.update(self.settings())
        return d


class LSHHasher(LinearHasher):
    """Random hyperplanes through the data mean: bit i = sign((x - mean) . w_i), w_i Gaussian, unit length."""

    name = "lsh"

    def _fit_projection(self, X: Features) -> np.ndarray:
        W = np.random.default_rng(self.seed).standard_normal((X.shape[1], self.bits))
        return W / np.linalg.norm(W, axis=0)


class PCAHasher(LinearHasher):
    """PCA-sign: bit i = sign of the projection on the i-th principal direction."""

    name = "pca"

    def __init__(self, bits: int = 32, seed: int = 0, pca_method: str = "auto"):
        super().__init__(bits, seed)
        if pca_method not in ("auto", "covariance", "randomized"):
            raise ConfigError(f"unknown PCA method {pca_method!r}; choose auto, covariance or randomized")
        self.pca_method = pca_method

    def settings(self) -> dict:
        return {**super().settings(), "pca_method": self.pca_method}

    def _fit_projection(self, X: Features) -> np.ndarray:
        return principal_components(X, self.mean, self.bits, self.seed, self.pca_method)


class ITQHasher(PCAHasher):
    """Iterative quantization: PCA to `bits` dimensions, then the rotation that makes sign() lose least."""

    name = "itq"

    def __init__(self, bits: int = 32, seed: int = 0, pca_method: str = "auto", iterations: int = 50):
        super().__init__(bits, seed, pca_method)
        if not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ConfigError(f"ITQ iterations must be a non-negative integer, got {iterations!r}")
        self.iterations = int(iterations)
        self.rotation: np.ndarray | None = None  # (bits, bits) orthogonal
        self.quantization_loss: list[float] = []

    def settings(self) -> dict:
        return {**super().settings(), "iterations": self.iterations}

    def _fit_projection(self, X: Features) -> np.ndarray:
        components = super()._fit_projection(X)
        V = project(X, self.mean, components)
        # the rotation's own stream: the PCA's randomized SVD (if any) draws from the seed separately
        rng = np.random.default_rng([self.seed, 1])
        self.rotation, self.quantization_loss = itq_rotation(V, self.iterations, rng)
        self.history["quantization_loss"] = [round(x, 6) for x in self.quantization_loss]
        return components @ self.rotation

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "rotation": self.rotation}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        rotation = arrays["rotation"]
        if rotation.shape != (self.bits, self.bits):
            raise ModelError(f"the ITQ rotation has shape {rotation.shape}, expected ({self.bits}, {self.bits})")
        self.rotation = rotation
        self.quantization_loss = list(self.history.get("quantization_loss", []))
