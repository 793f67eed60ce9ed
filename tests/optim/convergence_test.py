"""Stopping tests: scikit-learn's no-change rule, the gradient norm's test, stop reasons, refit."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.data import records
from linear_jax.maths import losses
from linear_jax.maths import regression
from linear_jax.optim import config
from linear_jax.optim import convergence
from linear_jax.optim import gradient_norm
from linear_jax.optim import stop_reasons
from linear_jax.training import lbfgs
from linear_jax.training import plateau
from linear_jax.training import refit
from linear_jax.training import stopping
from linear_jax.training import train


def test_epochs_without_change_counts_relative_stalls():
  assert convergence.epochs_without_change([10.0, 5.0, 4.0], 1e-3) == 0
  # 4.0 -> 3.9999 is a 2.5e-5 relative decrease: below tol 1e-3, so no change; a rise neither.
  assert convergence.epochs_without_change([10.0, 4.0, 3.9999, 4.1], 1e-3) == 2
  assert convergence.epochs_without_change([10.0, 4.0, 3.9999, 4.1, 3.0], 1e-3) == 0


def _blobs():
  return data.prepare(data.blobs(200, 4, 3, seed=1), 'blobs', 0.2, 0.2, seed=1)


def test_fit_stops_when_the_objective_stops_falling():
  ds = _blobs()
  cfg = config.TrainConfig(epochs=1000, tol_on='objective', tol=1e-3, n_iter_no_change=5)
  result = train.fit(cfg, ds)
  assert result.stop_reason == 'converged' and len(result.history) < 1000
  f = [m['train_loss'] for m in result.history]
  assert convergence.epochs_without_change(f, 1e-3) == 5
  assert convergence.epochs_without_change(f[:-1], 1e-3) == 4  # it stopped at the first chance
  capped = train.fit(config.TrainConfig(epochs=3, tol_on='objective'), ds)
  assert capped.stop_reason == 'max_epochs' and len(capped.history) == 3


def test_grad_norm_test_uses_the_true_full_gradient():
  ds = _blobs()
  cfg = config.TrainConfig(epochs=2000, tol_on='grad_norm', tol=2e-3, batch_size=0, learning_rate=0.5)
  result = train.fit(cfg, ds)
  assert result.stop_reason == 'converged'
  last = result.history[-1]['train_grad_norm']
  # An independent gradient: autodiff of the objective at the returned parameters.
  g = jax.grad(losses.unchecked_objective)(
    result.params, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), 'softmax', cfg.reg, 'l2'
  )
  ref = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g))
  assert last == pytest.approx(ref, rel=1e-4) and last <= 2e-3 < result.history[-2]['train_grad_norm']


def test_early_stopping_is_a_stop_reason():
  ds = _blobs()
  result = train.fit(config.TrainConfig(epochs=300, patience=2, learning_rate=0.5), ds)
  assert result.stop_reason == 'early_stopping' and result.stopped_early


def test_refit_trains_on_train_plus_val_for_the_chosen_epochs():
  ds = _blobs()
  cfg = config.TrainConfig(epochs=12)
  first = train.fit(cfg, ds)
  again, record = refit.refit(cfg, ds, first)
  assert record['epochs'] == first.best_epoch == len(again.history)
  assert record['train_examples'] == len(ds.x_train) + len(ds.x_val)
  merged = refit.train_plus_val(ds)
  np.testing.assert_array_equal(merged.x_train[len(ds.x_train) :], ds.x_val)
  assert len(merged.x_val) == 0
  # The refit is exactly fit() on the merged data for that many epochs.
  ref = train.fit(config.TrainConfig(epochs=first.best_epoch), merged)
  np.testing.assert_array_equal(np.asarray(ref.params.W), np.asarray(again.params.W))
  no_val = data.prepare(data.blobs(100, 4, 3, seed=1), 'blobs', 0.0, 0.2)
  with pytest.raises(ValueError, match='--refit needs a validation split'):
    refit.refit(cfg, no_val, first)


def test_refit_of_a_derived_step_derives_its_own_as_the_first_run_did():
  ds = data.prepare(data.load_builtin('digits'), 'digits', seed=0)
  cfg = config.TrainConfig(epochs=6, learning_rate='auto')
  first = train.fit(cfg, ds)
  assert first.best_epoch > 1  # so the refit measures its step again after its first epoch
  again, record = refit.refit(cfg, ds, first)
  # Measured on train + validation at the start and after the refit's first epoch, as fit() does there.
  ref = train.fit(config.TrainConfig(epochs=first.best_epoch, learning_rate='auto'), refit.train_plus_val(ds))
  assert record['learning_rate_found'] == ref.learning_rate_info == again.learning_rate_info
  assert record['learning_rate_found']['at_start']['learning_rate'] != again.learning_rate
  np.testing.assert_array_equal(np.asarray(ref.params.W), np.asarray(again.params.W))


def test_refit_path_solves_the_chosen_reg_on_train_plus_val():
  from linear_jax.tuning import paths  # pylint: disable=import-outside-toplevel

  ds = data.prepare(data.load('breast_cancer'), 'breast_cancer', 0.2, 0.2, dtype=np.float64, seed=0)
  cfg = config.TrainConfig(loss='logistic', dtype='float64', epochs=500)
  path = paths.fit_path(cfg, ds, [1e-1, 1e-2, 1e-3], tol=1e-8)
  again, record = refit.refit_path(cfg, ds, path, tol=1e-8)
  reg = float(path.regs[path.best_index()])
  assert record['reg'] == reg and record['train_examples'] == len(ds.x_train) + len(ds.x_val)
  assert again.stop_reason == 'converged'
  merged = refit.train_plus_val(ds)
  f_star = lbfgs.optimum(dataclasses.replace(cfg, reg=reg), merged)[0]
  assert again.solver['objective'] == pytest.approx(f_star, rel=1e-9)  # that reg's optimum on train + val
  with pytest.raises(ValueError, match='--refit needs a validation split'):
    refit.refit_path(cfg, dataclasses.replace(ds, x_val=ds.x_val[:0], y_val=ds.y_val[:0]), path)


@pytest.mark.parametrize('batch_size', [0, 16])
def test_integer_weights_equal_repeated_rows(batch_size):
  # Weight 2 on a row is the row twice: full batch, the runs agree step for step; with
  # mini-batches, the weighted objective of the result equals the duplicated data's.
  ds = _blobs()
  w = np.random.default_rng(0).integers(1, 3, len(ds.x_train)).astype(np.float64)
  weighted = dataclasses.replace(ds, w_train=w)  # the loaders' sample weights
  rep = np.repeat(np.arange(len(w)), w.astype(int))
  repeated = dataclasses.replace(ds, x_train=ds.x_train[rep], y_train=ds.y_train[rep])
  cfg = config.TrainConfig(epochs=20, batch_size=batch_size, learning_rate=0.3, dtype='float64')
  a = train.fit(cfg, weighted)
  if batch_size == 0:
    b = train.fit(cfg, repeated)
    np.testing.assert_allclose(np.asarray(a.params.W), np.asarray(b.params.W), rtol=1e-10, atol=1e-12)
  f_weighted = a.history[-1]['train_loss']
  f_repeated = train.evaluate(cfg, repeated, a.params)['train_loss']
  assert f_weighted == pytest.approx(f_repeated, rel=1e-10)
  lbfgs = dataclasses.replace(cfg, optimizer='lbfgs', tol=1e-9, epochs=500)
  np.testing.assert_allclose(
    np.asarray(train.fit(lbfgs, weighted).params.W),
    np.asarray(train.fit(lbfgs, repeated).params.W),
    atol=1e-6,
  )


def test_sweeps_honour_sample_weights():
  from linear_jax.tuning import sweep  # pylint: disable=import-outside-toplevel

  ds = _blobs()
  w = np.random.default_rng(2).uniform(0.2, 3.0, len(ds.x_train))
  weighted = dataclasses.replace(ds, w_train=w)  # the loaders' sample weights
  cfg = config.TrainConfig(epochs=4, batch_size=16, dtype='float64')
  swept = sweep.run_sweep(cfg, weighted, sweep.grid([0.05, 0.2], [1e-3]))
  for k, lr in enumerate((0.05, 0.2)):
    alone = train.fit(dataclasses.replace(cfg, learning_rate=lr, reg=1e-3), weighted)
    np.testing.assert_allclose(
      np.asarray(swept.params.W[k]), np.asarray(alone.params.W), rtol=1e-9, atol=1e-12
    )
    assert swept.final['train_loss'][k] == pytest.approx(alone.history[-1]['train_loss'], rel=1e-9)


def test_a_streamed_run_tests_the_full_gradient_over_its_blocks(monkeypatch):
  ds = _blobs()
  cfg = config.TrainConfig(
    epochs=2000, tol_on='grad_norm', tol=1e-2, batch_size=0, learning_rate=0.5, stream=True, block_rows=64
  )
  ref = train.fit(dataclasses.replace(cfg, stream=False), ds)
  # Streamed, the full gradient comes from the blocks: the whole split never goes to the device.
  monkeypatch.setattr(gradient_norm, 'full_grad_norm', lambda *a, **k: pytest.fail('whole split'))
  result = train.fit(cfg, ds)
  assert result.streamed and result.stop_reason == 'converged'
  assert len(result.history) == len(ref.history)
  norms = [m['train_grad_norm'] for m in result.history]
  np.testing.assert_allclose(norms, [m['train_grad_norm'] for m in ref.history], rtol=1e-4)


def test_plateaus_count_runs_of_no_change_afresh_after_each():
  f = [10.0, 5.0, 5.0, 5.0, 4.0, 4.0, 4.0, 4.0, 4.0]  # two epochs unchanged, then four
  assert convergence.plateaus(f, 1e-3, 2) == 1 + 2
  assert convergence.plateaus(f, 1e-3, 3) == 1
  assert convergence.plateaus([3.0, 2.0, 1.0], 1e-3, 1) == 0


def test_a_step_too_small_to_make_progress_is_not_called_converged():
  """scikit-learn's relative test alone stops a slow run far from the optimum; progress so far does not."""
  ds = data.prepare(data.load_builtin('diabetes'), 'diabetes', seed=0)
  cfg = config.TrainConfig(loss='l1', learning_rate=2e-4, epochs=120, tol_on='objective', tol=1e-3)
  result = train.fit(cfg, ds)
  f = [m['train_loss'] for m in result.history]
  stops = [e for e in range(1, len(f) + 1) if convergence.epochs_without_change(f[:e], 1e-3) >= 5]
  assert stops, 'the relative test alone would have stopped this run'
  assert result.stop_reason == 'max_epochs' and f[-1] < f[0]


