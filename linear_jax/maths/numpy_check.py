"""Checks a course-style NumPy `fn(W, X, y, reg) -> (loss, dW)` as it is written.

The course's assignment writes a linear classifier's loss with `W` laid out
`[D, C]` (scores `X @ W`), the bias folded into `W` and `X`, every entry of `W`
regularized, and the penalty `reg · Σ W²`. `check_loss_and_grad` takes such a
function unchanged and compares its loss and `dW` with linear_jax's objective
and hand-derived gradient on the same numbers, and its `dW` with finite
differences of its own loss, so the report can say which part is wrong: the
loss value, the data term of `dW`, or its regularization term.

Every verdict is judged against an estimate of the error its reference itself
makes, not a fixed tolerance:

* against linear_jax (the same arithmetic done twice) the bound is float64
  rounding, `γ · ε · (N + 10) · (|X|ᵀ|G|)` for `dW`'s data term (`G` the
  score gradient), `γ · ε · (|dW| + |dW₀| + |2·reg·W|)` for its penalty term;
* against central differences `D(h) = (f(w + h·u) − f(w − h·u)) / 2h`, each
  probed coordinate (or direction `u`) gets its own noise estimate,
  truncation `|D(2h) − D(h)| / 3` (the `h²·f‴/6` error, measured) plus
  rounding `κ · ε · max|f| / h`; the analytic value agrees when
  `|analytic − D(h)| ≤ 10 · noise`.
* A coordinate whose differences do not shrink like `h²` (`D(4h) − D(2h)` is
  not `4 · (D(2h) − D(h))`) has a kink within the steps: it passes when the
  analytic value lies between the one-sided quotients `(f(w) − f(w − h))/h`
  and `(f(w + h) − f(w))/h` (a subgradient), and is reported as such.

Known conventions (the older `0.5 · reg · ΣW²` penalty, a sum over examples
instead of a mean, `W` laid out `[C, D]`) are recognised and named: a function
that follows one consistently is not a failure.
"""

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from linear_jax.maths import gradcheck
from linear_jax.maths import grads
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.maths import validation

EPS = float(np.finfo(np.float64).eps)
AGREE = 10.0  # analytic and numerical agree within AGREE × the estimated noise
MAX_PROBES = gradcheck.MAX_PROBES  # coordinates or directions one check probes: each calls fn twice
ROUNDING = 64.0  # κ: f's own rounding error, in units of ε · max|f|
EXACT = 16.0  # γ: rounding bound factor for linear_jax vs fn on the same numbers
CANDIDATES = ('svm', 'softmax')  # tried, by loss value, when `reference` is not given
# Past this many entries the subgradients of tied kinks are held entry by entry, not solved together.
MAX_GENERATOR_ENTRIES = 4_000_000
PAIRS = ('dW data term vs linear_jax', 'dW regularization term vs linear_jax', 'dW vs numerical (of fn)')


@dataclasses.dataclass
class Probe:
  """One coordinate (or direction) of `dW` against central differences of `fn`'s loss."""

  name: str
  analytic: float
  numerical: float  # D(h)
  noise: float  # the estimated error of D(h): truncation + rounding
  kink: bool
  one_sided: tuple  # (backward, forward) quotients at step h
  step: float

  @property
  def error(self):
    return abs(self.analytic - self.numerical)

  @property
  def passed(self):
    if self.kink:
      lo, hi = min(self.one_sided), max(self.one_sided)
      slack = AGREE * self.noise
      return lo - slack <= self.analytic <= hi + slack
    return bool(self.error <= AGREE * self.noise) and np.isfinite(self.analytic)

  def describe(self):
    if self.kink:
      b, f = self.one_sided
      verdict = 'at a kink, not a failure' if self.passed else 'at a kink, but outside: FAIL'
      return (
        f'{self.name:<14} {verdict}: one-sided {b:.6g} (backward) and {f:.6g} (forward), '
        f'yours {self.analytic:.6g}'
      )
    verdict = 'agrees' if self.passed else 'FAIL'
    return (
      f'{self.name:<14} yours {self.analytic: .6e} numerical {self.numerical: .6e}: error {self.error:.1e}, '
      f'finite-difference noise {self.noise:.1e}: {verdict}'
    )


