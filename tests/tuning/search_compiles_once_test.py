"""The search methods take the data as arguments: a second search of the same shapes compiles nothing,
and every number is the one the methods gave when they closed over the data.

`search_reference.npz` holds the outputs of `_runs()` written by `_save()` with the implementation of
commit b60ef50 (each method's programs built around its data), run before the change and kept here as
the reference: the same seed must give the same evaluation counts exactly, and the same weights,
losses and curves (hence the same accepted proposals and survivors). The suite's processes compile
fast rather than well (tests/conftest.py), and a float32 sum compiled another way rounds differently
in its last bits: the float32 methods' numbers are compared to a relative 1e-5 (about 80 float32
roundings; the largest difference is 9e-7), and the demo's race, in float64, to 1e-9.
"""

import os

import jax
import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.maths import model
from linear_jax.optim import config
from linear_jax.runs import demo_api
from linear_jax.runs import demo_learn
from linear_jax.tuning import search

REFERENCE = os.path.join(os.path.dirname(__file__), 'search_reference.npz')


def _problem(seed):
  ds = data.prepare(data.blobs(120, 2, 3, spread=0.8, seed=seed), 'blobs', seed=seed)
  return ds, search.make_loss_fn(ds.x_train, ds.y_train, 'svm', 1e-3)


def _method_runs(ds, loss_fn, budget=120):
  init = model.init_params(jax.random.PRNGKey(0), 2, 3, 0.1)
  key = jax.random.PRNGKey(1)
  cfg = config.TrainConfig(loss='svm', reg=1e-3, learning_rate=0.5, optimizer='momentum')
  return {
    'random': search.random_search(loss_fn, key, init, budget, 2.0, chunk_size=32),
    'local': search.random_local_search(loss_fn, key, init, budget, 0.2, proposals=7),
    'genetic': search.genetic_algorithm(loss_fn, key, init, budget, population=20, elite=3),
    'gd_full': search.gradient_descent(
      config.TrainConfig(**{**cfg.__dict__, 'batch_size': 0}), ds.x_train, ds.y_train, init, budget
    ),
    'gd_mini': search.gradient_descent(
      config.TrainConfig(**{**cfg.__dict__, 'batch_size': 16}), ds.x_train, ds.y_train, init, budget
    ),
  }


def _flat(results):
  out = {}
  for name, r in results.items():
    out[f'{name}/W'], out[f'{name}/b'] = np.asarray(r.params.W), np.asarray(r.params.b)
    out[f'{name}/best_loss'], out[f'{name}/evaluations'] = np.asarray(r.best_loss), np.asarray(r.evaluations)
    out[f'{name}/curve_evals'], out[f'{name}/curve_loss'] = (
      np.asarray(r.curve_evals),
      np.asarray(r.curve_loss),
    )
  return out


def _demo_race():
  state = {**demo_api.handle_dataset({'name': 'blobs', 'n': 40}), 'loss': 'softmax', 'reg': 0.01}
  state['model'] = demo_api.handle_init(state)['model']
  out = demo_learn.handle_search({**state, 'budget': 80, 'optimizer': {'method': 'momentum'}})
  flat = {'demo/start_loss': np.asarray(out['start_loss'])}
  for m in out['methods']:
    for k in ('best_loss', 'evaluations', 'curve_evals', 'curve_loss'):
      flat[f'demo/{m["method"]}/{k}'] = np.asarray(m[k], np.float64)
    flat[f'demo/{m["method"]}/W'] = np.asarray(m['model']['W'])
  return flat


def _runs():
  """Every method on one problem, and the demo's race: `{name: array}`."""
  return {**_flat(_method_runs(*_problem(3))), **_demo_race()}


def _save():
  np.savez(REFERENCE, **_runs())


@pytest.fixture(scope='module')
def now():
  return _runs()  # compiles every program once, for the two tests below


COUNTS = ('evaluations', 'curve_evals')


def test_same_seed_gives_the_numbers_of_the_closure_based_methods(now):
  reference = np.load(REFERENCE)
  assert sorted(now) == sorted(reference.files)
  for name in reference.files:
    got = np.asarray(now[name], np.float64)
    assert got.shape == reference[name].shape, name
    if name.startswith(('gd_', 'demo/gradient descent')) and name.endswith('curve_loss'):
      # Descent's curve is now its loss after each epoch; the reference holds their running minimum:
      # where that fell, the loss is the reference's value; elsewhere it is not below it.
      ref = reference[name]
      fell = np.r_[True, ref[1:] < ref[:-1]]
      np.testing.assert_allclose(got[fell], ref[fell], rtol=1e-5, atol=1e-6, err_msg=name)
      assert np.all(got[~fell] >= ref[~fell] - 1e-6 - 1e-5 * np.abs(ref[~fell])), name
      continue
    if name.endswith(COUNTS):
      np.testing.assert_array_equal(got, reference[name], err_msg=name)
    elif name.startswith('demo/'):  # the race now runs on the padded rows with their mask: a weighted mean
      np.testing.assert_allclose(got, reference[name], rtol=1e-9, atol=1e-12, err_msg=name)
    else:
      np.testing.assert_allclose(got, reference[name], rtol=1e-5, atol=1e-6, err_msg=name)


PROGRAMS = (
  search._random_segment,  # noqa: SLF001 - the compiled programs whose caches are counted
  search._local_segment,  # noqa: SLF001
  search._genetic_start,  # noqa: SLF001
  search._genetic_segment,  # noqa: SLF001
  search._descent_segment,  # noqa: SLF001
  search._value,  # noqa: SLF001
)


def _compiled():
  return [f._cache_size() for f in PROGRAMS]  # noqa: SLF001 - jax's count of compiled programs


def test_a_second_search_on_new_data_of_the_same_shapes_compiles_nothing(now):
  before = _compiled()
  assert all(c >= 1 for c in before)
  again = _method_runs(*_problem(11))  # other points, same shapes
  assert _compiled() == before
  assert float(again['random'].best_loss) != float(now['random/best_loss'])  # the new data were used


def test_a_second_demo_race_compiles_nothing(now):
  state = {**demo_api.handle_dataset({'name': 'blobs', 'n': 40}), 'loss': 'softmax', 'reg': 0.01}
  state['model'] = demo_api.handle_init(state)['model']
  before = _compiled()  # the fixture's race: the same loss, budget and optimizer
  moved = {**state, 'points': state['points'][:-1] + [[0.5, 0.5]]}  # a point moved
  added = {**moved, 'points': [*moved['points'], [1.0, -1.0]], 'labels': [*state['labels'], 1]}
  for s in (moved, added):
    out = demo_learn.handle_search({**s, 'budget': 80, 'seed': 4, 'optimizer': {'method': 'momentum'}})
    assert _compiled() == before
  assert out['methods'][0]['best_loss'] > 0
