"""Many hyperparameter settings trained together as one compiled program.

K = |learning rates| × |regs| (× |each loss hyperparameter| × |momenta| × |seeds|) models:
the epoch of `step.py` is `vmap`-ed over the model axis with the data
unbatched, so each batch is gathered once and multiplied against all the
weight matrices of one seed at once. Hyperparameters are arrays
(`step.HParams`), so a sweep with other values reuses the compiled program.
Seeds (initialization and mini-batch order) run one after another through the
same program, each with its own data order, so every model still equals its
setting trained alone. A model whose loss becomes non-finite or explodes is
frozen at that step and marked diverged; the others go on unharmed.
"""

import dataclasses
import functools
import itertools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from linear_jax.data import records
from linear_jax.datapath import factory as datapath
from linear_jax.maths import losses
from linear_jax.optim import config
from linear_jax.optim import results
from linear_jax.optim import step
from linear_jax.training import own_gradient
from linear_jax.training import preemption
from linear_jax.training import train
from linear_jax.tuning import sweep_state


@dataclasses.dataclass(frozen=True)
class Bound:
  """The values one run hyperparameter of a sweep may take: finite numbers of `kind` in an interval.

  `check_grid` refuses a setting by it, and the command line's list flags
  (`lr_sweep --lrs/--regs/--momenta/--seeds`) parse by it, so both apply one
  rule and say it in the same words (`describe`).
  """

  plural: str  # the values' name in messages: 'learning rates'
  low: float
  high: float = math.inf
  low_open: bool = False  # `low` itself is refused
  high_open: bool = True  # `high` itself is refused (always, when it is infinite)
  kind: type = float  # int: integers only (bools and floats refused)
  high_text: str | None = None  # how messages write `high`, if not as `{high:g}`

  def admits(self, v) -> bool:
    """Whether `v` is a finite number of `kind` within the interval."""
    if isinstance(v, (np.ndarray, jax.Array)) and np.ndim(v) == 0:
      v = v.item()  # a 0-d array, e.g. np.array(0.1) or jnp.float32(0.1), is its number
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
      return False
    if self.kind is int and not isinstance(v, (int, np.integer)):
      return False
    if not math.isfinite(v):
      return False
    above_low = v > self.low if self.low_open else v >= self.low
    below_high = v < self.high if self.high_open else v <= self.high
    return bool(above_low and below_high)

  def describe(self) -> str:
    """The interval in words: `'> 0'`, `'>= 0'`, `'in [0, 1)'`."""
    low = f'{self.low:g}'
    if self.high == math.inf:
      return f'{">" if self.low_open else ">="} {low}'
    high = self.high_text or f'{self.high:g}'
    return f'in {"(" if self.low_open else "["}{low}, {high}{")" if self.high_open else "]"}'

  def message(self, v) -> str:
    """Why `v` is refused: `'momenta must be in [0, 1), got 1.0.'`."""
    if self.kind is int:
      return f'{self.plural} must be integers {self.describe()}, got {v!r}.'
    shown = repr(v) if isinstance(v, str) else v  # '0.1' is text, not the number it spells
    return f'{self.plural} must be {self.describe()}, got {shown}.'


# The run hyperparameters a sweep varies (the keys of a setting besides the loss's), and their bounds.
BOUNDS = {
  'learning_rate': Bound('learning rates', 0.0, low_open=True),
  'reg': Bound('regs', 0.0),
  'momentum': Bound('momenta', 0.0, 1.0),
  'seed': Bound('seeds', 0, 2**32, kind=int, high_text='2**32'),
}
RUN_HPARAMS = tuple(BOUNDS)
# Epochs between a sweep's checkpoints: under 5% of its time (experiments/bench_longruns.py).
CHECKPOINT_EVERY = 10


