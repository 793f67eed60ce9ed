"""`‖∇f‖_∞`, the largest absolute entry of a gradient: of a pytree, and of a run's full training objective.

It is what the `'grad_norm'` stopping test (`convergence.py`) and L-BFGS's
`gtol` compare with `tol`. The full objective's is one compiled program per
`config.StepConfig` field set it depends on (loss, penalty, gradient source,
bias trick, dtype); the values (`reg`, the loss's hyperparameters, the
parameters, the data) come in as arrays.
"""

import functools

import jax
import jax.numpy as jnp

from linear_jax.optim import step


def grad_norm(grad):
  """`‖g‖_∞`: the largest absolute entry of a gradient pytree (a scalar array)."""
  return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in jax.tree.leaves(grad)]))


@functools.partial(jax.jit, static_argnames=('structure',))
def _grad_norm(params, x, y, hp, weights=None, *, structure):
  """`‖∇f(params)‖_∞`, one program per `config.StepConfig` (its loss, penalty and gradient source).

  The regularization and loss hyperparameters come in `hp` as arrays, so new
  values, parameters or data of the same shapes reuse the compiled program.
  """
  _, g = step.batch_value_and_grad(structure, params, x, y, weights, hp)
  return grad_norm(g)


def full_grad_norm(cfg, params, x, y, hp, weights=None):
  """`‖∇f(params)‖_∞` of the full training objective (weighted mean if `weights`), a float.

  Args:
    cfg: the run's `TrainConfig`; only its `structure()` shapes the program.
    params: the model's parameters.
    x: `[n, d]` features.
    y: `[n]` targets (or `[n, k]` for a multi-output regression).
    hp: the run's `step.HParams` (its `reg` and `loss_hparams` are used).
    weights: optional `[n]` sample weights.

  Returns:
    The largest absolute entry of the full-batch gradient, a Python float.
  """
  s = cfg.structure()
  # Keyed on what the gradient depends on, so runs differing in epochs, batch size, optimizer, ...
  # share the program.
  key = type(s)(loss=s.loss, penalty=s.penalty, grad=s.grad, bias_trick=s.bias_trick, dtype=s.dtype)
  return float(_grad_norm(params, x, y, hp, weights, structure=key))
