"""Tests of linear_jax.search: each method learns, is deterministic, and keeps its budget."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.optim import config
from linear_jax.tuning import search


@pytest.fixture(scope='module')
def problem():
  ds = data.prepare(data.blobs(200, 2, 3, spread=0.5, seed=4), 'blobs', seed=4)  # separable
  loss_fn = search.make_loss_fn(ds.x_train, ds.y_train, 'softmax', 1e-4)
  init = model.init_params(jax.random.PRNGKey(0), 2, 3, 1e-3)
  return ds, loss_fn, init


def _methods(problem, budget):
  ds, loss_fn, init = problem
  key = jax.random.PRNGKey(1)
  cfg = config.TrainConfig(loss='softmax', reg=1e-4, learning_rate=0.5)
  return {
    'random': lambda: search.random_search(loss_fn, key, init, budget, 2.0, chunk_size=64),
    'local': lambda: search.random_local_search(loss_fn, key, init, budget, 0.2, proposals=7),
    'genetic': lambda: search.genetic_algorithm(loss_fn, key, init, budget, population=30, elite=3),
    'gd_full': lambda: search.gradient_descent(
      config.TrainConfig(**{**cfg.__dict__, 'batch_size': 0}), ds.x_train, ds.y_train, init, budget
    ),
    'gd_mini': lambda: search.gradient_descent(
      config.TrainConfig(**{**cfg.__dict__, 'batch_size': 16}), ds.x_train, ds.y_train, init, budget
    ),
  }


@pytest.mark.parametrize('method', ['random', 'local', 'genetic', 'gd_full', 'gd_mini'])
def test_lowers_the_loss_keeps_the_budget_and_is_deterministic(problem, method):
  _, loss_fn, init = problem
  budget = 1001
  run = _methods(problem, budget)[method]
  result = run()
  start = float(loss_fn(init))
  assert result.best_loss < 0.5 * start, (start, result.best_loss)
  assert result.evaluations <= budget
  assert result.curve_evals[-1] == result.evaluations
  assert np.all(np.diff(result.curve_loss) <= 1e-12)  # best-so-far never rises
  np.testing.assert_allclose(float(loss_fn(result.params)), result.best_loss, rtol=1e-5)
  again = run()
  np.testing.assert_array_equal(again.params.W, result.params.W)


def test_budget_accounting_is_exact(problem):
  _, loss_fn, init = problem
  key = jax.random.PRNGKey(2)
  assert search.random_search(loss_fn, key, init, 333, chunk_size=50).evaluations == 333
  assert search.random_local_search(loss_fn, key, init, 100, proposals=7).evaluations == 1 + 7 * 14
  ga = search.genetic_algorithm(loss_fn, key, init, 100, population=20, elite=2)
  assert ga.evaluations == 20 + 18 * 4
  assert (
    search.gradient_descent(
      config.TrainConfig(batch_size=0), np.ones((4, 2)), np.array([0, 1, 2, 0]), init, 7
    ).evaluations
    == 6
  )  # 3 gradients at 2 evaluations each


@pytest.mark.parametrize(
  'kwargs,match',
  [
    ({'budget': 0}, 'budget must be a whole number >= 1'),
    ({'budget': -5}, 'budget must be a whole number >= 1'),
    ({'population': 0}, 'population must be a whole number >= 1'),
    ({'mutation_scale': 0.0}, 'mutation_scale must be > 0'),
    ({'mutation_scale': -1.0}, 'mutation_scale must be > 0'),
    ({'elite': 10, 'population': 10}, r'elite must be in \[0, population\)'),
    ({'budget': 5, 'population': 10}, 'smaller than one population'),
  ],
)
def test_bad_search_arguments(problem, kwargs, match):
  _, loss_fn, init = problem
  args = {'budget': 100, 'population': 10, 'elite': 2, 'mutation_scale': 0.1, **kwargs}
  with pytest.raises(ValueError, match=match):
    search.genetic_algorithm(loss_fn, jax.random.PRNGKey(0), init, **args)


@pytest.mark.parametrize(
  'kwargs,match',
  [
    ({'batch_size': -1}, r'batch_size must be a whole number >= 1, got -1'),  # a reshape TypeError
    ({'segments': -2}, r'segments must be a search_state.Segments or None, got int'),  # an AttributeError
    ({'budget': 10**12}, r'budget must be a whole number >= 1 \(and at most 2,147,483,647\)'),
    ({'step_size': -1.0}, r'step_size must be > 0 and finite, got -1.0'),  # named 'scale'
    ({'init_scale': float('nan')}, r'init_scale must be > 0 and finite'),
    ({'elite': 10}, r'elite must be in \[0, population\)'),  # after random search had run
  ],
)
def test_compare_refuses_each_bad_argument_by_name_before_any_method_runs(kwargs, match, monkeypatch):
  ds = data.prepare(data.blobs(60, 2, 2, seed=0), 'blobs')
  monkeypatch.setattr(search, 'random_search', lambda *a, **k: pytest.fail('a method ran'))
  args = {'budget': 40, 'population': 10, **kwargs}
  with pytest.raises(ValueError, match=match):
    search.compare(config.TrainConfig(), ds, **args)


def test_compare_minimizes_the_weighted_objective_of_a_weighted_dataset():
  """`--class_weight=balanced` (any sample weights) changes the objective; `compare` built every method's
  objective without them, and its tables were the unweighted ones, digit for digit."""
  ds = data.prepare(data.load('breast_cancer'), 'bc', seed=0, class_weight='balanced')
  cfg = config.TrainConfig(loss='logistic', learning_rate=0.1)
  rows = {r['method']: r for r in search.compare(cfg, ds, 200, population=10)[0]}
  plain = {
    r['method']: r for r in search.compare(cfg, dataclasses.replace(ds, w_train=None), 200, population=10)[0]
  }
  x, y, w = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), jnp.asarray(ds.w_train)
  init = model.init_params(jax.random.PRNGKey(cfg.seed), ds.num_features, 1, 1e-3)
  # Independent: the weighted objective (`lj.objective` with the weights as its mask) at the weights
  # gradient descent reaches when given them directly.
  gd = search.gradient_descent(dataclasses.replace(cfg, batch_size=0), x, y, init, 200, weights=w)
  weighted = float(losses.objective(gd.params, x, y, 'logistic', cfg.reg, mask=w))
  assert rows['GD full batch']['best_train_loss'] == pytest.approx(weighted, rel=1e-5)
  assert plain['GD full batch']['best_train_loss'] != pytest.approx(weighted, rel=1e-3)
  weighted_search = search.random_search(
    search.make_loss_fn(x, y, 'logistic', cfg.reg, mask=w), jax.random.PRNGKey(cfg.seed), init, 200
  )
  assert rows['random search']['best_train_loss'] == pytest.approx(weighted_search.best_loss, rel=1e-6)


def test_a_population_that_cannot_fit_is_refused_before_any_method_runs(monkeypatch):
  """A population of members (weights, a child and a mutation of each, their scores) past the device's
  memory ran random and local search first, then ended in an out-of-memory traceback."""
  from linear_jax.data import memory  # pylint: disable=import-outside-toplevel

  ds = data.prepare(data.blobs(100, 5, 3, seed=0), 'blobs', seed=0)
  n = len(ds.y_train)
  need = 4 * 500 * (3 * (5 * 3 + 3) + n * 3)  # float32: 500 members of 18 weights, scores on n rows
  ran = []
  monkeypatch.setattr(search, 'random_search', lambda *a, **k: ran.append(a))
  monkeypatch.setattr(memory, 'device_memory_available', lambda device=None: need - 1)
  cfg = config.TrainConfig(epochs=1)
  with pytest.raises(ValueError, match=r'search on blobs: a population of 500 models of 18 weights needs'):
    search.compare(cfg, ds, 1000, population=500)
  assert not ran
  monkeypatch.setattr(memory, 'device_memory_available', lambda device=None: need)
  with pytest.raises(ValueError, match='use a smaller --population'):
    search.compare(cfg, ds, 1000, population=501)


def test_a_descent_that_diverges_keeps_every_methods_row_with_no_metric_of_its_own():
  # Its non-finite weights were evaluated: every row was lost to the refusal of NaN parameters (and before
  # that refusal, their argmax gave class 0 everywhere: a validation accuracy of a model that has none).
  ds = data.prepare(data.blobs(120, 4, 3, seed=0), 'blobs', seed=0)
  cfg = config.TrainConfig(loss='softmax', optimizer='sgd', learning_rate=1e30, epochs=1)
  rows, _ = search.compare(cfg, ds, 400, population=10, elite=2, batch_size=16)
  by = {r['method']: r for r in rows}
  assert len(rows) == 5 and not np.isfinite(by['GD full batch']['best_train_loss'])
  assert np.isnan(by['GD full batch']['val_metric']) and np.isnan(by['GD mini-batch']['val_metric'])
  assert 0 < by['random search']['val_metric'] <= 1