@dataclasses.dataclass
class LossAndGradReport:
  """What `check_loss_and_grad` found; `passed` is the verdict, `summary()` the words.

  `reference` is `None` when no known loss matched `fn`'s value (then only
  finite differences judged `dW`); `conventions` names the known conventions
  `fn` follows; `bounds` maps each compared pair to `(|difference|, bound)`
  at its worst coordinate; `probes` are the finite-difference probes.
  """

  reference: str | None
  reference_note: str
  layout: str
  reg: float
  loss_yours: float
  loss_reference: float = float('nan')
  loss_rel_error: float = float('nan')
  loss_ok: bool = True  # without a reference only finite differences judge
  comparisons: list = dataclasses.field(default_factory=list)  # gradcheck.Comparison, PAIRS' order
  conventions: list = dataclasses.field(default_factory=list)
  bounds: dict = dataclasses.field(default_factory=dict)
  probes: list = dataclasses.field(default_factory=list)
  num_coords: int = 0
  num_directions: int = 0
  seconds: float = 0.0

  @property
  def passed(self):
    return self.loss_ok and all(c.passed for c in self.comparisons)

  @property
  def inconclusive(self):
    """Whether every finite-difference probe sat at a kink, where any subgradient passes: they confirmed
    nothing there (the SVM with margin 0 at W = 0); check at another `W`."""
    return bool(self.probes) and all(p.kink for p in self.probes)

  def disagreements(self):
    """The parts that disagree, in words."""
    out = [] if self.loss_ok else ['the loss value']
    return out + [c.pair for c in self.comparisons if not c.passed]

  def summary(self):
    ref = 'finite differences only' if self.reference is None else f'linear_jax {self.reference!r}'
    lines = [
      f'fn vs {ref} ({self.reference_note}; W laid out {self.layout}, reg={self.reg:g}): '
      f'{"OK" if self.passed else "FAIL"}'
      + (
        ', but finite differences confirmed nothing: every probe sits at a kink; check at another W'
        if self.inconclusive
        else ''
      )
    ]
    if self.reference is not None:
      diff, bound = self.bounds['loss']
      lines.append(
        f'  {"loss value":<37} yours {self.loss_yours:.10g}  linear_jax {self.loss_reference:.10g}'
        f'  |diff| {diff:.1e} (rounding bound {bound:.1e})'
      )
    for c in self.comparisons:
      lines += _comparison_lines(self, c)
    lines += [f'  convention: {c}' for c in self.conventions]
    if not self.passed:
      lines.append(f'  disagrees: {", ".join(self.disagreements())}')
    lines.append(f'  checked in {self.seconds:.1f} s')
    return '\n'.join(lines)


def _comparison_lines(report, c):
  if c.pair != PAIRS[2]:
    diff, bound = report.bounds[c.pair]
    counts = f'failed {c.num_failed}/{c.num_compared}'
    lines = [f'  {c.pair:<37} max |diff| {diff:.1e} (rounding bound {bound:.1e})  {counts}']
    return lines + [f'      {n:<12} {a: .10e} vs {b: .10e} (rel {r:.2e})' for n, a, b, r in c.worst]
  lines = [
    f'  {c.pair:<37} {report.num_coords} coordinates + {report.num_directions} random directions, '
    f'steps h, 2h, 4h: failed {c.num_failed}/{c.num_compared}, at a kink {c.num_kinks}'
  ]
  smooth = [p for p in report.probes if not p.kink]
  shown = [p for p in report.probes if not p.passed]
  if smooth and not shown:  # the closest call, so the margin is visible
    shown = [max(smooth, key=lambda p: p.error / max(p.noise, 1e-300))]
  shown += [p for p in report.probes if p.kink and p.passed][:2]
  return lines + [f'      {p.describe()}' for p in shown[:5]]


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


