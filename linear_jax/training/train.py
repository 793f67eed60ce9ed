"""The fit loop: epochs of the compiled step, evaluation, checkpoints, early stopping.

The pure step (the optimizer, the batch plan, the scanned epoch,
hyperparameters as arrays) lives in `step.py`, the configuration in
`config.py`; `fit` picks the epoch to run (in memory, streamed from
`stream.py`, data-parallel from `parallel.py`, or L-BFGS from `solvers.py`)
and drives it. The names of `config`, `step` and `results` are re-exported
here, so `train.TrainConfig`, `train.make_optimizer`, `train.FitResult`, ...
keep working.
"""

import dataclasses
import os
import time

import jax
import numpy as np

from linear_jax.data import datasets as data_lib
from linear_jax.datapath import multihost
from linear_jax.datapath import parallel
from linear_jax.datapath import stream
from linear_jax.datapath.stream import device_data
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.maths import validation
from linear_jax.optim import convergence
from linear_jax.optim.config import DTYPES  # noqa: F401 - re-exported
from linear_jax.optim.config import OPTIMIZERS  # noqa: F401 - re-exported
from linear_jax.optim.config import PARALLEL  # noqa: F401 - re-exported
from linear_jax.optim.config import SCHEDULES  # noqa: F401 - re-exported
from linear_jax.optim.config import StepConfig  # noqa: F401 - re-exported
from linear_jax.optim.config import TrainConfig  # noqa: F401 - re-exported
from linear_jax.optim.results import Diverged
from linear_jax.optim.results import FitResult
from linear_jax.optim.results import selection_metric
from linear_jax.optim.step import HParams  # noqa: F401 - re-exported
from linear_jax.optim.step import batch_plan  # noqa: F401 - re-exported
from linear_jax.optim.step import batch_value_and_grad  # noqa: F401 - re-exported
from linear_jax.optim.step import compiled_epoch_fn
from linear_jax.optim.step import compiled_eval_fn
from linear_jax.optim.step import hparams
from linear_jax.optim.step import init_state
from linear_jax.optim.step import make_apply  # noqa: F401 - re-exported
from linear_jax.optim.step import make_epoch_fn  # noqa: F401 - re-exported
from linear_jax.optim.step import make_eval_fn  # noqa: F401 - re-exported
from linear_jax.optim.step import make_optimizer  # noqa: F401 - re-exported
from linear_jax.optim.step import make_update  # noqa: F401 - re-exported
from linear_jax.optim.step import num_outputs
from linear_jax.optim.step import scan_batches  # noqa: F401 - re-exported
from linear_jax.optim.step import schedule_fn
from linear_jax.optim.step import steps_per_epoch
from linear_jax.optim.step import structural  # noqa: F401 - re-exported
from linear_jax.solvers import lbfgs as solvers
from linear_jax.training import checkpoint
from linear_jax.training import preemption


def check_fit(cfg, dataset):
  """Host-side checks before any compile: config, loss vs data, every split.

  With several processes each checks the rows it will read, and all of them
  raise if any one finds a problem (`multihost.together`).
  """
  with multihost.together('the checks before training'):
    _check_fit(cfg, dataset)


