"""Gradient descent: the jitted epoch (a scan over mini-batches) and the fit loop.

`make_epoch_fn` builds one compiled program per epoch: shuffle, pad the last
partial batch (masked, so every example counts once and shapes stay static),
and `lax.scan` the optimizer step over the batches. Hyperparameters that a
sweep varies (`HParams`) are arrays, so new values never recompile; the
sweep module `vmap`s the same function over them.
"""

from collections.abc import Mapping
import dataclasses
import functools
import json
import math
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from linear_jax import checkpoint
from linear_jax import convergence
from linear_jax import data as data_lib
from linear_jax import grad_sources
from linear_jax import losses
from linear_jax import model
from linear_jax import multihost
from linear_jax import preemption
from linear_jax import solvers
from linear_jax import validation

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'lbfgs')  # lbfgs: see solvers.py
SCHEDULES = ('constant', 'step', 'exponential', 'inverse_time', 'cosine')
DTYPES = ('float32', 'float64')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Every choice of a training run; the flags of `experiments/train.py`."""

  loss: str = 'softmax'  # a registered name, or FILE.py:NAME / package.module:NAME
  loss_hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)  # defaults for the rest
  penalty: str = 'l2'
  reg: float = 1e-4
  optimizer: str = 'sgd'
  learning_rate: float = 0.1
  momentum: float = 0.9
  schedule: str = 'constant'
  decay_rate: float = 0.5
  decay_epochs: float = 10.0
  batch_size: int = 64  # 0: full batch
  epochs: int = 30  # the most epochs (--max_epochs); L-BFGS: the most iterations
  tol: float | None = None  # None: convergence.DEFAULT_TOL; L-BFGS always stops on ‖∇f‖_∞ ≤ tol
  n_iter_no_change: int = 5
  # 'objective', 'grad_norm' or 'none': every one of `epochs`, the default from Python, so a
  # configuration means the same run it always did; the command line's default is 'objective'.
  tol_on: str = 'none'
  grad: str = 'analytic'
  bias_trick: bool = False
  init_scale: float = 1e-3
  patience: int = 0  # 0: no early stopping
  explode_factor: float = 1e4
  seed: int = 0
  dtype: str = 'float32'
  parallel: str = 'none'  # 'shard_map' or 'pmap': data parallel over devices
  num_devices: int = 0  # 0: every device
  eval_every: int = 1  # epochs between evaluations; the last epoch is always evaluated
  stream: bool = False  # stream the training split in blocks (automatic when it does not fit)
  block_rows: int = 0  # rows per streamed block (0: about 32 MiB, a multiple of the batch)

  def __post_init__(self):
    object.__setattr__(self, 'loss_hparams', dict(sorted(dict(self.loss_hparams).items())))

  def __hash__(self):  # loss_hparams is a dict; the compile caches key on configs
    return hash(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

  @property
  def loss_record(self):
    """The `losses.Loss` that `loss` names."""
    return losses.get_loss(self.loss)

  def resolved_loss_hparams(self):
    """Every hyperparameter of the loss: the given values, defaults for the rest."""
    return self.loss_record.resolve_hparams(self.loss_hparams)

  def validate(self):
    """Raises a `ValueError` naming the first bad field."""
    if not isinstance(self.loss, str):
      raise ValueError(
        'TrainConfig.loss is a name (register a Loss record with linear_jax.register_loss), '
        f'got {self.loss!r}.'
      )
    self.resolved_loss_hparams()
    validation.check_name('penalty', self.penalty, losses.PENALTIES)
    validation.check_name('optimizer', self.optimizer, OPTIMIZERS)
    validation.check_name('schedule', self.schedule, SCHEDULES)
    validation.check_name('grad', self.grad, grad_sources.GRAD_SOURCES)
    validation.check_name('dtype', self.dtype, DTYPES)
    validation.check_name('parallel', self.parallel, ('none', 'shard_map', 'pmap'))
    validation.check_name('tol_on', self.tol_on, convergence.TOL_ON)
    positive = ('learning_rate', 'epochs', 'decay_epochs', 'explode_factor', 'eval_every', 'n_iter_no_change')
    if self.tol is not None and not self.tol > 0:
      raise ValueError(f'tol must be > 0, got {self.tol}.')
    for name in positive:
      if not getattr(self, name) > 0:
        raise ValueError(f'{name} must be > 0, got {getattr(self, name)}.')
    for name in ('reg', 'batch_size', 'patience', 'init_scale', 'num_devices', 'block_rows'):
      if not getattr(self, name) >= 0:
        raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}.')
    if not 0 <= self.momentum < 1:
      raise ValueError(f'momentum must be in [0, 1), got {self.momentum}.')
    if not 0 < self.decay_rate <= 1:
      raise ValueError(f'decay_rate must be in (0, 1], got {self.decay_rate}.')
    return self


class HParams(NamedTuple):
  """Hyperparameters carried as arrays: changing them never recompiles."""

  learning_rate: jax.Array
  reg: jax.Array
  loss_hparams: dict  # name -> array, every hyperparameter of the loss
  momentum: jax.Array


def hparams(cfg, dtype=None, **overrides):
  """`HParams` of `cfg` as arrays of `dtype`; `overrides` replace any value (loss ones by name)."""
  dtype = dtype or cfg.dtype
  loss_hp = {**cfg.resolved_loss_hparams()}
  run = {'learning_rate': cfg.learning_rate, 'reg': cfg.reg, 'momentum': cfg.momentum}
  for k, v in overrides.items():
    (loss_hp if k in loss_hp else run)[k] = v
  return HParams(
    learning_rate=jnp.asarray(run['learning_rate'], dtype),
    reg=jnp.asarray(run['reg'], dtype),
    loss_hparams={k: jnp.asarray(v, dtype) for k, v in loss_hp.items()},
    momentum=jnp.asarray(run['momentum'], dtype),
  )


def steps_per_epoch(cfg, num_examples):
  batch = num_examples if cfg.batch_size in (0, None) else min(cfg.batch_size, num_examples)
  return math.ceil(num_examples / batch), batch


def schedule_fn(cfg, steps):
  """The learning-rate multiplier at optimizer step `count` (1 at step 0)."""
  decay_steps = max(1, int(round(cfg.decay_epochs * steps)))
  if cfg.schedule == 'constant':
    return optax.constant_schedule(1.0)
  if cfg.schedule in ('step', 'exponential'):
    return optax.exponential_decay(1.0, decay_steps, cfg.decay_rate, staircase=cfg.schedule == 'step')
  if cfg.schedule == 'inverse_time':
    # lr_t = lr / (1 + k t / T), with k = 1/decay_rate - 1 so lr_T = decay_rate · lr.
    k = 1.0 / cfg.decay_rate - 1.0
    return lambda count: 1.0 / (1.0 + k * count / decay_steps)
  return optax.cosine_decay_schedule(1.0, max(1, cfg.epochs * steps))


def make_optimizer(cfg, hp, steps):
  """The optax optimizer with base learning rate `hp.learning_rate` (an array)."""
  multiplier = schedule_fn(cfg, steps)
  lr = lambda count: hp.learning_rate * multiplier(count)
  if cfg.optimizer == 'sgd':
    return optax.sgd(lr)
  if cfg.optimizer in ('momentum', 'nesterov'):
    return optax.sgd(lr, momentum=hp.momentum, nesterov=cfg.optimizer == 'nesterov')
  return optax.adam(lr)


def init_state(cfg, num_features, num_outputs, hp, steps):
  """Initial `(params, opt_state)`: small random `W`, zero `b`."""
  key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0x1217)
  params = model.init_params(key, num_features, num_outputs, cfg.init_scale, jnp.dtype(cfg.dtype))
  if cfg.bias_trick:
    params = model.fold_bias(params)
  return params, make_optimizer(cfg, hp, steps).init(params)


def batch_plan(key, num_examples, steps, batch, dtype):
  """`([steps, batch] indices, [steps, batch] 0/1 mask)` of one shuffled epoch.

  The last batch is padded with index 0 and mask 0, so every example is used
  exactly once and every batch has the same static shape.
  """
  pad = steps * batch - num_examples
  order = jax.random.permutation(key, num_examples)
  idx = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)]).reshape(steps, batch)
  mask = jnp.concatenate([jnp.ones((num_examples,), dtype), jnp.zeros((pad,), dtype)])
  return idx, mask.reshape(steps, batch)


def batch_value_and_grad(cfg, params, xb, yb, mb, hp):
  """`(objective, gradient)` on one batch (rows weighted by `mb`, or all rows if `None`)."""
  return grad_sources.value_and_grad(
    cfg.grad,
    params,
    xb,
    yb,
    loss=cfg.loss_record,
    reg=hp.reg,
    penalty=cfg.penalty,
    loss_hparams=hp.loss_hparams,
    mask=mb,
  )


def make_apply(cfg, steps):
  """`(params, opt_state, g, hp) -> (params, opt_state)`: one optimizer step along gradient `g`."""

  def apply(params, opt_state, g, hp):
    updates, opt_state = make_optimizer(cfg, hp, steps).update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return apply


def make_update(cfg, steps, masked):
  """`(params, opt_state, x, y, mask, hp) -> (params, opt_state, objective)`: one step."""
  apply = make_apply(cfg, steps)

  def update(params, opt_state, xb, yb, mb, hp):
    value, g = batch_value_and_grad(cfg, params, xb, yb, mb if masked else None, hp)
    return *apply(params, opt_state, g, hp), value

  return update


def make_epoch_fn(cfg, num_examples):
  """`(params, opt_state, x, y, key, hp) -> (params, opt_state, step_losses)`.

  One epoch: a permutation of the examples drawn from `key`, cut into
  `steps` batches (see `batch_plan`), and a `lax.scan` of optimizer steps.
  Full-batch descent skips the shuffle and uses `x` as it is. Given sample
  weights `w` (`[N]`, an optional last argument), each row's mask is
  multiplied by its weight, so every step descends the weighted mean.
  """
  steps, batch = steps_per_epoch(cfg, num_examples)
  update = make_update(cfg, steps, masked=steps * batch != num_examples)
  weighted_update = make_update(cfg, steps, masked=True)

  def epoch(params, opt_state, x, y, key, hp, w=None):
    if steps == 1:
      params, opt_state, value = (update if w is None else weighted_update)(params, opt_state, x, y, w, hp)
      return params, opt_state, value[None]
    idx, mask = batch_plan(key, num_examples, steps, batch, x.dtype)
    if w is not None:
      return scan_batches(weighted_update, params, opt_state, x, y, idx, mask * w[idx], hp)
    return scan_batches(update, params, opt_state, x, y, idx, mask, hp)

  return epoch


def scan_batches(update, params, opt_state, x, y, idx, mask, hp):
  """`lax.scan` of `update` over the batches `x[idx[s]]` (rows weighted by `mask[s]`)."""

  def body(carry, batch_idx_mask):
    bi, bm = batch_idx_mask
    params, opt_state, value = update(*carry, x[bi], y[bi], bm, hp)
    return (params, opt_state), value

  (params, opt_state), values = jax.lax.scan(body, (params, opt_state), (idx, mask))
  return params, opt_state, values


def structural(cfg):
  """`cfg` with the fields that are arrays at run time blanked: the compile-cache key."""
  return dataclasses.replace(
    cfg,
    learning_rate=1.0,
    reg=0.0,
    loss_hparams={},
    momentum=0.0,
    seed=0,
    patience=0,
    init_scale=0.0,
    explode_factor=1.0,
    eval_every=1,
    stream=False,
    block_rows=0,
    tol=1.0,
    n_iter_no_change=1,
    tol_on='none',
  )


@functools.lru_cache(maxsize=64)
def _compiled(kind, cfg, num_examples):
  if kind == 'epoch':
    return jax.jit(make_epoch_fn(cfg, num_examples))
  return jax.jit(make_eval_fn(cfg))


def compiled_epoch_fn(cfg, num_examples):
  """The jitted epoch, shared by every run whose structure matches: new
  hyperparameter values, seeds or datasets of the same size never recompile."""
  return _compiled('epoch', structural(cfg), num_examples)


def compiled_eval_fn(cfg):
  return _compiled('eval', structural(cfg), None)


def make_eval_fn(cfg):
  """`(params, x, y, hp) -> dict` of the objective and accuracy or MSE/MAE."""
  spec = cfg.loss_record

  def evaluate(params, x, y, hp, w=None):
    s = model.scores(params, x)
    per_example = spec.value(s, y, **hp.loss_hparams)
    # With sample weights `w` the objective is the weighted mean Σ w L / Σ w (accuracy stays unweighted).
    data_loss = losses.weighted_mean(per_example, w)
    out = {'loss': data_loss + hp.reg * losses.PENALTIES[cfg.penalty](model.penalized_weights(params))}
    if spec.targets == 'real':
      r = s - (y[:, None] if y.ndim == 1 else y)
      out['mse'] = jnp.mean(jnp.square(r))
      out['mae'] = jnp.mean(jnp.abs(r))
    else:
      pred = (s[:, 0] >= 0).astype(jnp.int32) if s.shape[1] == 1 else jnp.argmax(s, -1)
      out['accuracy'] = jnp.mean((pred == y).astype(jnp.float32))
    return out

  return evaluate


class Diverged(RuntimeError):
  """The loss became non-finite or exploded; the message names step and rate."""


@dataclasses.dataclass
class FitResult:
  params: model.Params
  best_params: model.Params
  history: list
  best_epoch: int
  stopped_early: bool = False
  interrupted: bool = False
  resumed_from: int = 0
  streamed: bool = False
  stop_reason: str = 'max_epochs'  # one of convergence.STOP_REASONS
  solver: dict | None = None  # L-BFGS: iterations, fevals, grad_norm, objective, converged


def selection_metric(metrics, prefix):
  """What 'best' means: accuracy for classifiers, −MSE for regression (higher is better)."""
  if f'{prefix}accuracy' in metrics:
    return metrics[f'{prefix}accuracy']
  return -metrics[f'{prefix}mse']


def num_outputs(cfg, dataset):
  spec = cfg.loss_record
  if spec.targets == 'class':
    return dataset.num_classes
  if spec.targets == 'binary':
    return 1
  return 1 if dataset.y_train.ndim == 1 else dataset.y_train.shape[1]


def check_fit(cfg, dataset):
  """Host-side checks before any compile: config, loss vs data, every split."""
  cfg.validate()
  if cfg.optimizer == 'lbfgs':
    solvers.check_lbfgs(cfg)
  if cfg.dtype == 'float64' and not jax.config.jax_enable_x64:
    raise ValueError(
      "dtype='float64' needs jax.config.update('jax_enable_x64', True) before any JAX work; "
      'without it JAX would silently train in float32.'
    )
  spec = cfg.loss_record
  losses.probe(spec, concrete=True)
  why = data_lib.fits_loss(dataset.num_classes, dataset.kind, spec.targets)
  if why:
    raise ValueError(f'--loss={cfg.loss} does not fit --dataset={dataset.name}: it {why}.')
  if cfg.grad in ('analytic', 'custom_vjp') and spec.score_grad is None:
    raise ValueError(
      f'--grad={cfg.grad} needs a hand-derived score_grad, and loss {cfg.loss!r} has none; '
      'use --grad=autodiff.'
    )
  c = num_outputs(cfg, dataset)
  from linear_jax import stream  # pylint: disable=import-outside-toplevel

  streamed = stream.should_stream(cfg, dataset)
  if streamed:
    stream.check_config(cfg)
  for split in ('train', 'val', 'test'):
    x, y = getattr(dataset, f'x_{split}'), getattr(dataset, f'y_{split}')
    if split != 'train' and len(x) == 0:
      continue
    # Streamed splits (and memory maps) are checked block by block, never as a whole.
    if streamed:  # several processes: each checks the rows it will read
      mine = stream.local_rows(len(x))
      stream.check_features(x[mine], where=f'{dataset.name} {split} split', first_row=mine.start)
    elif isinstance(x, np.memmap):
      stream.check_features(x, where=f'{dataset.name} {split} split')
    else:
      validation.check_features(x, where=f'{dataset.name} {split} split')
    validation.check_targets(y, spec.targets, c, where=f'{dataset.name} {split} split')


def device_data(cfg, dataset):
  """The splits as device arrays in the training dtype (with the constant-1 feature under the bias trick)."""
  dt = jnp.dtype(cfg.dtype)
  spec = cfg.loss_record
  ydt = dt if spec.targets == 'real' else jnp.int32

  from linear_jax import stream  # pylint: disable=import-outside-toplevel

  def put(split):
    # One host pass at most (cast and bias column together); an aligned array of the
    # training dtype is then taken by the CPU backend without a copy.
    x = stream.host_array(getattr(dataset, f'x_{split}'), dt, cfg.bias_trick)
    return jax.device_put(x), jnp.asarray(getattr(dataset, f'y_{split}'), ydt)

  return {s: put(s) for s in ('train', 'val', 'test')}


def _parallel_epoch_fn(cfg, dataset, x, y):
  """A data-parallel epoch with the single-device signature (see parallel.py)."""
  from linear_jax import parallel  # pylint: disable=import-outside-toplevel

  num_devices = cfg.num_devices or jax.device_count()
  if num_devices > jax.device_count():
    raise ValueError(f'num_devices={num_devices} but only {jax.device_count()} device(s) are visible.')
  sharded = jax.process_count() > 1
  if sharded:  # each process trains on its own rows of the training split
    rows = parallel.shard_rows(len(dataset.x_train))
    x, y = x[rows], y[rows]
  xs, ys, valid = parallel.place(cfg, np.asarray(x), np.asarray(y), num_devices, sharded)
  per_device = parallel.rows_per_device(cfg, len(x), num_devices, sharded)
  run = parallel.compiled_epoch_fn(structural(cfg), per_device, num_devices, sharded)
  return lambda params, opt_state, _x, _y, key, hp: run(params, opt_state, xs, ys, valid, key, hp)


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
  from linear_jax import stream  # pylint: disable=import-outside-toplevel

  streamed = stream.should_stream(cfg, dataset)
  arrays = stream.host_splits(cfg, dataset) if streamed else device_data(cfg, dataset)
  x, y = arrays['train']
  n = x.shape[0]
  steps, batch = steps_per_epoch(cfg, n)
  hp = hparams(cfg)
  params, opt_state = init_state(cfg, dataset.num_features, num_outputs(cfg, dataset), hp, steps)
  weights = {s: solvers.device_weights(dataset, s, x.dtype) for s in ('train', 'val')}
  if weights['train'] is not None and (cfg.parallel != 'none' or streamed):
    raise ValueError('sample weights are not supported with --parallel or --stream yet; drop one of them.')
  w_args = () if weights['train'] is None else (weights['train'],)
  if streamed:
    affine = stream.affine(cfg, dataset)
    epoch_fn, stream_eval = stream.make_epoch_fn(cfg, x, y, affine), stream.make_eval_fn(cfg, affine)
    eval_fn = lambda params, x_, y_, hp_, w=None: stream_eval(params, x_, y_, hp_)
  else:
    epoch_fn = compiled_epoch_fn(cfg, n) if cfg.parallel == 'none' else _parallel_epoch_fn(cfg, dataset, x, y)
    eval_fn = compiled_eval_fn(cfg)
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
  if workdir and writer:
    checkpoint.remove_stale(workdir)
  found = resume and ckpt_path and os.path.exists(ckpt_path)
  multihost.check_same_view(ckpt_path, found)
  if found:
    (params, opt_state, best_params, base_key), meta = checkpoint.load(
      ckpt_path, (params, opt_state, params, base_key)
    )
    multihost.check_process_count(ckpt_path, meta)
    saved = meta.get('config', {})
    if saved != dataclasses.asdict(cfg):
      changed = sorted(k for k, v in dataclasses.asdict(cfg).items() if saved.get(k) != v)
      raise ValueError(f'{ckpt_path}: written with other settings ({", ".join(changed)}); cannot resume.')
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
        'data_order': 'stream.epoch_order(cfg, jax.random.fold_in(key, epoch), num_examples)'
        if streamed
        else 'jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)',
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
        metrics['train_grad_norm'] = convergence.full_grad_norm(cfg, params, x, y, hp, weights['train'])
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


def evaluate(cfg, dataset, params):
  """Metrics of `params` on every split: `{'train_loss': ..., 'test_accuracy': ...}`."""
  return evaluate_many(cfg, dataset, [params])[0]


def evaluate_many(cfg, dataset, params_list):
  """`[evaluate(cfg, dataset, p) for p in params_list]`, with the data moved to the device once."""
  from linear_jax import stream  # pylint: disable=import-outside-toplevel

  if stream.should_stream(cfg, dataset):
    if solvers.device_weights(dataset, 'train', np.float32) is not None:
      raise ValueError('sample weights are not supported with --stream yet; drop one of them.')
    arrays, stream_eval = (
      stream.host_splits(cfg, dataset),
      stream.make_eval_fn(cfg, stream.affine(cfg, dataset)),
    )
    eval_fn = lambda params, x, y, hp, w=None: stream_eval(params, x, y, hp)
  else:
    arrays, eval_fn = device_data(cfg, dataset), compiled_eval_fn(cfg)
  hp = hparams(cfg)
  outs = []
  for params in params_list:
    out = {}
    for split, (x, y) in arrays.items():
      if len(x):
        w = solvers.device_weights(dataset, split, x.dtype)
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