class _Fn:
  """`fn` called on read-only `X` and `y` (copied per call only if `fn` writes into them)."""

  def __init__(self, fn, x, y):
    self.fn, self.copy = fn, False
    self.x, self.y = np.array(x), np.array(y)
    self.x.flags.writeable = self.y.flags.writeable = False
    self.calls = 0

  def __call__(self, w, reg):
    self.calls += 1
    args = (np.array(self.x), np.array(self.y)) if self.copy else (self.x, self.y)
    try:
      out = self.fn(np.array(w), *args, reg)
    except ValueError as e:
      if self.copy or 'read-only' not in str(e):
        raise
      self.copy = True
      return self(w, reg)
    if not (isinstance(out, tuple) and len(out) == 2):
      raise ValueError(f'fn must return (loss, dW), got {type(out).__name__}.')
    loss, dw = (np.asarray(a) for a in out)
    for name, a in (('loss', loss), ('dW', dw)):
      if a.dtype.kind not in 'fiu':  # a complex dW lost its imaginary part here, and passed
        raise ValueError(f'fn returned a {name} of dtype {a.dtype}; it must be real numbers.')
      if a.dtype.kind == 'f' and a.dtype.itemsize < 8:
        raise ValueError(
          f'fn returned its {name} in {a.dtype}: the check needs float64 (its finite differences and '
          f"rounding bounds are float64's; in {a.dtype} a right gradient fails them). Compute in float64."
        )
    if loss.shape != ():
      raise ValueError(f'fn must return a scalar loss (the mean over the examples), got shape {loss.shape}.')
    if not np.isfinite(loss):
      raise ValueError(
        f'fn returned a loss of {float(loss)} at a finite W: no gradient can be checked there.'
      )
    if dw.shape != np.shape(w):
      raise ValueError(f'fn returned dW of shape {dw.shape}; W is {np.shape(w)}.')
    return float(loss), dw.astype(np.float64)


def check_loss_and_grad(
  fn,
  W,
  X,
  y,
  reg,
  reference=None,
  layout='auto',
  num_coords=40,
  num_directions=4,
  h=None,
  seed=0,
  **loss_hparams,
):
  """Checks `fn(W, X, y, reg) -> (loss, dW)` against linear_jax and against finite differences.

  Args:
    fn: the function under test, NumPy in, NumPy out, as the course writes it.
    W: `[D, C]` (the course's layout) or `[C, D]` weights, bias folded in.
    X: `[N, D]` inputs (with the constant-1 column if the bias is folded).
    y: `[N]` labels (or targets, for a regression reference).
    reg: the penalty's strength: `reg · Σ W²` over every entry of `W`.
    reference: `'svm'`, `'softmax'`, any loss name, or a `Loss` record;
      `None` (the default) takes whichever of `'svm'` and `'softmax'` has
      `fn`'s loss value, or finite differences alone if neither does.
    layout: `'auto'` (from the shapes), `'DC'` or `'CD'`.
    num_coords: coordinates of `W` probed by central differences of `fn`.
    num_directions: random directions probed the same way (they touch every
      coordinate at once).
    h: the step; `None` takes `1e-5 / rms(X[:, d])` for the coordinates of
      feature `d`, so a step moves the scores by about `1e-5` at any pixel
      scale.
    seed: which coordinates and directions.
    **loss_hparams: the reference loss's hyperparameters (`margin=1.0`, the
      course's Δ, is the SVM's default).

  Returns:
    A `LossAndGradReport`.
  """
  start = time.perf_counter()
  gradcheck.require_x64()
  _check_args(reg, h, seed, num_coords, num_directions)
  w, x = np.asarray(W, np.float64), np.asarray(X, np.float64)
  layout = _layout(w, x, layout)
  _check_labels(y, x, w, layout, reference)
  call = _Fn(fn, x, y)
  loss, dw = call(w, reg)
  loss0, dw0 = call(w, 0.0)
  spec, note, data_factor = _choose_reference(reference, w, x, y, loss0, layout, loss_hparams)
  names = [f'W[{i}, {j}]' for i, j in np.ndindex(*w.shape)]
  probes, n_coords, n_dirs = _probe(
    call, w, x, reg, loss, dw, names, layout, num_coords, num_directions, h, seed
  )
  report = LossAndGradReport(
    reference=None if spec is None else losses.loss_name(spec),
    reference_note=note,
    layout=layout,
    reg=float(reg),
    loss_yours=loss,
    probes=probes,
    num_coords=n_coords,
    num_directions=n_dirs,
  )
  if spec is not None:
    _against_reference(report, spec, w, x, y, (loss, dw, loss0, dw0), data_factor, names, loss_hparams)
  report.comparisons.append(_numerical_comparison(probes))
  if layout == 'CD':
    report.conventions.append('W laid out [C, D] (scores X @ W.T); the course lays it out [D, C]')
  report.seconds = time.perf_counter() - start
  return report