def _check_fit(cfg, dataset):
  cfg.validate()
  if cfg.optimizer == 'lbfgs':
    solvers.check_lbfgs(cfg, streamed=stream.should_stream(cfg, dataset))
  if cfg.dtype == 'float64' and not jax.config.jax_enable_x64:
    raise ValueError(
      "dtype='float64' needs jax.config.update('jax_enable_x64', True) before any JAX work; "
      'without it JAX would silently train in float32.'
    )
  spec = cfg.loss_record
  losses.probe(spec, concrete=True)
  why = data_lib.fits_loss(dataset.num_classes, dataset.kind, spec.targets)
  if why and spec.targets == 'binary' and dataset.kind == 'class':  # which labels, not only how many classes
    present = np.unique(
      np.concatenate([np.asarray(getattr(dataset, f'y_{s}')) for s in ('train', 'val', 'test')])
    )
    if len(present) <= 2:
      labels = ' and '.join(str(v) for v in present.tolist())
      why = (
        f'has labels {labels} ({dataset.num_classes} classes, numbered from 0); a binary loss needs 0 and 1'
      )
  if why:
    raise ValueError(f'--loss={cfg.loss} does not fit --dataset={dataset.name}: it {why}.')
  if cfg.grad in ('analytic', 'custom_vjp') and spec.score_grad is None:
    raise ValueError(
      f'--grad={cfg.grad} needs a hand-derived score_grad, and loss {cfg.loss!r} has none; '
      'use --grad=autodiff.'
    )
  c = num_outputs(cfg, dataset)
  streamed = stream.should_stream(cfg, dataset)
  if streamed:
    stream.check_config(cfg)
  stream.check_fits(cfg, dataset)
  for split in ('train', 'val', 'test'):
    x, y = getattr(dataset, f'x_{split}'), getattr(dataset, f'y_{split}')
    if split != 'train' and len(x) == 0:
      continue
    # Streamed splits (and memory maps) are checked block by block, never as a whole; the rows of a
    # `stream.prepare`d split are named by their file and the file's row numbers.
    file, offset = dataset.extra.get(stream.FILE_ROWS, {}).get(split, (None, 0))
    where = f'{file} ({split} rows)' if file else f'{dataset.name} {split} split'
    if streamed:  # several processes: each checks the rows it will read
      mine = stream.local_rows(len(x))
      stream.check_features(x[mine], where=where, first_row=offset + mine.start)
    elif isinstance(x, np.memmap):
      stream.check_features(x, where=where, first_row=offset)
    else:
      validation.check_features(x, where=f'{dataset.name} {split} split')
    validation.check_targets(y, spec.targets, c, where=f'{dataset.name} {split} split')


CHECKPOINT = 'checkpoint.npz'