def test_the_adaptive_schedule_divides_the_rate_at_each_plateau_then_converges():
  ds = _blobs()
  cfg = dataclasses.replace(config.COMMAND_LINE, learning_rate=0.5)
  result = train.fit(cfg, ds)
  rates = sorted({m['learning_rate'] for m in result.history}, reverse=True)
  np.testing.assert_allclose(rates, [0.5 / 2**k for k in range(len(rates))], rtol=1e-6)
  assert result.stop_reason == 'converged' and len(rates) == convergence.ADAPTIVE_DIVISIONS + 1
  f = [m['train_loss'] for m in result.history]
  assert convergence.plateaus(f, convergence.tol(cfg), 10, result.history[0]['initial_loss']) == 4
  assert 'divisions of the learning rate' in stop_reasons.explain(cfg, 'converged')
  with pytest.raises(ValueError, match="schedule='adaptive'"):
    from linear_jax.tuning import sweep  # pylint: disable=import-outside-toplevel

    sweep.run_sweep(cfg, ds, sweep.grid([0.1], [0.0]))


def test_a_plateau_one_feature_scaled_step_still_descends_from_is_stalled_not_converged():
  """Features of spreads 1e-3 to 1e3 left in their units: the adaptive schedule's plateau test passed at a
  mean squared error hundreds of times the least-squares optimum's, and the run said 'converged'. One step
  scaled to the features' units (`plateau.gain`) gains much of what is left there, and the run says
  'stalled'; on the same features standardized it gains nothing, and the run is at the optimum."""
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  x = rng.standard_normal((500, 4)) * [1e-3, 1.0, 1e3, 1.0]
  y = x @ np.array([2000.0, 1.0, 0.003, -2.0]) + 0.1 * rng.standard_normal(500)
  best = np.mean((linear_model.LinearRegression().fit(x, y).predict(x) - y) ** 2)
  cfg = dataclasses.replace(config.COMMAND_LINE, loss='l2', reg=0.0)
  for preprocess in ('none', 'standardize'):
    ds = data.prepare(data.Raw(x=x, y=y, kind='real'), 'units', 0.0, 0.0, preprocess=preprocess, seed=0)
    result = train.fit(cfg, ds)
    w, b = train.raw_params(result.params, ds)
    mse = np.mean((x @ np.asarray(w, np.float64).T + b - y[:, None]) ** 2)
    gain = result.history[-1]['plateau_gain']
    if preprocess == 'none':
      assert result.stop_reason == 'stalled' and gain > plateau.GAIN and mse > 10 * best, (gain, mse, best)
      why = stop_reasons.explain(cfg, 'stalled', plateau_gain=gain, preprocess='none')
      assert why.startswith('stalled: the objective stopped falling') and '--preprocess=standardize' in why
      assert '--optimizer=lbfgs' in why and '--schedule' not in why  # the advice that applies to this run
    else:
      assert result.stop_reason == 'converged' and gain < plateau.GAIN / 10 and mse < 1.05 * best, (gain, mse)


