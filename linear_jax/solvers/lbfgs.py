"""Exact solvers: full-batch L-BFGS as one compiled loop, the optimum f*, closed-form ridge.

`minimize` runs optax's `lbfgs` (with its zoom line search, which enforces the
strong Wolfe conditions) inside one `lax.while_loop`: no Python between
iterations, so a fit is one dispatch. It stops when `‖∇f‖_∞ ≤ tol` (scipy's
`gtol`, the meaning `LogisticRegression(tol=)` gives it), after `max_iter`
iterations, or when the line search can no longer lower f (the precision
floor). L-BFGS needs a gradient everywhere, so only smooth losses (a `Loss`
record without `kinks`) with the l2 penalty are accepted.

A training split that streams (`stream.should_stream`) cannot sit inside one
compiled loop: each evaluation of f and ∇f is a host loop over blocks
(`stream.make_objective_fn`). `minimize_host` then drives scipy's L-BFGS-B
from the host, with the same stopping test.
"""

import dataclasses
import functools
import time
from typing import NamedTuple

import jax
from jax import flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from linear_jax.datapath import stream
from linear_jax.maths import grad_sources
from linear_jax.maths import losses
from linear_jax.optim import convergence
from linear_jax.optim import results
from linear_jax.optim import step
from linear_jax.training import preemption


def check_smooth(loss, penalty='l2', reg=0.0, what='--optimizer=lbfgs'):
  """Raises a `ValueError` saying why L-BFGS cannot serve a non-smooth objective, and what to use."""
  spec = losses.get_loss(loss)
  smooth = ', '.join(sorted(n for n, s in losses.LOSSES.items() if s.smooth))
  if not spec.smooth:
    raise ValueError(
      f'{what} needs a smooth loss, but --loss={loss} is not differentiable at its kinks: L-BFGS builds '
      'its curvature model and line search from gradients, which jump there. Use a first-order '
      f'optimizer with a decaying schedule for {loss} (e.g. --optimizer=sgd --schedule=inverse_time), '
      f'or a smooth loss ({smooth}).'
    )
  if penalty != 'l2' and reg > 0:
    raise ValueError(
      f'{what} needs a smooth penalty, but --penalty={penalty} is not differentiable at W = 0. '
      'Use --penalty=l2, or --reg=0, or a first-order optimizer for the l1 penalty.'
    )


def objective_fn(cfg, x, y, hp, weights=None):
  """`params -> f(params)`, the full training objective (the weighted mean if `weights`).

  `jax.grad` of it is the gradient source `cfg.grad` names: the hand-derived
  rule (through `custom_vjp_objective`) unless `cfg.grad == 'autodiff'` or
  the loss has no hand-derived `score_grad`.
  """
  spec = cfg.loss_record
  if cfg.grad == 'autodiff' or spec.score_grad is None:
    return lambda p: losses.unchecked_objective(p, x, y, spec, hp.reg, cfg.penalty, hp.loss_hparams, weights)
  return lambda p: grad_sources.custom_vjp_objective(
    p, x, y, spec, hp.reg, cfg.penalty, weights, **hp.loss_hparams
  )


class LbfgsInfo(NamedTuple):
  """What a run of `minimize` did; per-iteration arrays hold NaN past `iterations`."""

  iterations: jax.Array  # L-BFGS iterations taken
  fevals: jax.Array  # evaluations of f and ∇f, the first one included
  grad_norm: jax.Array  # ‖∇f‖_∞ at the result
  value: jax.Array  # f at the result
  converged: jax.Array  # grad_norm ≤ tol
  stalled: jax.Array  # the line search could not lower f any more
  values: jax.Array  # [max_iter + 1] f(W_t), f(W_0) first
  grad_norms: jax.Array  # [max_iter + 1] ‖∇f(W_t)‖_∞
  fevals_at: jax.Array  # [max_iter + 1] evaluations used to reach W_t


# Curvature pairs L-BFGS keeps: 40 (scipy's and scikit-learn's default is 10) while they take at most
# MEMORY_BYTES; measured on digits, breast_cancer and 50,000 × 512 × 10 embeddings at C = 0.01, 1 and
# 100, 40 pairs never needed more evaluations than 10, and up to 24% fewer (89 → 68), each evaluation
# being a full pass over x, while the two-loop recursion's extra work is 2·m·P flops per iteration.
MEMORY_SIZE, MIN_MEMORY_SIZE, MEMORY_BYTES = 40, 10, 64 * 2**20


