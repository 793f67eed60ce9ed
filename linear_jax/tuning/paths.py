"""Regularization paths: L-BFGS for K regularization strengths as one compiled program.

The K models' weights are stacked, so every evaluation of the objective reads
`x` once for all of them: the scores of all K models are one
`[N, D] × [D, K·C]` matmul and their weight gradients one `[K·C, N] × [N, D]`
matmul (`batched_value_and_grad`), with the per-example loss and its
hand-derived score gradient applied per model in between. The L-BFGS here is
written for that batch:

* the two-loop recursion runs on `[K, P]` arrays (P parameters per model);
* the line search is Armijo backtracking done in lock-step: every trial
  evaluates all K models in one pass, each model keeps its own step size and
  stops halving once it is accepted (a mask);
* a model whose gradient norm reaches `tol` is frozen, the loop ends when all
  are (or after `max_iter` iterations).

Why not `vmap(optax.lbfgs)`: under `vmap` a `lax.while_loop` with a per-model
predicate runs until the slowest model is done, and every `lax.cond` inside
optax's zoom line search becomes a `select` that computes both branches, each
branch with its own function evaluations; the batched program does several
times the work of K fits one after another (see experiments/bench_optimum.py).
"""

import dataclasses
import functools
import time
from typing import NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from linear_jax.data import records
from linear_jax.datapath import factory as datapath
from linear_jax.maths import grads
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.optim import convergence
from linear_jax.optim import step
from linear_jax.solvers import lbfgs as solvers
from linear_jax.training import train


class PathState(NamedTuple):
  theta: jax.Array  # [K, P] parameters, flattened
  value: jax.Array  # [K] objective
  grad: jax.Array  # [K, P]
  s: jax.Array  # [M, K, P] parameter steps, oldest first
  y: jax.Array  # [M, K, P] gradient changes
  rho: jax.Array  # [M, K] 1 / <s, y>, 0 for an empty slot
  done: jax.Array  # [K] converged, or stalled at the precision floor
  iterations: jax.Array  # [K] iterations each model took
  fevals: jax.Array  # [] batched evaluations (each evaluates all K)
  it: jax.Array  # []


def _dot(a, b):
  return jnp.sum(a * b, axis=-1)


def two_loop(grad, s, y, rho):
  """The L-BFGS direction `−H g` for K models at once.

  Args:
    grad: `[K, P]` gradients.
    s, y: `[M, K, P]` the last M steps and gradient changes, oldest first
      (slots with `rho = 0` are empty and contribute nothing).
    rho: `[M, K]` `1 / <s_i, y_i>`.

  Returns:
    `[K, P]` directions; `−g / ‖g‖₂` where a model has no curvature pair yet.
  """

  def newest_first(q, pair):
    s_i, y_i, rho_i = pair
    a = rho_i * _dot(s_i, q)
    return q - a[:, None] * y_i, a

  # A `lax.scan` over the M pairs, not a Python loop: unrolled, XLA's CPU compile of the solve took 10×
  # longer (13 s against 1.4 s for diabetes' path).
  q, alphas = jax.lax.scan(newest_first, grad, (s, y, rho), reverse=True)
  # H₀ = γ I with γ = <s, y> / <y, y> of the newest pair (the usual scaling).
  sy, yy = _dot(s[-1], y[-1]), _dot(y[-1], y[-1])
  has_pair = rho[-1] > 0
  gamma = jnp.where(has_pair, sy / jnp.where(has_pair, yy, 1.0), 1.0 / jnp.maximum(_norm2(grad), 1e-30))

  def oldest_first(r, pair):
    s_i, y_i, rho_i, a = pair
    return r + (a - rho_i * _dot(y_i, r))[:, None] * s_i, None

  r, _ = jax.lax.scan(oldest_first, gamma[:, None] * q, (s, y, rho, alphas))
  return -r


def _norm2(a):
  return jnp.sqrt(_dot(a, a))