def test_a_stalled_run_says_so_in_its_metrics_and_again_when_resumed(tmp_path):
  """The verdict is taken before the epoch is saved or reported: metrics.jsonl's last line holds the gain,
  a resumed run stops as the uninterrupted one did, and one saved without the record measures it."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((500, 4)) * [1e-3, 1.0, 1e3, 1.0]
  y = x @ np.array([2000.0, 1.0, 0.003, -2.0]) + 0.1 * rng.standard_normal(500)
  ds = data.prepare(data.Raw(x=x, y=y, kind='real'), 'units', 0.0, 0.0, preprocess='none', seed=0)
  cfg = dataclasses.replace(config.COMMAND_LINE, loss='l2', reg=0.0)
  lines = []
  done = train.fit(cfg, ds, workdir=str(tmp_path), on_epoch=lines.append)
  assert done.stop_reason == 'stalled' and lines[-1]['plateau_gain'] == done.history[-1]['plateau_gain']
  again = train.fit(cfg, ds, workdir=str(tmp_path), resume=True)
  assert again.already_done and again.stop_reason == 'stalled' and again.history == done.history
  # Saved without the record (stopped while measuring it, or by an older version): measured on resume.
  unrecorded = [*done.history[:-1], {k: v for k, v in done.history[-1].items() if k != 'plateau_gain'}]
  state = types.SimpleNamespace(params=done.params, history=unrecorded, best={'bad': 0})
  assert stopping.finished(cfg, state, 1.0) == 'converged'  # what it would say without measuring
  assert stopping.finished(cfg, state, 1.0, gain=lambda params: 0.5) == 'stalled'


def test_an_objective_that_never_fell_below_its_start_is_not_converged():
  """A constant step too large for l1 regression: the objective ends above where it started, and the
  plateau test (relative to a decrease of 0) passed; the gain is 1 and the advice is a smaller step."""
  ds = data.prepare(data.load_builtin('diabetes'), 'diabetes', seed=0)
  cfg = dataclasses.replace(config.COMMAND_LINE, loss='l1', reg=0.0, learning_rate=30.0, schedule='constant')
  result = train.fit(cfg, ds)
  assert result.history[-1]['train_loss'] > result.history[0]['initial_loss']
  assert result.stop_reason == 'stalled' and result.history[-1]['plateau_gain'] == 1.0
  assert 'lower --learning_rate' in stop_reasons.explain(cfg, 'stalled', plateau_gain=1.0)


def test_an_lbfgs_refit_of_a_run_with_patience_has_no_validation_to_stop_on():
  """The refit trains on train + validation: a patience passed on to it was refused after the first run."""
  ds = _blobs()
  cfg = config.TrainConfig(optimizer='lbfgs', patience=2, reg=1e-2)
  again, record = refit.refit(cfg, ds, train.fit(cfg, ds))
  assert again.stop_reason == 'converged' and record['setting'].startswith('the same L-BFGS solve')


def _linear_targets(scale, preprocess='none'):
  """Targets `scale · (x w + noise)` on 300 × 5 normal features, left in their units by `preprocess`."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 5))
  y = (x @ np.array([1.0, -2.0, 3.0, 0.5, -1.0]) + 0.1 * rng.normal(size=300)) * scale
  return data.prepare(data.Raw(x=x, y=y, kind='real'), 'linear', 0.0, 0.0, preprocess=preprocess, seed=0)