def _check_labels(y, x, w, layout, reference):
  """Raises a `ValueError` naming the first bad label before `fn` sees it (a label of 7 failed in the
  user's own indexing, an IndexError); real targets are taken for a regression `reference`."""
  y = np.asarray(y)
  if np.ndim(y) < 1 or len(y) != x.shape[0]:
    raise ValueError(f'y must hold one target per row of X ({x.shape[0]}), got shape {list(np.shape(y))}.')
  kind = 'class' if reference is None else losses.get_loss(reference).targets
  outputs = w.shape[1] if layout == 'DC' else w.shape[0]
  if kind != 'real' and (kind == 'binary' or outputs >= 2):
    validation.check_targets(y, kind, outputs, where='y')


def _check_args(reg, h, seed, num_coords, num_directions):
  """Raises a `ValueError` naming the argument that is out of range, before `fn` is called."""
  if not (validation.is_number(reg) and math.isfinite(reg) and reg >= 0):
    raise ValueError(f'reg must be a finite number >= 0, got {reg!r}.')
  if h is not None and not (validation.is_number(h) and math.isfinite(h) and h > 0):
    raise ValueError(f'h must be a finite number > 0 (or None, to scale it by X), got {h!r}.')
  validation.check_seed('seed', seed)
  for name, n in (('num_coords', num_coords), ('num_directions', num_directions)):
    if not validation.is_whole(n, 0, MAX_PROBES):
      raise ValueError(
        f'{name} must be an integer in [0, {MAX_PROBES:,}] (each probe calls fn twice), got {n!r}.'
      )
  if num_coords == num_directions == 0:
    raise ValueError('num_coords and num_directions are both 0: the check would compare nothing.')


def _reference_terms(spec, w, x, y, layout, loss_hparams):
  """`(data loss, data gradient, rounding scale, subgradients)`: linear_jax's objective at `w`, `reg = 0`.

  The gradient is `w`'s shape, in `layout`; the scale is `|X|ᵀ|G|` (`G` the
  score gradient over `N`), the size of the sums `dW`'s rounding comes from;
  the subgradients are `_tied_subgradients`', in `layout`.
  """
  w_cd = w.T if layout == 'DC' else w
  to_user = (lambda a: np.swapaxes(np.asarray(a), -1, -2)) if layout == 'DC' else np.asarray
  params, targets, kw = _reference_args(spec, w_cd, y, loss_hparams)
  ref_loss = float(losses.objective(params, x, targets, reg=0.0, **kw))
  ref_data = to_user(grads.analytic_grad(params, x, targets, reg=0.0, **kw).W)
  hp = spec.resolve_hparams(loss_hparams)
  scores = jnp.asarray(x @ w_cd.T)
  g = np.asarray(spec.score_grad(scores, targets, **hp))
  scale = to_user((np.abs(g).T @ np.abs(x)) / x.shape[0])
  reach = np.abs(x) @ np.abs(w_cd).T  # [N, C]: what the scores' rounding scales with
  tied = _tied_subgradients(spec, scores, g, targets, x, hp, reach)
  if tied is not None:
    tied = tuple(a if a is None else to_user(a) for a in tied)
  return ref_loss, ref_data, scale, tied


