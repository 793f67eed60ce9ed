"""The three gradient sources: hand-derived, autodiff, and a custom VJP.

`value_and_grad(source, ...)` gives the objective and its gradient from the
source a user picks; training, sweeps and the gradient checker all go through
it, so the three are interchangeable everywhere.
"""

import jax

from linear_jax.maths import custom_vjp
from linear_jax.maths import grads
from linear_jax.maths import losses

GRAD_SOURCES = ('analytic', 'autodiff', 'custom_vjp')


def value_and_grad(
  source, params, x, targets, loss='softmax', reg=0.0, penalty='l2', loss_hparams=None, mask=None
):
  """`(objective, d objective / d params)` from the chosen gradient source.

  Args:
    source: `'analytic'` (hand-derived), `'autodiff'` (`jax.grad` of the
      objective) or `'custom_vjp'` (`jax.grad` through `custom_vjp.custom_vjp_objective`).
    params, x, targets, loss, reg, penalty, mask: as for `objective`.
    loss_hparams: dict of the loss's hyperparameters (defaults for the rest).

  Returns:
    A scalar and a `Params`-shaped gradient. Pure and jittable; it checks the penalty's name and a
    concrete `reg`, not the rows.
  """
  spec = losses.get_loss(loss)
  hp = spec.resolve_hparams(loss_hparams)
  grads.check_penalty_and_reg(penalty, reg)
  if source == 'analytic':
    value = losses.unchecked_objective(params, x, targets, spec, reg, penalty, hp, mask)
    g = grads.unchecked_analytic_grad(params, x, targets, spec, reg, penalty, hp, mask)
    return value, g
  if source == 'autodiff':
    return jax.value_and_grad(losses.unchecked_objective)(params, x, targets, spec, reg, penalty, hp, mask)
  if source == 'custom_vjp':
    return jax.value_and_grad(custom_vjp.custom_vjp_objective)(
      params, x, targets, spec, reg, penalty, mask, **hp
    )
  raise ValueError(f'Unknown gradient source {source!r}; valid: {", ".join(GRAD_SOURCES)}.')