def _ridge(ds, reg):
  """scikit-learn's exact ridge of the same objective: `(W [D], b)`."""
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  x, y = np.asarray(ds.x_train, np.float64), np.asarray(ds.y_train, np.float64)
  ridge = linear_model.Ridge(alpha=reg * len(x), solver='cholesky').fit(x, y)
  return ridge.coef_, ridge.intercept_


@pytest.mark.parametrize('scale', [1e-6, 1.0, 1e4])
def test_lbfgs_on_raw_targets_stops_as_near_the_optimum_in_any_units(scale):
  """The gradient test is in standardized units: targets in millionths do not meet it at the start (an
  absolute 1e-4 did, with W 10-25x off), targets in ten-thousands do not miss it for float32's floor."""
  ds = _linear_targets(scale)
  cfg = config.TrainConfig(loss='l2', optimizer='lbfgs', epochs=200)
  result = train.fit(cfg, ds)
  assert result.stop_reason == 'converged' and result.solver['iterations'] > 1
  w, b = _ridge(ds, cfg.reg)
  np.testing.assert_allclose(np.ravel(result.params.W) / scale, w / scale, atol=1e-4)
  np.testing.assert_allclose(np.ravel(result.params.b) / scale, b / scale, atol=1e-4)
  units = float(np.std(ds.y_train)) * _feature_factor(ds)
  assert convergence.tol(cfg, _scale(cfg, ds)) == pytest.approx(1e-4 * units, rel=1e-6)
  assert result.solver['grad_norm'] <= 1e-4 * units
  why = stop_reasons.explain(cfg, 'converged', _scale(cfg, ds))
  assert why.endswith(f"({1e-4:g} in standardized units, times {units:.4g} for the data's)")