def make_sweep_epoch_fn(cfg, num_examples, weighted=False):
  """`(params, opt_state, diverged_at, x, y, key, hp, limit, step0[, w]) -> (..., losses [K, steps])`.

  Leading axis K on `params`, `opt_state`, `diverged_at` (−1 while healthy,
  else the 1-based step it diverged at), `hp` and `limit` (the loss above which
  a model counts as exploded); `x`, `y`, `key` and `step0` are shared. With
  `weighted`, the epoch takes `[N]` sample weights `w` last and each row's
  mask is multiplied by its weight (the weighted mean, as in `train.fit`).
  """
  steps, batch = step.steps_per_epoch(cfg, num_examples)
  masked = weighted or steps * batch != num_examples
  update = step.make_update(cfg, steps, masked)

  def guarded(params, opt_state, diverged_at, xb, yb, mb, hp, limit, step):
    new_params, new_opt_state, value = update(params, opt_state, xb, yb, mb, hp)
    bad = ~jnp.isfinite(value) | (value > limit)
    frozen = (diverged_at >= 0) | bad
    params = optax.tree_utils.tree_where(frozen, params, new_params)
    opt_state = optax.tree_utils.tree_where(frozen, opt_state, new_opt_state)
    diverged_at = jnp.where((diverged_at < 0) & bad, step, diverged_at)
    return params, opt_state, diverged_at, jnp.where(diverged_at >= 0, jnp.nan, value)

  # The batch is gathered outside the vmap: read once, shared by all K models.
  many = jax.vmap(guarded, in_axes=(0, 0, 0, None, None, None, 0, 0, None))

  def epoch(params, opt_state, diverged_at, x, y, key, hp, limit, step0, w=None):
    if steps == 1:
      out = many(params, opt_state, diverged_at, x, y, w, hp, limit, step0 + 1)
      return (*out[:3], out[3][:, None])
    idx, mask = step.batch_plan(key, num_examples, steps, batch, x.dtype)
    if weighted:
      mask = mask * w[idx]

    def body(carry, inputs):
      bi, bm, t = inputs
      *state, value = many(*carry, x[bi], y[bi], bm, hp, limit, step0 + t + 1)
      return tuple(state), value

    state, values = jax.lax.scan(
      body, (params, opt_state, diverged_at), (idx, mask, jnp.arange(steps, dtype=jnp.int32))
    )
    return (*state, values.T)

  return epoch


@functools.partial(jax.jit, static_argnames=('structure', 'num_examples', 'weighted'))
def _epoch(
  params, opt_state, diverged_at, x, y, key, hp, limit, step0, w=None, *, structure, num_examples, weighted
):
  return make_sweep_epoch_fn(structure, num_examples, weighted)(
    params, opt_state, diverged_at, x, y, key, hp, limit, step0, w
  )


@functools.partial(jax.jit, static_argnames=('structure',))
def _eval(params, x, y, hp, w=None, *, structure):
  return jax.vmap(step.make_eval_fn(structure), in_axes=(0, None, None, 0, None))(params, x, y, hp, w)


def compiled_sweep_fns(cfg, num_examples, weighted=False):
  """The jitted sweep epoch and evaluation, compiled once per `config.StepConfig`.

  Their only static argument is the run's structure, so other hyperparameter
  values, seeds or tolerances reuse them.
  """
  structure = step.structural(cfg)
  return (
    functools.partial(_epoch, structure=structure, num_examples=num_examples, weighted=weighted),
    functools.partial(_eval, structure=structure),
  )


def rates_around(cfg, dataset, num, low=1 / 32, high=8.0):
  """`num` learning rates spaced evenly in log from `low` to `high` times `cfg.learning_rate` (`'auto'`:
  the step `train.fit` would derive for `cfg` on `dataset`); also that center, and how it was found
  (`None` for a number given)."""
  path = train.check_fit(cfg, dataset)  # the data fits the loss before a step is derived for it
  derived, found = train.resolve_step_size(cfg, path)
  center = derived.learning_rate
  return list(np.geomspace(center * low, center * high, num)), center, found


