"""Exact solvers: full-batch L-BFGS as one compiled loop, the optimum f*, closed-form ridge.

`minimize` runs optax's `lbfgs` (with its zoom line search, which enforces the
strong Wolfe conditions) inside one `lax.while_loop`: no Python between
iterations, so a fit is one dispatch. It stops when `‖∇f‖_∞ ≤ tol` (scipy's
`gtol`, the meaning `LogisticRegression(tol=)` gives it), after `max_iter`
iterations, or when the line search can no longer lower f (the precision
floor). L-BFGS needs a gradient everywhere, so only smooth losses (a `Loss`
record without `kinks`) with the l2 penalty are accepted.

A training split that streams cannot sit inside one compiled loop: each
evaluation of f and ∇f is a host loop over blocks. `minimize_host` then drives
scipy's L-BFGS-B from the host, with the same stopping test. Which of the two
serves a run is the data path's choice (`datapath.factory`); this module knows
nothing of rows, files or devices.
"""

import functools
from typing import NamedTuple

import jax
from jax import flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from linear_jax.maths import custom_vjp
from linear_jax.maths import losses
from linear_jax.optim import convergence
from linear_jax.optim import gradient_norm
from linear_jax.optim import results
from linear_jax.optim import step


def check_smooth(loss, penalty='l2', reg=0.0, what='--optimizer=lbfgs', instead=None, no_reg='--reg=0'):
  """Raises a `ValueError` saying why L-BFGS cannot serve a non-smooth objective, and what to use:
  `instead`, else a first-order optimizer (the advice for `--optimizer=lbfgs`); `no_reg`: the flag that
  turns the penalty off."""
  spec = losses.get_loss(loss)
  smooth = ', '.join(sorted(n for n, s in losses.LOSSES.items() if s.smooth))
  if not spec.smooth:
    use = instead or (
      f'Use a first-order optimizer with a decaying schedule for {loss} '
      '(e.g. --optimizer=sgd --schedule=inverse_time)'
    )
    raise ValueError(
      f'{what} needs a smooth loss, but --loss={loss} is not differentiable at its kinks: L-BFGS builds '
      f'its curvature model and line search from gradients, which jump there. {use}, or use a smooth '
      f'loss ({smooth}).'
    )
  if penalty != 'l2' and reg > 0:
    use = instead or 'Use a first-order optimizer for the l1 penalty'
    raise ValueError(
      f'{what} needs a smooth penalty, but --penalty={penalty} is not differentiable at W = 0. '
      f'{use}, or --penalty=l2, or {no_reg}.'
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
  return lambda p: custom_vjp.custom_vjp_objective(
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
  gn = gradient_norm.grad_norm(grad)
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
    return (it < max_iter) & ((gradient_norm.grad_norm(g) > tol) | (it < min_iter)) & ~stalled

  def body(c):
    params, state, value, grad, it, fevals, _, values, gns, fe = c
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    params = optax.apply_updates(params, updates)
    # The line search leaves f and ∇f at the accepted point in its state.
    new_value, new_grad = otu.tree_get(state, 'value'), otu.tree_get(state, 'grad')
    fevals = fevals + otu.tree_get(state, 'num_linesearch_steps').astype(jnp.int32)
    stalled = ~(new_value < value)
    it = it + 1
    gn = gradient_norm.grad_norm(new_grad)
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
  gn = gradient_norm.grad_norm(grad)
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
  fun, callback, last, records = _host_callbacks(
    value_and_grad, unravel, dtype, max_iter, on_iteration, should_stop
  )
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
  info = _host_info(res, last, records, tol, max_iter, dtype)
  return unravel(jnp.asarray(res.x, dtype)), info


def _host_callbacks(value_and_grad, unravel, dtype, max_iter, on_iteration, should_stop):
  """`(fun, callback, last, records)`: scipy's objective and iteration callback, and what they record.

  `fun(z) -> (f, ∇f)` on flat float64 `[P]` vectors; `callback` counts the
  iterations, tells `on_iteration` and raises `StopIteration` when
  `should_stop()`. `last` holds the last evaluation and the counts;
  `records = (values, grad_norms, fevals_at)`, each `[max_iter + 1]`.
  """
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

  return fun, callback, last, (values, grad_norms, fevals_at)


def _host_info(res, last, records, tol, max_iter, dtype):
  """The `LbfgsInfo` (NumPy fields, in `dtype`) of scipy's result `res` and the callbacks' `records`."""
  values, grad_norms, fevals_at = records
  iterations = last['iterations']
  grad_norm = float(np.max(np.abs(res.jac), initial=0.0))
  converged = grad_norm <= tol
  return LbfgsInfo(
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