def minimize_batched(fun, theta, tol, max_iter, memory_size=10, max_linesearch=30, c1=1e-4):
  """Minimizes K functions in lock-step with L-BFGS and a masked Armijo backtracking search.

  Args:
    fun: `[K, P] -> ([K] values, [K, P] gradients)`, one batched evaluation.
    theta: `[K, P]` starting points.
    tol: stop a model when `‖g‖_∞ ≤ tol`.
    max_iter: iteration cap (all models).
    memory_size: curvature pairs kept per model.
    max_linesearch: halvings before a model counts as stalled.
    c1: the Armijo constant.

  Returns:
    The final `PathState`. Pure and jittable.
  """
  state = _initial_state(fun, theta, tol, memory_size)

  def cond(st):
    return (st.it < max_iter) & ~jnp.all(st.done)

  def body(st):
    active = ~st.done
    d, slope = _descent_direction(st)
    search = _armijo_search(fun, st, d, slope, active, max_linesearch, c1)
    return _next_state(st, d, search, active, tol)

  return jax.lax.while_loop(cond, body, state)


def _gnorm(g):
  """`[K]` gradient norms `‖g‖_∞` of `[K, P]` gradients."""
  return jnp.max(jnp.abs(g), axis=-1)


def _initial_state(fun, theta, tol, memory_size):
  """The `PathState` at the `[K, P]` starting points `theta`: one evaluation, no curvature pairs."""
  k, p = theta.shape
  value, grad = fun(theta)
  zeros = jnp.zeros((memory_size, k, p), theta.dtype)
  return PathState(
    theta,
    value,
    grad,
    zeros,
    zeros,
    jnp.zeros((memory_size, k), theta.dtype),
    _gnorm(grad) <= tol,
    jnp.zeros((k,), jnp.int32),
    jnp.int32(1),
    jnp.int32(0),
  )


def _descent_direction(st):
  """`(d, slope)`: the `[K, P]` L-BFGS directions (steepest descent where not downhill), `[K]` `<g, d>`."""
  d = two_loop(st.grad, st.s, st.y, st.rho)
  slope = _dot(st.grad, d)
  # Not a descent direction (a stale curvature pair): fall back to steepest descent.
  bad = ~(slope < 0)
  d = jnp.where(bad[:, None], -st.grad / jnp.maximum(_norm2(st.grad), 1e-30)[:, None], d)
  slope = jnp.where(bad, _dot(st.grad, d), slope)
  return d, slope


def _armijo_search(fun, st, d, slope, active, max_linesearch, c1):
  """`(t, accepted, value, grad, n)`: Armijo backtracking along `d` for the `[K]` `active` models at once.

  `t` `[K]` are the steps, `accepted` `[K]` whether each met the Armijo test
  within `max_linesearch` halvings, `value` `[K]` and `grad` `[K, P]` at the
  accepted points, `n` the batched evaluations it took.
  """

  def ls_cond(ls):
    t, accepted, _, _, n = ls
    return (n < max_linesearch) & jnp.any(active & ~accepted)

  def ls_body(ls):
    t, accepted, new_value, new_grad, n = ls
    v, g = fun(st.theta + t[:, None] * d)
    ok = ~accepted & (v <= st.value + c1 * t * slope) & jnp.isfinite(v)
    new_value = jnp.where(ok, v, new_value)
    new_grad = jnp.where(ok[:, None], g, new_grad)
    accepted = accepted | ok
    return jnp.where(accepted, t, 0.5 * t), accepted, new_value, new_grad, n + 1

  t0 = jnp.ones((st.theta.shape[0],), st.theta.dtype)
  return jax.lax.while_loop(ls_cond, ls_body, (t0, ~active, st.value, st.grad, jnp.int32(0)))


