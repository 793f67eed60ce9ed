"""Regression targets standardized with the features: any units train alike, and results come back in them."""

import dataclasses

import numpy as np

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.training import lbfgs
from linear_jax.training import train


def _raw(scale, shift, seed=0, n=300, d=4, outputs=None):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)) * np.array([1.0, 10.0, 0.1, 3.0])[:d] + 5.0
  w = rng.normal(size=(d, outputs or 1))
  y = x @ w + 0.3 * rng.normal(size=(n, outputs or 1))
  y = y[:, 0] if outputs is None else y
  return data.Raw(x, y * scale + shift, 'real')


def test_targets_are_centered_and_scaled_on_the_training_split_and_classes_are_not():
  raw = _raw(1000.0, 5e4)
  ds = data.prepare(raw, 'r', seed=0)
  np.testing.assert_allclose(np.mean(ds.y_train), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.std(ds.y_train), 1.0, rtol=1e-5)
  rows = data.split_indices(len(raw.x), 0.1, 0.2, 0, False, 'r')
  for split in ('train', 'val', 'test'):
    back = getattr(ds, f'y_{split}') * ds.target_scale + ds.target_shift
    np.testing.assert_allclose(back, raw.y[rows[split]], rtol=1e-6)
  multi = data.prepare(_raw(1.0, 0.0, outputs=3), 'r3')
  assert (
    multi.target_shift.shape == multi.target_scale.shape == (3,)
  )  # each output its own, as StandardScaler
  np.testing.assert_allclose(np.std(multi.y_train, axis=0), 1.0, rtol=1e-5)
  assert data.prepare(_raw(1.0, 0.0), 'raw', preprocess='none').target_scale is None
  digits = data.prepare(data.load_builtin('digits'), 'digits')
  assert digits.target_scale is None and digits.y_train.dtype == np.int32


def test_the_saved_model_and_the_mse_are_in_the_targets_units_equal_to_least_squares():
  raw = _raw(250.0, 3e3)
  ds = data.prepare(raw, 'r', val_fraction=0.0, test_fraction=0.2, seed=0)
  cfg = config.TrainConfig(loss='l2', optimizer='lbfgs', reg=0.0, epochs=500, tol=1e-7, dtype='float64')
  result = train.fit(cfg, ds)
  w, b = train.raw_params(result.params, ds)
  # Independent reference: NumPy's least squares on the raw training rows, with an intercept column.
  n_train = len(ds.y_train)
  order = data.split_indices(len(raw.x), 0.0, 0.2, 0, False, 'r')
  x_train, y_train = raw.x[order['train']], raw.y[order['train']]
  assert n_train == len(y_train)
  coef, *_ = np.linalg.lstsq(np.c_[x_train, np.ones(n_train)], y_train, rcond=None)
  np.testing.assert_allclose(w[0], coef[:-1], rtol=1e-5)
  np.testing.assert_allclose(b[0], coef[-1], rtol=1e-5)
  x_test, y_test = raw.x[order['test']], raw.y[order['test']]
  mse = np.mean(np.square(x_test @ w[0] + b[0] - y_test))
  np.testing.assert_allclose(train.evaluate(cfg, ds, result.params)['test_mse'], mse, rtol=1e-5)


def test_the_default_run_is_the_same_in_any_units_of_the_targets():
  """The same problem in units 1 and 1e4 (and shifted): the same step, epochs and model, scaled."""
  runs = []
  for scale, shift in ((1.0, 0.0), (1e4, -7e5)):
    ds = data.prepare(_raw(scale, shift), 'r', seed=0)
    cfg = dataclasses.replace(config.COMMAND_LINE, loss='l1', epochs=60)
    result = train.fit(cfg, ds)
    runs.append((result, train.raw_params(result.params, ds), train.evaluate(cfg, ds, result.params)))
  (a, (wa, ba), ea), (b, (wb, bb), eb) = runs
  assert a.learning_rate == b.learning_rate and len(a.history) == len(b.history)
  np.testing.assert_allclose(wb, wa * 1e4, rtol=1e-4)
  np.testing.assert_allclose(bb, ba * 1e4 - 7e5, rtol=1e-4)
  np.testing.assert_allclose(eb['test_mse'], ea['test_mse'] * 1e8, rtol=1e-4)
  np.testing.assert_allclose(eb['test_mae'], ea['test_mae'] * 1e4, rtol=1e-4)
  np.testing.assert_allclose(eb['train_loss'], ea['train_loss'], rtol=1e-5)  # the standardized objective


