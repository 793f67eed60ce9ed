"""A user's loss on the run's own rows before training: its values finite, its own gradient autodiff's.

`gradcheck` checks a loss's `score_grad` on a random problem of its own size
(4 classes by default), so a gradient wrong only for labels above 4, or only
at the data's scale, passed it; training then followed that gradient to a
point that is not the optimum and said "converged". Before a run trains with
the `score_grad` of a loss that is not one of the lecture's (a loss file, or a
loss registered by hand) under `--grad=analytic` or `custom_vjp`, `check`
takes both gradients of the loss on up to `ROWS` training rows, as the step
sees them, at `POINTS` random weights and biases whose scores are of order 1
(the run's own start scores about 0, where every class ties), and refuses the
run where they differ. A point where autodiff itself is not finite (a loss
that overflows there) checks nothing and is passed over. Under any gradient
source, the loss's values on those rows must be finite at the start's scores
(0): a NaN for one label was blamed on the score_grad, the data's scale or
the learning rate.
"""

import functools
import itertools

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import grad_sources
from linear_jax.maths import model
from linear_jax.optim import step

ROWS = 256
POINTS = 2
# Differences above this fraction of autodiff's largest entry: float32's rounding over a few hundred rows
# is about 1e-6 of it, and a wrong gradient is off by a good part of it.
RTOL = 1e-3


@functools.partial(jax.jit, static_argnames=('loss',))
def _values(params, x, y, hp, *, loss):
  """The loss's per-example values `[N]` at `params`."""
  return loss.value(model.scores(params, x), y, **hp)


@functools.partial(jax.jit, static_argnames=('source', 'loss', 'penalty'))
def _gradients(params, x, y, hp, mask, *, source, loss, penalty):
  """`(source's gradient, autodiff's)` of the loss alone (no penalty weight), as one compiled program:
  op by op, the first check of a run took 3 s."""
  _, mine = grad_sources.value_and_grad(source, params, x, y, loss, 0.0, penalty, hp, mask)
  _, auto = grad_sources.value_and_grad('autodiff', params, x, y, loss, 0.0, penalty, hp, mask)
  return mine, auto


def check(cfg, path, loss_hparams=None):
  """Raises a `ValueError` when a loss that is not built in gives a non-finite value on `path`'s training
  rows at the start's scores (0), or when the gradient `cfg.grad` takes from its own `score_grad` differs
  from `jax.grad` of the same loss there (at scores of order 1).

  Returns at once for a built-in loss; compares gradients only under
  `--grad=analytic` or `custom_vjp`. `loss_hparams`: the loss's
  hyperparameters to compare at, a list of dicts (a sweep's every value;
  default: `cfg`'s).
  """
  spec = cfg.loss_record
  if not cfg.own_loss:
    return
  x, y, w = path.sample_rows(ROWS)
  x, y = jnp.asarray(x), jnp.asarray(y)
  mask = None if w is None else jnp.asarray(w, x.dtype)
  swept = loss_hparams is not None
  settings = {tuple(sorted(spec.resolve_hparams(h).items())) for h in (loss_hparams or [cfg.loss_hparams])}
  outputs = step.num_outputs(cfg, path.dataset)
  # Scores W x + b of standard deviation about 1: W's entries of 1 / rms ‖x‖, b of 1.
  rms = float(np.sqrt(np.mean(np.sum(np.square(np.asarray(x, np.float64)), axis=1)))) or 1.0
  at = lambda hp: f' (at {", ".join(f"{n}={v:g}" for n, v in hp)})' if swept and hp else ''
  zero_b = None if cfg.bias_trick else jnp.zeros((outputs,), x.dtype)
  start = model.Params(W=jnp.zeros((outputs, x.shape[1]), x.dtype), b=zero_b)
  for hp in sorted(settings):  # the start's scores, 0: every class ties, and each value must be finite
    _check_values(cfg, path, np.asarray(_values(start, x, y, dict(hp), loss=spec)), y, at(hp))
  if not cfg.own_gradient:
    return
  for hp, k in itertools.product(sorted(settings), range(POINTS)):
    kw, kb = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), k))
    w = jax.random.normal(kw, (outputs, x.shape[1]), x.dtype) / rms
    b = jax.random.normal(kb, (outputs,), x.dtype)
    # With the bias trick x ends in a column of ones, whose weight is the bias.
    params = model.Params(W=w.at[:, -1].set(b), b=None) if cfg.bias_trick else model.Params(W=w, b=b)
    mine, auto = _gradients(params, x, y, dict(hp), mask, source=cfg.grad, loss=spec, penalty=cfg.penalty)
    mine, auto = (np.asarray(ravel_pytree(g)[0]) for g in (mine, auto))
    if not np.all(np.isfinite(auto)):
      continue
    scale = float(np.max(np.abs(auto), initial=0.0))
    worst = float(np.max(np.abs(mine - auto), initial=0.0))
    if not (np.isfinite(worst) and worst <= RTOL * max(scale, np.finfo(np.float32).tiny)):
      i = int(np.nanargmax(np.where(np.isfinite(mine - auto), np.abs(mine - auto), np.inf)))
      raise ValueError(
        f'--loss={cfg.loss}{at(hp)}: its score_grad disagrees with jax.grad of its value on {len(y)} '
        f'training rows of {path.dataset.name} (entry {i} of the gradient: {mine[i]:.6g} against '
        f'{auto[i]:.6g}; the largest difference is {worst:.3g}, {worst / max(scale, 1e-30):.2g} of the '
        f'largest entry). Check it with `linear-jax gradcheck --loss={cfg.loss} '
        f'--num_classes={max(outputs, 2)}`, or train with --grad=autodiff.'
      )


def _check_values(cfg, path, values, y, at):
  """Raises naming the loss's value function, and its first row, where `values` (at the start's scores,
  0) are not all finite: before, a NaN there was blamed on the score_grad, the data's scale or the
  learning rate. (Away from 0 a loss may overflow; the step's divergence test tells that.)"""
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    i = int(bad[0])
    target = np.asarray(y[i]).tolist()
    raise ValueError(
      f'--loss={cfg.loss}{at}: its value is not finite ({values[i]}) on {bad.size} of {len(values)} '
      f'training rows of {path.dataset.name}, at the start, scores 0 '
      f'(the first: {"target" if path.dataset.kind == "real" else "label"} {target}); check the value '
      'function of your loss for those targets.'
    )
