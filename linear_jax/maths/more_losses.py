"""Three more losses, added as a user adds one: `Loss` records and `register_loss`.

Nothing else in linear_jax knows them by name: they train, sweep, search and
pass the gradient checker through the same public path as a loss in a user's
own file. Their score gradients are derived by hand in docs/derivations.md.

* `squared_hinge`: the L2-SVM, Weston–Watkins form, `L_i = Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ)²`;
* `huber`: Huber regression, quadratic within `δ` of the target, linear beyond;
* `crammer_singer`: the Crammer–Singer multiclass hinge,
  `L_i = max_j (s_j + Δ·1[j ≠ y_i]) − s_{y_i}` (optax's `losses.multiclass_hinge_loss` at Δ = 1).
"""

import math

import chex
import jax
import jax.numpy as jnp

from linear_jax.maths.classification import assert_class_shapes
from linear_jax.maths.classification import svm_margins
from linear_jax.maths.losses import Loss
from linear_jax.maths.losses import register_loss
from linear_jax.maths.regression import assert_real_shapes
from linear_jax.maths.regression import real_targets


def squared_hinge(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """`L_i = Σ_{j≠y_i} max(0, m_ij)²`, `m_ij = s_j − s_{y_i} + Δ`: `[N]`."""
  assert_class_shapes(scores, labels)
  return jnp.sum(jnp.square(jax.nn.relu(svm_margins(scores, labels, margin))), axis=-1)


def squared_hinge_score_grad(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """`dL_i/ds_j = 2 max(0, m_ij)` for `j ≠ y_i`; `dL_i/ds_{y_i} = −Σ_{j≠y_i} 2 max(0, m_ij)`."""
  assert_class_shapes(scores, labels)
  active = 2.0 * jax.nn.relu(svm_margins(scores, labels, margin))
  onehot = jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
  return active - onehot * jnp.sum(active, axis=-1, keepdims=True)


def huber(scores: chex.Array, targets: chex.Array, delta: chex.Numeric = 1.0) -> jax.Array:
  """`L_i = Σ_c h(s_ic − y_ic)`, `h(r) = r²/2` for `|r| ≤ δ`, `δ(|r| − δ/2)` beyond: `[N]`.

  The form of optax's `huber_loss`, summed over outputs.
  """
  assert_real_shapes(scores, targets)
  r = scores - real_targets(targets, scores)
  a = jnp.abs(r)
  return jnp.sum(jnp.where(a <= delta, 0.5 * jnp.square(r), delta * (a - 0.5 * delta)), axis=-1)


def huber_score_grad(scores: chex.Array, targets: chex.Array, delta: chex.Numeric = 1.0) -> jax.Array:
  """`dL_i/ds_ic = clip(s_ic − y_ic, −δ, δ)`."""
  assert_real_shapes(scores, targets)
  return jnp.clip(scores - real_targets(targets, scores), -delta, delta)


def _augmented(scores, labels, margin):
  """`a_ij = s_ij + Δ·1[j ≠ y_i]`, whose maximum minus `s_{y_i}` is the Crammer–Singer loss."""
  onehot = jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
  return scores + margin * (1.0 - onehot), onehot


def crammer_singer(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """`L_i = max_j (s_ij + Δ·1[j ≠ y_i]) − s_{y_i}`: `[N]` (0 when every margin is met)."""
  assert_class_shapes(scores, labels)
  a, onehot = _augmented(scores, labels, margin)
  return jnp.max(a, axis=-1) - jnp.sum(scores * onehot, axis=-1)


def crammer_singer_score_grad(
  scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0
) -> jax.Array:
  """`dL_i/ds = onehot(j*) − onehot(y_i)`, `j* = argmax_j a_ij` (0 when `j* = y_i`).

  At a tie between the top two augmented scores (a kink) this picks the first
  index, as `jnp.argmax` does; the gradient checker treats ties as kinks.
  """
  assert_class_shapes(scores, labels)
  a, onehot = _augmented(scores, labels, margin)
  top = jax.nn.one_hot(jnp.argmax(a, axis=-1), scores.shape[-1], dtype=scores.dtype)
  return top - onehot


def crammer_singer_kinks(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """`a_ij − max_{k≠j} a_ik`: positive only at the argmax, so its sign changes exactly at a tie."""
  assert_class_shapes(scores, labels)
  a, _ = _augmented(scores, labels, margin)
  c = a.shape[-1]
  others = jnp.where(jnp.eye(c, dtype=bool)[None], -jnp.inf, a[:, None, :])  # [N, C (j), C (k)]
  return a - jnp.max(others, axis=-1)


SQUARED_HINGE = register_loss(
  'squared_hinge',
  Loss(squared_hinge, 'class', squared_hinge_score_grad, svm_margins, {'margin': 1.0}),
)
# δ = 0 would make every loss 0 (nothing to learn): δ is held above it.
HUBER = register_loss(
  'huber', Loss(huber, 'real', huber_score_grad, hparams={'delta': 1.0}, bounds={'delta': (1e-12, math.inf)})
)
CRAMMER_SINGER = register_loss(
  'crammer_singer',
  Loss(crammer_singer, 'class', crammer_singer_score_grad, crammer_singer_kinks, {'margin': 1.0}),
)
