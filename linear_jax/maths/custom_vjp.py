"""The objective whose reverse-mode gradient is the hand-derived one: `jax.custom_vjp`.

`jax.grad` (and so optax) differentiates `custom_vjp_objective` with respect to
the parameters through `grads.unchecked_analytic_grad` instead of tracing the
loss: the third gradient source (`grad_sources`), and the way a hand-derived
rule enters any JAX program.
"""

import functools

import jax

from linear_jax.maths import grads
from linear_jax.maths import losses


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _custom_objective(params, x, targets, reg, loss_hparams, mask, loss, penalty):
  return losses.unchecked_objective(params, x, targets, loss, reg, penalty, loss_hparams, mask)


def _custom_fwd(params, x, targets, reg, loss_hparams, mask, loss, penalty):
  value = losses.unchecked_objective(params, x, targets, loss, reg, penalty, loss_hparams, mask)
  return value, (params, x, targets, reg, loss_hparams, mask)


def _custom_bwd(loss, penalty, residuals, cotangent):
  params, x, targets, reg, loss_hparams, mask = residuals
  g = grads.unchecked_analytic_grad(params, x, targets, loss, reg, penalty, loss_hparams, mask)
  g = jax.tree.map(lambda a: (cotangent * a).astype(a.dtype), g)  # in the parameters' dtype
  # Only the parameters are differentiated through the hand-derived rule.
  return g, None, None, None, None, None


_custom_objective.defvjp(_custom_fwd, _custom_bwd)


def custom_vjp_objective(
  params, x, targets, loss='softmax', reg=0.0, penalty='l2', mask=None, **loss_hparams
):
  """`losses.objective` whose reverse-mode gradient is `grads.analytic_grad`.

  `jax.grad` (and so optax) differentiates it with respect to `params` through
  the hand-derived rule instead of tracing the loss. Arguments as for
  `objective`; inputs are not checked here: validate where the data enters.
  """
  spec = losses.get_loss(loss)
  if spec.score_grad is None:
    raise grads.missing_score_grad(spec)
  hp = spec.resolve_hparams(loss_hparams)
  grads.check_penalty_and_reg(penalty, reg)
  return _custom_objective(params, x, targets, reg, hp, mask, spec, penalty)
