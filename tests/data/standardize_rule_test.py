"""Standardization is decided per column, by the column's own scale, the same in memory and streamed."""

import dataclasses

import numpy as np
import pytest

from linear_jax.data import chunks
from linear_jax.data import datasets as data
from linear_jax.data import records
from linear_jax.data.build import from_arrays
from linear_jax.datapath import preparation
from linear_jax.optim import config
from linear_jax.training import train


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


def _prepared(raw, name, fractions, tmp_path, streamed):
  """`(raw, dataset, said)`: `raw` (a memory map of it where `streamed`) prepared by `preparation.prepare`
  with `fractions` (val, test), standardized, and the lines it said."""
  if streamed:
    np.save(tmp_path / 'x.npy', raw.x)
    raw = data.Raw(np.load(tmp_path / 'x.npy', mmap_mode='r'), raw.y, raw.kind, raw.num_classes)
  said = []
  ds = preparation.prepare(
    raw, name, *fractions, 'standardize', seed=0, dtype=np.float32, stream_file=streamed,
    progress=said.append, class_weight=None,
  )  # fmt: skip
  return raw, ds, said


@pytest.mark.parametrize('streamed', [False, True])
def test_each_column_is_standardized_by_its_own_scale(tmp_path, streamed):
  raw, ds, said = _prepared(_columns(), 'cols', (0.1, 0.2), tmp_path, streamed)
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
  assert chunks.constant_columns(np.array([1e18, 0.0, 3.0]), np.array([64.0, 0.0, 1e-12])).tolist() == [
    True,  # 64 ns on 1e18: within float64's rounding of the mean
    True,
    False,
  ]


@pytest.mark.parametrize('streamed', [False, True])
@pytest.mark.parametrize('preprocess', ['none', 'center', 'standardize'])
def test_the_typical_feature_spread_is_measured_as_training_sees_the_features(tmp_path, streamed, preprocess):
  """`Dataset.feature_spread`, which scales the gradient tests (`records.gradient_scale`): NumPy's median
  standard deviation of the varying training columns (a constant column has none), 1 once standardized;
  the same in memory and streamed, and measured on demand for a `Dataset` built in memory without it."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((300, 3)) * [1e-4, 2e-4, 3.0]
  x = np.c_[x, np.full(300, 7.0)]
  raw = from_arrays(x, (x[:, 2] > 0).astype(np.int64))
  if streamed:
    np.save(tmp_path / 'x.npy', x)
    raw = data.Raw(np.load(tmp_path / 'x.npy', mmap_mode='r'), raw.y, raw.kind, raw.num_classes)
  ds = preparation.prepare(
    raw, 'units', 0.1, 0.2, preprocess, seed=0, dtype=np.float32, stream_file=streamed, progress=None,
    class_weight=None,
  )  # fmt: skip
  train = x[: len(ds.y_train)] if streamed else np.asarray(ds.x_train, np.float64)
  expected = 1.0 if preprocess == 'standardize' else np.median(train[:, :3].std(axis=0))
  assert expected == 1.0 or 1e-4 < expected < 3e-4
  assert ds.feature_spread == pytest.approx(expected, rel=1e-4)
  if not streamed:  # a streamed split holds the file's rows; `stream.prepare` always measures them
    built = dataclasses.replace(ds, feature_spread=None)
    assert records.feature_spread(built) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize('streamed', [False, True])
@pytest.mark.parametrize('preprocess', ['center', 'standardize'])
def test_the_saved_model_scores_raw_rows_as_the_run_reported_when_a_float32_mean_rounds(
  tmp_path, streamed, preprocess
):
  """A float32 column of mean 1e6 (float32's spacing there: 0.0625) is shifted by its mean rounded to
  float32; `raw_params` must fold in that shift, not the float64 mean, or the saved model's scores on
  the raw rows are off by `W · (mean − float32(mean))` while the run's own metrics look right."""
  rng = np.random.default_rng(2)
  x = np.c_[1e6 + rng.standard_normal(600), rng.standard_normal(600)].astype(np.float32)
  xd = x.astype(np.float64)
  y = 1000 * (xd[:, 0] - 1e6) + 5 * xd[:, 1] + 0.01 * rng.standard_normal(600)
  assert np.float32(xd[:400, 0].mean()) != xd[:400, 0].mean()  # the case: the mean rounds
  if streamed:
    np.save(tmp_path / 'x.npy', x[:400])
    fit_x = np.load(tmp_path / 'x.npy', mmap_mode='r')
  else:
    fit_x = x[:400]
  raw = data.Raw(fit_x, y[:400], 'real', None, test=(x[400:], y[400:]))
  ds = preparation.prepare(
    raw, 'units', 0.0, 0.0, preprocess, seed=0, dtype=np.float32, stream_file=streamed, progress=None,
    class_weight=None,
  )  # fmt: skip
  cfg = config.TrainConfig(loss='l2', optimizer='lbfgs', reg=0.0)
  result = train.fit(cfg, ds)
  reported = train.evaluate(cfg, ds, result.params)['test_mse']
  w, b = train.raw_params(result.params, ds)
  saved = float(np.mean((xd[400:] @ np.asarray(w, np.float64).T + b - y[400:, None]) ** 2))
  assert reported < 0.01 and saved == pytest.approx(reported, rel=0.1, abs=1e-3)


@pytest.mark.parametrize('streamed', [False, True])
def test_a_fraction_that_rounds_to_no_row_is_said_not_dropped_in_silence(tmp_path, streamed):
  # --val_fraction=0.001 of 150 rows gave no validation split and no word of it; a sweep then chose on train.
  raw = from_arrays(np.random.default_rng(0).normal(size=(150, 3)), np.arange(150) % 3)
  _, ds, said = _prepared(raw, 'iris', (0.001, 0.004), tmp_path, streamed)
  assert len(ds.x_val) == 0 and len(ds.x_test) == 1  # 0.15 rows round to none, 0.6 to one
  assert said == [
    'iris: --val_fraction=0.001 of 150 rows rounds to no row, so there is no validation split; '
    '--val_fraction=0.00667 or more gives one row.'
  ]
