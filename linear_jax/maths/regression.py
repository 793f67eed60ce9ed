"""The lecture's regression losses of the scores, each beside its hand-derived score gradient.

Squared error (`l2`) and absolute error (`l1`), summed over the outputs, on
`[N, C]` scores and `[N]` (C = 1) or `[N, C]` real targets. The gradients use
no autodiff; docs/derivations.md derives each, and `losses.py` registers them
under their names. A regression loss of a user's own calls
`assert_real_shapes` first, as these do (free under `jit`).
"""

import chex
import jax
import jax.numpy as jnp


def assert_real_shapes(scores: chex.Array, targets: chex.Array) -> None:
  """Shape contract of a regression loss: `[N, C]` float scores, `[N]` (C = 1) or `[N, C]` targets."""
  chex.assert_rank(scores, 2)
  chex.assert_rank(targets, {1, 2})
  chex.assert_type(scores, float)
  chex.assert_equal_shape_prefix([scores, targets], 1)
  if targets.ndim == 2:
    chex.assert_equal_shape([scores, targets])
  else:
    chex.assert_shape(scores, (None, 1))


def real_targets(targets: chex.Array, s: chex.Array) -> jax.Array:
  """Regression targets as `[N, C]` in the scores' dtype."""
  t = targets.astype(s.dtype)
  return t[:, None] if t.ndim == 1 else t


def l2_regression(scores: chex.Array, targets: chex.Array) -> jax.Array:
  """Squared error summed over outputs, `L_i = Σ_c (y_ic − s_ic)²` (no ½).

  Args:
    scores: `[N, C]` predictions.
    targets: `[N]` (when C = 1) or `[N, C]` real targets.

  Returns:
    `[N]` losses.
  """
  assert_real_shapes(scores, targets)
  return jnp.sum(jnp.square(real_targets(targets, scores) - scores), axis=-1)


def l2_regression_score_grad(scores: chex.Array, targets: chex.Array) -> jax.Array:
  """Squared error: `dL_i/ds_c = −2 (y_ic − s_ic) = −2 δ_ic`."""
  assert_real_shapes(scores, targets)
  return -2.0 * (real_targets(targets, scores) - scores)


def abs_value(r: chex.Array) -> jax.Array:
  """`|r|` written `sign(r)·r`: the same value, and autodiff then takes the
  subgradient 0 at `r = 0` (the minimum-norm one), as the hand-derived
  gradients do; `jnp.abs` would give 1 there and disagree at a kink."""
  return jnp.sign(r) * r


def l1_residuals(scores: chex.Array, targets: chex.Array) -> jax.Array:
  """`[N, C]` residuals `y − s`, whose sign flips at each kink of the L1 loss."""
  return real_targets(targets, scores) - scores


def l1_regression(scores: chex.Array, targets: chex.Array) -> jax.Array:
  """Absolute error summed over outputs, `L_i = Σ_c |y_ic − s_ic|`.

  Args:
    scores: `[N, C]` predictions.
    targets: `[N]` (when C = 1) or `[N, C]` real targets.

  Returns:
    `[N]` losses.
  """
  assert_real_shapes(scores, targets)
  return jnp.sum(abs_value(l1_residuals(scores, targets)), axis=-1)


def l1_regression_score_grad(scores: chex.Array, targets: chex.Array) -> jax.Array:
  """Absolute error: `dL_i/ds_c = sign(s_ic − y_ic)` (subgradient 0 at a tie)."""
  assert_real_shapes(scores, targets)
  return -jnp.sign(l1_residuals(scores, targets))