def _scale(cfg, ds):
  return records.gradient_scale(ds, cfg.loss_record, cfg.resolved_loss_hparams())


def _feature_factor(ds):
  """NumPy's median standard deviation of the training features, at most 1: the features' part of the
  gradient test's units."""
  return min(1.0, float(np.median(np.std(np.asarray(ds.x_train, np.float64), axis=0))))


@pytest.mark.parametrize('loss', ['l2', 'softmax'])
def test_lbfgs_on_features_in_small_units_stops_as_near_the_optimum(loss):
  """Features in hundred-thousandths shrink every weight's gradient entry by as much: a tolerance in the
  units of standardized features was met after one or two iterations, at weights near 0 ("converged").
  Scaled by the median feature spread, the run stops where the same run on unit features does
  (float64; in float32 the objective cannot resolve such steps, and the run says it stalled)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(600, 5))
  score = x @ np.array([1.0, -0.6, 2.0, 0.4, -1.0])
  y = score + 0.1 * rng.normal(size=600) if loss == 'l2' else (score + 0.3 * rng.normal(size=600) > 0)
  cfg = config.TrainConfig(loss=loss, optimizer='lbfgs', reg=0.0, epochs=400, dtype='float64')
  found = {}
  for unit in (1.0, 1e-5):
    raw = data.Raw(
      x=x * unit,
      y=y.astype(np.int64) if loss == 'softmax' else y,
      kind='real' if loss == 'l2' else 'class',
      num_classes=None if loss == 'l2' else 2,
    )
    ds = data.prepare(raw, 'units', 0.0, 0.0, preprocess='none', seed=0, dtype=np.float64)
    result = train.fit(cfg, ds)
    assert result.stop_reason == 'converged' and result.solver['iterations'] > 3
    found[unit] = np.ravel(result.params.W) * unit  # the weights of unit features
  np.testing.assert_allclose(found[1e-5], found[1.0], rtol=2e-3, atol=2e-3)
  if loss == 'l2':
    np.testing.assert_allclose(
      found[1.0], np.linalg.lstsq(np.c_[x, np.ones(600)], y, rcond=None)[0][:5], atol=1e-4
    )
  raw32 = data.Raw(
    x=(x * 1e-5).astype(np.float32),
    y=y.astype(np.int64) if loss == 'softmax' else y,
    kind='real' if loss == 'l2' else 'class',
    num_classes=None if loss == 'l2' else 2,
  )
  ds32 = data.prepare(raw32, 'units', 0.0, 0.0, preprocess='none', seed=0)
  result32 = train.fit(dataclasses.replace(cfg, dtype='float32'), ds32)
  assert result32.stop_reason == 'stalled'


def test_a_rarely_lit_pixel_does_not_set_the_gradient_tests_units():
  """digits' pixels left raw: one lit in a single image has a spread of 0.024, and the smallest spread as
  the features' factor made L-BFGS end `stalled` where it converges; the median spread (4.3) leaves it."""
  ds = data.prepare(data.load('digits'), 'digits', seed=0, preprocess='none')
  assert ds.feature_spread == pytest.approx(
    np.median(np.std(ds.x_train, axis=0)[np.ptp(ds.x_train, axis=0) > 0])
  )
  assert _scale(config.TrainConfig(optimizer='lbfgs'), ds) == 1.0
  result = train.fit(config.TrainConfig(optimizer='lbfgs', epochs=400), ds)
  assert result.stop_reason == 'converged' and result.solver['grad_norm'] <= 1e-4


