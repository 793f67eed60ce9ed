"""When the fit loop stops: divergence, the best epoch and patience, convergence.

Each test is a pure function of the epoch's numbers and the history, so a
resumed run stops where an uninterrupted one does. Stop signals are
`preemption`'s.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.datapath import standardize
from linear_jax.optim import convergence
from linear_jax.optim import results


def check_divergence(cfg, values, initial, epoch, steps, params=None, path=None, derived=None):
  """Raises `Diverged` if a step's objective in `values` is non-finite or exceeds `explode_factor`
  times the starting objective `initial`, naming the step, the epoch, the learning rate and the cause.

  The cause, as found: an initial loss already non-finite or enormous (the
  data's or the initialization's scale: `_scale_cause`); a loss that became
  non-finite at once, from finite parameters `params` (those going into the
  epoch), at a step too small to do that (non-finite input read mid-run:
  `_input_cause`, naming the streamed file of `path`); else the step
  (`derived`: how `--learning_rate=auto` found it, or `None`).
  """
  bad = ~np.isfinite(values) | (values > cfg.explode_factor * max(initial, 1e-3))
  if not bad.any():
    return
  s = int(np.argmax(bad))
  what = 'became non-finite' if not np.isfinite(values[s]) else f'exploded to {values[s]:.3g}'
  where = (
    f'loss {what} at step {epoch * steps + s + 1} (epoch {epoch + 1}) with learning_rate='
    f'{cfg.learning_rate:g} ({cfg.optimizer}, {cfg.schedule} schedule)'
  )
  cause = _scale_cause(cfg, initial, path) or _input_cause(cfg, values, s, initial, params, path)
  if cause is None:
    how = (
      'it was derived by --learning_rate=auto, the default, on a sample of the rows: give a smaller number'
      if derived
      else "the command line's default, --learning_rate=auto, derives a stable step"
    )
    cause = f'try a smaller --learning_rate ({how})'
  raise results.Diverged(f'{where}; {cause}.')


# A learning rate this small cannot take finite parameters to a non-finite loss in one step.
TINY_RATE = 1e-8


def _scale_cause(cfg, initial, path):
  """Why the loss was too large before any step (the initialization's or the data's scale), or `None`."""
  dtype = np.dtype(cfg.dtype)
  if np.isfinite(initial) and initial <= np.sqrt(np.finfo(dtype).max):
    return None
  before = f'the initial loss, before any step, was already {initial:.3g}: the learning rate is not the cause'
  default = next(f.default for f in dataclasses.fields(cfg) if f.name == 'init_scale')
  if cfg.init_scale != default:
    return (
      f'{before}; --init_scale={cfg.init_scale:g} (the default is {default:g}) makes the initial scores '
      'that large: use a smaller one'
    )
  found = ''
  dataset = None if path is None else path.dataset
  if dataset is not None and dataset.kind == 'real' and len(dataset.y_train):
    found = f' (the largest |target| of the training rows is {float(np.abs(dataset.y_train).max()):.3g})'
  return (
    f"{before}; the data's scale is the cause{found}: rescale the features and targets (or keep "
    f'--preprocess=standardize, which standardizes both), or train in float64 (--dtype)'
  )


def _input_cause(cfg, values, s, initial, params, path):
  """Why a streamed run's loss became non-finite from finite parameters at a harmless step (its file
  changed), or `None`."""
  if np.isfinite(values[s]) or params is None or path is None or not path.streamed:
    return None  # rows held in memory were checked finite before training and cannot change
  if not all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(params)):
    return None
  before = values[:s]
  sudden = np.isfinite(before).all() and (s == 0 or values[s - 1] <= 2 * max(initial, values[0], 1e-3))
  if not (cfg.learning_rate <= TINY_RATE or sudden):
    return None
  file = path.dataset.extra.get(standardize.FILE_ROWS, {}).get('train', (None,))[0]
  source = (
    f'from {file}, which was checked finite before training: was it changed while the run read it?'
    if file
    else 'from the training rows'
  )
  return (
    'the parameters going into the epoch were finite and the loss before this step was not growing, so '
    f'the step is not the cause: a non-finite value was read mid-run {source}'
  )


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


def reason(cfg, state, evaluated):
  """Why the fit stops after this epoch: `'early_stopping'`, `'converged'`, or `None` to go on."""
  if cfg.patience and state.best['bad'] >= cfg.patience:
    return 'early_stopping'
  if evaluated and convergence.converged(cfg, state.history):
    return 'converged'
  return None


def finished(cfg, state):
  """Why a run whose state is `state` had already stopped (`'converged'`, `'early_stopping'`,
  `'max_epochs'`), or `None` if it has epochs to go: a finished run, resumed, trains no further."""
  if not state.history:
    return None
  if len(state.history) >= cfg.epochs:
    return 'max_epochs'
  return reason(cfg, state, state.history[-1].get('evaluated', True))
