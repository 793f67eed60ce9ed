"""The three gradient sources: hand-derived, autodiff, and a custom VJP.

`value_and_grad(source, ...)` gives the objective and its gradient from the
source a user picks; training, sweeps and the gradient checker all go through
it, so the three are interchangeable everywhere.
"""

import functools

import jax

from linear_jax.maths import grads
from linear_jax.maths import losses
from linear_jax.maths import validation

GRAD_SOURCES = ('analytic', 'autodiff', 'custom_vjp')


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
  _check_penalty_and_reg(penalty, reg)
  return _custom_objective(params, x, targets, reg, hp, mask, spec, penalty)


def _check_penalty_and_reg(penalty, reg):
  """The checks that cost nothing: the penalty's name (a `KeyError` deep inside), and `reg` where it is
  concrete (a negative one made the objective fall without bound). The rows are the caller's to check."""
  validation.check_name('penalty', penalty, tuple(losses.PENALTIES))
  validation.check_nonnegative('reg', reg)


def value_and_grad(
  source, params, x, targets, loss='softmax', reg=0.0, penalty='l2', loss_hparams=None, mask=None
):
  """`(objective, d objective / d params)` from the chosen gradient source.

  Args:
    source: `'analytic'` (hand-derived), `'autodiff'` (`jax.grad` of the
      objective) or `'custom_vjp'` (`jax.grad` through `custom_vjp_objective`).
    params, x, targets, loss, reg, penalty, mask: as for `objective`.
    loss_hparams: dict of the loss's hyperparameters (defaults for the rest).

  Returns:
    A scalar and a `Params`-shaped gradient. Pure and jittable; it checks the penalty's name and a
    concrete `reg`, not the rows.
  """
  spec = losses.get_loss(loss)
  hp = spec.resolve_hparams(loss_hparams)
  _check_penalty_and_reg(penalty, reg)
  if source == 'analytic':
    value = losses.unchecked_objective(params, x, targets, spec, reg, penalty, hp, mask)
    g = grads.unchecked_analytic_grad(params, x, targets, spec, reg, penalty, hp, mask)
    return value, g
  if source == 'autodiff':
    return jax.value_and_grad(losses.unchecked_objective)(params, x, targets, spec, reg, penalty, hp, mask)
  if source == 'custom_vjp':
    return jax.value_and_grad(custom_vjp_objective)(params, x, targets, spec, reg, penalty, mask, **hp)
  raise ValueError(f'Unknown gradient source {source!r}; valid: {", ".join(GRAD_SOURCES)}.')
