"""The lecture's binary losses of one score per example, each beside its hand-derived score gradient.

The hinge, the logistic loss (sigmoid cross-entropy) and the sigmoid unit with
squared error, on `[N, 1]` scores and `[N]` labels in `{0, 1}`; the multiclass
losses are in `classification.py`. The gradients use no autodiff;
docs/derivations.md derives each, and `losses.py` registers them under their
names (`hinge`, `logistic`, `sigmoid_l2`).
"""

import chex
import jax
import jax.numpy as jnp

from linear_jax.maths.classification import assert_class_shapes


def assert_binary_shapes(scores: chex.Array, labels: chex.Array) -> None:
  """Shape contract of a binary loss: `[N, 1]` float scores, `[N]` labels in `{0, 1}`."""
  chex.assert_shape(scores, (None, 1))
  assert_class_shapes(scores, labels)


def _binary(targets, s):
  """`[N]` 0/1 labels and `[N, 1]` scores -> (±1 labels, `[N]` scores)."""
  return 2.0 * targets.astype(s.dtype) - 1.0, s[:, 0]


def hinge_margins(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """`[N]` values `Δ − ỹ s` whose positive part is the binary hinge loss."""
  y, s = _binary(labels, scores)
  return margin - y * s


def binary_hinge(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """Binary hinge, `L_i = max(0, Δ − ỹ_i s_i)` with `ỹ = 2y − 1 ∈ {−1, +1}`.

  Args:
    scores: `[N, 1]` scores.
    labels: `[N]` labels in `{0, 1}`.
    margin: Δ ≥ 0.

  Returns:
    `[N]` losses.
  """
  assert_binary_shapes(scores, labels)
  return jax.nn.relu(hinge_margins(scores, labels, margin))


def binary_hinge_score_grad(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """Binary hinge: `dL_i/ds = −ỹ_i · 1[Δ − ỹ_i s_i > 0]`, `ỹ = 2y − 1`."""
  assert_binary_shapes(scores, labels)
  y, _ = _binary(labels, scores)
  return jnp.where(hinge_margins(scores, labels, margin) > 0, -y, 0.0)[:, None]


def logistic(scores: chex.Array, labels: chex.Array) -> jax.Array:
  """Sigmoid cross-entropy, `L_i = −y log σ(s) − (1 − y) log(1 − σ(s))`.

  Uses `log σ(s) = log_sigmoid(s)` and `log(1 − σ(s)) = log_sigmoid(−s)`, so
  it stays finite for scores of any size.

  Args:
    scores: `[N, 1]` scores.
    labels: `[N]` labels in `{0, 1}`.

  Returns:
    `[N]` losses.
  """
  assert_binary_shapes(scores, labels)
  s = scores[:, 0]
  y = labels.astype(s.dtype)
  return -(y * jax.nn.log_sigmoid(s) + (1.0 - y) * jax.nn.log_sigmoid(-s))


def logistic_score_grad(scores: chex.Array, labels: chex.Array) -> jax.Array:
  """Sigmoid cross-entropy: `dL_i/ds = σ(s_i) − y_i`."""
  assert_binary_shapes(scores, labels)
  return jax.nn.sigmoid(scores) - labels.astype(scores.dtype)[:, None]


def sigmoid_l2(scores: chex.Array, labels: chex.Array) -> jax.Array:
  """The lecture's sigmoid unit with squared error, `L_i = (y_i − σ(s_i))²`.

  Args:
    scores: `[N, 1]` scores.
    labels: `[N]` labels in `{0, 1}`.

  Returns:
    `[N]` losses.
  """
  assert_binary_shapes(scores, labels)
  s = scores[:, 0]
  return jnp.square(labels.astype(s.dtype) - jax.nn.sigmoid(s))


def sigmoid_l2_score_grad(scores: chex.Array, labels: chex.Array) -> jax.Array:
  """Sigmoid + squared error: `dL_i/ds = −2 (y_i − σ_i) σ_i (1 − σ_i)`, `σ_i = σ(s_i)`."""
  assert_binary_shapes(scores, labels)
  sig = jax.nn.sigmoid(scores)
  return -2.0 * (labels.astype(scores.dtype)[:, None] - sig) * sig * (1.0 - sig)