def test_the_gradient_tolerance_scales_only_for_the_squared_error_on_targets_left_in_their_units():
  lbfgs_cfg = config.TrainConfig(loss='l2', optimizer='lbfgs')

  def tol(cfg, ds):
    return convergence.tol(cfg, _scale(cfg, ds))

  assert tol(lbfgs_cfg, _linear_targets(1e-6, 'standardize')) == 1e-4
  assert tol(lbfgs_cfg, _blobs()) == 1e-4
  centered = _linear_targets(1e-6, 'center')
  features = _feature_factor(centered)  # at most 1: the median spread of five normal features
  assert features <= 1 and features == pytest.approx(_feature_factor(_linear_targets(1.0)))
  assert tol(lbfgs_cfg, centered) == pytest.approx(1e-4 * np.std(centered.y_train) * features, rel=1e-6)
  two = _linear_targets(1.0)
  two = dataclasses.replace(two, y_train=two.y_train[:, None] * np.array([1e3, 1e-3]))  # outputs 1e6 apart
  small = np.std(two.y_train[:, 1])  # the gradient test must hold for the output in the smallest units
  assert tol(lbfgs_cfg, two) == pytest.approx(1e-4 * small * features, rel=1e-6)
  # A constant column has no units: its stand-in spread of 1 does not set the tolerance.
  constant = dataclasses.replace(two, y_train=np.c_[two.y_train[:, 0], np.full(len(two.y_train), 5.0)])
  assert tol(lbfgs_cfg, constant) == pytest.approx(1e-4 * np.std(two.y_train[:, 0]) * features, rel=1e-6)
  objective = config.TrainConfig(loss='l2', tol_on='objective', tol=1e-3)  # relative: no units to scale
  assert tol(objective, centered) == 1e-3
  # l1's gradient is bounded in any units, and Huber's beyond δ = 1 (targets in ten-thousands); in
  # millionths Huber is the squared error, and takes its scale.
  large = _linear_targets(1e4, 'center')
  for loss in ('huber', 'l1'):
    assert tol(config.TrainConfig(loss=loss, tol_on='grad_norm'), large) == pytest.approx(1e-4 * features)
  assert tol(config.TrainConfig(loss='l1', tol_on='grad_norm'), centered) == pytest.approx(1e-4 * features)
  assert tol(config.TrainConfig(loss='huber', tol_on='grad_norm'), centered) == tol(lbfgs_cfg, centered)
  # The squared error under a name of its own is recognized by what it computes, not by its name.
  mine = losses.Loss(
    value=regression.l2_regression, targets='real', score_grad=regression.l2_regression_score_grad
  )
  losses.register_loss('squared_error_test', mine, overwrite=True)
  try:
    assert tol(config.TrainConfig(loss='squared_error_test', optimizer='lbfgs'), large) == tol(
      lbfgs_cfg, large
    )
  finally:
    losses.LOSSES.pop('squared_error_test')
  assert stop_reasons.explain(lbfgs_cfg, 'converged', _scale(lbfgs_cfg, _blobs())).endswith('at most 0.0001')


