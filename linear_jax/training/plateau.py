"""Whether a plateau of the objective is the optimum's: one step scaled to each feature's units.

The objective's stopping tests (`optim/convergence.py`) stop where the objective
stops falling. On features whose units differ widely (`--preprocess=none` on
breast_cancer: spreads from 0.0026 to 350) that is where gradient descent
crawls, not the optimum: logistic regression stopped there, "converged", at an
objective of 0.242 against L-BFGS's 0.117. Before a fit says 'converged' on such
a test, `gain` takes one step of the full gradient with each weight's entry
divided by its feature's second moment as the step sees it, plus the penalty's
`2·reg` (the step standardizing would have made: a Jacobi step), at a few
lengths, and measures the best decrease as a fraction of the decrease so far.
Above `GAIN` the plateau is no optimum, and the fit says 'stalled'. On
standardized features the step gains nothing gradient descent had not found
(at most about 1e-3 of the decrease in the default runs of every loss). The
test can only refute: a plateau a little above the optimum (a constant step's
noise floor) may gain less than `GAIN` from one step and pass.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import losses

# Training rows (evenly spaced over the split: all of them up to this many, and at most `SAMPLE_BYTES` of
# float64 features) on which the step is scaled and measured; the gradient is the full objective's.
ROWS = 16384
SAMPLE_BYTES = 64 * 2**20
# Step lengths tried, from twice the Jacobi step down (a subgradient's best is often far shorter).
LENGTHS = tuple(np.logspace(1, -10, 12, base=2.0))
# A plateau from which one such step still lowers the objective by more than this fraction of what
# training lowered it is not the optimum's.
GAIN = 1e-2


def gain(cfg, path, params, hp, initial):
  """The fraction of the decrease so far, `initial − f(params)`, that one feature-scaled step gains.

  The gradient is the full objective's (`path.objective`, one pass); the step's
  scale and its gain are measured on up to `ROWS` training rows as the step
  sees them (`path.sample_rows`: every row of a smaller split), so that a
  file streamed from disk is read once, not once per length. Each weight's
  entry is divided by its feature's (weighted) second moment plus the l2
  penalty's `2·reg` (none for a bias, folded or not).

  Args:
    cfg: the run's `TrainConfig`; path: its `DataPath`; params, hp: where the plateau is.
    initial: the objective before training.

  Returns:
    A float >= 0: the best of `f(params) − f(params + t·d)` over `LENGTHS`, over `initial − f(params)`;
    1 where the objective has not fallen below `initial` at all and a step still lowers it.
  """
  value, grad = path.objective(params, hp)
  rows = max(1, min(ROWS, SAMPLE_BYTES // (8 * params.W.shape[1])))
  x, y, w = path.sample_rows(rows)
  w = None if w is None or not np.sum(w) > 0 else w
  moment = np.average(np.square(x, dtype=np.float64), axis=0, weights=w)  # [D], a folded bias's 1 included
  damping = np.full(moment.shape, 2.0 * float(cfg.reg) if cfg.penalty == 'l2' else 0.0)
  if grad.b is None:
    damping[-1] = 0.0  # the folded bias is not penalized (`model.penalized_weights`)

  def scaled(g, denominator):
    g = np.asarray(g, np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
      return np.where(denominator > 0, -g / denominator, 0.0)

  direction = grad._replace(
    W=scaled(grad.W, (moment + damping)[None, :]),
    b=None if grad.b is None else scaled(grad.b, np.ones(grad.b.shape)),
  )
  sample = tuple(None if a is None else jnp.asarray(a) for a in (x, y, w))
  lengths = jnp.asarray((0.0, *LENGTHS), params.W.dtype)
  here, *moved = np.asarray(_along(params, direction, lengths, *sample, hp, cfg=cfg), np.float64)
  best = min([f for f in moved if np.isfinite(f)], default=here)
  gained, fallen = max(0.0, here - best), initial - float(value)
  if fallen <= 0:  # the objective test passed without any decrease: a step too large, or no progress
    return 1.0 if gained > 0 or fallen < 0 else 0.0
  return gained / fallen


@functools.partial(jax.jit, static_argnames='cfg')
def _along(params, direction, lengths, x, y, w, hp, *, cfg):
  """The objective on the rows `x` at `params + t · direction` for every `t` of `lengths`, in one program."""
  spec = cfg.loss_record

  def at(t):
    moved = jax.tree.map(lambda p, d: p + (t * d).astype(p.dtype), params, direction)
    return losses.unchecked_objective(moved, x, y, spec, hp.reg, cfg.penalty, hp.loss_hparams, w)

  return jax.vmap(at)(lengths)
