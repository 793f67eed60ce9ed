"""Synthetic datasets with known structure: Gaussian blobs, linear regression, two clouds in 2-D."""

import numpy as np

from linear_jax.data.records import Raw


def blobs(
  num_examples: int = 600, num_features: int = 2, num_classes: int = 3, spread: float = 1.0, seed: int = 0
) -> Raw:
  """Gaussian blobs: class `c` is `N(μ_c, spread² I)` with random centres."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(scale=4.0, size=(num_classes, num_features))
  y = rng.integers(0, num_classes, num_examples)
  x = centres[y] + spread * rng.normal(size=(num_examples, num_features))
  return Raw(x, y.astype(np.int64), 'class', num_classes)


def linreg(
  num_examples: int = 500, num_features: int = 5, num_outputs: int = 1, noise: float = 0.1, seed: int = 0
) -> Raw:
  """`y = x W*ᵀ + b* + noise` with a known `W*` (in `extra`)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(num_outputs, num_features))
  b = rng.normal(size=(num_outputs,))
  x = rng.normal(size=(num_examples, num_features))
  y = x @ w.T + b + noise * rng.normal(size=(num_examples, num_outputs))
  return Raw(x, y[:, 0] if num_outputs == 1 else y, 'real', extra={'W': w, 'b': b})


def binary2d(num_examples: int = 400, separation: float = 3.0, seed: int = 0) -> Raw:
  """Two Gaussian clouds in 2-D, labels {0, 1}: the geometric viewpoint."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, num_examples)
  direction = np.array([1.0, 0.6]) / np.linalg.norm([1.0, 0.6])
  x = rng.normal(size=(num_examples, 2)) + np.outer(2 * y - 1, direction) * separation / 2
  return Raw(x, y.astype(np.int64), 'class', 2, class_names=('0', '1'))