def fit(cfg, dataset, workdir=None, resume=False, on_epoch=None, checkpoint_every=1):
  """Trains a linear model on `dataset` with the choices of `cfg`.

  Args:
    cfg: a `TrainConfig`.
    dataset: a `data.Dataset`.
    workdir: where checkpoints go (`None`: no checkpoints).
    resume: continue from `workdir/checkpoint.npz` if it exists; the resumed
      run ends bit-for-bit equal to an uninterrupted one.
    on_epoch: called as `on_epoch(metrics_dict)` after every epoch.
    checkpoint_every: epochs between checkpoints.

  The training split streams in blocks (`stream.py`) when `cfg.stream` asks
  for it or when the splits do not fit in free memory. Every epoch records
  `train_pass_loss` from the training pass itself; every `cfg.eval_every`
  epochs and at the last, the train and validation splits are evaluated in
  full, and only those epochs count for the best epoch and `patience`.

  Returns:
    A `FitResult`. Raises `Diverged` when the loss stops being finite or
    exceeds `explode_factor` times its starting value.
  """
  check_fit(cfg, dataset)
  if cfg.optimizer == 'lbfgs':
    return solvers.fit_lbfgs(cfg, dataset, on_epoch)
  streamed = stream.should_stream(cfg, dataset)
  arrays = stream.host_splits(cfg, dataset) if streamed else device_data(cfg, dataset)
  x, y = arrays['train']
  n = x.shape[0]
  steps, batch = steps_per_epoch(cfg, n)
  hp = hparams(cfg)
  params, opt_state = init_state(cfg, dataset.num_features, num_outputs(cfg, dataset), hp, steps)
  # Streamed splits keep their weights on the host, to travel block by block with their rows.
  to_weights = solvers.host_weights if streamed else solvers.device_weights
  weights = {s: to_weights(dataset, s, cfg.dtype) for s in ('train', 'val')}
  w_args = () if weights['train'] is None else (weights['train'],)
  if streamed:
    affine = stream.affine(dataset)
    epoch_fn = stream.make_epoch_fn(cfg, x, y, affine, weights['train'])
    eval_fn = stream.make_eval_fn(cfg, affine)
    objective = stream.make_objective_fn(cfg, x, y, affine, weights['train'])  # over the blocks
    full_grad_norm = lambda params: float(convergence.grad_norm(objective(params, hp)[1]))
  else:
    if cfg.parallel != 'none':
      epoch_fn = parallel.fit_epoch_fn(cfg, dataset, x, y, weights['train'])
    else:
      epoch_fn = compiled_epoch_fn(cfg, n)
    eval_fn = compiled_eval_fn(cfg)
    full_grad_norm = lambda params: convergence.full_grad_norm(cfg, params, x, y, hp, weights['train'])
  multiplier = schedule_fn(cfg, steps)
  base_key = jax.random.PRNGKey(cfg.seed)
  has_val = len(dataset.x_val) > 0

  # Everything a checkpoint holds, replaced in one assignment per epoch so that
  # a Ctrl-C between two statements can never save a half-updated state.
  history, best = (), {'params': params, 'score': -np.inf, 'epoch': 0, 'bad': 0}
  committed = (params, opt_state, history, best)
  start = 0
  ckpt_path = os.path.join(workdir, CHECKPOINT) if workdir else None
  writer = jax.process_index() == 0  # with several processes, process 0 writes and every process reads
  found = resume and ckpt_path and os.path.exists(ckpt_path)
  multihost.check_same_view(ckpt_path, found)
  with multihost.together(f'the checkpoint in {workdir}'):  # one process's error here stops every process
    if workdir and writer:
      checkpoint.remove_stale(workdir)
    if found:
      (params, opt_state, best_params, base_key), meta = checkpoint.load(
        ckpt_path, (params, opt_state, params, base_key)
      )
      multihost.check_process_count(ckpt_path, meta)
      saved = meta.get('config', {})
      if saved != dataclasses.asdict(cfg):
        changed = sorted(k for k, v in dataclasses.asdict(cfg).items() if saved.get(k) != v)
        raise ValueError(f'{ckpt_path}: written with other settings ({", ".join(changed)}); cannot resume.')
  if found:
    start, history = meta['epoch'], tuple(meta['history'])
    best = {
      'params': best_params,
      'score': meta['best_score'],
      'epoch': meta['best_epoch'],
      'bad': meta['bad'],
    }
    committed = (params, opt_state, history, best)

  def save(state):
    if ckpt_path:
      p, o, h, bst = state
      multihost.barrier(f'checkpoint after epoch {len(h)}')  # every process has reached this epoch
      if not writer:
        return
      meta = {
        'num_processes': jax.process_count(),
        'epoch': len(h),
        'history': list(h),
        'config': dataclasses.asdict(cfg),
        'best_score': bst['score'],
        'best_epoch': bst['epoch'],
        'bad': bst['bad'],
        # Epoch e shuffles with fold_in(key, e): the key and the epoch fix the data order.
        'data_order': _data_order(streamed, steps),
      }
      checkpoint.save(ckpt_path, (p, o, bst['params'], base_key), meta)

  initial = (
    float(eval_fn(params, x, y, hp, weights['train'])['loss']) if start == 0 else history[0]['initial_loss']
  )
  stopped_early = interrupted = False
  reason = 'max_epochs'
  try:
    for epoch in range(start, cfg.epochs):
      params, opt_state, history, best = committed
      t0 = time.perf_counter()
      key = jax.random.fold_in(base_key, epoch)
      params, opt_state, values = epoch_fn(params, opt_state, x, y, key, hp, *w_args)
      if not preemption.wait(values):  # a stop signal came first: abandon the epoch in flight
        interrupted, reason = True, 'interrupted'
        save(committed)
        break
      values = np.asarray(values)
      seconds = time.perf_counter() - t0
      bad = ~np.isfinite(values) | (values > cfg.explode_factor * max(initial, 1e-3))
      if bad.any():
        s = int(np.argmax(bad))
        what = 'became non-finite' if not np.isfinite(values[s]) else f'exploded to {values[s]:.3g}'
        raise Diverged(
          f'loss {what} at step {epoch * steps + s + 1} (epoch {epoch + 1}) with learning_rate='
          f'{cfg.learning_rate:g} ({cfg.optimizer}, {cfg.schedule} schedule); try a smaller --learning_rate.'
        )
      metrics = {'epoch': epoch + 1, 'step': (epoch + 1) * steps}
      # The mean of the steps' mini-batch objectives, measured by the training pass itself.
      metrics['train_pass_loss'] = float(np.mean(values))
      # Full evaluation every `eval_every` epochs and at the last; each line says which it had.
      evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
      metrics['evaluated'] = evaluated
      splits = ('train', 'val') if has_val else ('train',)
      for split in splits if evaluated else ():
        for k, v in jax.device_get(eval_fn(params, *arrays[split], hp, weights[split])).items():
          metrics[f'{split}_{k}'] = float(v)
      if cfg.tol_on == 'grad_norm' and evaluated:
        metrics['train_grad_norm'] = full_grad_norm(params)
      metrics['learning_rate'] = float(cfg.learning_rate * multiplier((epoch + 1) * steps))
      metrics['examples_per_s'] = n / seconds
      metrics['seconds'] = seconds
      if epoch == 0:
        metrics['initial_loss'] = initial
      score = selection_metric(metrics, 'val_' if has_val else 'train_') if evaluated else None
      if score is None:
        pass  # the best epoch and patience move on evaluated epochs only
      elif score > best['score']:
        best = {'params': params, 'score': score, 'epoch': epoch + 1, 'bad': 0}
      else:
        best = {**best, 'bad': best['bad'] + 1}
      committed = (params, opt_state, (*history, metrics), best)
      saved = (epoch + 1) % checkpoint_every == 0 or epoch + 1 == cfg.epochs
      if saved:
        save(committed)
      if on_epoch:
        on_epoch(metrics)
      if cfg.patience and best['bad'] >= cfg.patience:
        stopped_early, reason = True, 'early_stopping'
        save(committed)
        break
      if evaluated and convergence.converged(cfg, committed[2]):
        reason = 'converged'
        save(committed)
        break
      if epoch + 1 < cfg.epochs and preemption.stop_requested():  # SIGTERM / SIGINT (see preemption.py)
        interrupted, reason = True, 'interrupted'
        if not saved:
          save(committed)
        break
  except KeyboardInterrupt:
    interrupted, reason = True, 'interrupted'
    save(committed)
  params, opt_state, history, best = committed
  return FitResult(
    params=params,
    best_params=best['params'],
    history=list(history),
    best_epoch=best['epoch'],
    stopped_early=stopped_early,
    interrupted=interrupted,
    resumed_from=start,
    streamed=streamed,
    stop_reason=reason,
  )