def test_huber_on_raw_targets_in_large_units_is_not_stopped_at_the_start():
  """Huber's gradient is at most δ·|x| in any units: a tolerance times the targets' spread (3.6 for
  targets in ten-thousands) was met before the first step, and the initial weights were saved."""
  ds = _linear_targets(1e4)
  result = train.fit(config.TrainConfig(loss='huber', optimizer='lbfgs', epochs=200), ds)
  assert result.stop_reason == 'converged' and result.solver['iterations'] > 3
  assert result.solver['grad_norm'] <= 1e-4
  assert np.abs(np.ravel(result.params.W)).max() > 1.0  # the initial weights are of order 1e-3


def test_grad_norm_stop_on_raw_targets_in_small_units_is_near_the_optimum():
  """Full-batch gradient descent on targets in millionths: an absolute tolerance stopped it after the
  first epoch; in the targets' units it stops where the same run on unit targets does, near the optimum."""
  cfg = config.TrainConfig(loss='l2', epochs=500, batch_size=0, learning_rate=0.2, tol_on='grad_norm')
  for scale in (1e-6, 1.0):
    ds = _linear_targets(scale)
    result = train.fit(cfg, ds)
    assert result.stop_reason == 'converged' and len(result.history) > 10
    assert result.history[-1]['train_grad_norm'] <= 1e-4 * np.std(ds.y_train) * _feature_factor(ds)
    np.testing.assert_allclose(np.ravel(result.params.W) / scale, _ridge(ds, cfg.reg)[0] / scale, atol=1e-3)


def test_a_regularization_path_on_raw_targets_reaches_each_optimum_in_small_units():
  from linear_jax.tuning import paths  # pylint: disable=import-outside-toplevel

  ds = _linear_targets(1e-6)
  regs = [1e-1, 1e-3]
  path = paths.fit_path(config.TrainConfig(loss='l2'), ds, regs, tol=1e-6)  # times the targets' spread
  for k, reg in enumerate(regs):
    w, _ = _ridge(ds, reg)
    np.testing.assert_allclose(np.ravel(path.params.W[k]) * 1e6, w * 1e6, atol=1e-4)
  assert np.all(path.converged)


def test_an_lbfgs_run_that_ran_out_says_iterations():
  # --max_epochs caps L-BFGS's iterations, and a run stopped by it said "the most epochs (3) ran out".
  lbfgs = config.TrainConfig(optimizer='lbfgs', epochs=3)
  assert stop_reasons.explain(lbfgs, 'max_epochs') == 'not converged: the most iterations (3) ran out'
  sgd = config.TrainConfig(epochs=3)
  assert stop_reasons.explain(sgd, 'max_epochs') == 'not converged: the most epochs (3) ran out'


