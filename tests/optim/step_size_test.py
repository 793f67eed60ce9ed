"""`--learning_rate=auto`: the step size measured from the problem, against the full Hessian's eigenvalues."""

import dataclasses
import functools
import textwrap

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import pytest

from linear_jax.data import build
from linear_jax.data import datasets as data
from linear_jax.maths import classification
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.optim import config
from linear_jax.optim import step
from linear_jax.optim import step_size
from linear_jax.training import train


def _problem(targets, n=120, d=5, c=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32) * np.array([3.0, 1.0, 0.5, 2.0, 1.0], np.float32)[:d]
  y = {
    'class': rng.integers(0, c, n),
    'binary': rng.integers(0, 2, n),
    'real': rng.normal(size=n),
  }[targets]
  outputs = {'class': c, 'binary': 1, 'real': 1}[targets]
  params = model.init_params(jax.random.PRNGKey(1), d, outputs, 1e-3)
  return x, np.asarray(y, np.float32 if targets == 'real' else np.int32), params


@functools.partial(jax.jit, static_argnames=('loss', 'penalty'))
def _hessian(params, x, y, reg, loss, penalty):
  """The objective's whole Hessian in the flattened parameters, as one compiled program (not op by op)."""
  flat, unravel = ravel_pytree(params)
  return jax.hessian(lambda v: losses.objective(unravel(v), x, y, loss, reg, penalty))(flat)


def _hessian_max(loss, params, x, y, reg, penalty='l2'):
  """The largest eigenvalue of the objective's Hessian, from the whole matrix (NumPy's eigvalsh)."""
  h = _hessian(params, jnp.asarray(x), jnp.asarray(y), reg, loss, penalty)
  return float(np.linalg.eigvalsh(np.asarray(h, np.float64))[-1])


@jax.jit
def _softmax_score_hessians(scores, y):
  """`[N, C, C]`: each row's Hessian of its softmax cross-entropy in its scores, in one program."""
  one = lambda s, t: classification.softmax_cross_entropy(s[None], t[None])[0]
  return jax.vmap(jax.hessian(one))(scores, y)


@pytest.mark.parametrize('loss, targets', [('softmax', 'class'), ('logistic', 'binary'), ('l2', 'real')])
def test_full_batch_step_is_one_over_the_largest_hessian_eigenvalue(loss, targets):
  x, y, params = _problem(targets)
  cfg = config.TrainConfig(loss=loss, learning_rate='auto', reg=1e-3, batch_size=0)
  lr, info = step_size.derive(cfg, params, x, y, None, len(x), len(x))
  want = _hessian_max(loss, params, x, y, 1e-3)
  np.testing.assert_allclose(info['hessian_max_eigenvalue'], want, rtol=0.02)
  np.testing.assert_allclose(lr, 1.0 / want, rtol=0.02)
  assert 'power iteration' in info['method']


def test_mini_batch_step_follows_ma_bassily_belkin():
  x, y, params = _problem('class')
  batch = 16
  cfg = config.TrainConfig(loss='softmax', learning_rate='auto', reg=0.0, batch_size=batch)
  lr, info = step_size.derive(cfg, params, x, y, None, batch, len(x))
  lam = _hessian_max('softmax', params, x, y, 0.0)
  # β: the mean over examples of ‖x̃_i‖² times the largest eigenvalue of the loss's Hessian in the scores.
  hessians = _softmax_score_hessians(model.scores(params, jnp.asarray(x)), jnp.asarray(y))
  per_row = np.linalg.eigvalsh(np.asarray(hessians, np.float64))[:, -1] * (np.sum(x * x, axis=1) + 1.0)
  assert per_row.shape == (len(x),)
  beta = float(np.mean(per_row))
  np.testing.assert_allclose(info['example_curvature_mean'], beta, rtol=0.02)
  np.testing.assert_allclose(lr, batch / (beta + (batch - 1) * lam), rtol=0.03)


def test_a_piecewise_linear_loss_takes_the_datas_curvature():
  x, y, params = _problem('binary')
  cfg = config.TrainConfig(loss='hinge', learning_rate='auto', reg=0.0, batch_size=0)
  lr, info = step_size.derive(cfg, params, x, y, None, len(x), len(x))
  xt = np.concatenate([x, np.ones((len(x), 1), np.float32)], axis=1).astype(np.float64)
  want = np.linalg.eigvalsh(xt.T @ xt / len(x))[-1]
  assert 'piecewise linear' in info['method']
  np.testing.assert_allclose(lr, 1.0 / want, rtol=0.02)