def _data_order(streamed, steps):
  """How epoch `epoch` orders the rows, for a checkpoint's record (`key`: the run's base key)."""
  if not streamed:
    return 'jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)'
  if jax.process_count() > 1 and steps > 1:
    return (
      'stream.block_order(jax.random.fold_in(key, epoch), num_blocks), each device its rows (stream.Lockstep)'
    )
  return 'stream.epoch_order(cfg, jax.random.fold_in(key, epoch), num_examples)'


def evaluate(cfg, dataset, params):
  """Metrics of `params` on every split: `{'train_loss': ..., 'test_accuracy': ...}`."""
  return evaluate_many(cfg, dataset, [params])[0]


def evaluate_many(cfg, dataset, params_list):
  """`[evaluate(cfg, dataset, p) for p in params_list]`, with the data moved to the device once."""
  if stream.should_stream(cfg, dataset):
    arrays, eval_fn = stream.host_splits(cfg, dataset), stream.make_eval_fn(cfg, stream.affine(dataset))
    to_weights = solvers.host_weights  # streamed with their rows, block by block
  else:
    arrays, eval_fn = device_data(cfg, dataset), compiled_eval_fn(cfg)
    to_weights = solvers.device_weights
  hp = hparams(cfg)
  outs = []
  for params in params_list:
    out = {}
    for split, (x, y) in arrays.items():
      if len(x):
        w = to_weights(dataset, split, cfg.dtype)
        out.update(
          {f'{split}_{k}': float(v) for k, v in jax.device_get(eval_fn(params, x, y, hp, w)).items()}
        )
    outs.append(out)
  return outs


def raw_params(params, dataset):
  """`(W [C, D], b [C])` in the raw input units, preprocessing folded in."""
  if params.b is None:
    params = model.unfold_bias(params)
  return data_lib.params_to_raw(params.W, params.b, dataset.shift, dataset.scale)
