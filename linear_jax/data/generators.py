"""Synthetic datasets with known structure: Gaussian blobs, linear regression, two clouds in 2-D."""

import math

import numpy as np

from linear_jax.data.records import Raw
from linear_jax.maths import validation


def _check(seed, counts, reals):
  """Raises a `ValueError` naming the first argument out of range: `counts` `{name: (value, least)}`
  whole numbers, `reals` `{name: value}` finite numbers >= 0 (NumPy's errors named neither, and a NaN
  or negative spread made data silently)."""
  validation.check_seed('seed', seed)
  for name, (n, least) in counts.items():
    validation.check_whole(name, n, least)
  for name, v in reals.items():
    if not (validation.is_number(v) and math.isfinite(v) and v >= 0):
      raise ValueError(f'{name} must be a finite number >= 0, got {v!r}.')


def blobs(
  num_examples: int = 600, num_features: int = 2, num_classes: int = 3, spread: float = 1.0, seed: int = 0
) -> Raw:
  """Gaussian blobs: class `c` is `N(μ_c, spread² I)` with random centres."""
  counts = {'num_examples': (num_examples, 1), 'num_features': (num_features, 1)}
  _check(seed, {**counts, 'num_classes': (num_classes, 2)}, {'spread': spread})
  rng = np.random.default_rng(seed)
  centres = rng.normal(scale=4.0, size=(num_classes, num_features))
  y = rng.integers(0, num_classes, num_examples)
  x = centres[y] + spread * rng.normal(size=(num_examples, num_features))
  return Raw(x, y.astype(np.int64), 'class', num_classes)


def linreg(
  num_examples: int = 500, num_features: int = 5, num_outputs: int = 1, noise: float = 0.1, seed: int = 0
) -> Raw:
  """`y = x W*ᵀ + b* + noise` with a known `W*` (in `extra`)."""
  counts = {'num_examples': (num_examples, 1), 'num_features': (num_features, 1)}
  _check(seed, {**counts, 'num_outputs': (num_outputs, 1)}, {'noise': noise})
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(num_outputs, num_features))
  b = rng.normal(size=(num_outputs,))
  x = rng.normal(size=(num_examples, num_features))
  y = x @ w.T + b + noise * rng.normal(size=(num_examples, num_outputs))
  return Raw(x, y[:, 0] if num_outputs == 1 else y, 'real', extra={'W': w, 'b': b})


def binary2d(num_examples: int = 400, separation: float = 3.0, seed: int = 0) -> Raw:
  """Two Gaussian clouds in 2-D, labels {0, 1}: the geometric viewpoint."""
  _check(seed, {'num_examples': (num_examples, 1)}, {'separation': separation})
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, num_examples)
  direction = np.array([1.0, 0.6]) / np.linalg.norm([1.0, 0.6])
  x = rng.normal(size=(num_examples, 2)) + np.outer(2 * y - 1, direction) * separation / 2
  return Raw(x, y.astype(np.int64), 'class', 2, class_names=('0', '1'))
