"""Why a run diverged: the message of `Diverged`, naming the step, the epoch, the rate and the cause.

The cause, as found: an initial loss already non-finite or enormous (the
initialization's or the data's scale: `_scale_cause`); a loss that became
non-finite at once, from finite parameters, at a step too small to do that
(a non-finite value read mid-run from a streamed file: `_input_cause`); else
the step itself, with how `--learning_rate=auto` found it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.datapath import standardize


def message(cfg, values, s, initial, epoch, steps, params, path, derived):
  """The message for step `s` of epoch `epoch` (from 0; `steps` per epoch), whose objective `values[s]`
  is non-finite or exploded; `initial` is the objective before any step, `params` those going into the
  epoch, `path` the run's data path, `derived` how `--learning_rate=auto` found the step (or `None`)."""
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
    if cfg.own_gradient:
      cause += (
        f'; or the score_grad of {cfg.loss} is wrong: check it with '
        f'`linear-jax gradcheck --loss={cfg.loss}`, or train with --grad=autodiff'
      )
  return f'{where}; {cause}.'


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