def _next_state(st, d, search, active, tol):
  """The `PathState` after one iteration: the accepted steps taken, their curvature pairs kept."""
  t, accepted, new_value, new_grad, n = search
  moved = active & accepted
  new_theta = jnp.where(moved[:, None], st.theta + t[:, None] * d, st.theta)
  s_new, y_new = new_theta - st.theta, new_grad - st.grad
  sy = _dot(s_new, y_new)
  keep = moved & (sy > 1e-10 * _dot(y_new, y_new))  # curvature condition, else skip the pair
  push = lambda buf, new: jnp.where(keep[None, :, None], jnp.concatenate([buf[1:], new[None]]), buf)
  rho_new = jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0), 0.0)
  rho = jnp.where(keep[None], jnp.concatenate([st.rho[1:], rho_new[None]]), st.rho)
  # At the precision floor the search halves on rounding noise and f no longer falls
  # measurably: stop there rather than pay a long search every iteration.
  noise = st.value - new_value <= 16 * jnp.finfo(st.theta.dtype).eps * jnp.abs(st.value)
  floor = moved & (t < 1) & noise
  done = st.done | (moved & (_gnorm(new_grad) <= tol)) | (active & ~accepted) | floor
  return PathState(
    new_theta,
    new_value,
    new_grad,
    push(st.s, s_new),
    push(st.y, y_new),
    rho,
    done,
    st.iterations + active.astype(jnp.int32),
    st.fevals + n,
    st.it + 1,
  )


@dataclasses.dataclass
class PathResult:
  """K models along a regularization path, in the order of `regs`."""

  regs: np.ndarray  # [K]
  params: model.Params  # leading [K] axis
  objective: np.ndarray  # [K] training objective at the result
  grad_norm: np.ndarray  # [K] ‖∇f‖_∞
  converged: np.ndarray  # [K] grad_norm ≤ tol
  iterations: np.ndarray  # [K]
  fevals: int  # batched evaluations, each of all K models
  metrics: dict  # name -> [K], e.g. 'val_accuracy', 'train_loss'
  weight_norm: np.ndarray  # [K] ‖W‖₂ (Frobenius, bias excluded)
  seconds: float

  def best_index(self):
    """The model with the best validation metric (training metric without a validation split)."""
    for name, sign in (('val_accuracy', 1), ('val_mse', -1), ('train_accuracy', 1), ('train_mse', -1)):
      if name in self.metrics:
        return int(np.argmax(sign * self.metrics[name]))
    raise ValueError('no metric to choose by')

  def rows(self):
    """One JSON-ready dict per reg."""
    out = []
    for i, r in enumerate(self.regs):
      row = {'reg': float(r), 'objective': float(self.objective[i]), 'grad_norm': float(self.grad_norm[i])}
      row |= {'converged': bool(self.converged[i]), 'iterations': int(self.iterations[i])}
      row |= {'weight_norm': float(self.weight_norm[i])}
      row |= {m: float(v[i]) for m, v in self.metrics.items()}
      out.append(row)
    return out


