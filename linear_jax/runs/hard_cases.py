"""The lecture's hard cases for a linear classifier, and feature maps that fix them.

Each generator returns `data.Raw` with binary labels (class 1 is the case's
class, 0 everything else) in any dimension `D` (2 for pictures):

* `parity`: class 1 = an odd number of positive "pixels" (2-D: the XOR of
  the quadrants);
* `ring`: class 1 = `1 ≤ ‖x‖₂ ≤ 2`;
* `three_modes`: class 1 = near one of three centres, class 0 elsewhere.

`FEATURE_MAPS[case]` is a map chosen for the case (the lecture's "features"
view) under which the classes become linearly separable. `run_all` fits
every case with and without its map, draws each fit and writes
hard_cases.json (the library half of `experiments/hard_cases.py`).
"""

import os

import numpy as np

from linear_jax.data import datasets as data
from linear_jax.runs import plots
from linear_jax.training import files

CASES = ('parity', 'ring', 'three_modes')


def parity(num_examples=1000, num_features=2, seed=0):
  """Class 1 iff the number of positive coordinates is odd."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, (num_examples, num_features))
  y = (np.sum(x > 0, axis=1) % 2).astype(np.int64)
  return data.Raw(x, y, 'class', 2, class_names=('even', 'odd'))


def ring(num_examples=1000, num_features=2, seed=0):
  """Class 1 iff `1 ≤ ‖x‖₂ ≤ 2`, points spread so both classes are common."""
  rng = np.random.default_rng(seed)
  direction = rng.normal(size=(num_examples, num_features))
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  radius = rng.uniform(0.0, 3.0, num_examples)
  x = direction * radius[:, None]
  norm = np.linalg.norm(x, axis=1)
  y = ((norm >= 1.0) & (norm <= 2.0)).astype(np.int64)
  return data.Raw(x, y, 'class', 2, class_names=('other', 'ring'))


THREE_CENTRES = np.array([[-2.0, -1.5], [2.0, -1.5], [0.0, 2.0]])


def _centres(num_features):
  """The three centres in `num_features` dimensions (the 2-D ones, zero-padded)."""
  centres = np.zeros((3, num_features))
  k = min(2, num_features)
  centres[:, :k] = THREE_CENTRES[:, :k]
  return centres


def three_modes(num_examples=1000, num_features=2, seed=0, spread=0.45):
  """Class 1: Gaussian modes around three centres; class 0: uniform background away from them."""
  rng = np.random.default_rng(seed)
  centres = _centres(num_features)
  n1 = num_examples // 2
  x1 = centres[rng.integers(0, 3, n1)] + spread * rng.normal(size=(n1, num_features))
  background = np.zeros((0, num_features))
  while len(background) < num_examples - n1:  # rejection sampling away from the modes
    cand = rng.uniform(-4.0, 4.0, (num_examples, num_features))
    far = np.min(np.linalg.norm(cand[:, None] - centres[None], axis=2), axis=1) > 3 * spread
    background = np.concatenate([background, cand[far]])
  x = np.concatenate([x1, background[: num_examples - n1]])
  y = np.concatenate([np.ones(n1, np.int64), np.zeros(num_examples - n1, np.int64)])
  order = rng.permutation(num_examples)
  return data.Raw(x[order], y[order], 'class', 2, class_names=('background', 'modes'))


GENERATORS = {'parity': parity, 'ring': ring, 'three_modes': three_modes}


def parity_features(x):
  """`Π_d sign(x_d)`: the sign of the product is the parity of the negatives, one feature."""
  return np.prod(np.sign(x), axis=1, keepdims=True)


def ring_features(x):
  """`(‖x‖, ‖x‖²)`: the ring `1 ≤ r ≤ 2` is `−r² + 3r − 2 ≥ 0`, linear in them."""
  r = np.linalg.norm(x, axis=1, keepdims=True)
  return np.concatenate([r, r * r], axis=1)


def three_modes_features(x, width=1.0):
  """Gaussian bumps `exp(−‖x − c_k‖² / width²)` around the three centres."""
  d2 = np.sum((x[:, None] - _centres(x.shape[1])[None]) ** 2, axis=2)
  return np.exp(-d2 / width**2)


FEATURE_MAPS = {'parity': parity_features, 'ring': ring_features, 'three_modes': three_modes_features}


def with_features(raw, case):
  """The same examples and labels, with the case's feature map applied to `x`."""
  import dataclasses  # pylint: disable=import-outside-toplevel

  return dataclasses.replace(raw, x=FEATURE_MAPS[case](raw.x), image_shape=None)


def fit_case(case, num_examples=1000, seed=0, features=False, epochs=100, grid=150):
  """Trains a linear (logistic) classifier on a 2-D hard case, with or without its feature map.

  Returns a dict: `accuracy` (test), `majority` (the majority-class rate of the
  test split), the 2-D data `x`, `y`, and the model's scores on a `grid ×
  grid` mesh over `extent`, for drawing the learned boundary in input space.
  """
  from linear_jax.optim import config
  from linear_jax.training import train  # pylint: disable=import-outside-toplevel

  raw = GENERATORS[case](num_examples, 2, seed)
  ds = data.prepare(with_features(raw, case) if features else raw, case, seed=seed)
  cfg = config.TrainConfig(
    loss='logistic', optimizer='adam', learning_rate=0.2, epochs=epochs, reg=0.0, batch_size=64, seed=seed
  )
  result = train.fit(cfg, ds)
  w, b = train.raw_params(result.params, ds)
  lo, hi = raw.x.min(0) - 0.3, raw.x.max(0) + 0.3
  gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
  points = np.stack([gx.ravel(), gy.ravel()], axis=1)
  phi = FEATURE_MAPS[case](points) if features else points
  scores = (phi @ w.T + b)[:, 0].reshape(grid, grid)
  y_test = ds.y_test
  return {
    'accuracy': train.evaluate(cfg, ds, result.params)['test_accuracy'],
    'majority': float(max(y_test.mean(), 1 - y_test.mean())),
    'x': raw.x,
    'y': raw.y,
    'grid_scores': scores,
    'extent': (lo[0], hi[0], lo[1], hi[1]),
  }


def run_all(workdir, num_examples=1000, epochs=100, seed=0):
  """Every case with raw and mapped features: draws each fit and writes hard_cases.json to `workdir`.

  Writes `{case}_linear.png` and `{case}_feature_map.png` (the data and the
  learned boundary) and hard_cases.json; returns its rows, one per case:
  `case`, `majority`, `linear_accuracy`, `feature_map_accuracy` (test).
  """
  rows = []
  for case in CASES:
    row = {'case': case}
    for features in (False, True):
      out = fit_case(case, num_examples, seed, features, epochs)
      tag = 'feature_map' if features else 'linear'
      row['majority'] = out['majority']
      row[f'{tag}_accuracy'] = out['accuracy']
      title = f'{case}: {"feature map" if features else "linear"} — test acc {100 * out["accuracy"]:.1f}%'
      plots.hard_case(
        out['x'],
        out['y'],
        out['grid_scores'],
        out['extent'],
        os.path.join(workdir, f'{case}_{tag}.png'),
        title,
      )
    rows.append(row)
  files.write_json(os.path.join(workdir, 'hard_cases.json'), rows)
  return rows