def test_momentum_scales_the_step_and_adam_and_lbfgs_take_none_of_it():
  x, y, params = _problem('class')
  base = config.TrainConfig(loss='softmax', learning_rate='auto', batch_size=0)
  plain, _ = step_size.derive(base, params, x, y, None, len(x), len(x))
  heavy, info = step_size.derive(
    dataclasses.replace(base, optimizer='momentum', momentum=0.9), params, x, y, None, len(x), len(x)
  )
  np.testing.assert_allclose(heavy, plain * 0.1, rtol=1e-6)
  assert 'momentum' in info['method']
  adam, info = step_size.derive(dataclasses.replace(base, optimizer='adam'), params, x, y, None, 1, len(x))
  assert adam == step_size.ADAM_STEP and 'adam' in info['method']


def test_an_unresolved_auto_rate_is_nan_and_a_bad_value_is_refused():
  cfg = config.TrainConfig(learning_rate='auto')
  cfg.validate()
  from linear_jax.optim import step  # pylint: disable=import-outside-toplevel

  assert np.isnan(float(step.hparams(cfg).learning_rate))
  with pytest.raises(ValueError, match="learning_rate must be a number > 0 or 'auto'"):
    config.TrainConfig(learning_rate='fast').validate()


def _digits():
  return data.prepare(data.load_builtin('digits'), 'digits', seed=0)


def test_every_builtin_loss_trains_with_the_command_lines_defaults():
  """Each loss, on data of its kind, with `config.COMMAND_LINE` (auto step, adaptive schedule): no divergence,
  and the objective falls by a tenth of its start or more in a few epochs."""
  digits = _digits()
  binary = data.prepare(data.load_builtin('breast_cancer'), 'breast_cancer', seed=0)
  real = data.prepare(data.load_builtin('diabetes'), 'diabetes', seed=0)
  kinds = {'class': digits, 'binary': binary, 'real': real}
  for name, loss in sorted(losses.LOSSES.items()):
    if loss.targets == 'binary' and name not in ('hinge', 'logistic', 'sigmoid_l2'):
      continue
    cfg = dataclasses.replace(config.COMMAND_LINE, loss=name, epochs=8)
    result = train.fit(cfg, kinds[loss.targets])
    first, last = result.history[0]['initial_loss'], result.history[-1]['train_loss']
    assert all(np.isfinite(m['train_pass_loss']) for m in result.history), name
    assert last < 0.9 * first, (name, first, last)
    assert result.learning_rate_info['learning_rate'] == result.learning_rate > 0


def test_a_loss_from_the_users_file_without_a_gradient_trains_with_the_derived_step(tmp_path):
  path = tmp_path / 'my_loss.py'
  path.write_text(
    textwrap.dedent(
      """
      import jax.numpy as jnp
      import linear_jax as lj

      def squared_softplus_svm(scores, labels):
        correct = jnp.take_along_axis(scores, labels[:, None], axis=1)
        margins = jnp.logaddexp(0.0, scores - correct + 1.0) ** 2
        return jnp.sum(margins, axis=1) - jnp.log(2.0) ** 2

      LOSS = lj.Loss(squared_softplus_svm, 'class')
      """
    )
  )
  cfg = dataclasses.replace(config.COMMAND_LINE, loss=f'{path}:LOSS', grad='autodiff', epochs=10)
  result = train.fit(cfg, _digits())
  assert 'power iteration' in result.learning_rate_info['method']
  assert result.history[-1]['val_accuracy'] > 0.85


