"""The three gradient sources: hand-derived, autodiff, and a custom VJP.

`value_and_grad(source, ...)` gives the objective and its gradient from the
source a user picks; training, sweeps and the gradient checker all go through
it, so the three are interchangeable everywhere.
"""

import functools

import jax

from linear_jax import grads
from linear_jax import losses

GRAD_SOURCES = ('analytic', 'autodiff', 'custom_vjp')


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _custom_objective(params, x, targets, reg, margin, mask, loss, penalty):
  return losses.unchecked_objective(params, x, targets, loss, reg, penalty, margin, mask)


def _custom_fwd(params, x, targets, reg, margin, mask, loss, penalty):
  value = losses.unchecked_objective(params, x, targets, loss, reg, penalty, margin, mask)
  return value, (params, x, targets, reg, margin, mask)


def _custom_bwd(loss, penalty, residuals, cotangent):
  params, x, targets, reg, margin, mask = residuals
  g = grads.unchecked_analytic_grad(params, x, targets, loss, reg, penalty, margin, mask)
  g = jax.tree.map(lambda a: cotangent * a, g)
  # Only the parameters are differentiated through the hand-derived rule.
  return g, None, None, None, None, None


_custom_objective.defvjp(_custom_fwd, _custom_bwd)


def custom_vjp_objective(params, x, targets, loss='softmax', reg=0.0, penalty='l2', margin=1.0, mask=None):
  """`losses.objective` whose reverse-mode gradient is `grads.analytic_grad`.

  `jax.grad` (and so optax) differentiates it with respect to `params` through
  the hand-derived rule instead of tracing the loss. Inputs are not checked
  here: validate where the data enters.
  """
  return _custom_objective(params, x, targets, reg, margin, mask, loss, penalty)


def value_and_grad(source, params, x, targets, loss='softmax', reg=0.0, penalty='l2', margin=1.0, mask=None):
  """`(objective, d objective / d params)` from the chosen gradient source.

  Args:
    source: `'analytic'` (hand-derived), `'autodiff'` (`jax.grad` of the
      objective) or `'custom_vjp'` (`jax.grad` through `custom_vjp_objective`).
    params, x, targets, loss, reg, penalty, margin, mask: as for `objective`.

  Returns:
    A scalar and a `Params`-shaped gradient. Pure and jittable; no host checks.
  """
  if source == 'analytic':
    value = losses.unchecked_objective(params, x, targets, loss, reg, penalty, margin, mask)
    g = grads.unchecked_analytic_grad(params, x, targets, loss, reg, penalty, margin, mask)
    return value, g
  if source == 'autodiff':
    return jax.value_and_grad(losses.unchecked_objective)(
      params, x, targets, loss, reg, penalty, margin, mask
    )
  if source == 'custom_vjp':
    return jax.value_and_grad(custom_vjp_objective)(params, x, targets, loss, reg, penalty, margin, mask)
  raise ValueError(f'Unknown gradient source {source!r}; valid: {", ".join(GRAD_SOURCES)}.')