def grid(learning_rates, regs, margins=None, momenta=None, seeds=None, loss_hparams=None):
  """Every combination, as a list of dicts of hyperparameter values.

  `loss_hparams` maps hyperparameters of the loss to the values to sweep
  (`margins` is short for `loss_hparams={'margin': margins}`). With `seeds`,
  each setting is repeated once per seed (the last axis), and its dicts gain
  an integer `'seed'`.
  """
  axes = {'learning_rate': learning_rates, 'reg': regs}
  loss_axes = dict(loss_hparams or {})
  if margins is not None:
    loss_axes['margin'] = margins
  axes.update(loss_axes)
  if momenta is not None:
    axes['momentum'] = momenta
  if seeds is not None:
    axes['seed'] = seeds
  return [
    {name: _cast(name, v) for name, v in zip(axes, values, strict=True)}
    for values in itertools.product(*axes.values())
  ]


def config_for(cfg, setting):
  """The `TrainConfig` that trains `setting` (a dict of `grid`) alone, as model k of a sweep."""
  loss_hp = {n: v for n, v in setting.items() if n not in RUN_HPARAMS}
  run = {n: v for n, v in setting.items() if n in RUN_HPARAMS}
  return dataclasses.replace(cfg, **run, loss_hparams={**cfg.loss_hparams, **loss_hp})


def _cast(name, v):
  if name != 'seed':
    return float(v)
  # NumPy integers become ints (JSON-ready); anything else is left for check_grid to refuse.
  return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v


def check_grid(settings, loss=None, optimizer=None, dtype=None):
  """Raises a `ValueError` naming the hyperparameter whose values are bad.

  The run hyperparameters are held to `BOUNDS`; with `dtype`, every value must be one it holds
  (`config.check_representable`: a learning rate of 1e-50 is 0 in float32, and the model would learn
  nothing; a reg of 1e300 overflows). With `loss` (a record or name), every other key must be one of its
  hyperparameters, within its bounds. With `optimizer`, a momentum only where it reads one.
  """
  if not settings:
    raise ValueError('The sweep is empty: give at least one learning rate and one reg.')
  for s in settings:
    missing = [n for n in ('learning_rate', 'reg') if n not in s]
    if missing:
      raise ValueError(f'Every setting of a sweep needs a learning_rate and a reg; {s} has no {missing[0]}.')
    for name, bound in BOUNDS.items():
      if name in s and not bound.admits(s[name]):
        raise ValueError(bound.message(s[name]))
    if loss is not None:
      losses.get_loss(loss).resolve_hparams({n: v for n, v in s.items() if n not in RUN_HPARAMS})
    for name, value in s.items():  # a reg, margin or delta of 1e300 is inf in float32, and so is the loss
      if dtype is not None and name != 'seed':
        config.check_representable(name, value, dtype)
  if 'seed' in settings[0] and any('seed' not in s for s in settings):
    raise ValueError('Either every setting of a sweep names a seed or none does.')
  if optimizer not in (None, 'momentum', 'nesterov') and any('momentum' in s for s in settings):
    raise ValueError(
      f"The sweep sets a momentum, which optimizer={optimizer!r} does not read: use 'momentum' or 'nesterov'."
    )


