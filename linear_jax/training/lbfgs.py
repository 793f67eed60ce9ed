"""Full-batch L-BFGS as a fit, and the optimum f*: the solvers run over the run's data path.

`fit` is `train.fit` for `--optimizer=lbfgs`; `optimum` is f* = min f(W), the
reference every "how far from the optimum" number is measured against. Both
ask the data path (`datapath.factory`) to minimize the training objective: one
compiled loop on resident rows, scipy's L-BFGS-B over streamed passes.
"""

import dataclasses
import math
import time

import jax
import numpy as np

from linear_jax.datapath import factory as datapath
from linear_jax.maths import validation
from linear_jax.optim import convergence
from linear_jax.optim import results
from linear_jax.optim import step
from linear_jax.solvers import lbfgs as solvers
from linear_jax.training import preemption


def fit(cfg, path, on_epoch=None):
  """L-BFGS from the usual initial weights over `path` (a `DataPath`): `train.fit`'s `FitResult`.

  `cfg.epochs` caps the iterations and `cfg.tol` is the gradient-norm target
  (`convergence.tol`; `cfg.tol_on` and `cfg.batch_size` do not apply). `on_epoch` is called once
  per iteration with the objective, gradient norm and evaluations so far (as
  the iterations go where each is a host pass, after the solve where the
  solve is one compiled loop); the last line also has the full metrics of
  `fit`. A stop signal (`preemption`) ends a solve over passes after the
  iteration in progress, with `stop_reason='interrupted'` (L-BFGS keeps no
  checkpoint: a new run starts again).

  Returns:
    A `FitResult` whose `solver` holds iterations, function evaluations, the
    final gradient norm and whether it converged.
  """
  hp = step.hparams(cfg)
  params, _ = step.init_state(cfg, path.dataset.num_features, step.num_outputs(cfg, path.dataset), hp, 1)
  history, lines = [], []  # emitted lines; the lines of iterations not yet emitted

  def emit(m):
    history.append(m)
    if on_epoch:
      on_epoch(m)

  def on_iteration(t, values, grad_norms, fevals_at):
    while lines:  # the iteration before is not the last: its line is complete
      emit(lines.pop(0))
    lines.append(_iteration_metrics(t, values[t], grad_norms[t], fevals_at[t], values[0]))

  t0 = time.perf_counter()
  params, info = path.minimize(
    params,
    hp,
    convergence.tol(cfg, path.gradient_scale),
    cfg.epochs,
    solvers.memory_size_for(params),
    on_iteration,
    should_stop=preemption.stop_requested,  # SIGTERM / SIGINT: stop after the iteration in progress
  )
  seconds = time.perf_counter() - t0
  if not np.isfinite(info.value):
    raise results.Diverged(f'L-BFGS reached a non-finite objective after {int(info.iterations)} iterations.')
  check_progress(info, cfg.dtype)
  iters = int(info.iterations)
  for i in range(len(history) + len(lines) + 1, iters + 1):  # iterations of one compiled loop
    lines.append(_iteration_metrics(i, info.values[i], info.grad_norms[i], info.fevals_at[i], info.values[0]))
  if lines:
    last = lines[-1]
    for split in ('train', 'val') if path.has('val') else ('train',):
      last.update(
        {f'{split}_{k}': float(v) for k, v in jax.device_get(path.evaluate(params, hp, split)).items()}
      )
    last['seconds'] = seconds
    last['examples_per_s'] = int(info.fevals) * path.num_train / seconds
  for m in lines:
    emit(m)
  stopped = not info.converged and not info.stalled and iters < cfg.epochs
  return _fit_result(params, info, history, seconds, path.streamed, interrupted=stopped)


