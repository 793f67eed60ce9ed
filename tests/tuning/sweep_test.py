"""Tests of linear_jax.sweep: each model equals its run alone; divergence is contained."""

import dataclasses
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.optim import config
from linear_jax.training import train
from linear_jax.tuning import sweep


@pytest.fixture(scope='module')
def blobs():
  return data.prepare(data.blobs(120, 4, 3, seed=1), 'blobs', seed=1)


@pytest.fixture(scope='module')
def regression():
  return data.prepare(data.linreg(100, 3, seed=2), 'linreg', seed=2)


@pytest.mark.parametrize(
  'overrides',
  [
    {'loss': 'softmax', 'optimizer': 'sgd', 'batch_size': 16},
    {'loss': 'svm', 'optimizer': 'momentum', 'schedule': 'cosine', 'batch_size': 0},
    {'loss': 'softmax', 'optimizer': 'adam', 'grad': 'autodiff', 'batch_size': 32},
  ],
)
def test_each_model_equals_the_same_setting_trained_alone(blobs, overrides):
  cfg = config.TrainConfig(epochs=6, **overrides)
  settings = sweep.grid([0.01, 0.1, 0.5], [0.0, 1e-2])
  result = sweep.run_sweep(cfg, blobs, settings)
  for k in (0, 3, 5):
    alone = train.fit(dataclasses.replace(cfg, **settings[k]), blobs)
    np.testing.assert_allclose(result.params.W[k], alone.params.W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.params.b[k], alone.params.b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.final['val_accuracy'][k], alone.history[-1]['val_accuracy'], atol=1e-6)


def test_sweeping_margin_and_momentum(blobs):
  cfg = config.TrainConfig(loss='svm', optimizer='momentum', epochs=3)
  settings = sweep.grid([0.05], [1e-3], margins=[0.5, 2.0], momenta=[0.0, 0.9])
  result = sweep.run_sweep(cfg, blobs, settings)
  alone = train.fit(sweep.config_for(cfg, settings[3]), blobs)
  assert settings[3] == {'learning_rate': 0.05, 'reg': 1e-3, 'margin': 2.0, 'momentum': 0.9}
  np.testing.assert_allclose(result.params.W[3], alone.params.W, rtol=1e-4, atol=1e-6)


def test_divergence_is_contained_and_never_best(regression):
  cfg = config.TrainConfig(loss='l2', epochs=8, batch_size=16)
  healthy = sweep.run_sweep(cfg, regression, sweep.grid([0.01, 0.05], [0.0]))
  mixed = sweep.run_sweep(cfg, regression, sweep.grid([0.01, 0.05, 100.0], [0.0]))
  assert list(mixed.diverged_at[:2]) == [-1, -1] and mixed.diverged_at[2] > 0
  np.testing.assert_array_equal(mixed.params.W[:2], healthy.params.W)
  assert np.all(np.isfinite(mixed.params.W[2]))  # frozen at the last good step
  assert mixed.best_index() in (0, 1)
  rows = mixed.rows()
  assert rows[2]['diverged_step'] == int(mixed.diverged_at[2]) and rows[2]['final_train_loss'] is None
  json.dumps(rows, allow_nan=False)  # raises on any NaN


def test_a_sweep_of_two_output_regression_scores_each_model_and_contains_its_divergence():
  """Two models and two outputs: the evaluation's `[models, outputs]` MSE once met the `[models]` mask of
  diverged models along its outputs (a crash for other counts, here the healthy model masked too)."""
  raw = data.linreg(120, 3, seed=2)
  two = dataclasses.replace(raw, y=np.stack([raw.y, 1e-3 * raw.y + 0.5], axis=1))
  ds = data.prepare(two, 'two', seed=2)
  cfg = config.TrainConfig(loss='l2', epochs=6, batch_size=16)
  result = sweep.run_sweep(cfg, ds, sweep.grid([0.05, 100.0], [0.0]))
  assert result.diverged_at[0] == -1 and result.diverged_at[1] > 0 and result.best_index() == 0
  assert result.final['val_mse'].shape == (2,) and np.isnan(result.final['val_mse'][1])
  # Independent: NumPy's MSE of the first model, in the targets' units, on the raw validation rows.
  w, b = train.raw_params(jax.tree.map(lambda a: a[0], result.params), ds)
  x = np.asarray(ds.x_val, np.float64) * ds.scale + ds.shift
  y = ds.y_val * ds.target_scale + ds.target_shift
  np.testing.assert_allclose(result.final['val_mse'][0], np.mean(np.square(x @ w.T + b - y)), rtol=1e-5)
  alone = train.fit(dataclasses.replace(cfg, learning_rate=0.05), ds)
  np.testing.assert_allclose(result.params.W[0], alone.params.W, rtol=1e-4, atol=1e-6)