def _reference_args(spec, w_cd, y, loss_hparams):
  """`(params, targets, keywords)` of linear_jax's objective for `[C, D]` weights `w_cd`."""
  # A separate zero bias keeps every entry of W penalized, as the course does.
  params = model.Params(W=jnp.asarray(w_cd), b=jnp.zeros(w_cd.shape[0], jnp.float64))
  return params, np.asarray(y), dict(loss=spec, penalty='l2', **loss_hparams)


def _reference_loss(spec, w, x, y, layout, loss_hparams):
  """linear_jax's data loss at `w` (`reg = 0`): all that choosing a reference needs."""
  params, targets, kw = _reference_args(spec, w.T if layout == 'DC' else w, y, loss_hparams)
  return float(losses.objective(params, x, targets, reg=0.0, **kw))


def _tied_kinks(spec, scores, targets, hp, reach, num_features):
  """`(rows, [T, K, C] kink Jacobians, [T, K] bools)`: the examples with a kink entry that is 0 up to the
  rounding of their scores (`fn` computes them in its own order: `EXACT · ε · (D + 10)` times the row's
  `reach`, `|x_i|·|w_c|` at most, plus 1 for a margin), the Jacobian of their `kinks` row by the scores,
  and which entries are tied; `None` where no row is, or `kinks` has no Jacobian (ints, NumPy)."""
  n = scores.shape[0]
  kinks = np.asarray(spec.kinks(scores, targets, **hp)).reshape(n, -1)
  within = EXACT * EPS * (num_features + 10) * (reach.max(axis=1, keepdims=True) + 1.0)  # [N, 1]
  on = np.abs(kinks) <= within
  rows = np.flatnonzero(on.any(axis=1))
  if not rows.size:
    return None
  row = lambda s, t: jnp.ravel(spec.kinks(s[None], t[None], **hp))
  try:
    jac = np.asarray(jax.vmap(jax.jacrev(row))(scores[rows], jnp.asarray(targets)[rows]), np.float64)
  except Exception:  # pylint: disable=broad-except  # a kinks of ints, bools or NumPy: no directions
    return None
  return rows, jac, on[rows] & (np.abs(jac).sum(axis=2) > 0)


def _tied_subgradients(spec, scores, g, targets, x, hp, reach):
  """What `dW`'s data term may take besides linear_jax's where examples sit exactly on a kink of `spec`
  (a margin of exactly 0: the course's `margin > 0` and a `margin >= 0` are both right there).

  Each tied kink is crossed alone a tiny step either way (along the pseudo-inverse of its example's
  kink Jacobian, which holds the example's other kinks where they are); where a side's score gradient
  differs from linear_jax's `g`, that difference times `x_i / N` is one generator: the valid data terms
  are linear_jax's plus `Σ λ_k · generator_k`, `0 ≤ λ_k ≤ 1`.

  Returns:
    `None` where no example is tied; else `(generators [K, C, D] or None, low [C, D], high [C, D])`:
    the generators (`None` beyond `MAX_GENERATOR_ENTRIES`), and the range each entry can reach.
  """
  n, c = scores.shape
  found = None if spec.kinks is None else _tied_kinks(spec, scores, targets, hp, reach, x.shape[1])
  if found is None:
    return None
  rows, jac, on = found
  at, dirs = [], []
  for i in range(rows.size):
    for u in np.linalg.pinv(jac[i][on[i]]).T:
      at.append(i)
      dirs.append(u / np.linalg.norm(u))
  if not at:
    return None
  at, u = np.asarray(at), np.asarray(dirs)
  s = np.asarray(scores)[rows][at]
  step = 1e-7 * (1.0 + np.abs(s).max(axis=1, keepdims=True)) * u
  t = jnp.asarray(targets)[rows][at]
  base = g[rows][at]
  jumps = np.concatenate(
    [np.asarray(spec.score_grad(jnp.asarray(s + sign * step), t, **hp)) - base for sign in (1, -1)]
  )  # [2K, C]
  example = np.concatenate([at, at])  # index into rows
  own = 1e-9 * (1.0 + np.abs(base).max())  # the side that is linear_jax's own changes nothing
  keep = np.abs(jumps).max(axis=1) > own
  jumps, example = jumps[keep], example[keep]
  # Two kinks of one row on one hyperplane (Crammer-Singer's s_j1 - s_j2 and s_j2 - s_j1) cross to the
  # same side: one generator, not two (which would reach twice the jump).
  rounded = np.round(jumps / (own * 1e3), 0)
  _, first = np.unique(np.column_stack([example, rounded]), axis=0, return_index=True)
  first = np.sort(first)
  jumps, example = jumps[first], example[first]
  if not len(jumps):
    return None
  pos, neg = np.zeros((rows.size, c)), np.zeros((rows.size, c))  # each row's jumps, by sign
  np.add.at(pos, example, np.maximum(jumps, 0))
  np.add.at(neg, example, np.minimum(jumps, 0))
  xr = x[rows]
  low = (pos.T @ np.minimum(xr, 0) + neg.T @ np.maximum(xr, 0)) / n
  high = (pos.T @ np.maximum(xr, 0) + neg.T @ np.minimum(xr, 0)) / n
  gens = None
  if len(jumps) * c * x.shape[1] <= MAX_GENERATOR_ENTRIES:
    gens = jumps[:, :, None] * xr[example][:, None, :] / n
  return gens, low, high


