"""When training has converged: the stopping tests of `train.fit` and why a run stopped.

Two tests, chosen by `TrainConfig.tol_on`:

* `'objective'` (scikit-learn's convention for `SGDClassifier` and
  `MLPClassifier`): an epoch counts as "no change" when the full training
  objective `f` is not below `best − tol · |best|`, `best` being the lowest `f`
  of the epochs before it; training stops after `n_iter_no_change` such epochs
  in a row. It is a pure function of the per-epoch objectives, so a resumed run
  stops where an uninterrupted one does.
* `'grad_norm'`: stop once the largest entry of the full-batch gradient,
  `‖∇f(W)‖_∞`, is at most `tol` (scipy's L-BFGS `gtol`, which
  `LogisticRegression(tol=)` passes on).

`'none'` runs every one of `epochs` (`--max_epochs`). Without a `tol`, each
test takes scikit-learn's default for it: 1e-3 on the objective
(`SGDClassifier`), 1e-4 on the gradient norm (`LogisticRegression`).
"""

import functools

import jax
import jax.numpy as jnp

from linear_jax.maths import grad_sources

TOL_ON = ('objective', 'grad_norm', 'none')
# Why a run stopped, as `FitResult.stop_reason`, summary.json and the last printed line say.
# 'stalled': L-BFGS's line search could not lower f any further (the precision floor) before tol.
STOP_REASONS = ('converged', 'max_epochs', 'early_stopping', 'diverged', 'interrupted', 'stalled')
DEFAULT_TOL = {'objective': 1e-3, 'grad_norm': 1e-4, 'none': 1e-4}


def tol(cfg):
  """The tolerance `cfg` asks for: `cfg.tol`, or the default of its test (L-BFGS: the gradient norm's)."""
  if cfg.tol is not None:
    return cfg.tol
  return DEFAULT_TOL['grad_norm' if cfg.optimizer == 'lbfgs' else cfg.tol_on]


def epochs_without_change(objectives, tol):
  """How many of the last epochs in a row did not lower the objective by more than `tol` relative.

  Args:
    objectives: the full training objective after each epoch so far.
    tol: relative decrease that counts as a change, > 0.

  Returns:
    An int: 0 if the last epoch improved on every earlier one by more than
    `tol · |best|`.
  """
  best, count = float('inf'), 0
  for f in objectives:
    improved = best == float('inf') or f < best - tol * abs(best)
    count = 0 if improved else count + 1
    best = min(best, f)
  return count


def converged(cfg, history):
  """Whether the run whose per-epoch metrics are `history` meets `cfg`'s stopping test."""
  if cfg.tol_on == 'none' or not history:
    return False
  if cfg.tol_on == 'grad_norm':
    return history[-1]['train_grad_norm'] <= tol(cfg)
  # Only evaluated epochs measure the full objective (see TrainConfig.eval_every).
  objectives = [m['train_loss'] for m in history if 'train_loss' in m]
  return epochs_without_change(objectives, tol(cfg)) >= cfg.n_iter_no_change


def grad_norm(grad):
  """`‖g‖_∞`: the largest absolute entry of a gradient pytree (a scalar array)."""
  return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in jax.tree.leaves(grad)]))


@functools.partial(jax.jit, static_argnames=('structure',))
def _grad_norm(params, x, y, hp, weights=None, *, structure):
  """`‖∇f(params)‖_∞`, one program per `config.StepConfig` (its loss, penalty and gradient source).

  The regularization and loss hyperparameters come in `hp` as arrays, so new
  values, parameters or data of the same shapes reuse the compiled program.
  """
  _, g = grad_sources.value_and_grad(
    structure.grad,
    params,
    x,
    y,
    loss=structure.loss_record,
    reg=hp.reg,
    penalty=structure.penalty,
    loss_hparams=hp.loss_hparams,
    mask=weights,
  )
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