def test_all_diverged_has_no_best(regression):
  cfg = config.TrainConfig(loss='l2', epochs=3, batch_size=16)
  assert sweep.run_sweep(cfg, regression, sweep.grid([200.0, 500.0], [0.0])).best_index() is None


def test_chunks_equal_one_program(blobs):
  cfg = config.TrainConfig(epochs=3, batch_size=16)
  settings = sweep.grid([0.01, 0.1, 0.3], [0.0, 1e-3])
  whole = sweep.run_sweep(cfg, blobs, settings)
  parts = sweep.run_sweep(cfg, blobs, settings, chunk_size=4)
  np.testing.assert_allclose(parts.params.W, whole.params.W, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(parts.best_epoch, whole.best_epoch)


def test_no_recompile_for_new_hyperparameter_values(blobs):
  # A step schedule of 7 epochs: a structure no other test compiles; the first sweep adds its programs.
  cfg = config.TrainConfig(epochs=2, batch_size=16, loss='svm', schedule='step', decay_epochs=7.0)
  programs = lambda: (sweep._epoch._cache_size(), sweep._eval._cache_size())  # pylint: disable=protected-access
  before = programs()
  sweep.run_sweep(cfg, blobs, sweep.grid([0.01, 0.1], [0.0, 1e-3]))
  sizes = programs()
  assert sizes == (before[0] + 1, before[1] + 2)  # one epoch program; evaluation of the train and val splits
  other = dataclasses.replace(cfg, loss_hparams={'margin': 2.0}, seed=3, tol=0.5, patience=2)
  sweep.run_sweep(other, blobs, sweep.grid([0.02, 0.3], [1e-4, 1e-2]))
  assert programs() == sizes
  assert other.structure() == cfg.structure()


@pytest.mark.parametrize(
  'settings,match',
  [
    ([], 'The sweep is empty'),
    (sweep.grid([0.0], [0.0]), 'learning rates must be > 0'),
    (sweep.grid([-0.1], [0.0]), 'learning rates must be > 0'),
    (sweep.grid([0.1], [-1e-3]), 'regs must be >= 0'),
    (sweep.grid([float('inf')], [0.0]), 'learning rates must be > 0, got inf'),
    ([{'learning_rate': 0.1}], 'needs a learning_rate and a reg'),
    (sweep.grid([0.1], [0.0], momenta=[1.0]), r'momenta must be in \[0, 1\)'),
    (sweep.grid([0.1], [0.0], seeds=[-1]), r'seeds must be integers in \[0, 2\*\*32\), got -1'),
    (sweep.grid([0.1], [0.0], seeds=[1.5]), 'seeds must be integers.*got 1.5'),
    (sweep.grid([0.1], [0.0], seeds=[0]) + sweep.grid([0.2], [0.0]), 'every setting of a sweep names a seed'),
    # sgd has no momentum: a momentum axis trained the same model once per value.
    (sweep.grid([0.1], [0.0], momenta=[0.5, 0.9]), "sets a momentum, which optimizer='sgd' does not read"),
    # 1e-50 is 0 in float32: the sweep trained nothing and said nothing; '0.1' was shown as a number.
    (sweep.grid([1e-50], [0.0]), r'learning_rate=1e-50 rounds to 0 in float32, the training dtype'),
    ([{'learning_rate': '0.1', 'reg': 0.0}], r"learning rates must be > 0, got '0\.1'"),
    # 1e300 is inf in float32: a reg or margin that large trained and blamed the learning rates, and a
    # Huber delta of 1e300 trained with delta = inf and reported its best model.
    (sweep.grid([0.1], [1e300]), r'reg=1e\+300 overflows float32, the training dtype'),
  ],
)
def test_bad_grids_are_refused(blobs, settings, match):
  with pytest.raises(ValueError, match=match):
    sweep.run_sweep(config.TrainConfig(epochs=1), blobs, settings)


def test_a_loss_hyperparameter_the_dtype_cannot_hold_is_refused():
  settings = sweep.grid([0.1], [0.0], loss_hparams={'delta': [1.0, 1e300]})
  sweep.check_grid(settings, 'huber', 'sgd', 'float64')  # 1e300 is a float64
  with pytest.raises(ValueError, match=r'^delta=1e\+300 overflows float32, the training dtype'):
    sweep.check_grid(settings, 'huber', 'sgd', 'float32')
  with warnings.catch_warnings():  # the refusal alone: no NumPy overflow warning printed before it
    warnings.simplefilter('error')
    with pytest.raises(ValueError, match=r'^reg=1e\+300 overflows float32'):
      sweep.check_grid(sweep.grid([0.1], [1e300]), 'softmax', 'sgd', 'float32')


def test_settings_given_as_zero_d_arrays_are_their_numbers(blobs):
  cfg = config.TrainConfig(epochs=2, batch_size=16)
  as_arrays = [{'learning_rate': np.array(0.1), 'reg': jnp.float32(1e-3)}]
  ours = sweep.run_sweep(cfg, blobs, as_arrays)
  ref = sweep.run_sweep(cfg, blobs, [{'learning_rate': 0.1, 'reg': 1e-3}])
  np.testing.assert_allclose(ours.params.W, ref.params.W, rtol=1e-6)
  assert ours.settings == ref.settings  # numbers, JSON-ready
  with pytest.raises(ValueError, match='learning rates must be > 0'):
    sweep.run_sweep(cfg, blobs, [{'learning_rate': np.array([0.1, 0.2]), 'reg': 0.0}])


def test_chunks_are_chosen_to_fit_memory(blobs):
  cfg = config.TrainConfig(epochs=2, batch_size=16)
  settings = sweep.grid([0.01, 0.1, 0.3], [0.0, 1e-3])
  whole = sweep.run_sweep(cfg, blobs, settings)
  seen = []
  small = sweep.run_sweep(
    cfg, blobs, settings, max_bytes=2500, on_epoch=lambda e, start, k, total, m, dead: seen.append(k)
  )
  assert max(seen) < len(settings)  # split into chunks by the memory estimate
  np.testing.assert_allclose(small.params.W, whole.params.W, rtol=1e-6, atol=1e-7)


def test_seeds_each_model_equals_its_seed_trained_alone(blobs):
  cfg = config.TrainConfig(epochs=4, batch_size=16, seed=7)
  settings = sweep.grid([0.05, 0.3], [1e-3], seeds=[0, 1, 2])
  assert [s['seed'] for s in settings] == [0, 1, 2, 0, 1, 2]  # the seed is the last axis
  assert type(sweep.grid([0.1], [0.0], seeds=np.arange(2))[1]['seed']) is int  # JSON-ready
  result = sweep.run_sweep(cfg, blobs, settings, chunk_size=2)  # chunks within each seed
  assert result.settings == settings  # results come back in the order asked for
  for k in range(len(settings)):
    alone = train.fit(dataclasses.replace(cfg, **settings[k]), blobs)
    np.testing.assert_allclose(result.params.W[k], alone.params.W, rtol=1e-4, atol=1e-6)
    assert result.best_epoch[k] == alone.best_epoch
  # Other seeds start elsewhere and see other batches: the models differ.
  assert not np.allclose(result.params.W[0], result.params.W[1], atol=1e-4)
  assert result.seed_groups() == [[0, 1, 2], [3, 4, 5]]


def test_seed_summary_is_the_mean_and_std_over_seeds(regression):
  cfg = config.TrainConfig(loss='l2', epochs=5, batch_size=16)
  settings = sweep.grid([0.01, 0.05, 100.0], [0.0], seeds=[3, 4])
  result = sweep.run_sweep(cfg, regression, settings)
  rows = result.setting_rows()
  assert [r['learning_rate'] for r in rows] == [0.01, 0.05, 100.0]
  assert all(r['seeds'] == [3, 4] and 'seed' not in r for r in rows)
  for g, row in zip(result.seed_groups(), rows, strict=True):
    if row['diverged_seeds']:
      continue
    vals = result.best['val_mse'][g]
    assert row['best_val_mse_mean'] == pytest.approx(np.mean(vals))
    assert row['best_val_mse_std'] == pytest.approx(np.std(vals, ddof=1))
  # lr=100 diverges: its numbers are null and it is never the best setting.
  assert rows[2]['diverged_seeds'] == 2 and rows[2]['best_val_mse_mean'] is None
  scores = result.setting_scores()
  assert result.best_setting() == int(np.argmax(scores[:2])) and scores[2] == -np.inf
  json.dumps(rows, allow_nan=False)


def test_without_a_grid_the_sweep_spans_the_derived_step():
  from linear_jax.datapath import factory  # pylint: disable=import-outside-toplevel

  ds = data.prepare(data.blobs(200, 4, 3, seed=1), 'blobs', 0.2, 0.2, seed=1)
  cfg = config.TrainConfig(learning_rate='auto', batch_size=32)
  rates, center, found = sweep.rates_around(cfg, ds, 9)
  want = train.resolve_step_size(cfg, factory.make(cfg, ds))[0].learning_rate
  assert center == want and found['learning_rate'] == want
  np.testing.assert_allclose(rates, want * np.geomspace(1 / 32, 8, 9), rtol=1e-12)
  rates, center, found = sweep.rates_around(config.TrainConfig(learning_rate=0.3), ds, 3)
  assert center == 0.3 and found is None and np.isclose(rates[0], 0.3 / 32)


def test_a_loss_files_gradient_is_compared_at_every_swept_value_of_its_hyperparameters(blobs, tmp_path):
  """A score_grad that forgets the temperature is right at temp = 1 only: a sweep over temp = 1, 3 was
  checked at the configuration's temp alone and trained the temp = 3 models along the wrong gradient."""
  path = tmp_path / 'tempered.py'
  path.write_text(
    'import linear_jax as lj\nfrom linear_jax.maths import classification as c\n\n'
    'def value(scores, labels, temp=1.0):\n'
    '  return c.softmax_cross_entropy(scores / temp, labels)\n\n'
    'def forgets(scores, labels, temp=1.0):  # d/ds of value is this divided by temp\n'
    '  return c.softmax_cross_entropy_score_grad(scores / temp, labels)\n\n'
    "TEMP = lj.Loss(value, 'class', score_grad=forgets, hparams={'temp': 1.0})\n"
  )
  cfg = config.TrainConfig(loss=f'{path}:TEMP', epochs=1, batch_size=16)
  with pytest.raises(ValueError, match=r'tempered.py:TEMP \(at temp=3\): its score_grad disagrees'):
    sweep.run_sweep(cfg, blobs, sweep.grid([0.1], [0.0], loss_hparams={'temp': [1.0, 3.0]}))
  assert (
    sweep.run_sweep(cfg, blobs, sweep.grid([0.1], [0.0], loss_hparams={'temp': [1.0]})).params.W.shape[0] == 1
  )


def test_lbfgs_is_refused_by_the_sweep_search_and_the_step_not_trained_as_adam():
  # optimizer='lbfgs' fell through make_optimizer's last branch: a sweep of it trained adam's models.
  from linear_jax.optim import step  # pylint: disable=import-outside-toplevel
  from linear_jax.tuning import search  # pylint: disable=import-outside-toplevel

  ds = data.prepare(data.blobs(60, 2, 3, seed=0), 'blobs')
  cfg = config.TrainConfig(optimizer='lbfgs', epochs=2, learning_rate=0.1)
  with pytest.raises(ValueError, match=r"optimizer='lbfgs' fit the regularization path: paths.fit_path"):
    sweep.run_sweep(cfg, ds, sweep.grid([0.1], [0.0]))
  with pytest.raises(ValueError, match='search races gradient descent by an optax optimizer'):
    search.compare(cfg, ds, 200)
  with pytest.raises(ValueError, match=r"optimizer='lbfgs' has no optax step here"):
    step.make_optimizer(cfg, None, 1).init(jnp.zeros(3))
  assert step.make_optimizer(dataclasses.replace(cfg, optimizer='adam'), None, 1).init(jnp.zeros(3))