def _nearest_subgradient(delta, tied):
  """`(change, solved)`: the change of the data term, within the subgradients `tied` spans
  (`_tied_subgradients`), nearest to `delta` (`fn`'s data term minus linear_jax's): by bounded least
  squares over the generators, or (too many to hold) entry by entry within each one's range."""
  gens, low, high = tied
  if gens is None:
    return np.clip(delta, low, high), False
  import scipy.optimize  # only a check at exact ties needs it; the import costs about 0.3 s

  a = gens.reshape(len(gens), -1).T
  lam = scipy.optimize.lsq_linear(a, delta.ravel(), bounds=(0.0, 1.0), method='bvls').x
  return (a @ lam).reshape(delta.shape), True


def _loss_bound(a, b, n):
  return EXACT * EPS * (n + 10) * max(abs(a), abs(b), 1e-300)


def _choose_reference(reference, w, x, y, loss0, layout, loss_hparams):
  """`(Loss or None, how it was chosen, data factor)`: the factor is 1 (a mean) or N (a sum)."""
  n = x.shape[0]
  if reference is not None:
    spec = losses.get_loss(reference)
    ref = _reference_loss(spec, w, x, y, layout, loss_hparams)
    factor = n if abs(loss0 - n * ref) <= _loss_bound(loss0, n * ref, n) < abs(loss0 - ref) else 1
    return spec, 'named', factor
  if np.issubdtype(np.asarray(y).dtype, np.integer):
    for name in CANDIDATES:
      spec = losses.get_loss(name)
      ref = _reference_loss(spec, w, x, y, layout, loss_hparams)
      for factor in (1, n):
        if abs(loss0 - factor * ref) <= _loss_bound(loss0, factor * ref, n):
          return spec, 'matched by its loss value', factor
  names = ' or '.join(repr(c) for c in CANDIDATES)
  return None, f'its loss at reg=0 is neither {names}', 1