def test_the_step_is_measured_again_after_the_first_epoch_and_used_from_the_second():
  x, y, _ = _problem('class')
  ds = data.prepare(build.from_arrays(x, y), 'small', val_fraction=0.0, test_fraction=0.0, seed=0)
  cfg = config.TrainConfig(loss='softmax', learning_rate='auto', reg=1e-3, batch_size=0, epochs=4)
  result = train.fit(cfg, ds)
  info = result.learning_rate_info
  # Full batch: each step is 1 / the largest eigenvalue of the Hessian, at the start and after one epoch,
  # from the whole matrix; the parameters after one epoch are those of a run of one epoch.
  x_std, y_std = np.asarray(ds.x_train), np.asarray(ds.y_train)
  start = train.fit(dataclasses.replace(cfg, epochs=1), ds)
  init = step.init_state(cfg, x.shape[1], 3, step.hparams(cfg), 1)[0]
  lam_start = _hessian_max('softmax', init, x_std, y_std, 1e-3)
  lam_later = _hessian_max('softmax', start.params, x_std, y_std, 1e-3)
  np.testing.assert_allclose(info['at_start']['learning_rate'], 1 / lam_start, rtol=0.02)
  np.testing.assert_allclose(result.learning_rate, 1 / lam_later, rtol=0.02)
  assert start.learning_rate == info['at_start']['learning_rate'] != result.learning_rate
  assert info['method'].startswith('after the first epoch') and info['learning_rate'] == result.learning_rate
  # The step recorded for each epoch: the first, then the one measured after it (that the epochs train
  # with it, the resumed run below shows).
  assert [m['learning_rate'] for m in result.history[:2]] == [start.learning_rate, result.learning_rate]
  # A run of one epoch, and Adam, keep their first step.
  assert 'at_start' not in start.learning_rate_info
  adam = train.fit(dataclasses.replace(cfg, optimizer='adam', batch_size=16), ds)
  assert adam.learning_rate == step_size.ADAM_STEP and 'at_start' not in adam.learning_rate_info


def test_a_curvature_that_is_not_finite_after_the_first_epoch_keeps_the_first_step(monkeypatch):
  x, y, _ = _problem('class')
  ds = data.prepare(build.from_arrays(x, y), 'small', val_fraction=0.0, test_fraction=0.0, seed=0)
  cfg = config.TrainConfig(loss='softmax', learning_rate='auto', batch_size=0, epochs=3)
  derive, calls = step_size.derive, []

  def second_overflows(*args):
    calls.append(1)
    if len(calls) == 2:
      raise step_size.NotFinite('the curvature is not finite')
    return derive(*args)

  monkeypatch.setattr(step_size, 'derive', second_overflows)
  result = train.fit(cfg, ds)
  assert len(calls) == 2 and len(result.history) == 3
  info = result.learning_rate_info
  assert (
    result.learning_rate == info['at_start']['learning_rate'] and 'not finite' in info['not_measured_again']
  )
  assert {m['learning_rate'] for m in result.history} == {result.learning_rate}


@pytest.mark.parametrize('stop', [1, 3])
def test_a_run_resumed_after_the_first_epoch_keeps_the_step_measured_again(tmp_path, stop):
  """Stopped after epoch 1 (the step not measured again yet) or 3 (measured, and in the checkpoint):
  the resumed run ends bit-for-bit as an uninterrupted one, which it can only if its epochs after the
  first trained with the step measured again."""
  ds = _digits()
  cfg = dataclasses.replace(config.COMMAND_LINE, loss='squared_hinge', epochs=5, tol_on='none')
  whole = train.fit(cfg, ds)

  def stop_after(metrics):
    if metrics['epoch'] == stop:
      raise KeyboardInterrupt

  assert train.fit(cfg, ds, workdir=str(tmp_path), on_epoch=stop_after).interrupted
  again = train.fit(cfg, ds, workdir=str(tmp_path), resume=True)
  assert again.resumed_from == stop and again.learning_rate == whole.learning_rate
  assert again.learning_rate_info == whole.learning_rate_info
  assert whole.learning_rate > 2 * whole.learning_rate_info['at_start']['learning_rate']  # 4x on digits
  np.testing.assert_array_equal(np.asarray(again.params.W), np.asarray(whole.params.W))


def test_the_curvature_program_draws_no_random_bits():
  # Its starting vectors come from the host: random bits drawn inside would bring JAX's threefry into
  # the program, four times the rest of its lowering and loading.
  x, y, params = _problem('class')
  starts = step_size._starts(0, params, len(x), x.shape[1], np.float32)  # pylint: disable=protected-access
  args = (params, x, y, None, np.float32(1e-3), {}, starts, np.float32(0.0))
  curvatures = step_size._curvatures  # pylint: disable=protected-access
  traced = curvatures.trace(*args, loss='softmax', penalty='l2', iterations=3)
  jaxpr = str(traced.jaxpr)  # nested programs appear by name (`_threefry_split`, ...)
  assert 'threefry' not in jaxpr and 'random_bits' not in jaxpr and 'random_wrap' not in jaxpr
  assert 'scan' in jaxpr or 'while' in jaxpr  # the power iterations are in it
