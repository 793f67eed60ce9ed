"""The fit loop: epochs of the compiled step over the run's data path, until a stopping test ends it.

`fit` asks `datapath.factory.make` for the path through which the rows reach
the device (resident, streamed, data-parallel or lockstep over processes) and
runs epochs of it; what it carries between epochs and its checkpoints are
`resume`'s, its stopping tests `stopping`'s, the record of an epoch
`metrics`'s, and L-BFGS is `lbfgs.fit` over the same path.
"""

import dataclasses
import functools
import time

import jax
import numpy as np

from linear_jax.data import datasets as data_lib
from linear_jax.data import records
from linear_jax.datapath import factory as datapath
from linear_jax.datapath.base import SPLITS
from linear_jax.maths import inputs
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.optim import config
from linear_jax.optim import results
from linear_jax.optim import step
from linear_jax.optim import step_size
from linear_jax.training import lbfgs
from linear_jax.training import metrics as metrics_lib
from linear_jax.training import own_gradient
from linear_jax.training import plateau
from linear_jax.training import preemption
from linear_jax.training import resume as resume_lib
from linear_jax.training import stopping


def check_fit(cfg, dataset):
  """Host-side checks before any compile (config, loss against data, every split's rows); the path.

  With several processes each checks the rows it will read, and all of them
  raise if any one finds a problem (`factory.together`).

  Returns:
    The run's `DataPath` (`datapath.factory.make`).
  """
  with datapath.together('the checks before training'):
    cfg.validate()
    path = datapath.make(cfg, dataset)
    if cfg.dtype == 'float64' and not jax.config.jax_enable_x64:
      raise ValueError(
        "dtype='float64' needs jax.config.update('jax_enable_x64', True) before any JAX work; "
        'without it JAX would silently train in float32.'
      )
    _check_loss(cfg, dataset)
    if cfg.patience and not path.has('val'):  # else it would stop on the training score, named validation's
      raise ValueError(
        f'--patience stops early on the validation score, and --dataset={dataset.name} has no validation '
        'split: give a --val_fraction > 0 that holds one row at least, or --patience=0.'
      )
    datapath.check_fits(cfg, dataset, path.streamed)
    path.check()
    if cfg.own_loss:  # your loss's values on these rows, and your score_grad against autodiff there
      own_gradient.check(cfg, path)
  return path


def _check_loss(cfg, dataset, training=True):
  """Raises a `ValueError` when the loss does not fit the targets, or (`training`) has no gradient `cfg.grad`
  needs or nothing to learn from the training split."""
  spec = cfg.loss_record
  losses.probe(spec, concrete=True)
  why = records.fits_loss(dataset.num_classes, dataset.kind, spec.targets)
  if why and spec.targets == 'binary' and dataset.kind == 'class':  # which labels, not only how many classes
    splits = [np.asarray(getattr(dataset, f'y_{s}')) for s in ('train', 'val', 'test')]
    present = np.unique(np.concatenate(splits))
    if len(present) <= 2:
      labels = ' and '.join(str(v) for v in present.tolist())
      why = (
        f'has labels {labels} ({dataset.num_classes} classes, numbered from 0); a binary loss needs 0 and 1'
      )
  if why:
    raise ValueError(f'--loss={cfg.loss} does not fit --dataset={dataset.name}: it {why}.')
  if not training:
    return
  y = np.asarray(dataset.y_train)
  if dataset.kind == 'class' and y.ndim == 1 and len(y) and y.min() == y.max():  # a split of a file of two
    raise ValueError(
      f'--dataset={dataset.name}: every label of the training split is {int(y[0])}: one class, and a '
      'classifier learns nothing from it; the split needs examples of two classes at least (more rows, '
      'or a smaller --val_fraction / --test_fraction, leave it more).'
    )
  if cfg.grad in ('analytic', 'custom_vjp') and spec.score_grad is None:
    raise ValueError(
      f'--grad={cfg.grad} needs a hand-derived score_grad, and loss {cfg.loss!r} has none; '
      'use --grad=autodiff.'
    )


