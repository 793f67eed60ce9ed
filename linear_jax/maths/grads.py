"""Hand-derived gradients of the objective: no autodiff in this file.

Each loss contributes only `G = dL_i/ds_i`, the `[N, C]` gradient of the
per-example loss with respect to its scores (its record's `score_grad`, see
`losses.py`); the linear layer `s = x Wᵀ + b` then gives, once for all losses
(the chain rule, see docs/derivations.md), with sample weights `w_i` (all 1
without them):

    dL/dW = Σ_i w_i G_iᵀ x_i / Σ_i w_i     [C, D]  (shaped like W)
    dL/db = Σ_i w_i G_i / Σ_i w_i          [C]

and the penalty adds `reg · dR/dW`, never to the bias.
"""

import chex
import jax
import jax.numpy as jnp

from linear_jax.maths import inputs
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.maths import validation


def l2_penalty_grad(w: chex.Array) -> jax.Array:
  """`d(Σ W²)/dW = 2W`."""
  return 2.0 * w


def l1_penalty_grad(w: chex.Array) -> jax.Array:
  """`d(Σ |W|)/dW = sign(W)` (subgradient 0 at W = 0)."""
  return jnp.sign(w)


PENALTY_GRADS = {'l2': l2_penalty_grad, 'l1': l1_penalty_grad}


def linear_layer_grad(params: model.Params, x: jax.Array, g: jax.Array) -> model.Params:
  """The chain rule through `s = x Wᵀ + b`, given `g = dL/ds` of shape `[N, C]`.

  Returns `Params(W=gᵀ x, b=Σ_i g_i)`, or `Params(W=gᵀ x, b=None)` in
  bias-trick form, where the bias column of `W` gets `Σ_i g_i` through the
  constant-1 feature of `x`.
  """
  chex.assert_rank([x, g], 2)
  chex.assert_equal_shape_prefix([x, g], 1)
  dw = jnp.dot(g.T, x)
  db = None if params.b is None else jnp.sum(g, axis=0)
  return model.Params(W=dw, b=db)


def penalty_grad(params: model.Params, penalty: str, reg: chex.Numeric) -> jax.Array:
  """`reg · dR/dW` shaped like `W`, zero on the bias column in bias-trick form."""
  chex.assert_rank(params.W, 2)
  dr = reg * PENALTY_GRADS[penalty](jnp.asarray(params.W))  # a NumPy W has no `.at`
  if params.b is None:
    dr = dr.at[:, -1].set(0.0)
  return dr


def check_penalty_and_reg(penalty, reg):
  """The checks that cost nothing: the penalty's name (a `KeyError` deep inside), and `reg` where it is
  concrete (a negative one made the objective fall without bound). The rows are the caller's to check."""
  validation.check_name('penalty', penalty, tuple(losses.PENALTIES))
  validation.check_nonnegative('reg', reg)


def missing_score_grad(loss: 'str | losses.Loss') -> ValueError:
  return ValueError(
    f'Loss {losses.loss_name(loss)!r} has no hand-derived score_grad, so there is no analytic gradient; '
    "give its Loss record a score_grad, or use grad='autodiff'."
  )


def unchecked_analytic_grad(
  params: model.Params,
  x: chex.Array,
  targets: chex.Array,
  loss: 'str | losses.Loss' = 'softmax',
  reg: chex.Numeric = 0.0,
  penalty: str = 'l2',
  loss_hparams: dict | None = None,
  mask: chex.Array | None = None,
) -> model.Params:
  """`analytic_grad` without the host checks: for use inside transforms.

  `loss_hparams` is a dict of the loss's hyperparameters; `mask` optional
  `[N]` sample weights ≥ 0.
  """
  chex.assert_rank(x, 2)
  chex.assert_equal_shape_prefix([x, targets], 1)
  if mask is not None:
    chex.assert_shape(mask, x.shape[:1])
  spec = losses.get_loss(loss)
  if spec.score_grad is None:
    raise missing_score_grad(spec)
  hp = spec.resolve_hparams(loss_hparams)
  s = model.scores(params, x)
  g = spec.score_grad(s, targets, **hp)
  chex.assert_equal_shape([g, s])
  if mask is None:
    g = g / s.shape[0]
  else:
    w = mask.astype(s.dtype)
    norm = jnp.sum(w)
    w = jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1.0), 0.0)
    g = jnp.where(w[:, None] > 0, w[:, None] * g, 0.0)
  grad = linear_layer_grad(params, x, g)
  grad = grad._replace(W=grad.W + penalty_grad(params, penalty, reg))
  # In each parameter's dtype, as jax.grad's: float32 weights and float64 rows gave float64 gradients.
  return jax.tree.map(lambda d, p: d.astype(jnp.result_type(p)), grad, params)


def analytic_grad(
  params: model.Params,
  x: chex.Array,
  targets: chex.Array,
  loss: 'str | losses.Loss' = 'softmax',
  reg: float = 0.0,
  penalty: str = 'l2',
  mask: chex.Array | None = None,
  **loss_hparams: float,
) -> model.Params:
  """Hand-derived gradient of `losses.objective`, with the structure of `params`.

  `dL/dW = Σ_i w_i G_iᵀ x_i / Σ_i w_i + reg · dR/dW`, `dL/db = Σ_i w_i G_i / Σ_i w_i`,
  where `G = loss.score_grad(scores, targets, **loss_hparams)` and `w = mask`
  (all 1 without it). Arguments as for `objective`; a loss without a
  `score_grad` is refused, naming it.
  """
  spec = losses.get_loss(loss)
  if spec.score_grad is None:
    raise missing_score_grad(spec)
  validation.check_name('penalty', penalty, PENALTY_GRADS)
  hp = spec.resolve_hparams(loss_hparams)
  params, x, targets, mask = inputs.check_inputs(params, x, targets, spec.targets, reg=reg, mask=mask)
  return unchecked_analytic_grad(params, x, targets, spec, reg, penalty, hp, mask)
