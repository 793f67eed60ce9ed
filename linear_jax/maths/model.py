"""The linear score function f(x, W) = Wx + b, the bias trick and prediction."""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import inputs
from linear_jax.maths import validation


class Params(NamedTuple):
  """Parameters of a linear model in the lecture's notation.

  Attributes:
    W: `[C, D]` weights, one row per class: row `c` is the class template of
      the visual viewpoint and the normal of class `c`'s hyperplane in the
      geometric one.
    b: `[C]` biases, or `None` for the bias-trick form, where the bias is the
      last column of `W` and every input ends with the constant feature 1.
  """

  W: chex.Array
  b: chex.Array | None


def init_params(
  key: chex.PRNGKey, num_features: int, num_classes: int, scale: float = 1e-3, dtype: jnp.dtype = jnp.float32
) -> Params:
  """Small random weights, zero bias: at start every score is about 0.

  Args:
    key: a `jax.random` key.
    num_features: D, the input dimension.
    num_classes: C, the number of outputs (1 for binary and scalar regression).
    scale: standard deviation of the Gaussian weights.
    dtype: floating dtype of the parameters.

  Returns:
    `Params(W=[C, D], b=[C])`.
  """
  if not (validation.is_whole(num_features) and validation.is_whole(num_classes)):
    raise ValueError(
      f'init_params needs whole numbers num_features >= 1 and num_classes >= 1, got '
      f'num_features={num_features!r}, num_classes={num_classes!r}.'
    )
  if not hasattr(key, 'dtype'):  # a seed given where a key belongs: JAX's TypeError named neither
    raise ValueError(f'key must be a jax.random key (jax.random.PRNGKey({key!r})), got {type(key).__name__}.')
  s = validation.concrete(scale)
  if s is not None and not (np.ndim(s) == 0 and s.dtype.kind in 'iuf' and np.isfinite(s) and s >= 0):
    raise ValueError(f'scale must be one finite number >= 0, got {scale!r}.')  # NaN made a NaN W
  # The barrier keeps XLA from folding `scale` into the draw's arithmetic: the same bits whether
  # this runs op by op or inside a compiled program (`optim.step.init_state`'s).
  w = scale * jax.lax.optimization_barrier(jax.random.normal(key, (num_classes, num_features), dtype))
  return Params(W=w, b=jnp.zeros((num_classes,), dtype))


def scores(params: Params, x: chex.Array) -> chex.Array:
  """Class scores `s = Wx + b` for a batch, written row-wise as `x Wᵀ + b`.

  Args:
    params: `Params`; with `b=None` the bias is folded into `W` (bias trick)
      and `x` must already end with the constant-1 feature.
    x: `[N, D]` inputs (`[N, D + 1]` in the bias-trick form).

  Returns:
    `[N, C]` scores.
  """
  chex.assert_rank(x, 2)
  chex.assert_rank(params.W, 2)
  chex.assert_axis_dimension(x, 1, params.W.shape[1])
  if params.b is not None:
    chex.assert_shape(params.b, params.W.shape[:1])
  s = jnp.dot(x, params.W.T)
  if params.b is not None:
    s = s + params.b
  return s


def predict(params: Params, x: chex.Array) -> chex.Array:
  """Predicted labels: argmax of the scores for C ≥ 2, `score ≥ 0` for C = 1.

  Args:
    params: `Params`.
    x: `[N, D]` inputs.

  Returns:
    `[N]` integer labels.

  Raises:
    ValueError: `x` is not a non-empty `[N, D]` batch for `params`, or (for
      concrete arrays, read once on the host: `jit` the call to skip it) a
      value of `x` or of `params` is not finite: a NaN row has no class.
  """
  params, x = inputs.check_model_inputs(params, x)
  inputs.check_params(params)
  s = scores(params, x)
  if s.shape[-1] == 1:
    return (s[:, 0] >= 0).astype(jnp.int32)
  return jnp.argmax(s, axis=-1).astype(jnp.int32)


def softmax(s: chex.Array) -> chex.Array:
  """Probabilities `P(Y=k|x) = exp(s_k) / Σ_j exp(s_j)` from `[N, C]` scores."""
  chex.assert_rank(s, 2)
  return jax.nn.softmax(s, axis=-1)


def add_bias_feature(x: chex.Array) -> chex.Array:
  """Appends the constant feature 1: `[N, D]` -> `[N, D + 1]`."""
  chex.assert_rank(x, 2)
  return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


def fold_bias(params: Params) -> Params:
  """The bias trick: `Params(W, b)` -> `Params([W | b], None)`."""
  if params.b is None:
    raise ValueError('fold_bias: these params are already in bias-trick form.')
  chex.assert_rank(params.W, 2)
  chex.assert_shape(params.b, params.W.shape[:1])
  return Params(W=jnp.concatenate([params.W, params.b[:, None]], axis=1), b=None)


def unfold_bias(params: Params) -> Params:
  """Inverse of `fold_bias`: `Params([W | b], None)` -> `Params(W, b)`."""
  if params.b is not None:
    raise ValueError('unfold_bias: these params are not in bias-trick form.')
  chex.assert_rank(params.W, 2)
  return Params(W=params.W[:, :-1], b=params.W[:, -1])


def penalized_weights(params: Params) -> chex.Array:
  """The weights a penalty sees: all of `W` except the bias column, if folded."""
  return params.W if params.b is not None else params.W[:, :-1]
