"""The pure training step: hyperparameters as arrays, the optimizer, the batch plan, the scanned epoch.

`make_epoch_fn` builds one epoch: shuffle, pad the last partial batch
(masked, so every example counts once and shapes stay static), and
`lax.scan` the optimizer step over the batches. Hyperparameters that a
sweep varies (`HParams`) are arrays, and the optimizer carries its learning
rate and momentum in its state (`optax.inject_hyperparams`), so new values
never recompile; `compiled_epoch_fn` and `compiled_eval_fn` are `jax.jit`
programs whose only static argument is the run's `config.StepConfig`.

Nothing here loops over epochs, touches the disk or reads a flag: the fit
loop (`train.py`), the data-parallel epoch (`parallel.py`), streaming
(`stream.py`), the solvers and the sweep build on these functions.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from linear_jax.maths import grad_sources
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.optim import config


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
  # An 'auto' step not yet derived (`step_size.derive`) is NaN: a step taken with it shows at once.
  lr = float('nan') if cfg.learning_rate == config.AUTO else cfg.learning_rate
  run = {'learning_rate': lr, 'reg': cfg.reg, 'momentum': cfg.momentum}
  for k, v in overrides.items():
    (loss_hp if k in loss_hp else run)[k] = v
  return HParams(
    learning_rate=jnp.asarray(run['learning_rate'], dtype),
    reg=jnp.asarray(run['reg'], dtype),
    loss_hparams={k: jnp.asarray(v, dtype) for k, v in loss_hp.items()},
    momentum=jnp.asarray(run['momentum'], dtype),
  )


def steps_per_epoch(cfg, num_examples):
  """`(steps, batch)` of one epoch over `num_examples` rows; a `ValueError` for a split of none."""
  if num_examples < 1:
    raise ValueError('the training split has no rows: there is nothing to train on.')
  batch = num_examples if cfg.batch_size in (0, None) else min(cfg.batch_size, num_examples)
  return math.ceil(num_examples / batch), batch


def schedule_fn(cfg, steps):
  """The learning-rate multiplier at optimizer step `count` (1 at step 0)."""
  decay_steps = max(1, int(round(cfg.decay_epochs * steps)))
  if cfg.schedule in ('constant', 'adaptive'):  # adaptive: the fit loop divides the rate (convergence.py)
    return optax.constant_schedule(1.0)
  if cfg.schedule in ('step', 'exponential'):
    return optax.exponential_decay(1.0, decay_steps, cfg.decay_rate, staircase=cfg.schedule == 'step')
  if cfg.schedule == 'inverse_time':
    # lr_t = lr / (1 + k t / T), with k = 1/decay_rate - 1 so lr_T = decay_rate · lr.
    k = 1.0 / cfg.decay_rate - 1.0
    return lambda count: 1.0 / (1.0 + k * count / decay_steps)
  return optax.cosine_decay_schedule(1.0, max(1, cfg.epochs * steps))


def make_optimizer(cfg, hp, steps):
  """The optax optimizer of `cfg`, its learning rate and momentum injected as arrays.

  `optax.inject_hyperparams` keeps `learning_rate` and `momentum` in the
  optimizer's state (`opt_state.hyperparams`), so one compiled step serves
  every value; `hp` (an `HParams`, or `None` for placeholders) gives the
  values `init` stores, and `make_apply` writes the step's `hp` over them.
  The schedule multiplies the base rate: `lr_t = learning_rate · schedule(t)`.
  """
  multiplier = schedule_fn(cfg, steps)

  def factory(learning_rate, momentum):
    lr = lambda count: learning_rate * multiplier(count)
    if cfg.optimizer == 'sgd':
      return optax.sgd(lr)
    if cfg.optimizer in ('momentum', 'nesterov'):
      return optax.sgd(lr, momentum=momentum, nesterov=cfg.optimizer == 'nesterov')
    if cfg.optimizer == 'adam':
      return optax.adam(lr)
    raise ValueError(  # lbfgs is no step of this loop: it was trained as adam, silently
      f"optimizer={cfg.optimizer!r} has no optax step here; 'lbfgs' trains by `train.fit` (or "
      '`paths.fit_path` over regs), the others are sgd, momentum, nesterov and adam.'
    )

  values = {'learning_rate': 1.0, 'momentum': 0.0} if hp is None else _injected(hp)
  return optax.inject_hyperparams(factory)(**values)


def _injected(hp):
  """The optimizer's injected hyperparameters of `hp`: `{'learning_rate': ..., 'momentum': ...}`."""
  return {'learning_rate': hp.learning_rate, 'momentum': hp.momentum}