def check_progress(info, dtype):
  """Raises a `ValueError` when L-BFGS stalled without lowering f at all: the start would be returned as
  the model (or as f*), labelled a stall at the precision floor.

  A first step that lowers f by less than f's precision is invisible to the line search: in float32,
  diabetes' targets in millionths of their units (f = 3e16 at W = 0, ‖∇f‖ = 3e8) with the features
  left unstandardized stalled at the start, at 9 times the optimum's test MSE, where float64 converges.
  """
  start, value = float(np.asarray(info.values)[0]), float(info.value)
  if not info.stalled or value < start:
    return
  advice = (
    'train in --dtype=float64, or keep --preprocess=standardize (the default), which puts features and '
    'targets in units near 1'
    if np.dtype(dtype) == np.float32
    else 'keep --preprocess=standardize (the default), which puts features and targets in units near 1'
  )
  raise ValueError(
    f'L-BFGS could not lower the objective from its start (f = {start:.6g}, largest gradient entry '
    f'{float(info.grad_norm):.3g}): no step its line search tried was lower in {np.dtype(dtype).name}, '
    f'as happens where f is large and its units far from 1. {advice[0].upper()}{advice[1:]}.'
  )


def _iteration_metrics(t, value, grad_norm, fevals, initial):
  """The history line of L-BFGS iteration `t` (the first one also carries the starting objective)."""
  m = {'epoch': t, 'train_loss': float(value), 'train_grad_norm': float(grad_norm), 'fevals': int(fevals)}
  if t == 1:
    m['initial_loss'] = float(initial)
  return m


def _fit_result(params, info, history, seconds, streamed, interrupted=False):
  """The `FitResult` of an L-BFGS fit whose `LbfgsInfo` is `info` (NumPy fields)."""
  iters = int(info.iterations)
  reason = 'converged' if info.converged else ('stalled' if info.stalled else 'max_epochs')
  if interrupted and not info.converged:
    reason = 'interrupted'
  return results.FitResult(
    params=params,
    best_params=params,
    history=history,
    best_epoch=iters,
    streamed=streamed,
    interrupted=reason == 'interrupted',
    stop_reason=reason,
    solver={
      'iterations': iters,
      'fevals': int(info.fevals),
      'grad_norm': float(info.grad_norm),
      'objective': float(info.value),
      'converged': bool(info.converged),
      'seconds': seconds,
    },
  )


def optimum(cfg, dataset, tol=None, max_iter=10_000, weights=None):
  """f* = min f(W) of `cfg`'s objective on the training split, and the `Params` reaching it.

  L-BFGS to a tight tolerance, in float64 when `jax_enable_x64` is on (else in
  `cfg.dtype`, which limits f* to float32 precision, about 1e-7 relative),
  over the same data path as the run it is the reference of: a training split
  that streams is never loaded whole.

  Args:
    cfg: a `TrainConfig` with a smooth loss (see `solvers.check_smooth`).
    dataset: a `data.Dataset` (its `w_train`, if any, weights the mean).
    tol: gradient-norm target, in the units of standardized data (`records.gradient_scale`); default
      1e-10 in float64, 1e-6 in float32.
    max_iter: iteration cap.
    weights: optional `[N]` sample weights of the training split (instead
      of `dataset.w_train`); the mean becomes `Σ w L / Σ w`.

  Returns:
    `(f_star: float, params, LbfgsInfo)`.
  """
  solvers.check_smooth(
    cfg.loss,
    cfg.penalty,
    cfg.reg,
    'f* (the L-BFGS reference)',
    'Compare without f* (train: drop --reference)',
  )
  # A NaN tolerance stopped at once, at the start's loss, as if it were f*; a negative count failed in XLA.
  if tol is not None and not (validation.is_number(tol) and 0 < tol < math.inf):
    raise ValueError(f'tol must be a finite number > 0 (or None, the default), got {tol!r}.')
  validation.check_whole('max_iter', max_iter)
  dtype = 'float64' if jax.config.jax_enable_x64 else cfg.dtype
  cfg = dataclasses.replace(cfg, dtype=dtype, optimizer='lbfgs', parallel='none')
  hp = step.hparams(cfg)
  params, _ = step.init_state(cfg, dataset.num_features, step.num_outputs(cfg, dataset), hp, 1)
  path = datapath.make(cfg, dataset, train_weights=weights)
  tol = ((1e-10 if dtype == 'float64' else 1e-6) if tol is None else tol) * path.gradient_scale
  params, info = path.minimize(params, hp, tol, max_iter, solvers.memory_size_for(params))
  check_progress(info, dtype)  # else f(start) would be f*
  return float(info.value), params, info