def batched_value_and_grad(cfg, x, y, hp, regs, weights, W, b):
  """Objective and gradient of K models whose data term reads `x` in two matmuls in all.

  Args:
    cfg: a `TrainConfig` (loss, penalty, grad).
    x: `[N, D]` inputs; y: the targets.
    hp: `step.HParams` (the loss's hyperparameters are read; shared by all K).
    regs: `[K]` regularization strengths.
    weights: optional `[N]` sample weights.
    W: `[K, C, D]` weights (bias column last in bias-trick form); b: `[K, C]` or `None`.

  Returns:
    `([K] values, [K, C, D] dW, [K, C] db or None)`.
  """
  spec = cfg.loss_record
  k, c, d = W.shape
  n = x.shape[0]
  s = jnp.dot(x, W.reshape(k * c, d).T)  # [N, K·C]: one matmul for every model
  if b is not None:
    s = s + b.reshape(k * c)
  s = s.reshape(n, k, c).transpose(1, 0, 2)  # [K, N, C]
  hps = hp.loss_hparams
  per_example = jax.vmap(lambda sk: spec.value(sk, y, **hps))(s)  # [K, N]
  w = jnp.ones((n,), s.dtype) if weights is None else weights.astype(s.dtype)
  w = w / jnp.sum(w)  # Σ w_i L_i / Σ w_i
  penalized = W if b is not None else W[:, :, :-1]
  pen = jax.vmap(losses.PENALTIES[cfg.penalty])(penalized)
  values = per_example @ w + regs * pen
  if cfg.grad == 'autodiff' or spec.score_grad is None:
    g = jax.vmap(jax.grad(lambda sk: jnp.sum(spec.value(sk, y, **hps) * w)))(s)  # [K, N, C]
  else:
    g = jax.vmap(lambda sk: spec.score_grad(sk, y, **hps))(s) * w[None, :, None]
  dW = jnp.dot(g.transpose(0, 2, 1).reshape(k * c, n), x).reshape(k, c, d)  # one matmul
  dpen = regs[:, None, None] * grads.PENALTY_GRADS[cfg.penalty](penalized)
  dW = dW + (dpen if b is not None else jnp.pad(dpen, ((0, 0), (0, 0), (0, 1))))
  db = None if b is None else jnp.sum(g, axis=1)
  return values, dW, db


@functools.partial(jax.jit, static_argnames=('structure', 'max_iter', 'memory_size'))
def _solve_batched(theta, x, y, hp, regs, weights, tol, template, *, structure, max_iter, memory_size):
  """The K solves in lock-step: one program per `config.StepConfig`, K, cap and memory."""
  c, d = template.W.shape
  k = theta.shape[0]

  def fun(th):  # flat [K, P] = [W (C·D) | b (C)] per model, as ravel_pytree lays out Params
    W = th[:, : c * d].reshape(k, c, d)
    b = None if template.b is None else th[:, c * d :]
    values, dW, db = batched_value_and_grad(structure, x, y, hp, regs, weights, W, b)
    flat = dW.reshape(k, c * d) if db is None else jnp.concatenate([dW.reshape(k, c * d), db], axis=1)
    return values, flat

  return minimize_batched(fun, theta, tol, max_iter, memory_size)


@functools.partial(jax.jit, static_argnames=('structure', 'max_iter', 'memory_size', 'min_iter'))
def _solve_warm(params, x, y, hp, regs, weights, tol, *, structure, max_iter, memory_size, min_iter):
  """The regs one after another, each warm-started: one program per `config.StepConfig`, K, cap, memory."""

  def one(p, r):  # optax's L-BFGS for one reg, started where the previous reg ended
    f = solvers.objective_fn(structure, x, y, hp._replace(reg=r), weights)
    p, info = solvers.minimize(f, p, tol, max_iter, memory_size, min_iter)
    return p, (ravel_pytree(p)[0], info.value, info.grad_norm, info.iterations, info.fevals)

  return jax.lax.scan(one, params, regs)[1]


METHODS = ('batched', 'warm')
# Iterations every warm-started solve takes, even when its start already meets `tol` (unless its line
# search stalls first: f can fall no further in the working precision). Where the regs
# are weak and close, the previous solution can meet ‖∇f‖_∞ ≤ tol on a flat objective while f is
# still well above f*: at 50,000 × 512 × 10, 8 regs, tol 1e-4, two regs took 0 iterations and one
# ended 5.9e-3 (relative) above scikit-learn's objective. With 5 iterations each, every reg is within
# 1.1e-4 to 2.1e-4 of it across runs (the batched path: 1.0e-4), for 15% more evaluations (214 → 246).
WARM_MIN_ITER = 5