def memory_size_for(params) -> int:
  """The curvature pairs kept for `params`: `MEMORY_SIZE`, fewer (not under 10) when they'd exceed
  `MEMORY_BYTES` (two vectors of the size of `params` per pair)."""
  nbytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(params))
  return int(max(MIN_MEMORY_SIZE, min(MEMORY_SIZE, MEMORY_BYTES // max(1, 2 * nbytes))))


def minimize(fun, params, tol, max_iter, memory_size=None, min_iter=0):
  """Minimizes `fun` from `params` with optax's L-BFGS, as one `lax.while_loop`.

  Args:
    fun: `params -> scalar`, smooth; `jax.value_and_grad(fun)` is its gradient.
    params: the starting point (any pytree).
    tol: stop when `‖∇f‖_∞ ≤ tol` (a scalar, may be traced).
    max_iter: iteration cap (static: it sizes the per-iteration record).
    memory_size: curvature pairs kept (`None`: `memory_size_for(params)`).
    min_iter: iterations taken even when `tol` is met sooner, unless the line
      search stalls first (a warm start can meet `tol` while f is still
      measurably above f*: see `paths.WARM_MIN_ITER`).

  Returns:
    `(params, LbfgsInfo)`. Pure and jittable.
  """
  memory_size = memory_size_for(params) if memory_size is None else memory_size
  opt = optax.lbfgs(memory_size=memory_size)
  value, grad = jax.value_and_grad(fun)(params)
  record = lambda buf, i, v: buf.at[i].set(v)
  nan = jnp.full((max_iter + 1,), jnp.nan, value.dtype)
  gn = convergence.grad_norm(grad)
  init = (
    params,
    opt.init(params),
    value,
    grad,
    jnp.int32(0),
    jnp.int32(1),
    jnp.bool_(False),
    record(nan, 0, value),
    record(nan, 0, gn),
    record(jnp.zeros((max_iter + 1,), jnp.int32), 0, 1),
  )

  def cond(c):
    _, _, _, g, it, _, stalled, *_ = c
    return (it < max_iter) & ((convergence.grad_norm(g) > tol) | (it < min_iter)) & ~stalled

  def body(c):
    params, state, value, grad, it, fevals, _, values, gns, fe = c
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    params = optax.apply_updates(params, updates)
    # The line search leaves f and ∇f at the accepted point in its state.
    new_value, new_grad = otu.tree_get(state, 'value'), otu.tree_get(state, 'grad')
    fevals = fevals + otu.tree_get(state, 'num_linesearch_steps').astype(jnp.int32)
    stalled = ~(new_value < value)
    it = it + 1
    gn = convergence.grad_norm(new_grad)
    return (
      params,
      state,
      new_value,
      new_grad,
      it,
      fevals,
      stalled,
      record(values, it, new_value),
      record(gns, it, gn),
      record(fe, it, fevals),
    )

  params, _, value, grad, it, fevals, stalled, values, gns, fe = jax.lax.while_loop(cond, body, init)
  gn = convergence.grad_norm(grad)
  return params, LbfgsInfo(it, fevals, gn, value, gn <= tol, stalled & (gn > tol), values, gns, fe)


# L-BFGS-B's relative-decrease test, `(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) ≤ ftol`, with ftol = 0
# fires only when an iteration did not lower f at all: the in-memory solver's "stalled". Evaluations
# are not capped apart from the iterations (as in memory): maxfun is out of reach.
HOST_OPTIONS = {'ftol': 0.0, 'maxfun': np.iinfo(np.int32).max, 'maxls': 20}


def minimize_host(
  value_and_grad, params, tol, max_iter, memory_size=None, on_iteration=None, should_stop=None
):
  """Minimizes with scipy's L-BFGS-B driven from the host, for an f whose evaluation is a host loop.

  The stopping rules are `minimize`'s: `‖∇f‖_∞ ≤ tol` (L-BFGS-B's `gtol`
  test on the projected gradient, which without bounds is the gradient), the
  iteration cap, or an iteration that cannot lower f (`ftol = 0`, or a
  failed line search). L-BFGS-B works on a flat float64 vector
  (`flatten_util.ravel_pytree`); it is cast to the dtype of `params` on the
  way in, and f and ∇f, computed in that dtype, are widened on the way out.

  Args:
    value_and_grad: `params -> (f, ∇f)`, device values in the dtype of `params`.
    params: the starting point (any pytree of arrays of one dtype).
    tol: stop when `‖∇f‖_∞ ≤ tol`.
    max_iter: iteration cap.
    memory_size: curvature pairs kept (L-BFGS-B's `maxcor`; `None`: `memory_size_for(params)`).
    on_iteration: called as `on_iteration(t, values, grad_norms, fevals_at)` at every new iterate
      `W_t`, with `LbfgsInfo`'s per-iteration records filled up to `t`.
    should_stop: `() -> bool`, asked after every iteration (e.g. `preemption.stop_requested`);
      `True` ends the solve there, at that iterate (`LbfgsInfo.stalled` and `converged` stay
      `False` unless they hold).

  Returns:
    `(params, LbfgsInfo)` with NumPy fields.
  """
  import scipy.optimize  # only the streamed L-BFGS needs it; the import costs about 0.3 s

  flat, unravel = flatten_util.ravel_pytree(params)
  dtype = flat.dtype
  values = np.full(max_iter + 1, np.nan)
  grad_norms = np.full(max_iter + 1, np.nan)
  fevals_at = np.zeros(max_iter + 1, np.int32)
  last = {'fevals': 0, 'iterations': 0}

  def fun(z):
    value, grad = value_and_grad(unravel(jnp.asarray(z, dtype)))
    g = np.asarray(flatten_util.ravel_pytree(grad)[0], np.float64)
    value = float(value)
    last.update(z=np.array(z), value=value, grad_norm=float(np.max(np.abs(g), initial=0.0)))
    last['fevals'] += 1
    if last['fevals'] == 1:
      values[0], grad_norms[0], fevals_at[0] = value, last['grad_norm'], 1
      if not np.isfinite(value):
        raise results.Diverged('L-BFGS started from a non-finite objective.')
    return value, g

  def callback(intermediate_result):
    # The accepted point is the line search's last evaluation, so its f and ∇f are at hand.
    if not np.array_equal(intermediate_result.x, last['z']):
      fun(intermediate_result.x)
    t = last['iterations'] = last['iterations'] + 1
    values[t], grad_norms[t], fevals_at[t] = last['value'], last['grad_norm'], last['fevals']
    if on_iteration:
      on_iteration(t, values, grad_norms, fevals_at)
    if should_stop is not None and should_stop():
      last['stopped'] = True
      raise StopIteration  # scipy ends the solve at this iterate

  res = scipy.optimize.minimize(
    fun,
    np.asarray(flat, np.float64),
    jac=True,
    method='L-BFGS-B',
    callback=callback,
    options={
      **HOST_OPTIONS,
      'gtol': float(tol),
      'maxiter': int(max_iter),
      'maxcor': int(memory_size_for(params) if memory_size is None else memory_size),
    },
  )
  iterations = last['iterations']
  grad_norm = float(np.max(np.abs(res.jac), initial=0.0))
  converged = grad_norm <= tol
  info = LbfgsInfo(
    iterations=np.int32(iterations),
    fevals=np.int32(last['fevals']),
    grad_norm=np.asarray(grad_norm, dtype),
    value=np.asarray(res.fun, dtype),
    converged=np.bool_(converged),
    stalled=np.bool_(not converged and iterations < max_iter and not last.get('stopped')),
    values=values.astype(dtype),
    grad_norms=grad_norms.astype(dtype),
    fevals_at=fevals_at,
  )
  return unravel(jnp.asarray(res.x, dtype)), info


@functools.partial(jax.jit, static_argnames=('structure', 'max_iter', 'memory_size'))
def _solve(params, x, y, hp, weights, tol, *, structure, max_iter, memory_size):
  """`minimize` of `structure`'s objective: one program per `config.StepConfig`, cap and memory."""
  return minimize(objective_fn(structure, x, y, hp, weights), params, tol, max_iter, memory_size)


def solve(cfg, params, x, y, hp, weights=None, tol=None, max_iter=None, memory_size=None):
  """`minimize` of the training objective of `cfg` on `(x, y)`, compiled once per structure.

  Args:
    cfg: a `TrainConfig` (loss, penalty, grad, dtype); `tol` and `max_iter`
      default to `convergence.tol(cfg)` and `cfg.epochs`.
    params: starting `Params`.
    x, y: device arrays of the training split.
    hp: `train.HParams` (reg and the loss's hyperparameters are read).
    weights: optional `[N]` non-negative sample weights.
    memory_size: curvature pairs kept (`None`: `memory_size_for(params)`).

  Returns:
    `(params, LbfgsInfo)`.
  """
  tol = convergence.tol(cfg) if tol is None else tol
  memory_size = memory_size_for(params) if memory_size is None else memory_size
  max_iter = cfg.epochs if max_iter is None else max_iter
  return _solve(
    params,
    x,
    y,
    hp,
    weights,
    jnp.asarray(tol, x.dtype),
    structure=step.structural(cfg),
    max_iter=int(max_iter),
    memory_size=int(memory_size),
  )


def check_lbfgs(cfg, streamed=False):
  """The host-side checks of an L-BFGS fit (`ValueError` naming the flag).

  With `--parallel=shard_map` L-BFGS splits the training rows over the
  devices (`spread_rows`), or each streamed block (`streamed`); pmap has no
  L-BFGS, and several processes share one only over streamed blocks.
  """
  check_smooth(cfg.loss, cfg.penalty, cfg.reg)
  if cfg.parallel == 'pmap':
    raise ValueError(
      '--optimizer=lbfgs has no --parallel=pmap; use --parallel=shard_map, which splits the training '
      'rows over the devices, or drop --parallel.'
    )
  if cfg.parallel == 'shard_map' and not streamed and jax.process_count() > 1:
    raise ValueError(
      '--optimizer=lbfgs over several processes streams the training split: add --stream (each process '
      'then reads its own rows).'
    )


def spread_rows(cfg, x, y, weights=None):
  """`(x, y, weights)` with the rows split over the devices under `--parallel=shard_map`.

  As they are otherwise (one device, or several processes). The rows are
  padded to a multiple of the device count with weight 0 (the weights are 1
  where there were none), so the weighted mean is the mean over the real
  rows; the padding is one transient copy on the first device. The solver's
  products then run where the rows are, and XLA adds the devices' sums.
  """
  where = stream.placement(cfg)
  if where is None:
    return x, y, weights
  pad = -x.shape[0] % where.devices
  w = jnp.ones(x.shape[0], x.dtype) if weights is None else weights
  padded = lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
  return jax.device_put(tuple(padded(a) for a in (x, y, w)), where.split)


def host_weights(dataset, split, dtype, weights=None):
  """Sample weights as a checked host array of `dtype`: `weights`, else `Dataset.w_<split>`, else `None`."""
  w = getattr(dataset, f'w_{split}', None) if weights is None else weights
  if w is None:
    return None
  w = np.asarray(w, np.float64)
  n = len(getattr(dataset, f'x_{split}'))
  if w.shape != (n,) or not np.all(np.isfinite(w)) or (w < 0).any() or not w.sum() > 0:
    raise ValueError(
      f'sample weights of the {split} split must be {n} finite values >= 0, not all 0; '
      f'got shape {w.shape}, min {w.min() if w.size else None}.'
    )
  return w.astype(jnp.dtype(dtype))


def device_weights(dataset, split, dtype, weights=None):
  """Sample weights as a device array: `weights`, else the split's `Dataset.w_<split>`, else `None`."""
  w = host_weights(dataset, split, dtype, weights)
  return None if w is None else jnp.asarray(w)


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


def fit_lbfgs(cfg, dataset, on_epoch=None):
  """`train.fit` for `cfg.optimizer == 'lbfgs'`: full-batch L-BFGS from the usual initial weights.

  `cfg.epochs` caps the iterations and `cfg.tol` is the gradient-norm target
  (`cfg.tol_on` and `cfg.batch_size` do not apply). `on_epoch` is called once
  per iteration after the solve, with the objective, gradient norm and
  evaluations so far; the last call also has the full metrics of `fit`.

  When the training split streams (`stream.should_stream`: `cfg.stream`, a
  `stream.prepare`d dataset, or data larger than memory), see
  `fit_lbfgs_streamed`.

  Returns:
    A `train.FitResult` whose `solver` holds iterations, function evaluations,
    the final gradient norm and whether it converged.
  """
  if stream.should_stream(cfg, dataset):
    return fit_lbfgs_streamed(cfg, dataset, on_epoch)
  check_lbfgs(cfg)
  arrays = stream.device_data(cfg, dataset)
  x, y = arrays['train']
  hp = step.hparams(cfg)
  params, _ = step.init_state(cfg, dataset.num_features, step.num_outputs(cfg, dataset), hp, 1)
  t0 = time.perf_counter()
  xs, ys, ws = spread_rows(cfg, x, y, device_weights(dataset, 'train', x.dtype))
  params, info = solve(cfg, params, xs, ys, hp, ws)
  info = jax.tree.map(np.asarray, info)  # waits for the solve
  seconds = time.perf_counter() - t0
  if not np.isfinite(info.value):
    raise results.Diverged(f'L-BFGS reached a non-finite objective after {int(info.iterations)} iterations.')
  iters = int(info.iterations)
  eval_fn = step.compiled_eval_fn(cfg)
  history = []
  for i in range(1, iters + 1):
    m = _iteration_metrics(i, info.values[i], info.grad_norms[i], info.fevals_at[i], info.values[0])
    if i == iters:
      splits = ('train', 'val') if len(arrays['val'][0]) else ('train',)
      for split in splits:
        w_split = device_weights(dataset, split, x.dtype)  # the weighted objective, as train.fit reports
        m.update({f'{split}_{k}': float(v) for k, v in eval_fn(params, *arrays[split], hp, w_split).items()})
      m['seconds'] = seconds
      m['examples_per_s'] = int(info.fevals) * len(x) / seconds
    history.append(m)
    if on_epoch:
      on_epoch(m)
  return _fit_result(params, info, history, seconds, streamed=False)


def fit_lbfgs_streamed(cfg, dataset, on_epoch=None):
  """`fit_lbfgs` over a training split that streams: scipy's L-BFGS-B on streamed evaluations.

  Every evaluation of f and ∇f is one full pass over the training split in
  blocks (`stream.make_objective_fn`: the blocks' sums weighted by their
  share of the rows, or of the sample weights, added over processes,
  standardized on the device for a `stream.prepare`d dataset), in the
  training dtype; `minimize_host` drives L-BFGS-B from the
  host with the in-memory solver's stopping test, `‖∇f‖_∞ ≤ tol`. The final
  metrics are streamed too (`stream.make_eval_fn`). With
  `--parallel=shard_map` each block's rows are split over the devices
  (`stream.placement`). `on_epoch` is called as
  the iterations go, one behind (an iteration's line is written when the next
  one is reached; the last, with the full metrics, after the solve). Each
  evaluation is a pass over a file that may be larger than memory, so a stop
  signal (`preemption`: SIGTERM, SIGINT) ends the solve after the iteration
  in progress, with `stop_reason='interrupted'` and that iterate's
  parameters (L-BFGS keeps no checkpoint: a new run starts again).

  Sample weights (`Dataset.w_train`) make it the weighted mean, as in memory.

  Returns:
    A `train.FitResult` as `fit_lbfgs`'s, with `streamed=True`.
  """
  check_lbfgs(cfg, streamed=True)
  arrays = stream.host_splits(cfg, dataset)
  x, y = arrays['train']
  affine = stream.affine(dataset)
  w = host_weights(dataset, 'train', cfg.dtype)
  objective = stream.make_objective_fn(cfg, x, y, affine, w)
  hp = step.hparams(cfg)
  params, _ = step.init_state(cfg, dataset.num_features, step.num_outputs(cfg, dataset), hp, 1)
  history, pending = [], []

  def emit(m):
    history.append(m)
    if on_epoch:
      on_epoch(m)

  def on_iteration(t, values, grad_norms, fevals_at):
    if pending:  # the iteration before is not the last: its line is complete
      emit(pending.pop())
    pending.append(_iteration_metrics(t, values[t], grad_norms[t], fevals_at[t], values[0]))

  t0 = time.perf_counter()
  params, info = minimize_host(
    lambda p: objective(p, hp),
    params,
    convergence.tol(cfg),
    cfg.epochs,
    memory_size_for(params),
    on_iteration,
    should_stop=preemption.stop_requested,  # SIGTERM / SIGINT: stop after the iteration in progress
  )
  seconds = time.perf_counter() - t0
  if not np.isfinite(info.value):
    raise results.Diverged(f'L-BFGS reached a non-finite objective after {int(info.iterations)} iterations.')
  if pending:
    m = pending.pop()
    eval_fn = stream.make_eval_fn(cfg, affine)
    for split in ('train', 'val') if len(arrays['val'][0]) else ('train',):
      out = eval_fn(params, *arrays[split], hp, host_weights(dataset, split, cfg.dtype))
      m.update({f'{split}_{k}': float(v) for k, v in jax.device_get(out).items()})
    m['seconds'] = seconds
    m['examples_per_s'] = int(info.fevals) * len(x) / seconds
    emit(m)
  stopped = not info.converged and not info.stalled and int(info.iterations) < cfg.epochs
  return _fit_result(params, info, history, seconds, streamed=True, interrupted=stopped)


def optimum(cfg, dataset, tol=None, max_iter=10_000, weights=None):
  """f* = min f(W) of `cfg`'s objective on the training split, and the `Params` reaching it.

  L-BFGS to a tight tolerance, in float64 when `jax_enable_x64` is on (else in
  `cfg.dtype`, which limits f* to float32 precision, about 1e-7 relative).
  A training split that streams (`stream.should_stream`) is never loaded
  whole: f* comes from `minimize_host` over streamed evaluations.

  Args:
    cfg: a `TrainConfig` with a smooth loss (see `check_smooth`).
    dataset: a `data.Dataset` (its `w_train`, if any, weights the mean).
    tol: gradient-norm target; default 1e-10 in float64, 1e-6 in float32.
    max_iter: iteration cap.
    weights: optional `[N]` sample weights of the training split (instead
      of `dataset.w_train`); the mean becomes `Σ w L / Σ w`.

  Returns:
    `(f_star: float, params, LbfgsInfo)`.
  """
  check_smooth(cfg.loss, cfg.penalty, cfg.reg, what='f* (the L-BFGS reference)')
  dtype = 'float64' if jax.config.jax_enable_x64 else cfg.dtype
  cfg = dataclasses.replace(cfg, dtype=dtype, optimizer='lbfgs', parallel='none')
  tol = (1e-10 if dtype == 'float64' else 1e-6) if tol is None else tol
  hp = step.hparams(cfg)
  params, _ = step.init_state(cfg, dataset.num_features, step.num_outputs(cfg, dataset), hp, 1)
  if stream.should_stream(cfg, dataset):  # over the blocks, as the run it is the reference of
    x, y = stream.host_splits(cfg, dataset)['train']
    w = host_weights(dataset, 'train', cfg.dtype, weights)
    objective = stream.make_objective_fn(cfg, x, y, stream.affine(dataset), w)
    params, info = minimize_host(lambda p: objective(p, hp), params, tol, max_iter, memory_size_for(params))
    return float(info.value), params, info
  arrays = stream.device_data(cfg, dataset)
  x, y = arrays['train']
  params, info = solve(
    cfg, params, x, y, hp, device_weights(dataset, 'train', x.dtype, weights), tol, max_iter
  )
  return float(info.value), params, jax.tree.map(np.asarray, info)


def ridge_closed_form(x, y, reg, weights=None):
  """The exact minimizer of `Σ_i w_i Σ_c (y_ic − s_ic)² / Σ_i w_i + reg · ΣW²`, bias unpenalized.

  Setting the gradient to zero: with weighted means `x̄`, `ȳ` and centred
  `X_c = x − x̄`, `Y_c = y − ȳ`, `W = Y_cᵀ D X_c (X_cᵀ D X_c + reg · Σw · I)⁻¹`
  with `D = diag(w)`, and `b = ȳ − W x̄`. Computed in float64 NumPy.

  Args:
    x: `[N, D]` features.
    y: `[N]` or `[N, C]` real targets.
    reg: l2 strength ≥ 0 (`Ridge(alpha)` is `reg = alpha / Σw`).
    weights: optional `[N]` sample weights (default all 1).

  Returns:
    `(W [C, D], b [C])` as float64 arrays.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  y = y[:, None] if y.ndim == 1 else y
  w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
  total = w.sum()
  xm, ym = w @ x / total, w @ y / total
  xc, yc = x - xm, y - ym
  a = xc.T @ (w[:, None] * xc) + reg * total * np.eye(x.shape[1])
  W = np.linalg.solve(a, xc.T @ (w[:, None] * yc)).T
  return W, ym - W @ xm