def test_f_star_of_standardized_targets_is_the_optimum_of_the_trained_problem():
  ds = data.prepare(_raw(40.0, 100.0), 'r', seed=1)
  cfg = dataclasses.replace(config.COMMAND_LINE, loss='huber', dtype='float32')
  f_star = float(lbfgs.optimum(dataclasses.replace(cfg, learning_rate=1.0), ds)[0])
  result = train.fit(cfg, ds)
  assert f_star <= result.history[-1]['train_loss'] <= 1.01 * f_star


def test_outputs_in_units_a_billion_apart_are_each_fitted_and_scored_in_their_own_units():
  """Two outputs, in units 1e5 and 1e-5: one pooled scale left the small one below float32's resolution,
  and L-BFGS called a model with its signs wrong "converged"; each output now has its own scale."""
  from linear_jax.datapath import stream  # pylint: disable=import-outside-toplevel

  raw = _raw(1.0, 0.0, outputs=2)
  raw = dataclasses.replace(raw, y=raw.y * np.array([1e5, 1e-5]) + np.array([3e5, 2e-5]))
  ds = data.prepare(raw, 'r', val_fraction=0.0, test_fraction=0.2, seed=0)
  cfg = config.TrainConfig(loss='l2', optimizer='lbfgs', reg=0.0, epochs=500)
  result = train.fit(cfg, ds)
  assert result.stop_reason == 'converged'
  w, b = train.raw_params(result.params, ds)
  # Independent reference: NumPy's least squares of each output on the raw training rows.
  order = data.split_indices(len(raw.x), 0.0, 0.2, 0, False, 'r')
  x_train, y_train = raw.x[order['train']], raw.y[order['train']]
  coef, *_ = np.linalg.lstsq(np.c_[x_train, np.ones(len(x_train))], y_train, rcond=None)
  ref = coef[:-1].T
  assert np.all(np.abs(w - ref).max(axis=1) < 5e-3 * np.abs(ref).max(axis=1))  # each output in its units
  x_test, y_test = raw.x[order['test']], raw.y[order['test']]
  off = np.abs(x_test @ w.T + b - np.c_[x_test, np.ones(len(x_test))] @ coef).max(axis=0)
  assert np.all(off < 1e-3 * np.std(y_train, axis=0))  # predictions, to a thousandth of each output's spread
  r = x_test @ w.T + b - y_test
  scored = train.evaluate(cfg, ds, result.params)
  np.testing.assert_allclose(scored['test_mse'], np.mean(np.square(r)), rtol=1e-4)
  np.testing.assert_allclose(scored['test_mae'], np.mean(np.abs(r)), rtol=1e-4)
  # Streamed: its own splits (contiguous rows) and scales, its MSE summed over blocks one output at a time.
  streamed = stream.prepare(raw, 'r', val_fraction=0.0, test_fraction=0.2)
  n = len(streamed.y_train)
  np.testing.assert_allclose(streamed.target_scale, np.std(raw.y[:n], axis=0), rtol=1e-9)
  cfg = dataclasses.replace(cfg, stream=True, block_rows=64)
  result = train.fit(cfg, streamed)
  w, b = train.raw_params(result.params, streamed)
  r = raw.x[n:] @ w.T + b - raw.y[n:]
  np.testing.assert_allclose(
    train.evaluate(cfg, streamed, result.params)['test_mse'], np.mean(np.square(r)), rtol=1e-4
  )