def fit_path(
  cfg,
  dataset,
  regs,
  tol=None,
  max_iter=None,
  memory_size=None,
  weights=None,
  method='batched',
  warm_min_iter=None,
):
  """Fits `cfg`'s model for every regularization strength in `regs` as one compiled program.

  Two programs (see the module docstring): `method='batched'` (the default)
  runs the K solves in lock-step, reading `x` once per iteration for all K;
  `method='warm'` solves the regs one after another, strongest first, each
  L-BFGS solve starting from the previous solution (a `lax.scan` of optax's
  L-BFGS). Where the regs are weak and close together a warm start can
  already meet `‖∇f‖_∞ ≤ tol` while f is still measurably above f* (a flat
  objective), so every warm-started solve takes at least `WARM_MIN_ITER`
  iterations (unless its line search stalls first); at 50,000 × 512 × 10
  the warm path is then within about 2e-4 of scikit-learn's objectives (the
  batched path 1.0e-4) and 1.2–1.4× faster (experiments/bench_optimum.py).

  Args:
    cfg: a `TrainConfig` with a smooth loss and the l2 penalty (its `reg` is
      replaced by each of `regs`).
    dataset: a `data.Dataset`; `w_train`, if it has one, weights the mean.
    regs: `[K]` strengths ≥ 0.
    tol: gradient-norm target (default `convergence.tol` of an L-BFGS cfg), in the units of
      standardized data (`records.gradient_scale`).
    max_iter: iteration cap (default `cfg.epochs`).
    memory_size: curvature pairs kept per model (`None`: `solvers.memory_size_for` of the K models;
      40 at 50,000 × 512 × 10 cut the batched path's evaluations from 104 to 86).
    weights: optional `[N]` training sample weights (instead of `w_train`).
    method: `'warm'` or `'batched'`.
    warm_min_iter: `'warm'` only: iterations each solve takes at least, unless its line search
      stalls first (`None`: `WARM_MIN_ITER`).

  Returns:
    A `PathResult` (in the order of `regs`; `fevals` counts evaluations of one
    model for `'warm'`, batched evaluations of all K for `'batched'`).
  """
  cfg, regs = _path_config(cfg, dataset, regs, method, warm_min_iter)
  max_iter = cfg.epochs if max_iter is None else max_iter
  path = datapath.make(cfg, dataset, resident=True, train_weights=weights)  # K models in one program
  tol = (convergence.tol(cfg) if tol is None else tol) * path.gradient_scale  # standardized data's units
  arrays = path.arrays
  x = arrays['train'][0]
  hp = step.hparams(cfg)
  params, _ = step.init_state(cfg, dataset.num_features, step.num_outputs(cfg, dataset), hp, 1)
  flat, unravel = ravel_pytree(params)  # the layout both programs return theta in
  rows = path.solver_rows()  # --parallel=shard_map: the rows over the devices
  static = _static_args(cfg, params, len(regs), method, max_iter, memory_size)
  t0 = time.perf_counter()
  if method == 'warm':
    solved = _solve_warm_path(params, rows, hp, regs, tol, x.dtype, warm_min_iter, static)
  else:
    solved = _solve_batched_path(flat, params, rows, hp, regs, tol, x.dtype, static)
  seconds = time.perf_counter() - t0
  return _path_result(cfg, dataset, arrays, regs, hp, unravel, solved, tol, seconds, path.weights)


def _path_config(cfg, dataset, regs, method, warm_min_iter):
  """`(cfg, regs)`: an L-BFGS `cfg` at the strongest of `regs`, and `regs` as `[K]` float64; all checked."""
  if method not in METHODS:
    raise ValueError(f'method must be one of {", ".join(METHODS)}, got {method!r}.')
  if warm_min_iter is not None and method != 'warm':
    raise ValueError(f"warm_min_iter applies to method='warm', not {method!r}.")
  regs = np.asarray(regs, np.float64)
  if regs.ndim != 1 or len(regs) == 0 or not np.all(np.isfinite(regs) & (regs >= 0)):
    raise ValueError(f'regs must be a non-empty list of finite values >= 0, got {regs.tolist()}.')
  cfg = dataclasses.replace(cfg, optimizer='lbfgs', reg=float(regs.max()))
  solvers.check_smooth(cfg.loss, cfg.penalty, cfg.reg, no_reg='--regs=0')  # the path's flag, not --reg
  train.check_fit(cfg, dataset)
  return cfg, regs