def test_a_plateau_where_the_bias_is_far_from_its_optimum_is_stalled_not_converged():
  """Two plateaus the feature-scaled step (each weight over its feature's second moment) did not refute,
  both said 'converged': features of 200 to 255 left in their units, where each weight's step moves the
  bias (a fit 10 times above the ridge optimum); and l1 on targets of mean 1.5e8 left in their units,
  whose bounded gradient moved the bias by 2 in any step (the model was the one it started from)."""
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(12)
  x = rng.uniform(200, 255, (1000, 5))
  y = (x - 227) @ np.array([0.1, -0.2, 0.05, 0.3, 0.0]) + 10 + rng.normal(0, 0.5, 1000)
  pixels = data.prepare(data.Raw(x=x, y=y, kind='real'), 'pixels', 0.0, 0.0, preprocess='none', seed=0)
  cfg = dataclasses.replace(config.COMMAND_LINE, loss='l2')
  result = train.fit(cfg, pixels)
  ridge = linear_model.Ridge(alpha=cfg.reg * len(y)).fit(x, y)
  f_star = np.mean((ridge.predict(x) - y) ** 2) + cfg.reg * np.sum(ridge.coef_**2)
  assert result.history[-1]['train_loss'] > 5 * f_star  # far from the optimum, then: not 'converged'
  assert result.stop_reason == 'stalled' and result.history[-1]['plateau_gain'] > plateau.GAIN

  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 3))
  y = 5e7 * (x @ np.array([1.0, -2.0, 0.5]) + 3 + 0.3 * rng.normal(size=500))
  units = data.prepare(data.Raw(x=x, y=y, kind='real'), 'units', 0.0, 0.0, preprocess='none', seed=0)
  result = train.fit(dataclasses.replace(config.COMMAND_LINE, loss='l1'), units)
  assert result.history[-1]['train_loss'] > 0.9 * np.mean(np.abs(y))  # no better than predicting 0
  assert result.stop_reason == 'stalled' and result.history[-1]['plateau_gain'] > plateau.GAIN


def test_a_plateau_whose_gain_is_small_beside_the_fall_but_not_beside_the_objective_is_stalled():
  """l1 on 60 nearly linear rows fell from 0.77 to 0.050 and said 'converged' 16% above its optimum: the
  step still gained 0.006 there, 0.8% of the fall (under GAIN) but 12% of the objective. As the
  objective's own test, the gain is measured against the smaller of the two."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 3))
  y = x @ np.array([1.0, -2.0, 0.5]) + 3 + 0.1 * rng.normal(size=60)
  ds = data.prepare(data.Raw(x=x, y=y, kind='real'), 'rows', 0.0, 0.0, seed=0)
  result = train.fit(dataclasses.replace(config.COMMAND_LINE, loss='l1'), ds)
  f, fallen = (
    result.history[-1]['train_loss'],
    result.history[0]['initial_loss'] - result.history[-1]['train_loss'],
  )
  gain = result.history[-1]['plateau_gain']
  assert result.stop_reason == 'stalled' and gain > plateau.GAIN, gain
  assert gain * f / fallen < plateau.GAIN  # measured against the fall alone, it passed


@pytest.mark.parametrize('seed', [0, 2])
def test_an_exact_fit_whose_objective_is_rounding_is_converged(seed):
  # Noiseless l2 at reg 0 ends at f = 3e-15 in float32, which is rounding: measured against it, the
  # rounding of a trial step read as a gain of 2-28% and the run said 'stalled'.
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(200, 5))
  y = x @ np.array([1.0, -2.0, 0.5, 3.0, -1.0]) + 3
  ds = data.prepare(data.Raw(x=x, y=y, kind='real'), 'exact', 0.0, 0.0, seed=0)
  result = train.fit(dataclasses.replace(config.COMMAND_LINE, loss='l2', reg=0.0), ds)
  assert result.stop_reason == 'converged' and result.history[-1]['train_loss'] < 1e-10, result.stop_reason
