"""Per-example losses on scores, weight penalties, and the objective.

Every loss is a pure function `(scores, targets, margin) -> [N]` of the scores
`s = Wx + b`, so the linear layer is shared and a hand-derived gradient needs
only dL/ds (see `grads.py`). Targets come in three kinds:

* `'class'`: `[N]` integer labels in `[0, C)`, `C ≥ 2` scores per example;
* `'binary'`: `[N]` labels in `{0, 1}`, a single score per example (`C = 1`);
* `'real'`: `[N]` (`C = 1`) or `[N, C]` real targets for regression.
"""

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from linear_jax import model
from linear_jax import validation


def _binary(targets, s):
  """`[N]` 0/1 labels and `[N, 1]` scores -> (±1 labels, `[N]` scores)."""
  return 2.0 * targets.astype(s.dtype) - 1.0, s[:, 0]


def _real(targets, s):
  """Regression targets as `[N, C]` in the scores' dtype."""
  t = targets.astype(s.dtype)
  return t[:, None] if t.ndim == 1 else t


def multiclass_svm(scores, labels, margin=1.0):
  """Weston–Watkins multiclass SVM, `L_i = Σ_{j≠y_i} max(0, s_j − s_{y_i} + Δ)`.

  Args:
    scores: `[N, C]` class scores.
    labels: `[N]` integers in `[0, C)`.
    margin: Δ ≥ 0.

  Returns:
    `[N]` losses.
  """
  chex.assert_rank(scores, 2)
  return jnp.sum(jax.nn.relu(svm_margins(scores, labels, margin)), axis=-1)


def svm_margins(scores, labels, margin=1.0):
  """`[N, C]` margins `s_j − s_{y_i} + Δ`, with the `j = y_i` entry set to 0."""
  labels = labels.astype(jnp.int32)
  correct = jnp.take_along_axis(scores, labels[:, None], axis=-1)
  m = scores - correct + margin
  return jnp.where(jax.nn.one_hot(labels, scores.shape[-1], dtype=bool), 0.0, m)


def softmax_cross_entropy(scores, labels, margin=None):
  """Per-example softmax cross-entropy, `L_i = −log softmax(s_i)[y_i]`.

  Written `logsumexp(s) − s_y`, never `log(softmax(s))`, so it is finite for
  any finite scores and unchanged when every score shifts by a constant.

  Args:
    scores: `[N, C]` class scores.
    labels: `[N]` integers in `[0, C)`.
    margin: unused; every loss takes it so all share one signature.

  Returns:
    `[N]` losses.
  """
  del margin
  chex.assert_rank(scores, 2)
  labels = labels.astype(jnp.int32)
  correct = jnp.take_along_axis(scores, labels[:, None], axis=-1)[:, 0]
  return jax.nn.logsumexp(scores, axis=-1) - correct


def binary_hinge(scores, labels, margin=1.0):
  """Binary hinge, `L_i = max(0, Δ − ỹ_i s_i)` with `ỹ = 2y − 1 ∈ {−1, +1}`.

  Args:
    scores: `[N, 1]` scores.
    labels: `[N]` labels in `{0, 1}`.
    margin: Δ ≥ 0.

  Returns:
    `[N]` losses.
  """
  return jax.nn.relu(hinge_margins(scores, labels, margin))


def hinge_margins(scores, labels, margin=1.0):
  """`[N]` values `Δ − ỹ s` whose positive part is the binary hinge loss."""
  y, s = _binary(labels, scores)
  return margin - y * s


def logistic(scores, labels, margin=None):
  """Sigmoid cross-entropy, `L_i = −y log σ(s) − (1 − y) log(1 − σ(s))`.

  Uses `log σ(s) = log_sigmoid(s)` and `log(1 − σ(s)) = log_sigmoid(−s)`, so
  it stays finite for scores of any size.

  Args:
    scores: `[N, 1]` scores.
    labels: `[N]` labels in `{0, 1}`.
    margin: unused.

  Returns:
    `[N]` losses.
  """
  del margin
  s = scores[:, 0]
  y = labels.astype(s.dtype)
  return -(y * jax.nn.log_sigmoid(s) + (1.0 - y) * jax.nn.log_sigmoid(-s))


def sigmoid_l2(scores, labels, margin=None):
  """The lecture's sigmoid unit with squared error, `L_i = (y_i − σ(s_i))²`.

  Args:
    scores: `[N, 1]` scores.
    labels: `[N]` labels in `{0, 1}`.
    margin: unused.

  Returns:
    `[N]` losses.
  """
  del margin
  s = scores[:, 0]
  return jnp.square(labels.astype(s.dtype) - jax.nn.sigmoid(s))