def _static_args(cfg, params, k, method, max_iter, memory_size):
  """The static arguments of `_solve_warm` and `_solve_batched`: structure, iteration cap and memory."""
  if memory_size is None:  # the batched program keeps pairs for all K models at once
    memory_size = solvers.memory_size_for([params] * (k if method == 'batched' else 1))
  return dict(structure=step.structural(cfg), max_iter=int(max_iter), memory_size=int(memory_size))


def _solve_warm_path(params, rows, hp, regs, tol, dtype, warm_min_iter, static):
  """`(theta [K, P], value [K], grad_norm [K], iterations [K], fevals)` of the warm-started solves.

  In the order of `regs`; `fevals` counts evaluations of one model.
  """
  xs, ys, ws = rows
  order = np.argsort(-regs, kind='stable')  # strongest first: each solution starts the next solve
  min_iter = WARM_MIN_ITER if warm_min_iter is None else int(warm_min_iter)
  out = _solve_warm(
    params,
    xs,
    ys,
    hp,
    jnp.asarray(regs[order], dtype),
    ws,
    jnp.asarray(tol, dtype),
    min_iter=min_iter,
    **static,
  )
  theta, value, grad_norm, iterations, fevals = (np.asarray(a)[np.argsort(order)] for a in out)
  return theta, value, grad_norm, iterations, int(fevals.sum())


def _solve_batched_path(flat, params, rows, hp, regs, tol, dtype, static):
  """`(theta [K, P], value [K], grad_norm [K], iterations [K], fevals)` of the K solves in lock-step.

  All K start from `flat` `[P]`; `fevals` counts batched evaluations of all K.
  """
  xs, ys, ws = rows
  k = len(regs)
  theta = jnp.broadcast_to(flat, (k, flat.size))
  regs_dev = jnp.asarray(regs, dtype)
  st = _solve_batched(theta, xs, ys, hp, regs_dev, ws, jnp.asarray(tol, dtype), params, **static)
  st = jax.tree.map(np.asarray, st)
  theta, value, iterations, fevals = st.theta, st.value, st.iterations, int(st.fevals)
  grad_norm = np.max(np.abs(st.grad), axis=-1)
  return theta, value, grad_norm, iterations, fevals


def _path_result(cfg, dataset, arrays, regs, hp, unravel, solved, tol, seconds, weights):
  """The `PathResult` of the `solved` K models, with every non-empty split's metrics (the objective
  weighted by `weights(split)`, the path's sample weights, as the solves and a fit weigh it)."""
  theta, value, grad_norm, iterations, fevals = solved
  k = len(regs)
  dtype = arrays['train'][0].dtype
  stacked = jax.vmap(unravel)(jnp.asarray(theta))
  eval_fn = jax.vmap(step.make_eval_fn(cfg), in_axes=(0, None, None, 0, None))
  hps = jax.tree.map(lambda a: jnp.broadcast_to(a, (k,)), hp)._replace(reg=jnp.asarray(regs, dtype))
  metrics = {}
  for split in ('train', 'val', 'test'):
    if len(arrays[split][0]):
      out = eval_fn(stacked, *arrays[split], hps, weights(split))
      out = records.in_target_units(dataset, out)  # MSE / MAE in the targets' units
      metrics |= {f'{split}_{m}': np.asarray(v, np.float64) for m, v in out.items()}
  w = stacked.W if stacked.b is not None else stacked.W[:, :, :-1]  # the bias is not penalized
  return PathResult(
    regs=regs,
    params=stacked,
    objective=np.asarray(value, np.float64),
    converged=grad_norm <= tol,
    iterations=iterations,
    fevals=fevals,
    metrics=metrics,
    weight_norm=np.linalg.norm(np.asarray(w, np.float64).reshape(k, -1), axis=1),
    grad_norm=grad_norm,
    seconds=seconds,
  )
