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
(at most about 1e-3 of the decrease in the default runs of every loss).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import losses

# Training rows (evenly spaced over the split: all of them up to this many) on which the step is scaled
# and measured; the gradient is the full objective's.
ROWS = 16384
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
  file streamed from disk is read once, not once per length.

  Args:
    cfg: the run's `TrainConfig`; path: its `DataPath`; params, hp: where the plateau is.
    initial: the objective before training.

  Returns:
    A float >= 0: the best of `f(params) − f(params + t·d)` over `LENGTHS`, over `initial − f(params)`.
  """
  value, grad = path.objective(params, hp)
  x, y, w = path.sample_rows(ROWS)
  moment = np.mean(np.square(np.asarray(x, np.float64)), axis=0)  # [D], the bias trick's column included
  damping = 2.0 * float(cfg.reg)

  def scaled(g, denominator):
    g = np.asarray(g, np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
      return np.where(denominator > 0, -g / denominator, 0.0)

  direction = grad._replace(
    W=scaled(grad.W, moment[None, :] + damping),
    b=None if grad.b is None else scaled(grad.b, np.full(grad.b.shape, 1.0 + damping)),
  )
  rows = tuple(None if a is None else jnp.asarray(a) for a in (x, y, w))
  at = lambda t: _objective(
    jax.tree.map(lambda p, d: p + jnp.asarray(t * d, p.dtype), params, direction), *rows, hp, cfg=cfg
  )
  here = float(at(0.0))
  moved = [float(at(t)) for t in LENGTHS]
  best = min([f for f in moved if np.isfinite(f)], default=here)
  return max(0.0, here - best) / max(initial - float(value), np.finfo(np.float64).tiny)


@functools.partial(jax.jit, static_argnames='cfg')
def _objective(params, x, y, w, hp, *, cfg):
  spec = cfg.loss_record
  return losses.unchecked_objective(params, x, y, spec, hp.reg, cfg.penalty, hp.loss_hparams, w)
