"""The simple, deterministic classifiers the evaluation uses, on a few features per sensor.

Window features (per sensor): mean, standard deviation, mean absolute
first difference (roughness) and least-squares slope, so a classifier sees
the level, the spread, the noise and the trend of each sensor. Features are
standardised with the training set's mean and spread.

- :class:`ShrinkageLDA`: linear discriminant analysis with the pooled
  covariance shrunk towards a scaled identity; fault class from a window.
- :func:`logistic_accuracy`: L2-regularised logistic regression (full-batch
  L-BFGS), real or generated, trained on one set and scored on another.

>>> rng = np.random.default_rng(0)
>>> X = np.r_[rng.normal(0, 1, (50, 3)), rng.normal(3, 1, (50, 3))]
>>> y = np.r_[np.zeros(50, int), np.ones(50, int)]
>>> float((ShrinkageLDA().fit(X, y).predict(X) == y).mean()) > 0.95
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def window_features(w: np.ndarray) -> np.ndarray:
    """(n, T, d) windows -> (n, 4 d) features."""
    assert w.ndim == 3 and w.shape[1] >= 2, f"expected (n, T>=2, d) windows, got {w.shape}"
    t = np.arange(w.shape[1]) - (w.shape[1] - 1) / 2
    slope = np.einsum("ntd,t->nd", w, t) / float((t**2).sum())
    return np.concatenate([w.mean(1), w.std(1), np.abs(np.diff(w, axis=1)).mean(1), slope], axis=1)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


class ShrinkageLDA:
    """Gaussian classes with one shared covariance, shrunk: ``(1 - a) S + a tr(S)/p I``."""

    def __init__(self, shrinkage: float = 0.01) -> None:
        if not 0 < shrinkage <= 1:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        self.shrinkage = shrinkage

    def fit(self, x: np.ndarray, y: np.ndarray) -> ShrinkageLDA:
        self.classes = np.unique(y)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        xs = (x - self.mean) / self.std
        self.centroids = np.stack([xs[y == c].mean(0) for c in self.classes])
        resid = xs - self.centroids[np.searchsorted(self.classes, y)]
        cov = resid.T @ resid / max(1, len(xs) - len(self.classes))
        p = cov.shape[0]
        cov = (1 - self.shrinkage) * cov + self.shrinkage * np.trace(cov) / p * np.eye(p)
        self.precision_centroids = np.linalg.solve(cov, self.centroids.T)  # (p, classes)
        self.offset = -0.5 * np.sum(self.centroids * self.precision_centroids.T, axis=1)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        xs = (x - self.mean) / self.std
        return self.classes[np.argmax(xs @ self.precision_centroids + self.offset, axis=1)]


def logistic_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    l2: float = 1e-3,
    max_iter: int = 300,
) -> float:
    """Accuracy on the test set of a binary L2 logistic regression fitted on the training set."""
    a, b = _standardise(x_train, x_test)
    xa, xb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    ya = torch.tensor(y_train, dtype=torch.float64)
    w = torch.zeros(xa.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xa @ w + bias, ya) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = ((xb @ w + bias) > 0).numpy()
    return float((pred == (np.asarray(y_test) > 0.5)).mean())


def recalls(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int]) -> list[float]:
    """Recall of each label (the fraction of its windows classified as it)."""
    return [float((y_pred[y_true == c] == c).mean()) if (y_true == c).any() else float("nan") for c in labels]