@dataclasses.dataclass
class SweepResult:
  """Per model: its hyperparameters, curves, final and best metrics, divergence."""

  settings: list  # [K] dicts of hyperparameter values
  history: list  # per epoch: dict of [K] arrays
  final: dict  # metric -> [K] array after the last epoch
  best: dict  # metric -> [K] array at each model's best epoch
  best_epoch: np.ndarray  # [K], 0 if it never improved
  diverged_at: np.ndarray  # [K] step, -1 if it did not diverge
  params: object  # Params with a leading [K] axis, final (frozen where diverged)
  seconds: float

  @property
  def alive(self):
    return self.diverged_at < 0

  def best_index(self):
    """The best model that did not diverge (validation metric); `None` if all did."""
    score = self.best['score']
    score = np.where(self.alive & np.isfinite(score), score, -np.inf)
    return None if not np.isfinite(score).any() else int(np.argmax(score))

  def seed_groups(self):
    """Indices of the models that differ only in their seed: one list per setting, in first-seen order."""
    groups = {}
    for k, s in enumerate(self.settings):
      groups.setdefault(tuple((n, v) for n, v in s.items() if n != 'seed'), []).append(k)
    return list(groups.values())

  def setting_scores(self):
    """`[G]` mean validation score over each setting's seeds; `-inf` where any seed diverged."""
    score = np.where(self.alive, self.best['score'], -np.inf)
    return np.array(
      [np.mean(score[g]) if np.isfinite(score[g]).all() else -np.inf for g in self.seed_groups()]
    )

  def best_setting(self):
    """Index into `seed_groups()` of the best mean over seeds; a setting with a diverged seed never wins."""
    scores = self.setting_scores()
    return None if not np.isfinite(scores).any() else int(np.argmax(scores))

  def setting_rows(self):
    """One JSON-ready dict per setting: its seeds, then mean and sample standard deviation over them.

    A metric is `None` (mean and std) if any seed diverged; `diverged_seeds`
    counts those seeds.
    """
    out = []
    for g in self.seed_groups():
      row = {n: v for n, v in self.settings[g[0]].items() if n != 'seed'}
      row['seeds'] = [self.settings[k].get('seed') for k in g]
      for prefix, metrics in (('final', self.final), ('best', self.best)):
        for m, v in metrics.items():
          if m != 'score':
            vals = np.asarray(v[g], np.float64)
            ok = np.isfinite(vals).all() and self.alive[g].all()
            row[f'{prefix}_{m}_mean'] = _clean(vals.mean()) if ok else None
            row[f'{prefix}_{m}_std'] = _clean(vals.std(ddof=min(1, len(g) - 1))) if ok else None
      row['diverged_seeds'] = int((~self.alive[g]).sum())
      out.append(row)
    return out

  def rows(self):
    """One JSON-ready dict per model; missing or non-finite values are `None`."""
    out = []
    for k, s in enumerate(self.settings):
      row = dict(s)
      row.update({f'final_{m}': _clean(v[k]) for m, v in self.final.items() if m != 'score'})
      row.update({f'best_{m}': _clean(v[k]) for m, v in self.best.items() if m != 'score'})
      row['best_epoch'] = int(self.best_epoch[k])
      row['diverged_step'] = None if self.diverged_at[k] < 0 else int(self.diverged_at[k])
      out.append(row)
    return out


def _clean(v):
  v = float(v)
  return v if math.isfinite(v) else None


