"""Standardization is decided per column, by the column's own scale, the same in memory and streamed."""

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.data.build import from_arrays
from linear_jax.datapath import preparation


def _columns(n=400, seed=0):
  """Ordinary features, a nanosecond timestamp, a feature of spread 1e-13 and a constant column."""
  rng = np.random.default_rng(seed)
  x = np.empty((n, 5))
  x[:, 0] = rng.standard_normal(n)
  x[:, 1] = rng.uniform(0, 16, n)
  x[:, 2] = 1.7e18 + rng.integers(0, 10**12, n)  # ns since 1970, spread over ~17 minutes
  x[:, 3] = 0.5 + 1e-13 * rng.standard_normal(n)
  x[:, 4] = 1234.5
  y = (x[:, 0] > 0).astype(np.int64)
  return from_arrays(x, y)


@pytest.mark.parametrize('streamed', [False, True])
def test_each_column_is_standardized_by_its_own_scale(tmp_path, streamed):
  raw = _columns()
  if streamed:
    np.save(tmp_path / 'x.npy', raw.x)
    raw = data.Raw(np.load(tmp_path / 'x.npy', mmap_mode='r'), raw.y, raw.kind, raw.num_classes)
  said = []
  ds = preparation.prepare(
    raw, 'cols', 0.1, 0.2, 'standardize', seed=0, dtype=np.float32, stream_file=streamed,
    progress=said.append, class_weight=None,
  )  # fmt: skip
  train_rows = np.asarray(raw.x[: len(ds.x_train)]) if streamed else None
  if streamed:
    np.testing.assert_allclose(ds.scale[:4], train_rows[:, :4].std(axis=0), rtol=1e-6)
  else:  # the splits hold standardized features: unit spread in every column that varies
    np.testing.assert_allclose(np.asarray(ds.x_train, np.float64)[:, :4].std(axis=0), 1.0, rtol=1e-3)
  assert ds.scale[2] > 1e9 and 1e-14 < ds.scale[3] < 1e-12  # neither skipped because of the other
  assert ds.scale[4] == 1.0 and ds.extra[data.CONSTANT] == (4,)
  assert len([s for s in said if 'constant' in s]) == 1 and 'feature 4 is constant' in said[-1]


def test_a_spread_too_small_for_float32_is_refused_naming_the_column():
  x = np.random.default_rng(0).standard_normal((50, 2))
  x[:, 1] *= 1e-35
  with pytest.raises(ValueError, match=r'feature 1 varies by only .*e-3\d'):
    data.prepare(from_arrays(x, (x[:, 0] > 0).astype(np.int64)), 'tiny')
  assert data.constant_columns(np.array([1e18, 0.0, 3.0]), np.array([64.0, 0.0, 1e-12])).tolist() == [
    True,  # 64 ns on 1e18: within float64's rounding of the mean
    True,
    False,
  ]
