"""A finite value whose standardization overflows the training dtype: named by its file row and cause."""

import re
import warnings

import numpy as np
import pytest

from linear_jax.data import datasets as data_lib
from linear_jax.data import records
from linear_jax.datapath import preparation
from linear_jax.optim import config
from linear_jax.training import train

CAUSE = r'is finite, but standardizing it overflows float32 \(\(x - mean\) / std with the training rows'


def _raw(dtype=np.float32, n=400):
  x = np.random.default_rng(0).normal(size=(n, 4))
  x[:, 2] *= 0.5  # a spread below 1: 3.4e38 / 0.5 is beyond float32
  return records.Raw(x=x.astype(dtype), y=(x[:, 0] > 0).astype(np.int64), kind='class', num_classes=2)


def test_numpy_agrees_on_which_values_overflow():
  """The bounds against NumPy's own float32 `(x - shift) / scale`, a hair outside and inside each bound:
  a quotient beyond float32 (column 0, spread 0.5) and a difference beyond it (column 1, shift -1e38)."""
  shift, scale = np.array([0.5, -1e38]), np.array([0.5, 3.0])
  lo, hi = data_lib.overflow_bounds(shift, scale, np.float32)
  checked = 0
  for bound in (lo, hi):
    for factor in (1 + 1e-4, 1 - 1e-4):
      with np.errstate(over='ignore'):
        x = (bound * factor).astype(np.float32)
        z = (x - shift.astype(np.float32)) / scale.astype(np.float32)
      for j in np.flatnonzero(np.isfinite(x)):  # -4.4e38 is no float32: nothing to overflow there
        row = np.array([[0.0, 0.0]], np.float32)
        row[0, j] = x[j]
        assert (data_lib.first_overflow(row, lo, hi) == (0, j)) == (not np.isfinite(z[j]))
        checked += 1
  assert checked == 6


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('split', ['test', 'val'])
def test_an_overflow_in_memory_names_the_file_row_and_the_cause(dtype, split):
  """float32 standardized in place, float64 gathered and rounded once: the row of the file, not of the split
  (it was `non-finite … example 1 of the test split`), and no overflow warning on the way."""
  raw = _raw(dtype)
  row = int(data_lib.split_indices(400)[split][3])  # a row drawn into that split, not the training one
  raw.x[row, 2] = 3.4e38 if dtype == np.float32 else 1e39
  value = '3.4e+38' if dtype == np.float32 else '1e+39'
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    with pytest.raises(ValueError, match=rf'^f\.npy: row {row}, feature 2: {re.escape(value)} {CAUSE}'):
      data_lib.prepare(raw, 'f.npy')
  raw.x[row, 2] = 1e30  # large, but within float32 once standardized
  assert np.isfinite(data_lib.prepare(raw, 'f.npy').x_test).all()


def test_an_overflow_in_a_streamed_file_names_its_row_before_training(tmp_path):
  """A `--stream`ed split is standardized on the device as it is read: the checks before training name it."""
  raw = _raw()
  raw.x[390, 2] = 3.4e38  # the last rows are the test split of a streamed file
  np.save(tmp_path / 'x.npy', raw.x)
  mapped = records.Raw(
    x=np.load(tmp_path / 'x.npy', mmap_mode='r'),
    y=raw.y,
    kind='class',
    num_classes=2,
    extra={data_lib.WHERE: ('x.npy', 'x.npy')},
  )
  kw = dict(seed=0, dtype=np.float32, stream_file=True, progress=None, class_weight=None)
  ds = preparation.prepare(mapped, 'npy', 0.1, 0.2, 'standardize', **kw)
  with pytest.raises(ValueError, match=rf'^x\.npy \(test rows\): row 390, feature 2: 3\.4e\+38 {CAUSE}'):
    train.check_fit(config.TrainConfig(stream=True, learning_rate=0.1), ds)


def test_a_value_beyond_the_training_dtype_without_preprocessing_is_not_blamed_on_standardizing():
  # With --preprocess=none the message blamed a mean of 0 and std of 1, and advised --preprocess=none.
  x = np.random.default_rng(0).uniform(size=(50, 3)) * 1e60
  raw = records.Raw(x=x, y=np.arange(50) % 2, kind='class', num_classes=2)
  with pytest.raises(ValueError, match=r"but beyond float32's largest value, .* train in float64") as e:
    data_lib.prepare(raw, 't', preprocess='none')
  assert '--preprocess=none' not in str(e.value)
