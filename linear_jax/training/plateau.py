"""Whether a plateau of the objective is the optimum's: a step scaled to the features' units.

The objective's stopping tests (`optim/convergence.py`) stop where the objective
stops falling. On features whose units differ widely (`--preprocess=none` on
breast_cancer: spreads from 0.0026 to 350) that is where gradient descent
crawls, not the optimum: logistic regression stopped there, "converged", at an
objective of 0.242 against L-BFGS's 0.117. Before a fit says 'converged' on such
a test, `gain` takes one step of the full gradient as standardizing the features
would have scaled it (a Jacobi step there: each weight's entry, less the
bias's share that a feature's mean carries, divided by its variance plus the
penalty's `2·reg`), and the bias's part of it alone, at a few lengths, and
measures the best decrease as a fraction of the decrease so far, or of the
objective where that is smaller (as the objective's own test does). Above `GAIN`
the plateau is no optimum, and the fit says 'stalled'. On standardized
features the step gains nothing gradient descent had not found (at most
0.5% in the default runs of the ten losses). The test can
only refute: a plateau a little above the optimum (a constant step's
noise floor) may gain less than `GAIN` from one step and pass.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.data import records
from linear_jax.maths import loss_probe
from linear_jax.maths import losses

# Training rows (evenly spaced over the split: all of them up to this many, and at most `SAMPLE_BYTES` of
# float64 features) on which the step is scaled and measured; the gradient is the full objective's.
ROWS = 16384
SAMPLE_BYTES = 64 * 2**20
# Step lengths tried, from twice the Jacobi step down (a subgradient's best is often far shorter).
LENGTHS = tuple(np.logspace(1, -10, 12, base=2.0))
# A plateau from which one such step still lowers the objective by more than this fraction of what
# training lowered it, or of the objective where that is smaller, is not the optimum's.
GAIN = 1e-2


def gain(cfg, path, params, hp, initial):
  """The fraction of the decrease so far, `initial − f(params)`, or of `f(params)` where that is smaller,
  that the better of two steps gains: the one standardizing would have made (`_standardized_step`), and
  the bias's part of it alone.

  The gradient is the full objective's (`path.objective`, one pass); the step's
  scale and its gain are measured on up to `ROWS` training rows as the step
  sees them (`path.sample_rows`: every row of a smaller split), so that a
  file streamed from disk is read once, not once per length. The lengths
  are scaled by `_reach`.

  Args:
    cfg: the run's `TrainConfig`; path: its `DataPath`; params, hp: where the plateau is.
    initial: the objective before training.

  Returns:
    A float >= 0: the best of `f(params) − f(params + t·d)` over `LENGTHS`, over the smaller of
    `initial − f(params)` and `f(params)`; 1 where the objective has not fallen below `initial` at all
    and a step still lowers it.
  """
  value, grad = path.objective(params, hp)
  rows = max(1, min(ROWS, SAMPLE_BYTES // (8 * params.W.shape[1])))
  x, y, w = path.sample_rows(rows)
  w = None if w is None or not np.sum(w) > 0 else w
  step = _standardized_step(cfg, grad, x, w)
  sample = tuple(None if a is None else jnp.asarray(a) for a in (x, y, w))
  lengths = jnp.asarray((0.0, *(_reach(cfg, path.dataset) * np.asarray(LENGTHS))), params.W.dtype)
  directions = jax.tree.map(lambda *d: np.stack(d), step, _bias_only(step, grad))
  values = np.asarray(_along(params, directions, lengths, *sample, hp, cfg=cfg), np.float64)  # [2, lengths]
  here, moved = values[0, 0], values[:, 1:].ravel()
  best = min([f for f in moved if np.isfinite(f)], default=here)
  gained, fallen = max(0.0, here - best), initial - float(value)
  if fallen <= 0:  # the objective test passed without any decrease: a step too large, or no progress
    return 1.0 if gained > 0 or fallen < 0 else 0.0
  # Of the objective too, where it is the smaller, as the objective's own test asks: l1 on 60 nearly
  # linear rows fell from 0.77 to 0.050, and a step gaining 0.006 (12% of f, 0.8% of the fall) passed.
  # Not below the dtype's precision of the start: an exact fit's objective (3e-15 in float32) is rounding,
  # and so is any gain beside it.
  floor = 16 * float(jnp.finfo(params.W.dtype).eps) * abs(initial)
  return gained / min(fallen, max(float(value), floor))


def _standardized_step(cfg, grad, x, w):
  """The step of the full gradient `grad` that standardizing the features would have made (a Jacobi step
  there), mapped back to the features' units: `ΔW_d = −(g_W_d − g_b·μ_d) / (σ_d² + 2·reg)` and
  `Δb = −g_b − ΔW·μ`, with `μ` and `σ²` the (weighted) mean and variance of feature `d` on the rows `x`.

  Uncentered features (pixels of 200 to 255, `--preprocess=none`) couple each weight with the bias: a
  step scaled by the second moments alone moved both 200 times too little, and a fit 10 times above
  its optimum passed as converged.
  """
  folded = grad.b is None  # the bias trick: the last column of W is the bias, its feature the 1s
  features = np.asarray(x[:, :-1] if folded else x, np.float64)
  mean = np.average(features, axis=0, weights=w)
  var = np.average(np.square(features - mean), axis=0, weights=w)
  g = np.asarray(grad.W, np.float64)
  g_w, g_b = (g[:, :-1], g[:, -1]) if folded else (g, np.asarray(grad.b, np.float64))
  denominator = var + (2.0 * float(cfg.reg) if cfg.penalty == 'l2' else 0.0)
  with np.errstate(divide='ignore', invalid='ignore'):
    d_w = np.where(denominator > 0, -(g_w - g_b[:, None] * mean) / denominator, 0.0)
  d_b = -g_b - d_w @ mean
  if folded:
    return grad._replace(W=np.concatenate([d_w, d_b[:, None]], axis=1))
  return grad._replace(W=d_w, b=d_b)


def _bias_only(step, grad):
  """`step` with its weights' part 0 and the bias's `−g_b`: where the bias alone is far from its optimum
  (targets far from 0, left in their units), the weights' part of `step` on a loss of no curvature
  (l1) costs more in penalty than the bias's part gains."""
  if grad.b is not None:
    return step._replace(W=np.zeros_like(step.W), b=-np.asarray(grad.b, np.float64))
  bias = np.zeros_like(step.W)
  bias[:, -1] = -np.asarray(grad.W, np.float64)[:, -1]
  return step._replace(W=bias)


def _reach(cfg, dataset):
  """How far the step reaches: 1, or the targets' spread where they are left in their own units and the
  loss is not quadratic in them (l1, Huber): their gradient is bounded in any units, so a step of
  `LENGTHS` moves a bias 1e8 away from its optimum by 2, which float32 cannot see."""
  target = records.raw_target_spread(dataset)
  if target == 1.0 or loss_probe.quadratic_in_targets(cfg.loss_record, cfg.resolved_loss_hparams(), target):
    return 1.0
  return target


@functools.partial(jax.jit, static_argnames='cfg')
def _along(params, directions, lengths, x, y, w, hp, *, cfg):
  """`[K, L]`: the objective on the rows `x` at `params + t · d` for each of the `K` stacked `directions`
  and each `t` of `lengths`, in one program."""
  spec = cfg.loss_record

  def at(direction, t):
    moved = jax.tree.map(lambda p, d: p + (t * d).astype(p.dtype), params, direction)
    return losses.unchecked_objective(moved, x, y, spec, hp.reg, cfg.penalty, hp.loss_hparams, w)

  return jax.vmap(lambda d: jax.vmap(lambda t: at(d, t))(lengths))(directions)
