"""The default-run benchmark's reference: the best objective reachable, its parameters, SciPy's f*."""

import dataclasses

import jax
import numpy as np
import pytest

from benchmarks import defaults
from linear_jax import data
from linear_jax.optim import config
from linear_jax.training import lbfgs
from linear_jax.training import train


def _blobs(loss):
  ds = data.prepare(data.blobs(300, 8, 4, seed=1), 'blobs', 0.2, 0.2, seed=1)
  return dataclasses.replace(config.COMMAND_LINE, loss=loss, learning_rate=1.0), ds


def test_scipy_optimum_equals_the_projects_lbfgs_on_a_smooth_loss():
  cfg, ds = _blobs('softmax')
  f_star = float(lbfgs.optimum(cfg, ds)[0])
  found, params = defaults._scipy_optimum(cfg, ds)
  np.testing.assert_allclose(found, f_star, rtol=1e-6)
  np.testing.assert_allclose(train.evaluate(cfg, ds, params)['train_loss'], found, rtol=1e-6)


def test_scipy_optimum_of_the_squared_hinge_is_where_full_batch_descent_ends():
  cfg, ds = _blobs('squared_hinge')
  f_star, _ = defaults._scipy_optimum(cfg, ds)
  run = dataclasses.replace(
    cfg, learning_rate=2.0, batch_size=1000, schedule='constant', tol_on='none', epochs=3000
  )
  f = [m['train_loss'] for m in train.fit(run, ds).history]
  # 3,000 full-batch steps end at the same objective, and not below it beyond float32's evaluation.
  np.testing.assert_allclose(min(f), f_star, rtol=1e-5)
  assert f_star <= min(f) * (1 + 1e-6)


def test_scipy_optimum_is_float64_with_x64_off_and_leaves_it_off():
  cfg, ds = _blobs('squared_hinge')
  with jax.enable_x64(True):
    wide, _ = defaults._scipy_optimum(cfg, ds)
  with jax.enable_x64(False):
    narrow, params = defaults._scipy_optimum(cfg, ds)
    assert not jax.config.jax_enable_x64
  assert narrow == pytest.approx(wide, rel=1e-12)  # the same float64 solve
  assert params.W.dtype == np.float32


def test_scipy_optimum_refuses_what_it_does_not_build():
  cfg, ds = _blobs('squared_hinge')
  with pytest.raises(ValueError, match='not a plain multiclass objective'):
    defaults._scipy_optimum(dataclasses.replace(cfg, bias_trick=True), ds)


def test_best_reachable_returns_the_parameters_of_its_objective():
  cfg, ds = _blobs('svm')  # not smooth: the lowest objective of constant-rate runs
  f, how, params = defaults._best_reachable(cfg, ds, 0.05, rates=[0, 1])
  assert how.startswith('400 epochs at 2^')
  np.testing.assert_allclose(train.evaluate(cfg, ds, params)['train_loss'], f, rtol=1e-5)
  cfg, ds = _blobs('squared_hinge')  # below every constant-rate run: SciPy's f*
  f, how, params = defaults._best_reachable(cfg, ds, 0.05, rates=[0])
  assert how == "f* (SciPy's L-BFGS, float64)"
  np.testing.assert_allclose(train.evaluate(cfg, ds, params)['train_loss'], f, rtol=1e-5)


def test_markdown_shows_each_loss_beside_the_best_and_scikit_learn():
  row = {
    'loss': 'svm',
    'dataset': 'digits',
    'learning_rate': 0.122,
    'epochs': 192,
    'stop_reason': 'converged',
    'above_best': -0.0187,
    'best_how': '400 epochs at 2^-1 × derived',
    'metric': 'test_accuracy',
    'ours': 0.961,
    'best_test': 0.955,
    'sklearn': None,
    'sklearn_estimator': '—',
  }
  regression = {
    **row,
    'loss': 'l1',
    'metric': 'test_mse',
    'ours': 2868.0,
    'best_test': None,
    'sklearn': 2865.0,
  }
  results = {
    'quality': [row, regression],
    'process': {'linear-jax train': 1.8, 'scikit-learn LogisticRegression': 1.2},
    'host': {'epochs': 300, 'fit_ms': 2.0, 'epoch_ms': 0.8, 'host_ms': 1.2},
  }
  text = defaults.markdown(results)
  lines = text.splitlines()
  assert "the best's test" in lines[2]
  assert (
    '| svm | digits | 0.122 | 192 | converged | -1.87% | 400 epochs at 2^-1 × derived | 96.1% | 95.5% | — |'
    in text
  )
  assert '| MSE 2,868 | — | MSE 2,865 |' in text  # no best parameters: a dash, not a number
  assert '| `linear-jax train` | 1.80 | 1.50× |' in text
  assert 'the host around it 1.20 ms' in text
