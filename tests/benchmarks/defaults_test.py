"""The default-run benchmark's reference optimum for a loss with a continuous gradient."""

import dataclasses

import numpy as np

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
  np.testing.assert_allclose(found, f_star, rtol=1e-5)
  np.testing.assert_allclose(train.evaluate(cfg, ds, params)['train_loss'], found, rtol=1e-5)


def test_scipy_optimum_of_the_squared_hinge_is_where_full_batch_descent_ends():
  cfg, ds = _blobs('squared_hinge')
  f_star, _ = defaults._scipy_optimum(cfg, ds)
  run = dataclasses.replace(
    cfg, learning_rate=2.0, batch_size=1000, schedule='constant', tol_on='none', epochs=3000
  )
  f = [m['train_loss'] for m in train.fit(run, ds).history]
  # 3,000 full-batch steps end at the same objective (to float32's evaluation), never clearly below.
  np.testing.assert_allclose(min(f), f_star, rtol=1e-4)
  assert f_star <= min(f) * (1 + 1e-5)