def l2_regression(scores, targets, margin=None):
  """Squared error summed over outputs, `L_i = Σ_c (y_ic − s_ic)²` (no ½).

  Args:
    scores: `[N, C]` predictions.
    targets: `[N]` (when C = 1) or `[N, C]` real targets.
    margin: unused.

  Returns:
    `[N]` losses.
  """
  del margin
  return jnp.sum(jnp.square(_real(targets, scores) - scores), axis=-1)


def _abs(r):
  # |r| written sign(r)·r: the same value, and autodiff then takes the
  # subgradient 0 at r = 0 (the minimum-norm one), as grads.py does; jnp.abs
  # would give 1 there and disagree with the hand-derived gradient at a kink.
  return jnp.sign(r) * r


def l1_regression(scores, targets, margin=None):
  """Absolute error summed over outputs, `L_i = Σ_c |y_ic − s_ic|`.

  Args:
    scores: `[N, C]` predictions.
    targets: `[N]` (when C = 1) or `[N, C]` real targets.
    margin: unused.

  Returns:
    `[N]` losses.
  """
  del margin
  return jnp.sum(_abs(_real(targets, scores) - scores), axis=-1)


def _l1_residuals(scores, targets, margin=None):
  del margin
  return _real(targets, scores) - scores


class Loss(NamedTuple):
  """A loss of the scores.

  Attributes:
    value: `(scores [N, C], targets, margin) -> [N]` per-example losses.
    targets: `'class'`, `'binary'` or `'real'` (see the module docstring).
    kinks: `None` for a smooth loss; otherwise `(scores, targets, margin) ->`
      an array whose entries change sign exactly where the loss has a kink,
      which the gradient checker uses to tell kinks from wrong gradients.
  """

  value: Callable
  targets: str
  kinks: Callable | None = None


LOSSES = {
  'svm': Loss(multiclass_svm, 'class', svm_margins),
  'softmax': Loss(softmax_cross_entropy, 'class'),
  'hinge': Loss(binary_hinge, 'binary', hinge_margins),
  'logistic': Loss(logistic, 'binary'),
  'sigmoid_l2': Loss(sigmoid_l2, 'binary'),
  'l2': Loss(l2_regression, 'real'),
  'l1': Loss(l1_regression, 'real', _l1_residuals),
}


def l2_penalty(w):
  """`R(W) = Σ W²`."""
  return jnp.sum(jnp.square(w))


def l1_penalty(w):
  """`R(W) = Σ |W|`."""
  return jnp.sum(_abs(w))


PENALTIES = {'l2': l2_penalty, 'l1': l1_penalty}


def get_loss(name):
  """The `Loss` record called `name`; a `ValueError` lists the valid names."""
  validation.check_name('loss', name, LOSSES)
  return LOSSES[name]


def masked_mean(values, mask=None):
  """Mean of `[N]` values, over the entries where `mask` is 1 if given."""
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  # jnp.where, not a product, so a padded row's inf or NaN cannot leak in.
  total = jnp.sum(jnp.where(mask > 0, values, 0.0))
  return total / jnp.maximum(jnp.sum(mask), 1.0)


def objective(
  params,
  x,
  targets,
  loss='softmax',
  reg=0.0,
  penalty='l2',
  margin=1.0,
  mask=None,
):
  """The empirical risk `L = (1/N) Σ_i L_i(f(x_i, W), y_i) + reg · R(W)`.

  Inputs are checked on the host when they are concrete arrays (shape checks
  always); inside `jit` only shapes can be checked, so data must be validated
  where it enters (`linear_jax.data` does).

  Args:
    params: `Params`; the bias is never penalized, also in bias-trick form.
    x: `[N, D]` inputs.
    targets: labels or real targets, as the loss expects.
    loss: a name from `LOSSES`.
    reg: regularization strength ≥ 0.
    penalty: `'l2'` or `'l1'`.
    margin: Δ of the `svm` and `hinge` losses.
    mask: optional `[N]` 0/1 weights; the mean is over the rows marked 1
      (padding the last mini-batch keeps shapes static).

  Returns:
    A scalar.
  """
  spec = get_loss(loss)
  validation.check_name('penalty', penalty, PENALTIES)
  validation.check_inputs(params, x, targets, spec.targets, reg=reg, margin=margin)
  return unchecked_objective(params, x, targets, loss, reg, penalty, margin, mask)


def unchecked_objective(params, x, targets, loss='softmax', reg=0.0, penalty='l2', margin=1.0, mask=None):
  """`objective` without the host checks: for use inside `jit`, `vmap` and `grad`.

  Arguments as for `objective`; validate the data where it enters instead.
  """
  per_example = LOSSES[loss].value(model.scores(params, x), targets, margin)
  return masked_mean(per_example, mask) + reg * PENALTIES[penalty](model.penalized_weights(params))