def _run_chunk(
  cfg,
  path,
  settings,
  num_features,
  num_outputs,
  on_epoch,
  chunk_offset,
  total,
  progress=None,
  after_epoch=None,
):
  """Trains the `[K]` models of `settings` (one seed) together for `cfg.epochs`, from `progress` if given.

  Returns:
    `(params, history, final, best, best_epoch, diverged_at)`, each with a
    leading model axis `[K]` (`history`: a list of per-epoch metric dicts).
  """
  arrays = path.arrays
  x, y = arrays['train']
  n = x.shape[0]
  k = len(settings)
  steps, _ = step.steps_per_epoch(cfg, n)
  dt = jnp.dtype(cfg.dtype)
  hp, params, opt_state = _stacked_models(cfg, settings, num_features, num_outputs, steps, dt)
  weights = {s: path.weights(s) for s in ('train', 'val')}
  epoch_fn, eval_fn = compiled_sweep_fns(cfg, n, weights['train'] is not None)
  w_args = () if weights['train'] is None else (weights['train'],)  # with --parallel: on every device
  diverged_at = jnp.full((k,), -1, jnp.int32)
  params, opt_state, hp, diverged_at = path.spread_models((params, opt_state, hp, diverged_at))
  params, opt_state, diverged_at, limit, history, best, best_epoch, start = _begin_or_resume(
    cfg, path, progress, eval_fn, (params, opt_state, diverged_at), x, y, hp, weights['train'], dt
  )
  base_key = jax.random.PRNGKey(cfg.seed)
  splits = ('train', 'val') if len(arrays['val'][0]) else ('train',)
  for epoch in range(start, cfg.epochs):
    before = (params, opt_state, diverged_at)
    params, opt_state, diverged_at, _ = epoch_fn(
      params,
      opt_state,
      diverged_at,
      x,
      y,
      jax.random.fold_in(base_key, epoch),
      hp,
      limit,
      jnp.int32(epoch * steps),
      *w_args,
    )
    if after_epoch and not preemption.wait(params):  # a stop signal: abandon the epoch in flight
      after_epoch(sweep_state.ChunkProgress(*before, limit, history, best, best_epoch, epoch), abandon=True)
    metrics, dead = _epoch_metrics(eval_fn, params, arrays, splits, hp, weights, diverged_at)
    metrics = records.in_target_units(path.dataset, metrics)  # MSE / MAE in the targets' units
    best_epoch = _keep_best(metrics, best, best_epoch, epoch)
    history.append(metrics)
    if on_epoch:
      on_epoch(epoch + 1, chunk_offset, k, total, metrics, dead)
    if after_epoch:  # checkpoints and stop signals (run_sweep)
      progress = sweep_state.ChunkProgress(
        params, opt_state, diverged_at, limit, history, best, best_epoch, epoch + 1
      )
      after_epoch(progress)
  final = dict(history[-1])
  final['score'] = results.selection_metric(final, 'val_' if 'val_loss' in final else 'train_')
  return params, history, final, best, best_epoch, np.asarray(diverged_at)


def _stacked_models(cfg, settings, num_features, num_outputs, steps, dt):
  """`(hp, params, opt_state)` of the `[K]` models of `settings`, stacked on a leading model axis."""
  k = len(settings)
  each = [step.hparams(cfg, dt, **{h: v for h, v in s.items() if h != 'seed'}) for s in settings]
  hp = jax.tree.map(lambda *a: jnp.stack(a), *each)
  params, opt_state = step.init_state(cfg, num_features, num_outputs, step.hparams(cfg), steps)
  stack = lambda tree: jax.tree.map(lambda a: jnp.broadcast_to(a, (k, *jnp.shape(a))), tree)
  params, opt_state = stack(params), stack(opt_state)
  return hp, params, opt_state


def _begin_or_resume(cfg, path, progress, eval_fn, state, x, y, hp, w_train, dt):
  """`(params, opt_state, diverged_at, limit, history, best, best_epoch, start)` of a chunk's first epoch.

  From `state = (params, opt_state, diverged_at)` with the divergence limit
  set by the initial training loss, or, resumed (`sweep_state.py`), from
  `progress`: the state after the chunk's last checkpointed epoch.
  """
  params, opt_state, diverged_at = state
  k = len(diverged_at)
  if progress is None:
    initial = np.asarray(eval_fn(params, x, y, hp, w_train)['loss'])
    limit = jnp.asarray(cfg.explode_factor * np.maximum(initial, 1e-3), dt)
    history, best, best_epoch, start = [], {'score': np.full(k, -np.inf)}, np.zeros(k, int), 0
  else:  # resumed (sweep_state.py): the state after the chunk's last checkpointed epoch
    p = progress
    params, opt_state, diverged_at, limit = jax.tree.map(
      jnp.asarray, (p.params, p.opt_state, p.diverged_at, p.limit)
    )
    params, opt_state, diverged_at = path.spread_models((params, opt_state, diverged_at))
    history, best, best_epoch, start = list(p.history), dict(p.best), p.best_epoch, p.epoch
  limit = path.spread_models(limit)
  return params, opt_state, diverged_at, limit, history, best, best_epoch, start


