"""Hand-derived gradients of every loss and penalty: no autodiff in this file.

Each loss contributes only `G = dL_i/ds_i`, the `[N, C]` gradient of the
per-example loss with respect to its scores; the linear layer `s = x Wᵀ + b`
then gives, once for all losses (the chain rule, see docs/derivations.md):

    dL/dW = (1/N) Gᵀ x        [C, D]  (shaped like W)
    dL/db = (1/N) Σ_i G_i     [C]

and the penalty adds `reg · dR/dW`, never to the bias.
"""

import jax
import jax.numpy as jnp

from linear_jax import losses
from linear_jax import model
from linear_jax import validation


def _onehot(labels, num_classes, dtype):
  return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def multiclass_svm_score_grad(scores, labels, margin=1.0):
  """SVM: `dL_i/ds_j = 1[m_ij > 0]` for `j ≠ y_i`, `dL_i/ds_{y_i} = −Σ_{j≠y_i} 1[m_ij > 0]`.

  With margins `m_ij = s_j − s_{y_i} + Δ`. At `m_ij = 0` exactly (a kink) this
  picks the subgradient 0, as `jax.nn.relu` does.
  """
  active = (losses.svm_margins(scores, labels, margin) > 0).astype(scores.dtype)
  onehot = _onehot(labels, scores.shape[-1], scores.dtype)
  return active - onehot * jnp.sum(active, axis=-1, keepdims=True)


def softmax_cross_entropy_score_grad(scores, labels, margin=None):
  """Softmax cross-entropy: `dL_i/ds = softmax(s_i) − onehot(y_i)`."""
  del margin
  return jax.nn.softmax(scores, axis=-1) - _onehot(labels, scores.shape[-1], scores.dtype)


def binary_hinge_score_grad(scores, labels, margin=1.0):
  """Binary hinge: `dL_i/ds = −ỹ_i · 1[Δ − ỹ_i s_i > 0]`, `ỹ = 2y − 1`."""
  y = 2.0 * labels.astype(scores.dtype) - 1.0
  active = losses.hinge_margins(scores, labels, margin) > 0
  return jnp.where(active, -y, 0.0)[:, None]


def logistic_score_grad(scores, labels, margin=None):
  """Sigmoid cross-entropy: `dL_i/ds = σ(s_i) − y_i`."""
  del margin
  return jax.nn.sigmoid(scores) - labels.astype(scores.dtype)[:, None]


def sigmoid_l2_score_grad(scores, labels, margin=None):
  """Sigmoid + squared error: `dL_i/ds = −2 (y_i − σ_i) σ_i (1 − σ_i)`, `σ_i = σ(s_i)`."""
  del margin
  sig = jax.nn.sigmoid(scores)
  return -2.0 * (labels.astype(scores.dtype)[:, None] - sig) * sig * (1.0 - sig)


def _as_matrix(targets, scores):
  t = targets.astype(scores.dtype)
  return t[:, None] if t.ndim == 1 else t


def l2_regression_score_grad(scores, targets, margin=None):
  """Squared error: `dL_i/ds_c = −2 (y_ic − s_ic) = −2 δ_ic`."""
  del margin
  return -2.0 * (_as_matrix(targets, scores) - scores)


def l1_regression_score_grad(scores, targets, margin=None):
  """Absolute error: `dL_i/ds_c = sign(s_ic − y_ic)` (subgradient 0 at a tie)."""
  del margin
  return jnp.sign(scores - _as_matrix(targets, scores))


SCORE_GRADS = {
  'svm': multiclass_svm_score_grad,
  'softmax': softmax_cross_entropy_score_grad,
  'hinge': binary_hinge_score_grad,
  'logistic': logistic_score_grad,
  'sigmoid_l2': sigmoid_l2_score_grad,
  'l2': l2_regression_score_grad,
  'l1': l1_regression_score_grad,
}


def l2_penalty_grad(w):
  """`d(Σ W²)/dW = 2W`."""
  return 2.0 * w


def l1_penalty_grad(w):
  """`d(Σ |W|)/dW = sign(W)` (subgradient 0 at W = 0)."""
  return jnp.sign(w)


PENALTY_GRADS = {'l2': l2_penalty_grad, 'l1': l1_penalty_grad}


def linear_layer_grad(params, x, g):
  """The chain rule through `s = x Wᵀ + b`, given `g = dL/ds` of shape `[N, C]`.

  Returns `Params(W=gᵀ x, b=Σ_i g_i)`, or `Params(W=gᵀ x, b=None)` in
  bias-trick form, where the bias column of `W` gets `Σ_i g_i` through the
  constant-1 feature of `x`.
  """
  dw = jnp.dot(g.T, x)
  db = None if params.b is None else jnp.sum(g, axis=0)
  return model.Params(W=dw, b=db)


def penalty_grad(params, penalty, reg):
  """`reg · dR/dW` shaped like `W`, zero on the bias column in bias-trick form."""
  dr = reg * PENALTY_GRADS[penalty](params.W)
  if params.b is None:
    dr = dr.at[:, -1].set(0.0)
  return dr


def unchecked_analytic_grad(params, x, targets, loss='softmax', reg=0.0, penalty='l2', margin=1.0, mask=None):
  """`analytic_grad` without the host checks: for use inside transforms."""
  s = model.scores(params, x)
  g = SCORE_GRADS[loss](s, targets, margin)
  if mask is None:
    g = g / s.shape[0]
  else:
    weight = mask.astype(s.dtype)
    g = jnp.where(weight[:, None] > 0, g, 0.0) / jnp.maximum(jnp.sum(weight), 1.0)
  grad = linear_layer_grad(params, x, g)
  return grad._replace(W=grad.W + penalty_grad(params, penalty, reg))


def analytic_grad(
  params,
  x,
  targets,
  loss='softmax',
  reg=0.0,
  penalty='l2',
  margin=1.0,
  mask=None,
):
  """Hand-derived gradient of `losses.objective`, with the structure of `params`.

  `dL/dW = (1/N) Gᵀ x + reg · dR/dW`, `dL/db = (1/N) Σ_i G_i`, where
  `G = SCORE_GRADS[loss](scores, targets, margin)`; with a mask, `1/N` becomes
  `1/Σ mask` and masked rows of `G` are zero. Arguments as for `objective`.
  """
  spec = losses.get_loss(loss)
  validation.check_name('penalty', penalty, PENALTY_GRADS)
  validation.check_inputs(params, x, targets, spec.targets, reg=reg, margin=margin)
  return unchecked_analytic_grad(params, x, targets, loss, reg, penalty, margin, mask)