def _against_reference(report, spec, w, x, y, values, data_factor, names, loss_hparams):
  """Fills the loss verdict and the data and penalty comparisons of `report`, naming conventions."""
  loss, dw, loss0, dw0 = values
  n, reg = x.shape[0], report.reg
  ref_loss, ref_data, scale, tied = _reference_terms(spec, w, x, y, report.layout, loss_hparams)
  ref_loss, ref_data, scale = data_factor * ref_loss, data_factor * ref_data, data_factor * scale
  data_bound = EXACT * EPS * (n + 10) * scale + 1e-300
  if tied is not None:  # the nearest valid subgradient, if fn took another than linear_jax's
    tied = tuple(None if a is None else data_factor * a for a in tied)
    data_bound = data_bound + EXACT * EPS * (n + 10) * (tied[2] - tied[1])  # the sums of the generators too
    change, solved = _nearest_subgradient(dw0 - ref_data, tied)
    if np.any(np.abs(change) > data_bound):
      ref_data = ref_data + change
      report.conventions.append(
        'examples sit exactly on a kink of the loss (a margin of exactly 0), where every subgradient is '
        "valid: dW's data term is compared with the valid one nearest to it"
        + ('' if solved else ', entry by entry (too many to solve for together)')
      )
  if data_factor != 1:
    report.conventions.append(
      'a sum over the examples, not a mean (the course divides by N); its dW follows suit'
      if np.allclose(dw0, ref_data, rtol=1e-6, atol=0)
      else 'its loss is a sum over the examples, not a mean (the course divides by N)'
    )
  penalty = reg * float(np.sum(w * w))
  bound = _loss_bound(loss, loss0, n) + EXACT * EPS * penalty
  # At W = 0 (a penalty below rounding) the two conventions give the same loss and dW: no claim then.
  half = reg != 0 and penalty / 2 > bound and abs(loss - loss0 - penalty / 2) <= bound
  factor = 0.5 if half else 1.0
  if half:
    report.conventions.append(
      '0.5·reg·ΣW² penalty (dW term reg·W), the older convention; linear_jax and the course use '
      'reg·ΣW² (dW term 2·reg·W). Not a failure: it is a different objective, the same minimiser '
      'at twice the reg'
    )
  ref_reg = factor * np.asarray(grads.penalty_grad(model.Params(W=jnp.asarray(w), b=jnp.zeros(1)), 'l2', reg))
  report.loss_reference = ref_loss + factor * penalty
  diff, bound = abs(loss - report.loss_reference), _loss_bound(loss, report.loss_reference, n)
  report.bounds['loss'] = (diff, bound)
  report.loss_rel_error = float(gradcheck.relative_error(loss, report.loss_reference))
  report.loss_ok = bool(diff <= bound)
  reg_bound = EXACT * EPS * (np.abs(dw) + np.abs(dw0) + np.abs(ref_reg)) + 1e-300
  report.comparisons += [
    _exact(report, PAIRS[0], dw0, ref_data, data_bound, names),
    _exact(report, PAIRS[1], dw - dw0, ref_reg, reg_bound, names),
  ]


def _exact(report, pair, a, b, bound, names):
  """`a` against `b` within a per-coordinate rounding `bound`; records the worst in `report.bounds`."""
  a, b, bound = a.ravel(), b.ravel(), bound.ravel()
  diff = np.abs(a - b)
  ok = (diff <= bound) & np.isfinite(a)
  worst = int(np.argmax(np.nan_to_num(diff / bound, nan=np.inf)))
  report.bounds[pair] = (float(diff[worst]), float(bound[worst]))
  bad = np.flatnonzero(~ok)
  order = bad[np.argsort(-np.nan_to_num(diff[bad] / bound[bad], nan=np.inf))][:3]
  return gradcheck.Comparison(
    pair=pair,
    max_rel_error=float(np.nan_to_num(gradcheck.relative_error(a, b), nan=np.inf).max(initial=0.0)),
    max_abs_error=float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)),
    num_compared=int(a.size),
    num_failed=int(bad.size),
    num_kinks=0,
    worst=[(names[i], float(a[i]), float(b[i]), float(gradcheck.relative_error(a[i], b[i]))) for i in order],
  )


def _feature_scale(x, w, layout):
  """Each coordinate's feature rms, `W`'s shape: how far a unit step of it moves the scores."""
  rms = np.sqrt(np.mean(x * x, axis=0))
  rms = np.where(rms > 0, rms, 1.0)
  return np.broadcast_to(rms[:, None] if layout == 'DC' else rms[None, :], w.shape)


