"""The step size a run derives from its problem (`--learning_rate=auto`).

Gradient descent on an objective whose Hessian's largest eigenvalue is `λ`
decreases it at every step with the step `1/λ` (half the stability limit
`2/λ`; Nesterov, *Introductory Lectures on Convex Optimization*, 2004,
§1.2.3). `λ` is measured at the start of the run (and again after its first
epoch, `training.train.remeasure_step`) by power iteration on
Hessian–vector products (`jax.linearize` of `jax.grad`) of the objective on a sample
of the training rows, so it needs nothing from the loss but its value: a
loss from the user's own file is measured like a built-in one.

Mini-batches of `B` rows see a noisier curvature. The step is then
`B / (β + (B − 1) λ)` (Ma, Bassily and Belkin, *The Power of Interpolation*,
ICML 2018, Theorem 2): `1/β` for one row, about `1/λ` for the full batch. `β`
is the curvature of one example's loss, `‖x̃_i‖²` times the largest
eigenvalue of the loss's Hessian in the scores (`x̃` with the bias's
constant 1), averaged over the sample. The theorem takes its maximum, which
the rarest row sets: on digits, whose rare pixels standardize to 30 standard
deviations, the maximum is 40 times the mean and made the step 50 times
smaller than the best of a sweep.

A piecewise-linear loss (hinge, multiclass SVM, L1, the linear part of
Huber's) has no curvature to measure: its Hessian is 0 wherever it exists.
Its step is then the one a loss of unit curvature in the scores would get:
the data's own curvature, `λ(X̃ᵀX̃/n)` and the mean `‖x̃_i‖²`. A step then moves the
scores by about one unit of the loss's own scale: the margin `Δ = 1` of the
hinge losses, one standard deviation of the (standardized) regression targets.

Momentum `μ` multiplies a step's effect by `1/(1 − μ)` once the velocity
builds up, so the step is multiplied by `1 − μ`. Adam divides each step by the
gradient's root mean square, so its step is in the parameters' own units and
curvature does not set it: `auto` takes `ADAM_STEP`. L-BFGS has no step size.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import losses
from linear_jax.maths import model


class NotFinite(ValueError):
  """The curvature measured is not finite (the loss overflows at these parameters or on these rows)."""


SAMPLE_ROWS = 2048  # the rows the curvature is measured on (evenly spaced over the training split)
ITERATIONS = 30  # power iterations; the largest eigenvalue is found to a few percent
ADAM_STEP = 1e-2
# Below this fraction of the data's own curvature, a loss counts as having none (piecewise linear).
FLAT = 1e-6


def _tree_dot(a, b):
  return sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _normalized(tree):
  norm = jnp.sqrt(_tree_dot(tree, tree))
  return jax.tree.map(lambda t: t / jnp.maximum(norm, 1e-30), tree)


def _power(matvec, v, iterations):
  """The eigenvalue of the symmetric `A` largest in magnitude: the Rayleigh quotient `vᵀAv` after
  `iterations` of `v ← Av / ‖Av‖` from `v`. Each pass computes `Av` once and the quotient beside it,
  so `matvec` is traced once."""

  def one(_, carry):
    u, _ = carry
    au = matvec(u)
    return _normalized(au), _tree_dot(u, au)

  u = _normalized(v)
  return jax.lax.fori_loop(0, iterations + 1, one, (u, jnp.zeros((), _tree_dot(u, u).dtype)))[1]


def _hvp(f, at):
  """`v ↦ ∇²f(at) v`, by `jax.linearize` of `jax.grad(f)`: differentiated once, evaluated per call."""
  return jax.linearize(jax.grad(f), at)[1]


def _starts(seed, params, rows, features, dtype):
  """The power iterations' starting vectors, `(like params, [rows, C], [features + 1])`: standard
  normal, drawn on the host from `seed`. Drawn inside the program, JAX's threefry would be lowered
  and loaded with it, four times the rest of its lowering and loading."""
  rng = np.random.default_rng(seed)
  draw = lambda *shape: rng.standard_normal(shape).astype(dtype)
  return jax.tree.map(lambda t: draw(*t.shape), params), draw(rows, params.W.shape[0]), draw(features + 1)


@functools.partial(jax.jit, static_argnames=('loss', 'penalty', 'iterations'))
def _curvatures(params, x, y, w, reg, loss_hparams, starts, shift, *, loss, penalty, iterations):
  """`(λ, mean β_i, λ(X̃ᵀX̃/n), mean ‖x̃_i‖²)` at `params`, from the starting vectors `starts` (see
  `_starts`); `λ`: `shift` plus the eigenvalue of `∇²f − shift·I` largest in magnitude (with `shift`
  0, that of the objective's Hessian)."""
  spec = losses.get_loss(loss)

  def objective(p):
    return losses.unchecked_objective(p, x, y, spec, reg, penalty, loss_hparams, w)

  start, row_starts, gram_start = starts
  hvp = _hvp(objective, params)
  lam = _power(lambda u: jax.tree.map(lambda a, b: a - shift * b, hvp(u), u), start, iterations) + shift
  # One example's curvature: ‖x̃_i‖² times the largest eigenvalue of its loss's Hessian in the scores.
  scores = model.scores(params, x)
  ones = 1.0 if params.b is not None else 0.0
  row_sq = jnp.sum(jnp.square(x), axis=1) + ones

  def score_curvature(s, t, v):
    f = lambda s1: spec.value(s1[None], t[None], **loss_hparams)[0]
    return _power(_hvp(f, s), v, iterations)

  per_row = jax.vmap(score_curvature)(scores, y, row_starts)
  live = w > 0 if w is not None else jnp.ones(x.shape[0], bool)
  weights = jnp.where(live, 1.0 if w is None else w, 0.0).astype(x.dtype)
  weights = weights / jnp.sum(weights)
  beta = jnp.sum(weights * jnp.abs(per_row) * row_sq)
  # The data's own curvature: λ of X̃ᵀX̃/n (with the bias's column) and the mean ‖x̃_i‖².

  def gram(v):  # v: [D + 1]
    xv = x @ v[:-1] + ones * v[-1]
    return jnp.concatenate([x.T @ (weights * xv), ones * jnp.sum(weights * xv)[None]]).astype(v.dtype)

  lam_x = _power(gram, gram_start, iterations)
  return lam, beta, lam_x, jnp.sum(weights * row_sq)


def penalty_curvature(penalty, reg):
  """The curvature the penalty adds: `2 · reg` for L2 (`reg · ΣW²`), none for L1."""
  return 2.0 * reg if penalty == 'l2' else 0.0


def derive(cfg, params, x, y, w, batch, num_train):
  """The step size of `cfg`'s optimizer for this problem, and how it was found.

  Args:
    cfg: the run's `TrainConfig` (its loss, penalty, reg, loss hyperparameters, optimizer, momentum).
    params: the parameters where the curvature is measured (the initial ones; then those after the
      first epoch, `training.train.remeasure_step`).
    x, y, w: a sample of the training rows, as the step sees them (standardized; `w`: weights or `None`).
    batch: rows per step.
    num_train: rows of the training split.

  Returns:
    `(learning_rate, info)`: a positive float, and a dict for summary.json saying how it was found
    (`method`, the measured curvatures, the sample's size).
  """
  info = {'method': None, 'sample_rows': int(x.shape[0]), 'batch_size': int(batch)}
  if cfg.optimizer == 'lbfgs':
    return 1.0, {**info, 'method': 'not used: L-BFGS chooses its steps by line search'}
  if cfg.optimizer == 'adam':
    return ADAM_STEP, {**info, 'method': "adam: a step in the parameters' units (ADAM_STEP)"}
  # NumPy arguments: the program's call moves them to the device (jnp.asarray would compile a program
  # for each).
  x, y, dtype = np.asarray(x), np.asarray(y), np.dtype(x.dtype)
  hp = {k: np.asarray(v, dtype) for k, v in cfg.resolved_loss_hparams().items()}
  args = (params, x, y, None if w is None else np.asarray(w, dtype), np.asarray(cfg.reg, dtype), hp)
  args += (_starts(cfg.seed, params, x.shape[0], x.shape[1], dtype),)
  measure = functools.partial(_curvatures, loss=cfg.loss, penalty=cfg.penalty, iterations=ITERATIONS)
  lam, beta, lam_x, row_mean = (float(v) for v in jax.device_get(measure(*args, np.zeros((), dtype))))
  if lam < 0:  # a non-convex loss whose most negative eigenvalue is largest in magnitude: the largest is
    # λ₁ plus the largest in magnitude of ∇²f − λ₁I (which is ≥ 0), found by the same program
    lam = float(measure(*args, np.asarray(lam, dtype))[0])
  if not all(np.isfinite(v) for v in (lam, beta, lam_x, row_mean)):
    raise NotFinite(
      f'--learning_rate=auto: the curvature of loss {cfg.loss!r} measured on the training rows is not finite '
      f"(largest eigenvalue {lam:g}, one example's {beta:g}); give --learning_rate a number."
    )
  extra = penalty_curvature(cfg.penalty, cfg.reg)
  # Only the penalty's curvature (2 · reg) found: the data term has none where it was measured.
  if lam - extra <= FLAT * lam_x:
    method = "piecewise linear: the data's curvature at unit curvature in the scores"
    lam, beta = lam_x + extra, row_mean + extra
  else:
    method = 'largest Hessian eigenvalue by power iteration on Hessian-vector products'
    beta = max(beta + extra, lam)
  full = batch >= num_train
  lr = 1.0 / lam if full else batch / (beta + (batch - 1) * lam)
  info.update(
    method=method + ('' if full else f'; mini-batch of {batch}: B / (beta + (B - 1) lambda)'),
    hessian_max_eigenvalue=lam,
    example_curvature_mean=beta,
  )
  if cfg.optimizer in ('momentum', 'nesterov'):
    lr *= 1.0 - cfg.momentum
    info['method'] += f'; times 1 - momentum ({cfg.momentum:g})'
  return float(lr), info