def fit(cfg, dataset, workdir=None, resume=False, on_epoch=None, checkpoint_every=1):
  """Trains a linear model on `dataset` with the choices of `cfg`.

  Args:
    cfg: a `TrainConfig`.
    dataset: a `data.Dataset`.
    workdir: where checkpoints go (`None`: no checkpoints).
    resume: continue from `workdir/checkpoint.npz` if it exists, bit-for-bit.
    on_epoch: called as `on_epoch(metrics_dict)` after every epoch.
    checkpoint_every: epochs between checkpoints; 0: every `resume.SAVE_SECONDS` seconds.

  Returns:
    A `FitResult`. Raises `Diverged` when the loss stops being finite or exceeds `explode_factor` × its start.
  """
  path = check_fit(cfg, dataset)
  workdir = resume_lib.checked_workdir(workdir, checkpoint_every, path.writer)  # L-BFGS hears of a bad one
  if cfg.optimizer == 'lbfgs':
    return lbfgs.fit(cfg, path, on_epoch)
  checkpoints = resume_lib.Checkpoints(cfg, path, workdir, dataset)  # the config as given: 'auto' stays
  cfg, derived = resolve_step_size(cfg, path, checkpoints, resume)
  hp = step.hparams(cfg)
  params, opt_state = step.init_state(
    cfg, dataset.num_features, step.num_outputs(cfg, dataset), hp, path.steps
  )
  state = checkpoints.restore(resume_lib.start(params, opt_state), resume)
  first = len(state.history)
  initial = state.history[0]['initial_loss'] if first else float(path.evaluate(params, hp, 'train')['loss'])
  multiplier = step.schedule_fn(cfg, path.steps)
  gain = functools.partial(plateau.gain, cfg, path, hp=hp, initial=initial)  # is a plateau the optimum?
  finished = stopping.finished(cfg, state, path.gradient_scale, gain)  # resumed finished: trains no more
  reason = finished or 'max_epochs'
  try:
    for epoch in range(first, first if finished else cfg.epochs):
      t0 = time.perf_counter()
      key = jax.random.fold_in(checkpoints.key, epoch)
      cfg, hp, derived = remeasure_step(epoch, cfg, hp, path, state.params, derived, checkpoints)  # 'auto'
      now, hp = stopping.step_now(cfg, hp, state.history)  # the adaptive schedule's rate
      params, opt_state, values = path.epoch(state.params, state.opt_state, key, hp)
      if not preemption.wait(values):  # a stop signal came first: abandon the epoch in flight
        reason = 'interrupted'
        checkpoints.save(state)
        break
      values = np.asarray(values)
      stopping.check_divergence(cfg, values, initial, epoch, path.steps, state.params, path, derived)
      line = metrics_lib.epoch_metrics(
        now, path, params, hp, values, epoch, time.perf_counter() - t0, multiplier, initial
      )
      best = stopping.update_best(state.best, line, params)
      state = resume_lib.State(params, opt_state, (*state.history, line), best)
      reason = stopping.reason(cfg, state, line['evaluated'], path.gradient_scale, gain) or reason
      saved = reason != 'max_epochs' or checkpoints.due(epoch, checkpoint_every) or epoch + 1 == cfg.epochs
      if saved:
        checkpoints.save(state)
      if on_epoch:
        on_epoch(line)
      if reason != 'max_epochs':
        break
      if epoch + 1 < cfg.epochs and preemption.stop_requested():  # SIGTERM / SIGINT (see preemption.py)
        reason = 'interrupted'
        if not saved:
          checkpoints.save(state)
        break
  except KeyboardInterrupt:
    reason = 'interrupted'
    checkpoints.save(state)
  return results.FitResult(
    params=state.params,
    best_params=state.best['params'],
    history=list(state.history),
    best_epoch=state.best['epoch'],
    stopped_early=reason == 'early_stopping',
    interrupted=reason == 'interrupted',
    resumed_from=first,
    streamed=path.streamed,
    stop_reason=reason,
    already_done=bool(finished),
    learning_rate=cfg.learning_rate,
    learning_rate_info=derived,
  )


