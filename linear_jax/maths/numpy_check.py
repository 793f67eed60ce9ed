"""Checks a course-style NumPy `fn(W, X, y, reg) -> (loss, dW)` as it is written.

The course's assignment writes a linear classifier's loss with `W` laid out
`[D, C]` (scores `X @ W`), the bias folded into `W` and `X`, every entry of `W`
regularized, and the penalty `reg · Σ W²`. `check_loss_and_grad` takes such a
function unchanged and compares its loss and `dW` with linear_jax's objective
and hand-derived gradient on the same numbers, and its `dW` with finite
differences of its own loss, so the report can say which part is wrong: the
loss value, the data term of `dW`, or its regularization term.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from linear_jax.maths import gradcheck
from linear_jax.maths import grads
from linear_jax.maths import losses
from linear_jax.maths import model


@dataclasses.dataclass
class LossAndGradReport:
  """What `check_loss_and_grad` found; `passed` is the verdict, `summary()` the words."""

  reference: str
  layout: str
  reg: float
  loss_yours: float
  loss_reference: float
  loss_rel_error: float
  loss_ok: bool
  comparisons: list  # gradcheck.Comparison: data term, regularization term, numerical

  @property
  def passed(self):
    return self.loss_ok and all(c.passed for c in self.comparisons)

  def disagreements(self):
    """The parts that disagree, in words."""
    out = [] if self.loss_ok else ['the loss value']
    return out + [c.pair for c in self.comparisons if not c.passed]

  def summary(self):
    lines = [
      f'fn vs linear_jax {self.reference!r} (W laid out {self.layout}, reg={self.reg:g}): '
      f'{"OK" if self.passed else "FAIL"}',
      f'  loss value                   yours {self.loss_yours:.10g}  linear_jax {self.loss_reference:.10g}'
      f'  rel {self.loss_rel_error:.2e}',
    ]
    for c in self.comparisons:
      lines.append(f'  {c.pair:<28} max rel {c.max_rel_error:9.2e}  failed {c.num_failed}/{c.num_compared}')
      if not c.passed:
        for name, a, b, r in c.worst:
          lines.append(f'      {name:<10} {a: .10e} vs {b: .10e} (rel {r:.2e})')
    if not self.passed:
      lines.append(f'  disagrees: {", ".join(self.disagreements())}')
    return '\n'.join(lines)


def _layout(w, x, layout):
  d = x.shape[1]
  fits = {'DC': w.shape[0] == d, 'CD': w.shape[1] == d}
  if layout == 'auto':
    if fits['DC'] and fits['CD']:
      raise ValueError(f"W is {w.shape} and X has {d} features: say layout='DC' or 'CD'.")
    if not any(fits.values()):
      raise ValueError(f'W is {w.shape} but X has {d} features: W must be [D, C] or [C, D].')
    return 'DC' if fits['DC'] else 'CD'
  if layout not in fits:
    raise ValueError(f"layout must be 'auto', 'DC' or 'CD', got {layout!r}.")
  if not fits[layout]:
    raise ValueError(f'W is {w.shape}, which is not {layout} for X with {d} features.')
  return layout


def _call(fn, w, x, y, reg):
  out = fn(np.array(w), np.array(x), np.array(y), reg)  # copies: the function may write into them
  if not (isinstance(out, tuple) and len(out) == 2):
    raise ValueError(f'fn must return (loss, dW), got {type(out).__name__}.')
  loss, dw = out
  dw = np.asarray(dw, np.float64)
  if dw.shape != np.shape(w):
    raise ValueError(f'fn returned dW of shape {dw.shape}; W is {np.shape(w)}.')
  return float(loss), dw


def check_loss_and_grad(
  fn, W, X, y, reg, reference='svm', layout='auto', num_coords=20, h=1e-5, seed=0, **loss_hparams
):
  """Checks `fn(W, X, y, reg) -> (loss, dW)` against linear_jax and against finite differences.

  Args:
    fn: the function under test, NumPy in, NumPy out, as the course writes it.
    W: `[D, C]` (the course's layout) or `[C, D]` weights, bias folded in.
    X: `[N, D]` inputs (with the constant-1 column if the bias is folded).
    y: `[N]` labels (or targets, for a regression reference).
    reg: the penalty's strength: `reg · Σ W²` over every entry of `W`.
    reference: `'svm'`, `'softmax'`, any loss name, or a `Loss` record.
    layout: `'auto'` (from the shapes), `'DC'` or `'CD'`.
    num_coords: coordinates of `W` checked by central differences of `fn`.
    h: their step.
    seed: which coordinates.
    **loss_hparams: the reference loss's hyperparameters (`margin=1.0`, the
      course's Δ, is the SVM's default).

  Returns:
    A `LossAndGradReport`.
  """
  gradcheck.require_x64()
  spec = losses.get_loss(reference)
  w, x = np.asarray(W, np.float64), np.asarray(X, np.float64)
  layout = _layout(w, x, layout)
  ref_loss, ref_data, ref_reg = _reference_terms(spec, w, x, y, reg, layout, loss_hparams)

  loss, dw = _call(fn, w, x, y, reg)
  _, dw0 = _call(fn, w, x, y, 0.0)
  tol = gradcheck.THRESHOLDS['float64']
  names = [f'W[{i}, {j}]' for i, j in np.ndindex(*w.shape)]
  comparisons = [
    gradcheck.compare('dW data term vs linear_jax', dw0.ravel(), ref_data.ravel(), names, tol['autodiff']),
    gradcheck.compare(
      'dW regularization term vs linear_jax', (dw - dw0).ravel(), ref_reg.ravel(), names, tol['autodiff']
    ),
    _numerical_comparison(fn, w, x, y, reg, dw, names, num_coords, h, seed, tol['central']),
  ]
  rel = float(gradcheck.relative_error(loss, ref_loss))
  return LossAndGradReport(
    reference=losses.loss_name(spec),
    layout=layout,
    reg=float(reg),
    loss_yours=loss,
    loss_reference=ref_loss,
    loss_rel_error=rel,
    loss_ok=rel <= tol['autodiff'][0] or abs(loss - ref_loss) <= tol['autodiff'][1],
    comparisons=comparisons,
  )


def _reference_terms(spec, w, x, y, reg, layout, loss_hparams):
  """`(loss, data term, penalty term)`: linear_jax's objective at `w` and its gradient's two terms.

  The gradients are `w`'s shape, in `layout` (`'DC'` or `'CD'`).
  """
  w_cd = w.T if layout == 'DC' else w
  to_user = (lambda a: np.asarray(a).T) if layout == 'DC' else np.asarray
  # A separate zero bias keeps every entry of W penalized, as the course does.
  params = model.Params(W=jnp.asarray(w_cd), b=jnp.zeros(w_cd.shape[0], jnp.float64))
  targets = np.asarray(y)
  kw = dict(loss=spec, penalty='l2', **loss_hparams)
  ref_loss = float(losses.objective(params, x, targets, reg=reg, **kw))
  ref_data = to_user(grads.analytic_grad(params, x, targets, reg=0.0, **kw).W)
  ref_reg = to_user(grads.penalty_grad(params, 'l2', reg))
  return ref_loss, ref_data, ref_reg


def _numerical_comparison(fn, w, x, y, reg, dw, names, num_coords, h, seed, tol):
  """`fn`'s `dw` against central differences of `fn`'s loss, at `num_coords` coordinates drawn by `seed`."""
  rng = np.random.default_rng(seed)
  coords = np.sort(rng.choice(w.size, min(num_coords, w.size), replace=False))
  numeric = []
  for i in coords:
    step = np.zeros(w.size)
    step[i] = h
    plus = _call(fn, w + step.reshape(w.shape), x, y, reg)[0]
    minus = _call(fn, w - step.reshape(w.shape), x, y, reg)[0]
    numeric.append((plus - minus) / (2 * h))
  return gradcheck.compare(
    'dW vs numerical (of fn)',
    dw.ravel()[coords],
    np.asarray(numeric),
    [names[i] for i in coords],
    tol,
  )
