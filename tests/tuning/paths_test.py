"""Regularization paths: each model of the batched L-BFGS equals its reg solved alone."""

import dataclasses

import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.solvers import lbfgs as solvers
from linear_jax.training import lbfgs
from linear_jax.tuning import paths


@pytest.mark.parametrize('method', paths.METHODS)
@pytest.mark.parametrize(
  'loss,name', [('softmax', 'digits'), ('logistic', 'breast_cancer'), ('l2', 'diabetes')]
)
def test_every_model_of_the_path_reaches_its_own_optimum(loss, name, method):
  ds = data.prepare(data.load(name), name, 0.2, 0.2, dtype=np.float64, seed=0)
  regs = [0.0, 1e-4, 1e-3, 1e-2, 1e-1] if loss != 'l2' else [1e-4, 1e-2, 1.0]
  cfg = config.TrainConfig(loss=loss, dtype='float64', epochs=3000)
  tol = 1e-6 if loss == 'l2' else 1e-8  # diabetes' objective is about 3000: 1e-8 is below its float64 floor
  path = paths.fit_path(cfg, ds, regs, tol=tol, method=method)
  for k, reg in enumerate(regs):
    if loss == 'l2':
      W, b = solvers.ridge_closed_form(ds.x_train, ds.y_train, reg)
      np.testing.assert_allclose(np.asarray(path.params.W[k]), W, rtol=1e-5, atol=1e-5)
    if reg > 0:  # reg = 0 on separable data has no finite optimum
      f_star = lbfgs.optimum(config.TrainConfig(loss=loss, reg=reg, dtype='float64'), ds)[0]
      assert path.converged[k]
      assert path.objective[k] == pytest.approx(f_star, rel=1e-7)
  assert np.all(np.diff(path.weight_norm[np.argsort(regs)]) <= 1e-9)  # more reg, smaller W
  best = path.best_index()
  key = 'val_mse' if loss == 'l2' else 'val_accuracy'
  assert path.metrics[key][best] == (path.metrics[key].min() if loss == 'l2' else path.metrics[key].max())


@pytest.mark.parametrize('method', paths.METHODS)
def test_sample_weights_enter_the_path(method):
  ds = data.prepare(data.load('diabetes'), 'diabetes', 0.0, 0.2, dtype=np.float64, seed=0)
  w = np.random.default_rng(0).uniform(0.1, 2.0, len(ds.x_train))
  cfg = config.TrainConfig(loss='l2', dtype='float64')
  path = paths.fit_path(cfg, ds, [1e-3, 1e-1], tol=1e-9, weights=w, method=method)
  for k, reg in enumerate((1e-3, 1e-1)):
    W, _ = solvers.ridge_closed_form(ds.x_train, ds.y_train, reg, w)
    np.testing.assert_allclose(np.asarray(path.params.W[k]), W, rtol=1e-5, atol=1e-5)
  # The reported training loss is the objective the solves minimized, weighted (it was the unweighted mean).
  np.testing.assert_allclose(path.metrics['train_loss'], path.objective, rtol=1e-9)


def test_bad_regs_and_non_smooth_losses_are_refused():
  ds = data.prepare(data.load('breast_cancer'), 'breast_cancer', 0.2, 0.2)
  with pytest.raises(ValueError, match='regs must be'):
    paths.fit_path(config.TrainConfig(loss='logistic'), ds, [1e-3, -1.0])
  with pytest.raises(ValueError, match='not differentiable at its kinks'):
    paths.fit_path(config.TrainConfig(loss='hinge'), ds, [1e-3])
  with pytest.raises(ValueError, match=r'--penalty=l1 is not differentiable at W = 0\..*, or --regs=0\.$'):
    paths.fit_path(config.TrainConfig(loss='logistic', penalty='l1'), ds, [1e-3])  # lr_sweep takes --regs
  with pytest.raises(ValueError, match='method must be one of batched, warm'):
    paths.fit_path(config.TrainConfig(loss='logistic'), ds, [1e-3], method='cold')
  with pytest.raises(ValueError, match="warm_min_iter applies to method='warm'"):
    paths.fit_path(config.TrainConfig(loss='logistic'), ds, [1e-3], warm_min_iter=3)


@pytest.mark.parametrize('method', paths.METHODS)
def test_new_regs_and_tol_share_one_compiled_path(method):
  # A step schedule of 17 epochs: a structure no other test compiles (L-BFGS ignores its SGD part).
  ds = data.prepare(data.load('diabetes'), 'diabetes', 0.0, 0.2, dtype=np.float64, seed=0)
  cfg = config.TrainConfig(loss='l2', dtype='float64', schedule='step', decay_epochs=17.0)
  program = paths._solve_warm if method == 'warm' else paths._solve_batched  # pylint: disable=protected-access
  before = program._cache_size()
  paths.fit_path(cfg, ds, [1e-3, 1e-1], tol=1e-6, method=method)
  assert program._cache_size() == before + 1
  regs = [3e-2, 1.0]
  path = paths.fit_path(dataclasses.replace(cfg, seed=2), ds, regs, tol=1e-9, method=method)
  assert program._cache_size() == before + 1  # new regs and tol, the same program, which ran them:
  for k, reg in enumerate(regs):
    W, _ = solvers.ridge_closed_form(ds.x_train, ds.y_train, reg)
    np.testing.assert_allclose(np.asarray(path.params.W[k]), W, rtol=1e-5, atol=1e-5)


def test_a_warm_start_that_already_meets_tol_still_moves_towards_the_new_optimum():
  # Weak, close regs: the previous solution meets ‖∇f‖∞ ≤ tol on a flat objective, so without a
  # floor on the iterations the weaker regs keep the stronger one's weights (0 iterations).
  ds = data.prepare(data.load('digits'), 'digits', 0.0, 0.2, dtype=np.float64, seed=0)
  regs = [1e-4, 5e-5, 2e-5, 1e-5]
  cfg = config.TrainConfig(loss='softmax', dtype='float64', epochs=3000)
  bare = paths.fit_path(cfg, ds, regs, tol=1e-3, method='warm', warm_min_iter=0)
  assert np.any(bare.iterations == 0)
  path = paths.fit_path(cfg, ds, regs, tol=1e-3, method='warm')
  assert np.all(path.iterations >= paths.WARM_MIN_ITER) and np.all(path.converged)
  moved = path.iterations > bare.iterations
  assert np.all(path.objective[moved] < bare.objective[moved])  # each closer to its own optimum
  f_star = [lbfgs.optimum(dataclasses.replace(cfg, reg=r), ds)[0] for r in regs]
  assert np.all(path.objective >= np.asarray(f_star) - 1e-12)
