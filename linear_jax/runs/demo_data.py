"""The demo's datasets: 2-D point sets the page edits, and image sets the server holds.

The 2-D sets (`POINT_SETS`) are sent to the page once, as points, labels and
a view box; from then on the page owns them (it drags, adds and removes
points) and sends them back with each request. The image sets
(`IMAGE_SETS`: digits, CIFAR-shaped samples, full or projected) are too
large to travel with every request, so the page names them and the server
rebuilds them, deterministically, from the name, size and seed (cached).
"""

import functools

import numpy as np

from linear_jax.data import generators
from linear_jax.runs import hard_cases

CLASS_NAMES_3 = ('class 0', 'class 1', 'class 2')


def _blobs(n, seed):
  """Three well-separated Gaussian blobs: the lecture's geometric viewpoint."""
  rng = np.random.default_rng(seed)
  centres = np.array([[-2.0, -1.5], [2.0, -1.0], [0.0, 2.2]])
  y = np.arange(n) % 3
  x = centres[y] + 0.7 * rng.normal(size=(n, 2))
  return x, y, 3


def _two_clouds(n, seed):
  raw = generators.binary2d(n, separation=3.0, seed=seed)
  return raw.x, raw.y, 2


def _hard_case(case):
  def make(n, seed):
    raw = hard_cases.GENERATORS[case](n, 2, seed)
    scale = 2.0 if case == 'parity' else 1.0  # parity lives in [-1, 1]²: spread it over the view
    return raw.x * scale, raw.y, 2

  return make


# name -> (label for the page, generator (n, seed) -> (x [n, 2], y [n], classes), hard case or None)
POINT_SETS = {
  'blobs': ('three blobs (3 classes)', _blobs, None),
  'two_clouds': ('two clouds (2 classes)', _two_clouds, None),
  'parity': ('hard case: parity / XOR', _hard_case('parity'), 'parity'),
  'ring': ('hard case: ring', _hard_case('ring'), 'ring'),
  'three_modes': ('hard case: three modes per class', _hard_case('three_modes'), 'three_modes'),
}


def point_set(name, n=90, seed=0):
  """`{'points', 'labels', 'num_classes', 'view', 'case'}` of a 2-D set, for the page."""
  _, make, case = POINT_SETS[name]
  x, y, classes = make(n, seed)
  lo, hi = np.min(x, axis=0), np.max(x, axis=0)
  half = 0.55 * float(np.max(hi - lo)) + 0.3
  mid = (lo + hi) / 2
  view = [float(mid[0] - half), float(mid[0] + half), float(mid[1] - half), float(mid[1] + half)]
  return {
    'points': np.round(x, 4).tolist(),
    'labels': [int(v) for v in y],
    'num_classes': int(classes),
    'view': view,
    'case': case,
  }


def _cifar_shaped(n, seed):
  """CIFAR-shaped samples `[n, 3·32·32]` (channels first) in 10 classes: a smooth colour
  template per class (random 4×4×3 colours, upsampled) plus pixel noise, values in [0, 1]."""
  rng = np.random.default_rng(1234)  # the templates are the same for every seed
  coarse = rng.uniform(0.0, 1.0, (10, 3, 4, 4))
  templates = np.kron(coarse, np.ones((1, 1, 8, 8)))
  sample = np.random.default_rng(seed)
  y = np.arange(n) % 10
  x = templates[y] + 0.35 * sample.normal(size=(n, 3, 32, 32))
  return np.clip(x, 0.0, 1.0).reshape(n, -1), y


def _pool(x, size):
  """Average-pools `[n, 3·32·32]` images to `[n, 3·size·size]`: a linear projection."""
  f = 32 // size
  return x.reshape(-1, 3, size, f, size, f).mean(axis=(3, 5)).reshape(len(x), -1)


@functools.lru_cache(maxsize=8)
def image_set(name, n, seed):
  """`(x [n, D] float64 centred, y [n], image_shape, class_names, projection [n, 2])`.

  `projection` is the 2-D principal-component view of the rows, for drawing
  them in the geometric panel (a picture only: the model sees all D).
  """
  if name == 'digits':
    from linear_jax.data import datasets  # pylint: disable=import-outside-toplevel

    raw = datasets.load_builtin('digits')
    idx = np.random.default_rng(seed).permutation(len(raw.x))[:n]
    x, y, shape = raw.x[idx] / 16.0, raw.y[idx], (8, 8)
  else:
    x, y = _cifar_shaped(n, seed)
    shape = (3, 32, 32)
    if name == 'cifar_projected':
      x, shape = _pool(x, 8), (3, 8, 8)
  x = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  projection = x @ vt[:2].T
  names = tuple(str(i) for i in range(10))
  return x, y.astype(np.int64), shape, names, projection


# name -> label for the page
IMAGE_SETS = {
  'digits': 'digits (8×8 images, 10 classes)',
  'cifar': 'CIFAR-shaped samples (3×32×32, 10 classes)',
  'cifar_projected': 'CIFAR-shaped, projected (3×8×8 pooled)',
}
IMAGE_DIMS = {'digits': 64, 'cifar': 3072, 'cifar_projected': 192}