def resolve_step_size(cfg, path, checkpoints=None, resume=False):
  """`(cfg, info)`: for `learning_rate='auto'`, `cfg` with the step `step_size.derive` finds for it on
  a sample of the path's training rows at the initial parameters (process 0's, with several), and how
  it was found; otherwise `(cfg, None)`. A resumed run takes the step its checkpoint records, and the
  step is recorded in `checkpoints` for the next."""
  if cfg.learning_rate != config.AUTO:
    return cfg, None
  info = checkpoints.saved_step() if checkpoints is not None and resume else None
  if info is None:
    params, _ = step.init_state(
      cfg, path.dataset.num_features, step.num_outputs(cfg, path.dataset), step.hparams(cfg), path.steps
    )
    info = _measure(cfg, path, params)
  if checkpoints is not None:
    checkpoints.step = info
  return dataclasses.replace(cfg, learning_rate=info['learning_rate']), info


def _measure(cfg, path, params):
  """`step_size.derive` at `params` on a sample of the path's training rows; process 0's step."""
  x, y, w = path.sample_rows(step_size.SAMPLE_ROWS)
  lr, info = step_size.derive(cfg, params, x, y, w, path.batch, path.num_train)
  return {'learning_rate': path.agreed(lr), **info}


def remeasure_step(epoch, cfg, hp, path, params, found, checkpoints=None):
  """`(cfg, hp, found)` for epoch `epoch` (from 0): at the start of the second epoch of a run whose step
  was derived (`found`, how: `resolve_step_size`), the step derived again at `params`, the parameters
  after the first epoch, where the curvature the rest of the run sees is measured (docs/training.md);
  else as they are.

  Adam, a run that stops after its first epoch, and a run whose curvature is then not finite keep the
  first step. The measurement depends on `params` and the seed only, so a resumed run measures what an
  uninterrupted one does; the checkpoint records the new step (the first under `at_start`).
  """
  if epoch != 1 or not found or 'at_start' in found or cfg.optimizer == 'adam':
    return cfg, hp, found
  start = {k: found[k] for k in ('learning_rate', 'method', 'hessian_max_eigenvalue') if k in found}
  try:
    info = _measure(cfg, path, jax.device_get(params))  # on the host: replicated or not, as at the start
    info = {**info, 'method': f'after the first epoch, {info["method"]}', 'at_start': start}
  except step_size.NotFinite as e:  # the first step stays
    info = {**found, 'at_start': start, 'not_measured_again': str(e)}
  if checkpoints is not None:
    checkpoints.step = info
  lr = info['learning_rate']
  return dataclasses.replace(cfg, learning_rate=lr), stopping.with_rate(hp, lr), info


def evaluate(cfg, dataset, params):
  """Metrics of `params` on every split: `{'train_loss': ..., 'test_accuracy': ...}`."""
  return evaluate_many(cfg, dataset, [params])[0]


def evaluate_many(cfg, dataset, params_list, checked=False):
  """`[evaluate(cfg, dataset, p) for p in params_list]`, with the data moved to the device once.

  Raises a `ValueError` for parameters of another shape than `cfg`'s model of `dataset`, or not finite,
  and, as `fit` does, for a config, a loss or rows that a fit would refuse (`checked`: a fit of `cfg` on
  `dataset` has just checked them).
  """
  if not checked:
    cfg.validate()
    _check_loss(cfg, dataset, training=False)
  for p in params_list:
    d = dataset.num_features + (p.b is None and cfg.bias_trick)
    inputs.check_params(p, step.num_outputs(cfg, dataset), d)
  path = datapath.make(cfg, dataset)
  if not checked:
    path.check()
  hp = step.hparams(cfg)
  splits = [s for s in SPLITS if path.has(s)]
  return [
    {f'{s}_{k}': float(v) for s in splits for k, v in jax.device_get(path.evaluate(p, hp, s)).items()}
    for p in params_list
  ]


def raw_params(params, dataset):
  """`(W [C, D], b [C])` in the raw input units (and the targets' units), preprocessing folded in."""
  if params.b is None:
    params = model.unfold_bias(params)
  return data_lib.params_to_raw(
    params.W,
    params.b,
    dataset.shift,
    dataset.scale,
    getattr(dataset, 'target_shift', None),
    getattr(dataset, 'target_scale', None),
  )