def with_hparams(opt_state, hp):
  """`opt_state` with the injected learning rate and momentum of `hp` (arrays; no recompile)."""
  return opt_state._replace(hyperparams={**opt_state.hyperparams, **_injected(hp)})


def init_state(cfg, num_features, num_outputs, hp, steps):
  """Initial `(params, opt_state)`: small random `W`, zero `b`; L-BFGS keeps its own state (`None`)."""
  params = _init_params(cfg.seed, num_features, num_outputs, cfg.init_scale, cfg.dtype, cfg.bias_trick)
  return params, None if cfg.optimizer == 'lbfgs' else make_optimizer(cfg, hp, steps).init(params)


@functools.partial(jax.jit, static_argnums=range(6))
def _init_params(seed, num_features, num_outputs, scale, dtype, bias_trick):
  """The key, the draw and the bias as one compiled program: a run's start compiles (or loads) it once
  instead of each of its operations (`model.init_params` gives the same bits either way)."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x1217)
  params = model.init_params(key, num_features, num_outputs, scale, jnp.dtype(dtype))
  return model.fold_bias(params) if bias_trick else params


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

  optimizer = make_optimizer(cfg, None, steps)  # built once; the values come with each step

  def apply(params, opt_state, g, hp):
    updates, opt_state = optimizer.update(g, with_hparams(opt_state, hp), params)
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


def make_eval_fn(cfg):
  """`(params, x, y, hp) -> dict` of the objective and accuracy or MSE/MAE (for `[N, K]` targets one
  per output, `[K]`, which `records.in_target_units` scales to the targets' units and averages)."""
  spec = cfg.loss_record

  def evaluate(params, x, y, hp, w=None):
    s = model.scores(params, x)
    per_example = spec.value(s, y, **hp.loss_hparams)
    # With sample weights `w` the objective is the weighted mean Σ w L / Σ w (accuracy stays unweighted).
    data_loss = losses.weighted_mean(per_example, w)
    out = {'loss': data_loss + hp.reg * losses.PENALTIES[cfg.penalty](model.penalized_weights(params))}
    if spec.targets == 'real':
      r = s - (y[:, None] if y.ndim == 1 else y)
      per_output = None if y.ndim == 1 else 0  # [N, K] targets: [K], for `records.in_target_units`
      out['mse'] = jnp.mean(jnp.square(r), axis=per_output)
      out['mae'] = jnp.mean(jnp.abs(r), axis=per_output)
    else:
      pred = (s[:, 0] >= 0).astype(jnp.int32) if s.shape[1] == 1 else jnp.argmax(s, -1)
      # In the scores' precision, at least float32's: a float64 run's accuracy is not rounded to float32.
      out['accuracy'] = jnp.mean((pred == y).astype(jnp.promote_types(s.dtype, jnp.float32)))
    return out

  return evaluate


def structural(cfg):
  """The `config.StepConfig` of `cfg` (itself if it is one): the static part of a compiled program."""
  return cfg if isinstance(cfg, config.StepConfig) else cfg.structure()


@functools.partial(jax.jit, static_argnames=('structure', 'num_examples'))
def _epoch(params, opt_state, x, y, key, hp, w=None, *, structure, num_examples):
  return make_epoch_fn(structure, num_examples)(params, opt_state, x, y, key, hp, w)


@functools.partial(jax.jit, static_argnames=('structure',))
def _eval(params, x, y, hp, w=None, *, structure):
  return make_eval_fn(structure)(params, x, y, hp, w)


def compiled_epoch_fn(cfg, num_examples):
  """The jitted epoch `(params, opt_state, x, y, key, hp[, w])`, compiled once per structure.

  Runs whose `StepConfig` and size match share the program: new
  hyperparameter values, seeds or datasets of the same size never recompile.
  """
  return functools.partial(_epoch, structure=structural(cfg), num_examples=num_examples)


def compiled_eval_fn(cfg):
  """The jitted `make_eval_fn(cfg)`: `(params, x, y, hp[, w]) -> dict`, compiled once per structure."""
  return functools.partial(_eval, structure=structural(cfg))


def num_outputs(cfg, dataset):
  """Columns of `W`: the classes, 1 for a binary loss, the target columns for regression."""
  spec = cfg.loss_record
  if spec.targets == 'class':
    return dataset.num_classes
  if spec.targets == 'binary':
    return 1
  return 1 if dataset.y_train.ndim == 1 else dataset.y_train.shape[1]
