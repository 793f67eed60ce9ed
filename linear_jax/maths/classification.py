"""The lecture's multiclass losses of the scores, each beside its hand-derived score gradient.

The SVM (Weston–Watkins) and softmax cross-entropy, on `[N, C]` scores and
`[N]` integer labels; the binary losses are in `binary.py`. The gradients use
no autodiff; docs/derivations.md derives each, and `losses.py` registers them
under their names (`svm`, `softmax`). A classification loss of a user's own
calls the shape contract of its kind first (`assert_class_shapes` here,
`binary.assert_binary_shapes`), as these do: chex assertions on static shapes,
free under `jit`.
"""

import chex
import jax
import jax.numpy as jnp


def assert_class_shapes(scores: chex.Array, labels: chex.Array) -> None:
  """Shape contract of a classification loss: `[N, C]` float scores, `[N]` labels (free under `jit`)."""
  chex.assert_rank([scores, labels], [2, 1])
  chex.assert_type(scores, float)
  chex.assert_equal_shape_prefix([scores, labels], 1)


def _onehot(labels, num_classes, dtype):
  return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def svm_margins(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """`[N, C]` margins `s_j − s_{y_i} + Δ`, with the `j = y_i` entry set to 0."""
  labels = labels.astype(jnp.int32)
  correct = jnp.take_along_axis(scores, labels[:, None], axis=-1)
  m = scores - correct + margin
  return jnp.where(jax.nn.one_hot(labels, scores.shape[-1], dtype=bool), 0.0, m)


def multiclass_svm(scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0) -> jax.Array:
  """Weston–Watkins multiclass SVM, `L_i = Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ)`.

  Args:
    scores: `[N, C]` class scores.
    labels: `[N]` integers in `[0, C)`.
    margin: Δ ≥ 0.

  Returns:
    `[N]` losses.
  """
  assert_class_shapes(scores, labels)
  return jnp.sum(jax.nn.relu(svm_margins(scores, labels, margin)), axis=-1)


def multiclass_svm_score_grad(
  scores: chex.Array, labels: chex.Array, margin: chex.Numeric = 1.0
) -> jax.Array:
  """SVM: `dL_i/ds_j = 1[m_ij > 0]` for `j ≠ y_i`, `dL_i/ds_{y_i} = −Σ_{j≠y_i} 1[m_ij > 0]`.

  With margins `m_ij = s_j − s_{y_i} + Δ`. At `m_ij = 0` exactly (a kink) this
  picks the subgradient 0, as `jax.nn.relu` does.
  """
  assert_class_shapes(scores, labels)
  active = (svm_margins(scores, labels, margin) > 0).astype(scores.dtype)
  onehot = _onehot(labels, scores.shape[-1], scores.dtype)
  return active - onehot * jnp.sum(active, axis=-1, keepdims=True)


def softmax_cross_entropy(scores: chex.Array, labels: chex.Array) -> jax.Array:
  """Per-example softmax cross-entropy, `L_i = −log softmax(s_i)[y_i]`.

  Written `logsumexp(s) − s_y`, never `log(softmax(s))`, so it is finite for
  any finite scores and unchanged when every score shifts by a constant.

  Args:
    scores: `[N, C]` class scores.
    labels: `[N]` integers in `[0, C)`.

  Returns:
    `[N]` losses.
  """
  assert_class_shapes(scores, labels)
  labels = labels.astype(jnp.int32)
  correct = jnp.take_along_axis(scores, labels[:, None], axis=-1)[:, 0]
  return jax.nn.logsumexp(scores, axis=-1) - correct


def softmax_cross_entropy_score_grad(scores: chex.Array, labels: chex.Array) -> jax.Array:
  """Softmax cross-entropy: `dL_i/ds = softmax(s_i) − onehot(y_i)`."""
  assert_class_shapes(scores, labels)
  return jax.nn.softmax(scores, axis=-1) - _onehot(labels, scores.shape[-1], scores.dtype)
