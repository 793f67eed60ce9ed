"""When the fit loop stops: divergence (explained by `divergence`), the best epoch and patience, convergence.

Each test is a pure function of the epoch's numbers and the history, so a
resumed run stops where an uninterrupted one does. Stop signals are
`preemption`'s.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from linear_jax.optim import convergence
from linear_jax.optim import results
from linear_jax.training import divergence
from linear_jax.training import plateau


def check_divergence(cfg, values, initial, epoch, steps, params=None, path=None, derived=None):
  """Raises `Diverged` if a step's objective in `values` is non-finite or exceeds `explode_factor`
  times the starting objective `initial`; `divergence.message` names the step and the cause (from
  `params`, the parameters going into the epoch, its `path`, and `derived`, how the step was found)."""
  bad = ~np.isfinite(values) | (values > cfg.explode_factor * max(initial, 1e-3))
  if bad.any():
    s = int(np.argmax(bad))
    raise results.Diverged(divergence.message(cfg, values, s, initial, epoch, steps, params, path, derived))


def step_now(cfg, hp, history):
  """`(cfg, hp)` with the learning rate of the next epoch: the adaptive schedule's (divided at each
  plateau of `history`, `convergence.step_factor`), else as they are."""
  factor = convergence.step_factor(cfg, history)
  if factor == 1.0:
    return cfg, hp
  lr = cfg.learning_rate * factor
  return dataclasses.replace(cfg, learning_rate=lr), with_rate(hp, lr)


def with_rate(hp, lr):
  """`hp` with learning rate `lr`, in its dtype."""
  return hp._replace(learning_rate=jnp.asarray(lr, hp.learning_rate.dtype))


def update_best(best, metrics, params):
  """`best` after an epoch: its parameters and score if the selection metric improved.

  Only evaluated epochs count (`metrics['evaluated']`): the others leave it,
  and patience, where they are.
  """
  if not metrics['evaluated']:
    return best
  score = results.selection_metric(metrics, 'val_' if 'val_loss' in metrics else 'train_')
  if score > best['score']:
    return {'params': params, 'score': score, 'epoch': metrics['epoch'], 'bad': 0}
  return {**best, 'bad': best['bad'] + 1}


def reason(cfg, state, evaluated, scale=1.0, gain=None):
  """Why the fit stops after this epoch: `'early_stopping'`, `'converged'` (`scale`: `convergence.tol`'s),
  `'stalled'` or `None` to go on.

  Where the objective's test has passed, `gain(params)` (`plateau.gain` at the epoch's) is recorded
  in the epoch's metrics as `plateau_gain`, and above `plateau.GAIN` (or a looser `tol`) the run has
  'stalled', not converged; a resumed run reads the recorded value. `train.fit` asks before it saves or
  reports the epoch, so both hold the line as the verdict left it.
  """
  if cfg.patience and state.best['bad'] >= cfg.patience:
    return 'early_stopping'
  if evaluated and convergence.converged(cfg, state.history, scale):
    last = state.history[-1]
    if gain is not None and cfg.tol_on == 'objective' and 'plateau_gain' not in last:
      last['plateau_gain'] = gain(state.params)
    # A tolerance looser than GAIN, asked for, is the user's to take.
    return (
      'stalled' if last.get('plateau_gain', 0.0) > max(plateau.GAIN, convergence.tol(cfg)) else 'converged'
    )
  return None


def finished(cfg, state, scale=1.0, gain=None):
  """Why a run whose state is `state` had already stopped (`'converged'`, `'stalled'`, `'early_stopping'`,
  `'max_epochs'`), or `None` if it has epochs to go: a finished run, resumed, trains no further (`gain`:
  as for `reason`, measured only where the last epoch passed the objective's test without a record)."""
  if not state.history:
    return None
  if len(state.history) >= cfg.epochs:
    return 'max_epochs'
  return reason(cfg, state, state.history[-1].get('evaluated', True), scale, gain)
