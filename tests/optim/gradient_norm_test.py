"""`‖∇f‖_∞` of the full objective: autodiff's value, one compiled program for new values and weights."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_jax.data import datasets as data
from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.optim import gradient_norm
from linear_jax.optim import step as step_lib


def _blobs():
  return data.prepare(data.blobs(200, 4, 3, seed=1), 'blobs', 0.2, 0.2, seed=1)


def _reference_grad_norm(params, x, y, reg, margin, weights=None):
  """`‖∇f‖_∞` by autodiff of the svm objective, independent of the gradient sources."""
  g = jax.grad(losses.unchecked_objective)(params, x, y, 'svm', reg, 'l2', {'margin': margin}, weights)
  return max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g))


def test_full_grad_norm_compiles_once_for_new_values():
  # decay_epochs=19.0: a structure no other test compiles, so the first call adds exactly its program.
  ds = _blobs()
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  cfg = config.TrainConfig(loss='svm', reg=1e-2, tol_on='grad_norm', decay_epochs=19.0)
  params, _ = step_lib.init_state(cfg, x.shape[1], 3, None, 1)
  program = gradient_norm._grad_norm  # pylint: disable=protected-access
  before = program._cache_size()
  first = gradient_norm.full_grad_norm(cfg, params, x, y, step_lib.hparams(cfg))
  assert program._cache_size() == before + 1
  assert first == pytest.approx(_reference_grad_norm(params, x, y, 1e-2, 1.0), rel=1e-5)
  # New reg, margin, seed and parameters: the same program, which computes the new objective's gradient.
  other = dataclasses.replace(cfg, reg=0.3, loss_hparams={'margin': 2.5}, seed=7, learning_rate=0.01)
  moved = params._replace(W=params.W * 400.0 + 0.5, b=params.b - 0.2)
  second = gradient_norm.full_grad_norm(other, moved, x, y, step_lib.hparams(other))
  assert program._cache_size() == before + 1
  assert second == pytest.approx(_reference_grad_norm(moved, x, y, 0.3, 2.5), rel=1e-5)
  stale = _reference_grad_norm(moved, x, y, 1e-2, 1.0)  # what the first call's reg and margin would give
  assert abs(second - stale) > 1e-2 * stale  # so the new values, not baked-in ones, reached the program
  # Sample weights give the weighted mean's gradient.
  w = jnp.asarray(np.linspace(0.5, 2.0, len(y)), x.dtype)
  weighted = gradient_norm.full_grad_norm(other, moved, x, y, step_lib.hparams(other), w)
  assert weighted == pytest.approx(_reference_grad_norm(moved, x, y, 0.3, 2.5, w), rel=1e-5)