def _epoch_metrics(eval_fn, params, arrays, splits, hp, weights, diverged_at):
  """`(metrics, dead)`: `{split_metric: [K]}` float64 (MSE and MAE `[K, outputs]` for `[N, outputs]`
  targets, before `records.in_target_units`), NaN for the `[K]` models that diverged (`dead`)."""
  metrics = {}
  for split in splits:
    for name, v in eval_fn(params, *arrays[split], hp, weights[split]).items():
      metrics[f'{split}_{name}'] = np.asarray(v, np.float64)
  dead = np.asarray(diverged_at) >= 0
  metrics = {
    m: np.where(np.reshape(dead, (-1,) + (1,) * (v.ndim - 1)), np.nan, v) for m, v in metrics.items()
  }
  return metrics, dead


def _keep_best(metrics, best, best_epoch, epoch):
  """The `[K]` best epochs after `epoch`; `best` (metrics at each model's best epoch) updated in place."""
  k = len(best_epoch)
  score = results.selection_metric(metrics, 'val_' if 'val_loss' in metrics else 'train_')
  improved = np.nan_to_num(score, nan=-np.inf) > best['score']
  for m, v in {**metrics, 'score': score}.items():
    best[m] = np.where(improved, v, best.get(m, np.full(k, np.nan)))
  return np.where(improved, epoch + 1, best_epoch)


def _take_models(out, k):
  params, history, final, best, best_epoch, diverged_at = out
  first = lambda d: {m: v[:k] for m, v in d.items()}
  return (
    jax.tree.map(lambda a: a[:k], params),
    [first(h) for h in history],
    first(final),
    first(best),
    best_epoch[:k],
    diverged_at[:k],
  )


