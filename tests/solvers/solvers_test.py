"""L-BFGS, f* and closed-form ridge against scikit-learn and NumPy (float64: conftest turns on x64)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import linear_model

from linear_jax.data import datasets as data
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.optim import config
from linear_jax.optim import step
from linear_jax.solvers import lbfgs as solvers
from linear_jax.training import lbfgs
from linear_jax.training import train


def _dataset(name):
  return data.prepare(data.load(name), name, 0.0, 0.2, dtype=np.float64, seed=0)


def _objective_at(coef, intercept, ds, loss, reg, weights=None):
  params = model.Params(jnp.asarray(np.atleast_2d(coef)), jnp.asarray(np.atleast_1d(intercept)))
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  per_example = losses.get_loss(loss).value(model.scores(params, x), y)
  w = np.ones(len(x)) if weights is None else weights
  return float(np.sum(w * np.asarray(per_example)) / np.sum(w) + reg * np.sum(np.square(params.W)))


def _balanced(y):
  counts = np.bincount(y)
  return len(y) / (len(counts) * counts[y])


CASES = [
  # (dataset, loss, weights): scikit-learn's LogisticRegression(C) is reg = 1 / (2 C Σw).
  ('digits', 'softmax', None),
  ('breast_cancer', 'logistic', None),
  ('digits', 'softmax', 'random'),
  ('breast_cancer', 'logistic', 'random'),
  ('digits', 'softmax', 'balanced'),
  ('breast_cancer', 'logistic', 'balanced'),
]


@pytest.mark.parametrize('name,loss,weighting', CASES)
def test_objective_at_optimum_matches_logistic_regression(name, loss, weighting):
  ds = _dataset(name)
  n, c = len(ds.x_train), 0.5
  w = None
  if weighting == 'random':
    w = np.random.default_rng(0).uniform(0.2, 3.0, n)
  elif weighting == 'balanced':
    w = _balanced(ds.y_train)
  total = n if w is None else w.sum()
  cfg = config.TrainConfig(loss=loss, reg=1 / (2 * c * total), dtype='float64')
  f_star, params, info = lbfgs.optimum(cfg, ds, weights=w)
  assert info.grad_norm <= 1e-8  # float64's floor is near 1e-10
  ref = linear_model.LogisticRegression(C=c, tol=1e-12, max_iter=20_000)
  ref.fit(ds.x_train, ds.y_train, sample_weight=w)
  f_ref = _objective_at(ref.coef_, ref.intercept_, ds, loss, cfg.reg, w)
  assert f_star <= f_ref * (1 + 1e-9)  # ours is at least as low ...
  assert f_star == pytest.approx(f_ref, rel=1e-5)  # ... and the same optimum
  if weighting == 'balanced':  # class_weight='balanced' is these sample weights
    bal = linear_model.LogisticRegression(C=c, tol=1e-12, max_iter=20_000, class_weight='balanced')
    bal.fit(ds.x_train, ds.y_train)
    assert _objective_at(bal.coef_, bal.intercept_, ds, loss, cfg.reg, w) == pytest.approx(f_star, rel=1e-5)


def test_softmax_on_two_classes_is_logistic_with_twice_the_reg():
  # Two softmax rows W1 = −W0 = w/2 carry the penalty reg·|w|²/2: softmax's reg is 1 / (C N).
  ds = _dataset('breast_cancer')
  n, c = len(ds.x_train), 2.0
  f_soft = lbfgs.optimum(config.TrainConfig(loss='softmax', reg=1 / (c * n), dtype='float64'), ds)[0]
  f_log = lbfgs.optimum(config.TrainConfig(loss='logistic', reg=1 / (2 * c * n), dtype='float64'), ds)[0]
  assert f_soft == pytest.approx(f_log, rel=1e-9)


@pytest.mark.parametrize('weighted', [False, True])
def test_ridge_matches_sklearn_and_the_closed_form(weighted):
  ds = data.prepare(data.load('diabetes'), 'diabetes', 0.0, 0.2, dtype=np.float64, seed=0)
  n, alpha = len(ds.x_train), 3.0
  w = np.random.default_rng(1).uniform(0.1, 2.0, n) if weighted else None
  total = n if w is None else w.sum()
  cfg = config.TrainConfig(loss='l2', reg=alpha / total, dtype='float64')  # Ridge(alpha): reg = alpha / Σw
  f_star, params, _ = lbfgs.optimum(cfg, ds, weights=w)
  ref = linear_model.Ridge(alpha=alpha, tol=1e-12).fit(ds.x_train, ds.y_train, sample_weight=w)
  assert _objective_at(ref.coef_, ref.intercept_, ds, 'l2', cfg.reg, w) == pytest.approx(f_star, rel=1e-5)
  W, b = solvers.ridge_closed_form(ds.x_train, ds.y_train, cfg.reg, w)
  np.testing.assert_allclose(W[0], ref.coef_, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(params.W), W, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(params.b), b, rtol=1e-6, atol=1e-6)


def test_lbfgs_fit_reports_iterations_evaluations_and_gradient_norm():
  ds = data.prepare(data.load('digits'), 'digits', 0.1, 0.2, seed=0)
  cfg = config.TrainConfig(optimizer='lbfgs', tol=1e-4, epochs=500, dtype='float32')
  result = train.fit(cfg, ds)
  s = result.solver
  assert result.stop_reason == 'converged' and s['converged'] and s['grad_norm'] <= 1e-4
  assert s['fevals'] >= s['iterations'] == len(result.history) > 3
  losses_seen = [m['train_loss'] for m in result.history]
  assert all(b <= a for a, b in zip(losses_seen, losses_seen[1:], strict=False))  # monotone descent
  assert result.history[-1]['val_accuracy'] > 0.9
  capped = train.fit(cfg.__class__(optimizer='lbfgs', tol=1e-9, epochs=3), ds)
  assert capped.stop_reason == 'max_epochs' and capped.solver['iterations'] == 3


def test_an_lbfgs_run_that_never_lowered_its_objective_is_refused_not_called_stalled():
  # Diabetes' targets in millionths, features as given, float32: no step of the first line search was
  # measurably lower, and the start (W = 0) was returned as the model, 'stalled', at 9 times the optimum's
  # test MSE. float64 reaches the optimum.
  raw = data.load('diabetes')
  raw = dataclasses.replace(raw, y=raw.y * 1e6)
  ds = data.prepare(raw, 'diabetes', seed=0, preprocess='none')
  cfg = config.TrainConfig(loss='l2', optimizer='lbfgs', reg=3e-3, tol=1e-4, epochs=1000)
  start = r'^L-BFGS could not lower the objective from its start \(f = 2\.9.*no step its line search tried'
  with pytest.raises(
    ValueError, match=start + r'.*Train in --dtype=float64, or keep --preprocess=standardize'
  ):
    train.fit(cfg, ds)
  wide = data.prepare(raw, 'diabetes', seed=0, preprocess='none', dtype=np.float64)
  result = train.fit(dataclasses.replace(cfg, dtype='float64'), wide)
  assert (
    result.stop_reason == 'converged' and result.solver['objective'] < 0.2 * result.history[0]['initial_loss']
  )


@pytest.mark.parametrize('loss,penalty', [('svm', 'l2'), ('hinge', 'l2'), ('l1', 'l2'), ('softmax', 'l1')])
def test_lbfgs_refuses_non_smooth_objectives(loss, penalty):
  with pytest.raises(ValueError, match='not differentiable at') as e:
    solvers.check_smooth(loss, penalty, reg=1e-3)
  assert 'Use ' in str(e.value)  # says what to use instead
  assert '--optimizer=sgd' in str(e.value) or 'first-order optimizer for the l1 penalty' in str(e.value)


def test_f_star_of_a_non_smooth_objective_is_refused_without_advising_another_optimizer():
  # train --reference and optimizers already use first-order optimizers: the advice is to go without f*.
  ds = data.prepare(data.load('breast_cancer'), 'breast_cancer', 0.0, 0.2)
  for cfg in (config.TrainConfig(loss='hinge'), config.TrainConfig(loss='logistic', penalty='l1', reg=1e-3)):
    with pytest.raises(ValueError, match=r'f\* \(the L-BFGS reference\) needs a smooth') as e:
      lbfgs.optimum(cfg, ds)
    assert 'Compare without f* (train: drop --reference), or ' in str(e.value)
    assert '--optimizer' not in str(e.value)


def test_bad_sample_weights_are_refused():
  ds = data.prepare(data.load('breast_cancer'), 'breast_cancer', 0.0, 0.2, dtype=np.float64)
  cfg = config.TrainConfig(loss='logistic', dtype='float64')
  n = len(ds.x_train)
  for bad in (-np.ones(n), np.zeros(n), np.full(n, np.nan), np.ones(n - 1)):
    with pytest.raises(ValueError, match='sample weights of the train split'):
      lbfgs.optimum(cfg, ds, weights=bad)


def test_new_reg_and_tol_share_one_compiled_solve():
  # A step schedule of 11 epochs: a structure no other test compiles (it shapes SGD only, so L-BFGS
  # ignores it).
  ds = _dataset('breast_cancer')
  n, c = len(ds.x_train), 0.5
  cfg = config.TrainConfig(loss='logistic', reg=1e-3, dtype='float64', schedule='step', decay_epochs=11.0)
  before = solvers._solve._cache_size()  # pylint: disable=protected-access
  lbfgs.optimum(cfg, ds, tol=1e-6)
  assert solvers._solve._cache_size() == before + 1  # pylint: disable=protected-access
  other = dataclasses.replace(cfg, reg=1 / (2 * c * n), seed=5)
  f_star, _, info = lbfgs.optimum(other, ds, tol=1e-9)
  assert solvers._solve._cache_size() == before + 1  # pylint: disable=protected-access
  assert info.grad_norm <= 1e-9  # the new tol reached the shared program ...
  ref = linear_model.LogisticRegression(C=c, tol=1e-12, max_iter=20_000).fit(ds.x_train, ds.y_train)
  f_ref = _objective_at(ref.coef_, ref.intercept_, ds, 'logistic', other.reg)
  assert f_star == pytest.approx(f_ref, rel=1e-5)  # ... and so did the new reg


def test_the_default_memory_keeps_40_pairs_for_small_models_and_fewer_for_large_ones():
  small = model.Params(jnp.zeros((10, 512), jnp.float32), jnp.zeros(10, jnp.float32))
  large = model.Params(jnp.zeros((1000, 2048), jnp.float32), jnp.zeros(1000, jnp.float32))
  assert solvers.memory_size_for(small) == solvers.MEMORY_SIZE == 40
  assert solvers.memory_size_for(large) == solvers.MIN_MEMORY_SIZE  # 8 MB a vector: 40 pairs would be 656 MB
  mid = model.Params(jnp.zeros((100, 4096), jnp.float32), jnp.zeros(100, jnp.float32))
  pairs = solvers.memory_size_for(mid)
  assert 10 < pairs < 40 and 2 * pairs * mid.W.nbytes <= solvers.MEMORY_BYTES


def test_more_curvature_pairs_reach_the_same_optimum_in_no_more_evaluations():
  ds = _dataset('digits')
  n = len(ds.x_train)
  cfg = config.TrainConfig(loss='softmax', reg=1 / (2 * n), optimizer='lbfgs', dtype='float64', epochs=1000)
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  p0 = model.Params(jnp.zeros((10, ds.num_features)), jnp.zeros(10))
  hp = step.hparams(cfg)
  _, ten = solvers.solve(cfg, p0, x, y, hp, tol=1e-8, memory_size=10)
  _, default = solvers.solve(cfg, p0, x, y, hp, tol=1e-8)
  assert bool(ten.converged) and bool(default.converged)
  assert int(default.fevals) <= int(ten.fevals)
  np.testing.assert_allclose(float(default.value), float(ten.value), rtol=1e-9)