def _probe(call, w, x, reg, loss, dw, names, layout, num_coords, num_directions, h, seed):
  """Probes `dw` at `num_coords` coordinates and `num_directions` random directions; `(probes, n, m)`."""
  rng = np.random.default_rng(seed)
  scale = _feature_scale(x, w, layout) if h is None else np.ones(w.shape)
  h0 = 1e-5 if h is None else float(h)
  coords = np.sort(rng.choice(w.size, min(num_coords, w.size), replace=False))
  probes = []
  for i in coords:
    u = np.zeros(w.size)
    u[i] = 1.0
    probes.append(_central(call, w, reg, loss, dw, u.reshape(w.shape), h0 / scale.flat[i], names[i]))
  for k in range(num_directions):
    u = rng.normal(size=w.shape) / scale
    u /= np.sqrt(np.sum((u * scale) ** 2))  # a step h0 moves the scaled coordinates by h0 in norm
    probes.append(_central(call, w, reg, loss, dw, u, h0, f'direction {k + 1}'))
  return probes, len(coords), num_directions


def _central(call, w, reg, f0, dw, u, h, name):
  """`dw · u` against `D(s) = (f(w + s·u) − f(w − s·u)) / 2s` at `s = h, 2h, 4h`, with its noise.

  Truncation of `D(h)` is measured as `|D(2h) − D(h)| / 3` (both err by
  `s²·f‴/6`); rounding is `κ · ε · max|f| / h`. Smooth `f` has
  `D(4h) − D(2h) ≈ 4 · (D(2h) − D(h))`; when that fails beyond the noise the
  steps straddle a kink (and when the second differences at `h` and `2h`
  differ, one sits at `w`).
  """
  f = {s: call(w + s * h * u, reg)[0] for s in (-4, -2, -1, 1, 2, 4)}
  d = {s: (f[s] - f[-s]) / (2 * s * h) for s in (1, 2, 4)}
  rounding = ROUNDING * EPS * max(abs(v) for v in (f0, *f.values())) / h
  e1, e2 = d[2] - d[1], d[4] - d[2]
  # A kink at w itself leaves D(s) of a piecewise-linear f the same at every step; there the second
  # differences c(s) = (f(w + s·u) − 2 f(w) + f(w − s·u)) / s² halve as s doubles, where a smooth f's agree.
  c1, c2 = (f[1] - 2 * f0 + f[-1]) / h**2, (f[2] - 2 * f0 + f[-2]) / (2 * h) ** 2
  at_w = abs(c1 - c2) > max(AGREE * 8 * rounding / h, 0.25 * max(abs(c1), abs(c2)))
  kink = at_w or abs(e2 - 4 * e1) > max(AGREE * 8 * rounding, 0.25 * abs(e2))
  backward, forward = (f0 - f[-1]) / h, (f[1] - f0) / h
  # On a kink's smooth side the one-sided quotients miss the slope by h·f''/2: allow that much.
  curvature = min(abs(backward - (f0 - f[-2]) / (2 * h)), abs(forward - (f[2] - f0) / (2 * h)))
  noise = rounding + (curvature if kink else abs(e1) / 3)
  return Probe(name, float(np.sum(dw * u)), float(d[1]), float(noise), bool(kink), (backward, forward), h)


def _numerical_comparison(probes):
  bad = [p for p in probes if not p.passed]
  smooth = [p for p in probes if not p.kink] or [None]
  # A NaN (a gradient that is not finite) counts as inf, whatever its place: `max` alone depends on order.
  worst_rel = max(
    (
      float(np.nan_to_num(gradcheck.relative_error(p.analytic, p.numerical), nan=np.inf)) for p in smooth if p
    ),
    default=0.0,
  )
  return gradcheck.Comparison(
    pair=PAIRS[2],
    max_rel_error=worst_rel,
    max_abs_error=max((p.error for p in smooth if p), default=0.0),
    num_compared=len(probes),
    num_failed=len(bad),
    num_kinks=sum(p.kink for p in probes),
    worst=[
      (p.name, p.analytic, p.numerical, float(gradcheck.relative_error(p.analytic, p.numerical)))
      for p in bad[:3]
    ],
  )