def _auto_chunk(cfg, dataset, num_outputs, max_bytes):
  """How many models fit in `max_bytes`: parameters, optimizer state and per-batch scores."""
  n = len(dataset.x_train)
  steps, batch = step.steps_per_epoch(cfg, n)
  params, opt_state = jax.eval_shape(
    lambda: step.init_state(cfg, dataset.num_features, num_outputs, step.hparams(cfg), steps)
  )
  itemsize = jnp.dtype(cfg.dtype).itemsize
  state = sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves((params, opt_state)))
  per_model = 3 * state + 4 * batch * num_outputs * itemsize  # params, updates, grads; scores and G
  return max(1, int(max_bytes // per_model))


def run_sweep(
  cfg,
  dataset,
  settings,
  chunk_size=None,
  on_epoch=None,
  max_bytes=1 << 30,
  checkpoint_path=None,
  checkpoint_every=CHECKPOINT_EVERY,
  resume=False,
):
  """Trains every setting of `settings` (see `grid`) on `dataset` together.

  Args:
    cfg: the `TrainConfig` of everything the sweep does not vary.
    dataset: a `data.Dataset`.
    settings: `[K]` dicts with `learning_rate`, `reg` and optionally
      hyperparameters of the loss (`margin`, `delta`, ...), `momentum` and
      `seed` (initialization and mini-batch order;
      models of one seed train together, seeds one after another; without
      it, every model uses `cfg.seed`).
    chunk_size: train at most this many models at once; `None`: as many as
      fit in `max_bytes` (an estimate of each model's parameters, optimizer
      state and per-batch scores), all of them for the usual sizes.
      With `cfg.parallel` set, the model axis is spread over the devices
      (K/devices models on each; a K that does not divide is padded with
      dummy models that are dropped).
    on_epoch: called as `on_epoch(epoch, chunk_start, chunk_len, K, metrics, dead)`.
    max_bytes: the memory the automatic chunking may plan for.
    checkpoint_path: where to write checkpoints (`sweep_state.py`), atomically,
      every `checkpoint_every` epochs and after every chunk; `None`: none.
    checkpoint_every: epochs between checkpoints.
    resume: continue from `checkpoint_path` if it exists (refused, naming
      what differs, if it was written with other settings); the resumed
      sweep ends bit for bit equal to an uninterrupted one.

  Returns:
    A `SweepResult` in the order of `settings`. Model k ends equal (to float
    tolerance) to `train.fit` with `cfg` and setting k. Raises
    `preemption.Stopped` after writing a checkpoint if a stop signal came
    (see `preemption.handling`).
  """
  path, c, chunk, num_devices = _sweep_plan_checks(
    cfg, dataset, settings, chunk_size, max_bytes, checkpoint_path, checkpoint_every
  )
  start = time.perf_counter()
  plan = _chunk_plan(settings, cfg.seed, chunk)
  parts, progress, ident = _resumed_parts(cfg, dataset, settings, chunk, c, checkpoint_path, resume)
  order = _train_chunks(
    cfg,
    dataset,
    settings,
    path,
    c,
    plan,
    parts,
    progress,
    on_epoch,
    num_devices,
    checkpoint=(checkpoint_path, checkpoint_every, ident),
  )
  return _sweep_result(settings, parts, order, start)


def _sweep_plan_checks(cfg, dataset, settings, chunk_size, max_bytes, checkpoint_path, checkpoint_every):
  """`(path, num_outputs, chunk, num_devices)`: the sweep's data path, and models per chunk and device.

  Refuses a bad fit or grid, `chunk_size` or `checkpoint_every` below 1, and
  checkpoints from several processes.
  """
  if cfg.optimizer == 'lbfgs':  # each model to its optimum, no learning rate: the regularization path
    raise ValueError(
      "A sweep trains learning rate x reg with an optax optimizer; for optimizer='lbfgs' fit the "
      'regularization path: paths.fit_path(cfg, dataset, regs) (lr_sweep --optimizer=lbfgs).'
    )
  fit_path = train.check_fit(cfg, dataset)
  check_grid(settings, cfg.loss, cfg.optimizer, cfg.dtype)
  # A loss file's score_grad at every swept value of its hyperparameters, not only at cfg's.
  own_gradient.check(cfg, fit_path, [config_for(cfg, s).loss_hparams for s in settings])
  if cfg.schedule == 'adaptive':
    raise ValueError(
      "schedule='adaptive' divides a run's rate at its plateaus, and a sweep trains a fixed number of "
      'epochs for every setting at once; choose another schedule (constant, step, ...).'
    )
  path = datapath.make(cfg, dataset, resident=True)  # the K models' one program holds every row
  c = step.num_outputs(cfg, dataset)
  chunk = _auto_chunk(cfg, dataset, c, max_bytes) if not chunk_size else int(chunk_size)
  if chunk < 1:
    raise ValueError(f'chunk_size must be >= 1, got {chunk_size}.')
  num_devices = path.model_devices
  chunk = -(-chunk // num_devices) * num_devices  # whole models per device
  if checkpoint_every < 1:
    raise ValueError(f'checkpoint_every must be >= 1, got {checkpoint_every}.')
  if checkpoint_path:
    path.refuse_several_processes(
      'sweep checkpoints are written by single-process sweeps only; give no checkpoint_path.'
    )
  return path, c, chunk, num_devices


def _chunk_plan(settings, default_seed, chunk):
  """`[(seed, indices into settings)]`: chunks of at most `chunk` models, each of one seed."""
  by_seed = {}  # models of one seed share a data order, so they train together
  for k, s in enumerate(settings):
    by_seed.setdefault(s.get('seed', default_seed), []).append(k)
  return [(seed, m[i : i + chunk]) for seed, m in by_seed.items() for i in range(0, len(m), chunk)]


def _resumed_parts(cfg, dataset, settings, chunk, num_outputs, checkpoint_path, resume):
  """`(parts, progress, ident)`: the finished chunks and the one in progress, from a checkpoint to resume.

  `([], None, None)` without `checkpoint_path`; `ident` is the sweep's
  `sweep_state.identity` otherwise.
  """
  parts, progress, ident = [], None, None
  if checkpoint_path:
    ident = sweep_state.identity(cfg, dataset, settings, chunk)
    if resume and os.path.exists(checkpoint_path):
      params, opt_state = jax.eval_shape(
        lambda: step.init_state(cfg, dataset.num_features, num_outputs, step.hparams(cfg), 1)
      )
      parts, progress = sweep_state.load(
        checkpoint_path, ident, jax.tree.structure(params), jax.tree.structure(opt_state)
      )
  return parts, progress, ident


def _train_chunks(
  cfg, dataset, settings, path, num_outputs, plan, parts, progress, on_epoch, num_devices, checkpoint
):
  """Trains the chunks of `plan` not in `parts` yet, appending each to `parts`; returns the training order.

  `checkpoint = (checkpoint_path, checkpoint_every, ident)`; the order is
  the indices into `settings` of the models of `parts`, as they were trained.
  """
  checkpoint_path = checkpoint[0]
  order = [j for _, idx in plan[: len(parts)] for j in idx]
  for seed, idx in plan[len(parts) :]:
    seed_cfg = dataclasses.replace(cfg, seed=int(seed))
    part = [settings[j] for j in idx]
    part += [part[-1]] * ((-len(idx)) % num_devices)  # dummies, dropped below
    where = f'models {len(order) + 1}-{len(order) + len(idx)} of {len(settings)}'
    after_epoch = _after_epoch(cfg, checkpoint, parts, where)
    out = _run_chunk(
      seed_cfg,
      path,
      part,
      dataset.num_features,
      num_outputs,
      on_epoch,
      len(order),
      len(settings),
      progress,
      after_epoch,
    )
    progress = None
    parts.append(_take_models(out, len(idx)))
    order += idx
    if checkpoint_path:
      sweep_state.save(checkpoint_path, checkpoint[2], parts, None)
    if len(parts) < len(plan) and preemption.stop_requested():
      raise preemption.Stopped(checkpoint_path, f'epoch {cfg.epochs} of {cfg.epochs} ({where})')
  return order


def _after_epoch(cfg, checkpoint, parts, where):
  """`_run_chunk`'s `after_epoch`: a checkpoint every `checkpoint_every` epochs, and on a stop signal.

  A stop signal raises `preemption.Stopped`, naming the epoch and `where`.
  """
  checkpoint_path, checkpoint_every, ident = checkpoint

  def after_epoch(p, abandon=False):
    if p.epoch == cfg.epochs and not abandon:
      return  # the chunk's end is saved with the chunk
    stop = abandon or preemption.stop_requested()
    if checkpoint_path and (stop or p.epoch % checkpoint_every == 0):
      sweep_state.save(checkpoint_path, ident, parts, p)
      stop = stop or preemption.stop_requested()  # a signal during the write: this checkpoint is the last
    if stop:
      raise preemption.Stopped(checkpoint_path, f'epoch {p.epoch} of {cfg.epochs} ({where})')

  return after_epoch


def _sweep_result(settings, parts, order, start):
  """The `SweepResult` of the trained chunks `parts`, in the order of `settings`; `start`: its start time."""
  back = np.argsort(order)  # from training order back to the order of `settings`
  cat = lambda xs: np.concatenate(xs)[back]
  history = [{m: cat([p[1][e][m] for p in parts]) for m in parts[0][1][e]} for e in range(len(parts[0][1]))]
  return SweepResult(
    settings=list(settings),
    history=history,
    final={m: cat([p[2][m] for p in parts]) for m in parts[0][2]},
    best={m: cat([p[3][m] for p in parts]) for m in parts[0][3]},
    best_epoch=cat([p[4] for p in parts]),
    diverged_at=cat([p[5] for p in parts]),
    params=jax.tree.map(lambda *a: jnp.concatenate(a)[back], *[p[0] for p in parts]),
    seconds=time.perf_counter() - start,
  )
