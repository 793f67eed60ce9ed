"""Gradient checking: finite differences, relative error, a three-way report.

The lecture's advice, done properly: derive the analytic gradient, then check
it against a numerical one. `check_function_gradients` compares a hand-written
gradient of any scalar function of any pytree of float arrays with two
independent references, `jax.grad` and finite differences, and the report says
which coordinates disagree, by their tree path (`W[c, d]`, `b[c]`,
`['w1'][i, j]`). `check_gradients` is that check applied to the linear model's
objective.

Verdict thresholds in float64 (a pair of values agrees when either holds):

==========================  ===================  ==================
pair                        relative error ≤     or |a − b| ≤
==========================  ===================  ==================
analytic vs autodiff        1e-9                 1e-12
either vs central diffs     1e-6                 1e-8
either vs forward diffs     1e-3                 1e-6
==========================  ===================  ==================

The absolute floor stops gradients that are zero up to round-off (where the
relative error of two tiny numbers means nothing) from failing the check. The
floor against finite differences is raised to the rounding error the check
measures in `f` itself (`_rounding_floor`): an objective of 3,000 (the L2
penalty of 30,000 unit weights at reg 0.1) rounds at 1e-13, and that alone put
central differences of a correct gradient 4e-8 off at 500 × 3,000.
The floor of analytic vs autodiff is raised, leaf by leaf, to `AUTODIFF_ULPS`
units in the last place of the leaf's largest entry. A difference quotient that
disagrees is taken again at `h/2`; where it misses by no more than its own error
(`STEP_ERROR` times how far it moved), it decides nothing and is counted as
unsettled, not failed (`_step_error`).
Checks run in float64 when `jax_enable_x64` is on (the linear-model check
requires it); a float32 check uses float32 steps and looser thresholds.

Kinks: the hinge-type losses, the L1 loss and the L1 penalty are not
differentiable where a margin, residual or weight is exactly 0. Given a
`kinks(params)` array that changes sign exactly there, a coordinate whose
finite-difference step crosses a kink is reported as a kink, and passes only if
the gradient under test lies between the one-sided difference quotients
`(f(w) − f(w − h))/h` and `(f(w + h) − f(w))/h` (within tolerance); where the
gradient under test and `jax.grad`'s differ only at kinks, the same test
decides between them (two different subgradients are both valid).
"""

from collections.abc import Callable
import dataclasses
import functools
import math
from typing import NamedTuple
import weakref

import chex
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from linear_jax.maths import grads
from linear_jax.maths import inputs
from linear_jax.maths import losses
from linear_jax.maths import model
from linear_jax.maths import validation

METHODS = ('central', 'forward', 'sparse', 'directional')
# Steps near the optimum for each method: ~eps^(1/3) for central, ~eps^(1/2) for forward differences.
DEFAULT_STEP = {
  'float64': {'central': 1e-5, 'forward': 1e-7, 'sparse': 1e-5, 'directional': 1e-5},
  'float32': {'central': 5e-3, 'forward': 3e-4, 'sparse': 5e-3, 'directional': 5e-3},
}
# The steps a finite difference means anything at, per dtype. Below the low end the rounding error of
# f(w ± h), about eps·|f|/h (eps 2.2e-16 in float64, 1.2e-7 in float32), swamps the difference: at
# h = 1e-12 it is already ~1e-4·|f| in float64 (and at 1e-5 ~1e-2·|f| in float32). Above 0.1 the
# truncation error (h²/6 times the third derivative, central; h/2 times the second, forward) is no
# longer small for unit-scale weights, and a step that wide crosses the hinges of every coordinate,
# so every coordinate would be taken for a kink and the check would pass having checked nothing.
STEP_RANGE = {'float64': (1e-12, 1e-1), 'float32': (1e-5, 1e-1)}
# (relative tolerance, absolute tolerance) per comparison and dtype.
THRESHOLDS = {
  'float64': {'autodiff': (1e-9, 1e-12), 'central': (1e-6, 1e-8), 'forward': (1e-3, 1e-6)},
  'float32': {'autodiff': (1e-4, 1e-6), 'central': (2e-2, 1e-3), 'forward': (5e-2, 2e-3)},
}
# Coordinates re-checked one by one, per leaf, when a directional check fails.
ESCALATION_COORDS = 4096
# Where the gradient under test and jax.grad's differ, the worst this many are probed for kinks first.
KINK_PROBES = 16
# A coordinate sits at a kink when a step this fraction of h either side crosses one (`_at_kink`).
KINK_STEP = 1e-6
# The most coordinates or random directions one sparse or directional check draws (each is two calls of f).
MAX_PROBES = 10_000
# 'analytic vs autodiff' passes a difference of this many units in the last place of a leaf's largest entry.
AUTODIFF_ULPS = 64
# A difference quotient's error is taken as this many times how far it moves when the step halves.
STEP_ERROR = 4.0
# The rounding floor: f is evaluated at up to ROUNDING_PROBES points a step ROUNDING_STEP · h away, and a
# difference quotient may be off by ROUNDING_AGREE times the largest error seen there, divided by h.
ROUNDING_PROBES, ROUNDING_STEP, ROUNDING_AGREE = 16, 1e-3, 4.0


def relative_error(a: ArrayLike, b: ArrayLike) -> np.ndarray:
  """`|a − b| / max(|a|, |b|)` elementwise, 0 where both are 0 (or equal), NaN where either is not
  finite and they differ: no relative error describes a NaN against a number."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = np.maximum(np.abs(a), np.abs(b))
  with np.errstate(invalid='ignore', divide='ignore'):
    rel = np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)
    return np.where(a == b, 0.0, np.where(np.isfinite(a) & np.isfinite(b), rel, np.nan))


def _leaf_name(path):
  name = jax.tree_util.keystr(path)
  return name[1:] if name.startswith('.') else name


def coordinate_names(params: chex.ArrayTree) -> list[str]:
  """Names of the coordinates of `ravel_pytree(params)`, from their tree paths.

  `Params` gives `W[c, d]` then `b[c]`; a dict `{'w1': ...}` gives
  `['w1'][i, j]`; a scalar leaf is named by its path alone.
  """
  names = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    base = _leaf_name(path)
    shape = np.shape(leaf)
    if not shape:
      names.append(base)
      continue
    names += [f'{base}[{", ".join(map(str, idx))}]' for idx in np.ndindex(*shape)]
  return names


def _leaf_slices(params):
  """`[(leaf name, slice of the flat vector)]` in `ravel_pytree` order."""
  out, start = [], 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    size = int(np.size(leaf))
    out.append((_leaf_name(path), slice(start, start + size)))
    start += size
  return out


def require_x64() -> None:
  if not jax.config.jax_enable_x64:
    raise ValueError(
      "Gradient checks need float64: call jax.config.update('jax_enable_x64', True) before any JAX work."
    )


def _check_dtype(params):
  """`'float64'` when x64 is on, else `'float32'`; non-float leaves are refused by path."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise ValueError(
        f'params{jax.tree_util.keystr(path)}: gradients need float arrays, got {jnp.result_type(leaf)}.'
      )
  return 'float64' if jax.config.jax_enable_x64 else 'float32'


def _probes(f, state, chunk_size):
  """`(v, args, coords, step) -> (f(v + step e_i), kink crossed?)` for every `i` in `coords`.

  `chunk_size` coordinates at a time under `vmap` (`lax.map` with a batch
  size), so memory stays bounded and there is no Python call per coordinate.
  """

  def run(v, args, coords, step):
    base = state(v, args)

    def probe(i):
      w = v.at[i].add(step)
      return f(w, args), jnp.any(state(w, args) != base)

    return jax.lax.map(probe, coords, batch_size=chunk_size)

  return run


class _Kernels(NamedTuple):
  value: Callable
  grad: Callable
  probes: Callable
  directional: Callable
  minus_at: Callable


@functools.lru_cache(maxsize=8)  # each holds its f and what f closes over
def _kernels(f, kinks, treedef, leaves, chunk_size):
  """Jitted pieces of a check, compiled once per function, kink function, structure and shapes.

  Data enter as arguments (`args`), never as closures, so checking again (new
  data, new point, new hyperparameters) recompiles nothing.
  """
  template = jax.tree_util.tree_unflatten(treedef, [jnp.zeros(s, d) for s, d in leaves])
  unravel = ravel_pytree(template)[1]

  def flat_f(v, args):
    return f(unravel(v), *args)

  def state(v, args):
    if kinks is None:
      return jnp.zeros((0,), jnp.int8)
    return jnp.sign(jnp.ravel(kinks(unravel(v), *args))).astype(jnp.int8)

  def directional(v, args, dirs, hs):
    base = state(v, args)

    def one(u):
      jvp = jax.jvp(lambda w: flat_f(w, args), (v,), (u,))[1]
      plus = jax.vmap(lambda h: flat_f(v + h * u, args))(hs)
      minus = jax.vmap(lambda h: flat_f(v - h * u, args))(hs)
      h = hs[0]
      kink = jnp.any(state(v + h * u, args) != base) | jnp.any(state(v - h * u, args) != base)
      return jvp, plus, minus, kink

    return jax.vmap(one)(dirs)

  return _Kernels(
    value=jax.jit(flat_f),
    grad=jax.jit(jax.grad(flat_f)),
    probes=jax.jit(_probes(flat_f, state, chunk_size)),
    directional=jax.jit(directional),
    minus_at=jax.jit(lambda v, args, idx, h: jax.vmap(lambda i: flat_f(v.at[i].add(-h), args))(idx)),
  )


def _richardson(d_h, d_half):
  """Central differences at `h` and `h/2` combined to cancel the `h²` error term: O(h⁴)."""
  return (4.0 * d_half - d_h) / 3.0


def _coordinate_differences(kern, v, args, coords, h, method, richardson=False):
  """Difference quotients over `coords`: `(numerical, kink, backward, forward)`.

  The difference quotient (central, forward, or Richardson-extrapolated
  central), whether the step crossed a kink, and the two one-sided quotients
  (`nan` where not computed).
  """
  f0 = float(kern.value(v, args))
  f_plus, kink_plus = (np.asarray(a) for a in kern.probes(v, args, coords, h))
  if method == 'forward':
    numerical = (f_plus - f0) / h
    kink = kink_plus
    # The backward quotient is needed only where the step met a kink.
    f_minus = np.full(f_plus.shape, np.nan)
    at = np.flatnonzero(kink)
    if at.size:
      f_minus[at] = np.asarray(kern.minus_at(v, args, jnp.asarray(coords)[at], h))
  else:
    f_minus, kink_minus = (np.asarray(a) for a in kern.probes(v, args, coords, -h))
    numerical = (f_plus - f_minus) / (2 * h)
    kink = kink_plus | kink_minus
    if richardson:
      half_plus = np.asarray(kern.probes(v, args, coords, h / 2)[0])
      half_minus = np.asarray(kern.probes(v, args, coords, -h / 2)[0])
      numerical = _richardson(numerical, (half_plus - half_minus) / h)
  return numerical, kink, (f0 - f_minus) / h, (f_plus - f0) / h


def make_numerical_grad(
  f: Callable[[chex.ArrayTree], chex.Numeric], h: float = 1e-5, method: str = 'central', chunk_size: int = 256
) -> Callable[[chex.ArrayTree], chex.ArrayTree]:
  """A jitted `params -> numerical gradient of f` for repeated use (see `numerical_grad`)."""
  validation.check_name('numerical method', method, ('central', 'forward'))
  check_step_range(h, 'float64' if jax.config.jax_enable_x64 else 'float32')
  _check_counts(1, 1, chunk_size)

  @jax.jit
  def numerical(params):
    v, unravel = ravel_pytree(params)
    flat = lambda w, _: f(unravel(w))
    probes = _probes(flat, lambda w, _: jnp.zeros((0,), bool), chunk_size)
    coords = jnp.arange(v.size)
    f_plus = probes(v, None, coords, h)[0]
    other = probes(v, None, coords, -h)[0] if method == 'central' else f(params)
    return unravel((f_plus - other) / (2 * h if method == 'central' else h))

  return numerical


def numerical_grad(
  f: Callable[[chex.ArrayTree], chex.Numeric],
  params: chex.ArrayTree,
  h: float = 1e-5,
  method: str = 'central',
  chunk_size: int = 256,
) -> chex.ArrayTree:
  """Numerical gradient of a scalar `f(params)` over every coordinate.

  The lecture's forward difference `(f(w + h e_i) − f(w)) / h` or the central
  difference `(f(w + h e_i) − f(w − h e_i)) / 2h`, computed under `jit` with
  `chunk_size` coordinates at a time under `vmap` (not one call per
  coordinate). To call it many times, build it once with `make_numerical_grad`.

  Args:
    f: scalar function of `params` (any pytree).
    params: where to differentiate.
    h: step.
    method: `'central'` or `'forward'`.
    chunk_size: coordinates evaluated together; bounds memory.

  Returns:
    The numerical gradient with the structure of `params`.
  """
  return make_numerical_grad(f, h, method, chunk_size)(params)


@dataclasses.dataclass
class Comparison:
  """One pair of gradient sources compared coordinate by coordinate."""

  pair: str
  max_rel_error: float
  max_abs_error: float
  num_compared: int
  num_failed: int
  num_kinks: int
  worst: list  # [(coordinate name, value a, value b, relative error)]
  num_unsettled: int = 0  # disagreements within the quotient's own error (`_step_error`): no verdict

  @property
  def passed(self):
    return self.num_failed == 0


@dataclasses.dataclass
class GradCheckReport:
  """The three-way report of one gradient check.

  `loss` names what was checked (a loss, or the function's name); `penalty`,
  `reg` and `bias_trick` are `None` for a function that is not the linear
  model's objective; `hparams` holds the loss's hyperparameters.
  """

  loss: str
  penalty: str | None
  reg: float | None
  hparams: dict
  bias_trick: bool | None
  method: str
  step: float
  num_params: int
  comparisons: list
  richardson: bool = False
  dtype: str = 'float64'
  grad: str = 'analytic'  # 'autodiff': no hand-derived gradient, so jax.grad was checked alone

  @property
  def passed(self):
    return all(c.passed for c in self.comparisons)

  @property
  def inconclusive(self):
    """Whether finite differences confirmed nothing: every coordinate (or direction) they compared sat
    at a kink, where any value between the one-sided quotients passes (the multiclass SVM with margin 0
    at W = 0), or missed the gradient by no more than its own error (`_step_error`). A gradient wrong
    only elsewhere passes at such a point; check at another one, or with another step or dtype."""
    numerical = [c for c in self.comparisons if c.pair.endswith('vs numerical')]
    return bool(numerical) and all(c.num_kinks + c.num_unsettled == c.num_compared for c in numerical)

  @property
  def unsettled(self):
    """The most difference quotients of one comparison that decided nothing: each missed the gradient by
    no more than its own error (`_step_error`). A check that passed says nothing of those coordinates."""
    return max((c.num_unsettled for c in self.comparisons), default=0)

  def to_dict(self):
    d = dataclasses.asdict(self)
    d['passed'] = self.passed
    d['inconclusive'] = self.inconclusive
    d['unsettled'] = self.unsettled
    for c, cd in zip(self.comparisons, d['comparisons'], strict=True):
      cd['passed'] = c.passed
    return d

  def summary(self):
    """A few lines a person reads: one per pair, then the worst coordinates."""
    parts = [f'{self.loss:<10}']
    if self.penalty is not None:
      parts.append(f'penalty={self.penalty} reg={self.reg:g}')
    parts += [f'{k}={v:g}' for k, v in sorted(self.hparams.items())]
    if self.bias_trick is not None:
      parts.append(f'bias_trick={self.bias_trick}')
    method = f'{self.method}+richardson' if self.richardson else self.method
    parts.append(f'method={method} h={self.step:g}')
    if self.dtype != 'float64':
      parts.append(f'dtype={self.dtype}')
    if self.grad != 'analytic':
      parts.append(f'grad={self.grad}')
    verdict = 'OK' if self.passed else 'FAIL'
    if self.inconclusive:
      verdict += (
        ', but finite differences confirmed nothing: all they compared sit at kinks or are no more '
        'accurate than what they missed by; check elsewhere'
      )
    elif self.passed and self.unsettled:
      compared = max(c.num_compared for c in self.comparisons if c.num_unsettled == self.unsettled)
      verdict += f', but {self.unsettled} of the {compared} difference quotients decided nothing'
    lines = [f'{" ".join(parts)} params={self.num_params}: {verdict}']
    for c in self.comparisons:
      lines.append(
        f'  {c.pair:<26} max rel {c.max_rel_error:9.2e}  max abs '
        f'{c.max_abs_error:9.2e}  failed {c.num_failed}/{c.num_compared}'
        f'  kinks {c.num_kinks}' + (f'  unsettled {c.num_unsettled}' if c.num_unsettled else '')
      )
      if not c.passed:
        for name, a, b, r in c.worst:
          lines.append(f'      {name:<12} {a: .10e} vs {b: .10e} (rel {r:.2e})')
    hint = self._hint()
    return '\n'.join(lines + ([f'  {hint}'] if hint else []))

  def _hint(self):
    """Where the gradient under test equals jax.grad's and only finite differences disagree with both,
    what to suspect first: the differences themselves, not the derivation. Where the check passed with
    quotients that decided nothing (no more accurate than what they missed by), how to decide them."""
    pairs = {c.pair: c.passed for c in self.comparisons}
    if pairs.get('analytic vs autodiff') and not pairs.get('analytic vs numerical', True):
      return (
        'the gradient under test equals jax.grad; only finite differences disagree: suspect the step '
        '(try richardson=True or another h) or a kink the loss does not declare (Loss(kinks=...))'
      )
    if self.passed and self.unsettled:
      if self.dtype == 'float32':
        how = "in float32: check in float64 (jax.config.update('jax_enable_x64', True) first)"
      else:
        plain = not self.richardson and self.method != 'forward'  # Richardson extrapolates central ones
        how = 'try another h' + (', or richardson=True' if plain else '')
      quotients = 'quotient' if self.unsettled == 1 else 'quotients'
      return (
        f'{self.unsettled} difference {quotients} missed by no more than their own error '
        f'({STEP_ERROR:g} times how far they moved when the step was halved), so they decide nothing '
        f'at h={self.step:g}; {how}'
      )
    return ''


def _agreement(a, b, tol):
  """`(relative error, absolute difference, agree)` of float64 `a` and `b`, elementwise, within `tol =
  (rtol, atol)`: relative error means nothing for two values that are 0 up to round-off (a NaN is no
  round-off: its relative error is NaN, counted as inf in a maximum)."""
  rtol, atol = tol
  absdiff = np.abs(a - b)
  with np.errstate(invalid='ignore'):
    rel = np.where(np.maximum(np.abs(a), np.abs(b)) <= atol, 0.0, relative_error(a, b))
    return rel, absdiff, ((rel <= rtol) | (absdiff <= atol)) & np.isfinite(a) & np.isfinite(b)


def compare(
  pair: str,
  a: ArrayLike,
  b: ArrayLike,
  names: list[str],
  tol: tuple[float, float],
  kink: np.ndarray | None = None,
  lower: np.ndarray | None = None,
  upper: np.ndarray | None = None,
  top: int = 3,
  step_error: np.ndarray | None = None,
) -> 'Comparison':
  """`a` against `b`, flat `[P]` vectors named by `names`, within `tol = (rtol, atol)`.

  Where `kink` (`[P]` bools) is set, `a` passes if it lies between `lower` and
  `upper` (the one-sided differences); `top` is how many of the worst
  coordinates the result keeps. `step_error` (`[P]`) is the error of each
  difference quotient `b` estimated from its step (`_step_error`); a
  disagreement within it is no failure but counted in `num_unsettled`.
  """
  rtol, atol = tol
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  rel, absdiff, ok = _agreement(a, b, tol)
  num_kinks = 0
  if kink is not None and kink.any():
    num_kinks = int(kink.sum())
    lo, hi = np.minimum(lower, upper), np.maximum(lower, upper)
    scale = np.maximum(np.abs(lo), np.abs(hi))
    outside = np.maximum(np.maximum(lo - a, a - hi), 0.0)  # how far outside the one-sided quotients
    with np.errstate(invalid='ignore', divide='ignore'):
      ok = np.where(kink, outside <= atol + rtol * scale, ok)
      rel = np.where(kink, np.where(outside > 0, outside / np.where(scale > 0, scale, 1.0), 0.0), rel)
    absdiff = np.where(kink, outside, absdiff)
  unsettled = np.zeros(a.shape, bool)
  if step_error is not None:
    unsettled = ~ok & (absdiff <= atol + rtol * np.maximum(np.abs(a), np.abs(b)) + step_error)
  if kink is not None:
    unsettled &= ~kink  # between the one-sided quotients or not: `kink`'s verdict stands
  ok = ok | unsettled
  bad = np.flatnonzero(~ok)
  with np.errstate(invalid='ignore'):
    order = bad[np.argsort(-np.nan_to_num(relative_error(a[bad], b[bad]), nan=np.inf))][:top]
  worst = [(names[i], float(a[i]), float(b[i]), float(relative_error(a[i], b[i]))) for i in order]
  return Comparison(
    pair=pair,
    max_rel_error=float(np.nan_to_num(rel, nan=np.inf).max(initial=0.0)),
    max_abs_error=float(np.nan_to_num(absdiff, nan=np.inf).max(initial=0.0)),
    num_compared=int(a.size),
    num_failed=int(bad.size),
    num_kinks=num_kinks,
    worst=worst,
    num_unsettled=int(unsettled.sum()),
  )


def _flat_grad(grad_fn, params, args, structure):
  """The gradient under test, flattened; its structure must be that of `params`."""
  g = grad_fn(params, *args)
  got = jax.tree.structure(g)
  if got != structure:
    raise ValueError(f'The gradient under test has structure {got}, but params have {structure}.')
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(g)[0], jax.tree.leaves(params), strict=True):
    if jnp.iscomplexobj(a):
      raise ValueError(f'The gradient under test is complex at {_leaf_name(path)}; params are real.')
    if np.shape(a) != np.shape(b):
      raise ValueError(
        f'The gradient under test has shape {np.shape(a)} at {_leaf_name(path)}, '
        f'but params have {np.shape(b)} there.'
      )
  return ravel_pytree(jax.tree.map(lambda a, p: jnp.asarray(a, p.dtype), g, params))[0]


def _directional(kern, v, args, analytic, dirs, hs, tol, richardson):
  """Directional comparisons along the unit rows of `dirs`."""
  h = float(hs[0])
  steps = jnp.asarray([h, h / 2, h / 4], v.dtype) if richardson else hs  # then one more, for its own error
  jvp, plus, minus, kink = (np.asarray(a) for a in kern.directional(v, args, dirs, steps))
  f0 = float(kern.value(v, args))
  quotient = [(plus[:, k] - minus[:, k]) / (2 * h / 2**k) for k in range(plus.shape[1])]
  numeric, half = quotient[0], quotient[1]
  if richardson:
    numeric, half = _richardson(numeric, half), _richardson(half, quotient[2])
  lower, upper = (f0 - minus[:, 0]) / h, (plus[:, 0] - f0) / h
  names = [f'direction {i}' for i in range(len(dirs))]
  a_dir = np.asarray(dirs @ analytic)
  err = np.where(_agreement(jvp, numeric, tol)[2], 0.0, _step_error(numeric, half))  # jax.grad confirms
  return [
    compare('analytic vs numerical', a_dir, numeric, names, tol, kink, lower, upper, step_error=err),
    compare('autodiff vs numerical', jvp, numeric, names, tol, kink, lower, upper, step_error=err),
  ]


def _step_error(numeric, half):
  """`[P]`: the error of each difference quotient estimated from its step: `STEP_ERROR` times how far it
  moves when the step halves (`numeric` at `h`, `half` at `h/2`).

  Truncation shrinks a central quotient's error fourfold as the step halves, so its error is 4/3 of that
  move; rounding makes the move as large as the error. A gradient that a quotient misses by no more than
  this is not shown wrong by it (float32's default step on pixel-scale features moves the scores by ~1,
  and the quotients miss a right gradient by as much as 87%), while one that a settled quotient misses is.
  Where the quotient at `h/2` is not finite (a pole within the step) there is no estimate: 0, and the
  quotient at `h` is taken as it is.
  """
  with np.errstate(invalid='ignore'):
    move = np.abs(np.asarray(numeric, np.float64) - np.asarray(half, np.float64))
  return STEP_ERROR * np.where(np.isfinite(move), move, 0.0)


def _coordinate_comparisons(pt, coords, h, method, richardson, tol, pairs):
  """`compare` of each `(pair name, flat [P] gradient)` of `pairs` with the difference quotients over
  `coords`; the quotients that disagree with a gradient away from kinks, and with `jax.grad` too, are
  taken again at `h/2` for an estimate of their own error (`_step_error`)."""
  kern, v, args = pt.kern, pt.v, pt.args
  idx = jnp.asarray(coords)
  numeric, kink, lower, upper = _coordinate_differences(kern, v, args, idx, h, method, richardson)
  names = [pt.names[i] for i in coords]
  grads = [np.asarray(g, np.float64)[coords] for _, g in pairs]
  agree = np.logical_and.reduce([_agreement(g, numeric, tol)[2] for g in grads])
  # Where jax.grad agrees with a quotient, the quotient is as accurate as that: no error to estimate.
  confirmed = _agreement(np.asarray(pt.autodiff, np.float64)[coords], numeric, tol)[2]
  differ = np.flatnonzero(~agree & ~kink & ~confirmed)
  err = np.zeros(len(coords))
  if differ.size:
    half = _coordinate_differences(kern, v, args, idx[differ], h / 2, method, richardson)[0]
    err[differ] = _step_error(numeric[differ], half)
  return [
    compare(pair, g, numeric, names, tol, kink, lower, upper, step_error=err)
    for (pair, _), g in zip(pairs, grads, strict=True)
  ]


def check_function_gradients(
  f: Callable,
  params: chex.ArrayTree,
  grad_fn: Callable | None,
  *,
  args: tuple = (),
  kinks: Callable | None = None,
  method: str = 'central',
  h: float | None = None,
  richardson: bool = False,
  num_coords: int = 64,
  num_directions: int = 8,
  key: jax.Array | None = None,
  chunk_size: int = 256,
  escalate: bool = True,
  name: str | None = None,
  info: dict | None = None,
) -> GradCheckReport:
  """Checks a hand-written gradient of any scalar function against `jax.grad` and finite differences.

  Args:
    f: `f(params, *args) -> scalar`, written in `jax.numpy`.
    params: any pytree of float arrays: where to check.
    grad_fn: `grad_fn(params, *args)`, the gradient under test, with the
      structure and shapes of `params`; `None` when there is none (no
      hand-derived gradient): `jax.grad` of `f` is then compared with finite
      differences alone, and the report says `grad='autodiff'`.
    args: further arguments of `f`, `grad_fn` and `kinks` (data), passed to
      compiled code as arguments, so checking again with new data does not
      recompile.
    kinks: optional `kinks(params, *args) ->` an array whose entries change
      sign exactly at the kinks of `f` (see the module docstring).
    method: `'central'` or `'forward'` (every coordinate), `'sparse'`
      (`num_coords` random coordinates, central differences) or
      `'directional'` (`num_directions` random unit directions: the
      directional derivative by JVP, by central differences and as the dot
      product with the gradient under test).
    h: finite-difference step; by default chosen by dtype and method
      (`DEFAULT_STEP`).
    richardson: central differences at `h` and `h/2` combined to cancel the
      `h²` error term, for functions where a plain step is not accurate.
    num_coords: coordinates drawn by the sparse check.
    num_directions: directions drawn by the directional check.
    key: `jax.random` key of the sparse and directional draws.
    chunk_size: coordinates evaluated together under `vmap`.
    escalate: when a directional check fails, re-check the coordinates of
      each leaf whose own directions fail (up to `ESCALATION_COORDS` per
      leaf) and name the worst.
    name: what the report calls `f` (its `__name__` by default).
    info: report fields for the linear-model check (`penalty`, `reg`,
      `hparams`, `bias_trick`).

  Returns:
    A `GradCheckReport`; `report.passed` is the verdict.

  Raises:
    ValueError: a bad method or step, `params` with no coordinates, an `f`
      that is not a real scalar function JAX can trace, a gradient of
      another structure or a complex one, or a value of `f` at `params`
      that is NaN or infinite (named, not a report of NaN).
  """
  validation.check_name('gradient-check method', method, METHODS)
  _check_counts(num_coords, num_directions, chunk_size)
  params, dtype = _float_params(params)
  h = _check_step(h, dtype, method, richardson)
  key = jax.random.PRNGKey(0) if key is None else key
  tols = THRESHOLDS[dtype]
  label = name or getattr(f, '__name__', type(f).__name__)
  _check_function(f, params, tuple(args), label)
  pt = _check_point(f, kinks, grad_fn, params, args, chunk_size)
  _check_finite_value(pt, label)
  comparisons = [_analytic_vs_autodiff(pt, tols, h)]
  comparisons += _numerical_comparisons(
    pt, method, h, tols, richardson, key, num_coords, num_directions, escalate
  )
  if grad_fn is None:
    comparisons = _autodiff_only(comparisons)
  report = _report(f, name, info, method, h, pt, comparisons, richardson, dtype)
  return dataclasses.replace(report, grad='autodiff') if grad_fn is None else report


def _check_function(f, params, args, label):
  """Raises a `ValueError` naming `label` when `params` have no coordinates (the check would compare
  nothing), or `f` is not one JAX can trace or does not return a real scalar: `jax.grad` would fail
  inside the checker, naming the checker's code, not `f`."""
  if not ravel_pytree(params)[0].size:
    raise ValueError(f'{label}: params have no coordinates, so the check would compare nothing.')
  untraceable = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
  )
  try:
    out = jax.eval_shape(lambda p: f(p, *args), params)
  except untraceable as e:
    raise ValueError(
      f'{label}: JAX cannot trace it ({type(e).__name__}): a checked function is written in jax.numpy, '
      'with no Python if, float() or NumPy call on the values of its arguments.'
    ) from e
  if not (
    isinstance(out, jax.ShapeDtypeStruct) and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)
  ):
    got = jax.tree.map(lambda a: f'{a.dtype}{list(a.shape)}', out)
    raise ValueError(f'{label} must return a real scalar (a float of shape ()), got {got}.')


def _check_counts(num_coords, num_directions, chunk_size):
  """Raises a `ValueError` naming a count that is not a whole number in range: a check of 0 coordinates
  or directions compares nothing (and would pass), and a negative or huge one fails deep in JAX."""
  for name, n, high in (
    ('num_coords', num_coords, MAX_PROBES),
    ('num_directions', num_directions, MAX_PROBES),
    ('chunk_size', chunk_size, None),
  ):
    validation.check_whole(name, n, 1, high)


def _analytic_vs_autodiff(pt, tols, h):
  """The gradient under test against `jax.grad`'s. Where they differ, each such coordinate is probed a
  tiny step either side (`_at_kink`): if every one sits at a kink (two different subgradients, both
  valid: sign(0) = +1 against jax's 0 for an l1 penalty at W = 0), the comparison is `compare`'s at a
  kink, the gradient under test passing between the one-sided difference quotients, at the finite
  differences' tolerance those quotients need; if any does not, the plain comparison stands."""
  tol = _autodiff_tol(pt, tols['autodiff'])
  plain = compare('analytic vs autodiff', pt.analytic, pt.autodiff, pt.names, tol)
  if plain.passed:
    return plain
  a, b = np.asarray(pt.analytic, np.float64), np.asarray(pt.autodiff, np.float64)
  differ = np.flatnonzero(~_agreement(a, b, tol)[2])
  # The worst first: a wrong gradient differs away from kinks too, and is told after 2·KINK_PROBES calls.
  differ = differ[np.argsort(-np.nan_to_num(relative_error(a[differ], b[differ]), nan=np.inf), kind='stable')]
  if not _at_kink(pt, differ[:KINK_PROBES], h).all() or not _at_kink(pt, differ[KINK_PROBES:], h).all():
    return plain
  _, _, lower, upper = _coordinate_differences(pt.kern, pt.v, pt.args, jnp.asarray(differ), h, 'central')
  at = np.zeros(a.size, bool)
  at[differ] = True
  lo, hi = np.zeros(a.size), np.zeros(a.size)
  lo[differ], hi[differ] = lower, upper
  return compare('analytic vs autodiff', a, b, pt.names, tols['central'], at, lo, hi)


def _autodiff_tol(pt, tol):
  """`(rtol, atol)` of 'analytic vs autodiff': `tol`, its absolute floor raised, leaf by leaf, to
  `AUTODIFF_ULPS` units in the last place of the leaf's largest `jax.grad` entry.

  Two right gradients round differently by that much: a softmax gradient summed in float32 over 200
  rows of pixel-scale features differs from `jax.grad`'s by 1e-6 where its largest entry is 0.7.
  """
  g = np.abs(np.asarray(pt.autodiff, np.float64))
  floor = np.full(g.shape, float(tol[1]))
  ulp = float(jnp.finfo(pt.v.dtype).eps)
  for _, sl in _leaf_slices(pt.params):
    largest = np.max(g[sl], where=np.isfinite(g[sl]), initial=0.0)  # an inf entry sets no floor
    floor[sl] = np.maximum(floor[sl], AUTODIFF_ULPS * ulp * largest)
  return tol[0], floor


def _at_kink(pt, coords, h):
  """`[len(coords)]` bools: whether `f` sits at a kink in each coordinate of `coords`, that is, whether a
  step of `KINK_STEP · h` either side (at least a few units of the last place of `v`'s largest entry, so
  that every coordinate moves) changes which side of a kink it is on.

  A step of `h` that crosses a kink says only that one lies within `h`: on pixel-scale features a step of
  1e-2 crosses hinges in every coordinate, where `jax.grad` is exact and must stand.
  """
  if not len(coords):
    return np.ones(0, bool)
  v, idx = pt.v, jnp.asarray(coords)
  delta = max(KINK_STEP * h, 16 * float(jnp.finfo(v.dtype).eps) * float(jnp.max(jnp.abs(v))))
  crossed = [np.asarray(pt.kern.probes(v, pt.args, idx, step)[1]) for step in (delta, -delta)]
  return crossed[0] | crossed[1]


def _check_finite_value(pt, name):
  """Raises, naming the function, when its value at the checked point is NaN or infinite.

  Every difference quotient would then be NaN too, and the report a column of NaN instead of the cause.
  """
  value = float(pt.kern.value(pt.v, pt.args))
  if not math.isfinite(value):
    raise ValueError(
      f'{name}: the value at the checked point is {value}, so no gradient can be checked there; '
      'the function returns a non-finite value on finite inputs.'
    )


def _autodiff_only(comparisons):
  """The comparisons of a check with no gradient under test: `jax.grad` against finite differences alone.

  The gradient under test was `jax.grad` itself, so 'analytic vs autodiff' and the duplicate
  'autodiff vs numerical' rows go, and 'analytic vs numerical' rows are named for what they compared.
  """
  return [
    dataclasses.replace(c, pair=c.pair.replace('analytic', 'autodiff', 1))
    for c in comparisons
    if c.pair.startswith('analytic vs numerical')
  ]


def _float_params(params):
  """`(params, dtype)`: float64 leaves as float64 arrays when x64 is on (see `_check_dtype`)."""
  dtype = _check_dtype(params)
  if dtype == 'float64':
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  return params, dtype


def check_step_range(h, dtype):
  """Raises unless the step `h` is finite and within `STEP_RANGE[dtype]`; returns it as a float."""
  low, high = STEP_RANGE[dtype]
  try:
    h = float(h)
  except (TypeError, ValueError):
    raise ValueError(f'The finite-difference step h must be a number, got {h!r}.') from None
  if not (math.isfinite(h) and low <= h <= high):
    raise ValueError(
      f'The finite-difference step h must be finite and in [{low:g}, {high:g}] in {dtype}, got {h:g}.'
    )
  return h


def _check_step(h, dtype, method, richardson):
  """The finite-difference step: `h`, or `DEFAULT_STEP`'s for `dtype` and `method`; checked."""
  h = DEFAULT_STEP[dtype][method] if h is None else check_step_range(h, dtype)
  if richardson and method == 'forward':
    raise ValueError(
      "richardson=True extrapolates central differences; use method='central', 'sparse' or 'directional'."
    )
  return h


class _Point(NamedTuple):
  """Where a check runs: the kernels, the flat `[P]` point `v`, and both gradients there, flat `[P]`."""

  kern: _Kernels
  v: jax.Array
  args: tuple
  params: chex.ArrayTree
  names: list
  analytic: jax.Array
  autodiff: jax.Array


def _check_point(f, kinks, grad_fn, params, args, chunk_size):
  """The `_Point` of `f` at `params`: its compiled kernels, the gradient under test, and `jax.grad`'s."""
  v, _ = ravel_pytree(params)
  structure = jax.tree.structure(params)
  names = coordinate_names(params)
  args = tuple(args)
  kern, autodiff = _current_kernels(f, kinks, params, v, args, int(chunk_size))
  analytic = autodiff if grad_fn is None else _flat_grad(grad_fn, params, args, structure)
  return _Point(kern, v, args, params, names, analytic, autodiff)


def _current_kernels(f, kinks, params, v, args, chunk_size):
  """`(kernels, jax.grad of f at v)`: `_kernels`' cached copy while it computes what `f` computes now.

  A cached copy is compiled from `f` as it was when first checked; an `f` that reads a global its caller
  has changed since (`reg` in a notebook) would be judged against that old `f`, so on a cache hit the
  gradient is taken once more without `jit` (but for the linear model's objectives, `_PURE`), and a
  copy that differs from it is compiled again. An `f`
  that cannot be hashed (a callable dataclass) is compiled for this check alone.
  """
  flat, treedef = jax.tree.flatten(params)
  leaves = tuple((tuple(np.shape(a)), jnp.result_type(a)) for a in flat)
  key = (f, kinks, treedef, leaves, chunk_size)
  try:
    hash(key)
  except TypeError:
    kern = _kernels.__wrapped__(*key)
    return kern, kern.grad(v, args)
  hits = _kernels.cache_info().hits
  kern = _kernels(*key)
  cached = kern.grad(v, args)
  if _kernels.cache_info().hits == hits or f in _PURE:  # compiled just now, or reads nothing but its args
    return kern, cached
  now = ravel_pytree(jax.grad(lambda p: f(p, *args))(params))[0]
  rtol, atol = THRESHOLDS['float64' if v.dtype == jnp.float64 else 'float32']['autodiff']
  if np.allclose(np.asarray(now), np.asarray(cached), rtol=rtol / 10, atol=atol / 10):
    return kern, cached
  _kernels.cache_clear()
  kern = _kernels(*key)
  return kern, kern.grad(v, args)


def _rounding_floor(pt, h, key, dirs=None):
  """The error rounding alone puts in a difference quotient of `f` at step `h`: `ROUNDING_AGREE` times
  the largest `|f(v + δu) − f(v) − ∇f·(fl(v + δu) − v)|` over up to `ROUNDING_PROBES` coordinates `u`
  (rows of `dirs`, if given), and at least `eps·|f(v)|`, divided by `h`, with `δ = ROUNDING_STEP · h`
  so small that what is left is rounding. A probe whose step meets a kink, or whose value is not
  finite, is left out."""
  kern, v, args = pt.kern, pt.v, pt.args
  delta = ROUNDING_STEP * h
  f0 = float(kern.value(v, args))
  g, v_host = np.asarray(pt.autodiff, np.float64), np.asarray(v)
  if dirs is None:
    k = min(ROUNDING_PROBES, v.size)
    idx = np.asarray(jax.random.choice(jax.random.fold_in(key, 0x5EED), v.size, (k,), replace=False))
    moved, kink = (np.asarray(a) for a in kern.probes(v, args, jnp.asarray(idx), delta))
    taken = (v_host[idx] + np.asarray(delta, v_host.dtype)) - v_host[idx]  # the step v's dtype took
    slope = taken.astype(np.float64) * g[idx]
  else:
    dirs = dirs[:ROUNDING_PROBES]
    _, plus, _, kink = (
      np.asarray(a) for a in kern.directional(v, args, dirs, jnp.asarray([delta, delta], v.dtype))
    )
    moved = plus[:, 0]
    taken = (v_host[None] + np.asarray(delta * dirs)) - v_host[None]
    slope = taken.astype(np.float64) @ g
  residual = np.abs(moved - f0 - slope)
  residual = residual[~kink & np.isfinite(residual)]
  # Where ∇f·δ is below a unit in the last place of f, f does not move and the residual is that slope,
  # not f's rounding: f's own precision, eps·|f|, is the least the floor can be.
  least = float(jnp.finfo(v.dtype).eps) * abs(f0)
  return ROUNDING_AGREE * max(float(np.max(residual, initial=0.0)), least) / h


def _with_floor(tol, floor):
  """`(rtol, atol)` with the absolute floor raised to `floor`."""
  return (tol[0], max(tol[1], floor))


def _numerical_comparisons(pt, method, h, tols, richardson, key, num_coords, num_directions, escalate):
  """Both gradients against finite differences: along random directions, or coordinate by coordinate."""
  kern, v, args, analytic = pt.kern, pt.v, pt.args, pt.analytic
  hs = jnp.asarray([h, h / 2], v.dtype)
  central = 'forward' if method == 'forward' else 'central'

  if method == 'directional':
    dirs = jax.random.normal(key, (num_directions, v.size), v.dtype)
    dirs = dirs / jnp.linalg.norm(dirs, axis=1, keepdims=True)
    tols = {**tols, 'central': _with_floor(tols['central'], _rounding_floor(pt, h, key, dirs))}
    directional = _directional(kern, v, args, analytic, dirs, hs, tols['central'], richardson)
    if escalate and not all(c.passed for c in directional):
      directional += _escalate(pt, h, tols, richardson, key, num_directions)
    return directional
  if method == 'sparse':
    k = min(num_coords, v.size)
    coords = np.sort(np.asarray(jax.random.choice(key, v.size, (k,), replace=False)))
  else:
    coords = np.arange(v.size)
  tol = _with_floor(tols[central], _rounding_floor(pt, h, key))
  pairs = [('analytic vs numerical', analytic), ('autodiff vs numerical', pt.autodiff)]
  return _coordinate_comparisons(pt, coords, h, central, richardson, tol, pairs)


def _report(f, name, info, method, h, pt, comparisons, richardson, dtype):
  """The `GradCheckReport` of `comparisons`, naming `f` and the linear model's `info` fields."""
  info = info or {}
  return GradCheckReport(
    loss=name or getattr(f, '__name__', 'f'),
    penalty=info.get('penalty'),
    reg=info.get('reg'),
    hparams=dict(info.get('hparams', {})),
    bias_trick=info.get('bias_trick'),
    method=method,
    step=h,
    num_params=int(pt.v.size),
    comparisons=comparisons,
    richardson=bool(richardson),
    dtype=dtype,
  )


def _escalate(pt, h, tols, richardson, key, num_directions):
  """After a failed directional check: which leaves fail, and their worst coordinates."""
  out = []
  kern, v, args, analytic = pt.kern, pt.v, pt.args, pt.analytic
  hs = jnp.asarray([h, h / 2], v.dtype)
  for i, (leaf, sl) in enumerate(_leaf_slices(pt.params)):
    size = sl.stop - sl.start
    if size == 0:
      continue
    k = jax.random.fold_in(key, i + 1)
    dirs = jnp.zeros((num_directions, v.size), v.dtype)
    local = jax.random.normal(k, (num_directions, size), v.dtype)
    dirs = dirs.at[:, sl].set(local / jnp.linalg.norm(local, axis=1, keepdims=True))
    analytic_vs = _directional(kern, v, args, analytic, dirs, hs, tols['central'], richardson)[0]
    if analytic_vs.passed:
      continue
    coords = np.arange(sl.start, sl.stop)
    if size > ESCALATION_COORDS:
      coords = np.sort(np.asarray(jax.random.choice(k, coords, (ESCALATION_COORDS,), replace=False)))
    pairs = [(f'analytic vs numerical: {leaf}', analytic)]
    out += _coordinate_comparisons(pt, coords, h, 'central', richardson, tols['central'], pairs)
  return out


# The objectives `_objective_fns` makes: they read nothing but their arguments, so a cached compiled copy
# is theirs (`_current_kernels` takes no eager gradient to tell).
_PURE = weakref.WeakSet()


@functools.lru_cache(maxsize=256)
def _objective_fns(spec, penalty):
  """`(f, kinks)` of the linear model's objective for one loss record and penalty.

  Cached, so the checker's compiled kernels are shared by every check of the
  same loss, penalty and shapes.
  """

  def f(params, x, targets, reg, hp, mask):
    return losses.unchecked_objective(params, x, targets, spec, reg, penalty, hp, mask)

  _PURE.add(f)

  if spec.kinks is None and penalty != 'l1':
    return f, None

  def kinks(params, x, targets, reg, hp, mask):
    del reg
    parts = []
    if spec.kinks is not None:
      k = spec.kinks(model.scores(params, x), targets, **hp)
      if mask is not None:  # a row of weight 0 contributes nothing, and so no kink
        k = jnp.where(jnp.reshape(mask > 0, (-1,) + (1,) * (k.ndim - 1)), k, 1.0)
      parts.append(jnp.ravel(k))
    if penalty == 'l1':
      parts.append(jnp.ravel(model.penalized_weights(params)))
    return jnp.concatenate(parts)

  return f, kinks


def check_gradients(
  params: model.Params,
  x: chex.Array,
  targets: chex.Array,
  loss: 'str | losses.Loss' = 'softmax',
  reg: float = 0.0,
  penalty: str = 'l2',
  grad_fn: 'Callable | str | None' = None,
  method: str = 'central',
  h: float | None = None,
  num_coords: int = 64,
  num_directions: int = 8,
  key: jax.Array | None = None,
  chunk_size: int = 256,
  mask: chex.Array | None = None,
  richardson: bool = False,
  **loss_hparams: float,
) -> GradCheckReport:
  """Checks a hand-derived gradient of the linear model's objective (see `check_function_gradients`).

  Args:
    params, x, targets, loss, reg, penalty, mask: as for `objective`
      (`mask`: optional sample weights).
    grad_fn: the gradient under test, called like `grads.analytic_grad`
      (the default): `grad_fn(params, x, targets, loss=, reg=, penalty=,
      **loss_hparams)`, plus `mask=` when weights are given. `'autodiff'`:
      no gradient under test, `jax.grad` of the objective checked against
      finite differences alone (what a loss without `score_grad` can have).
    method, h, num_coords, num_directions, key, chunk_size, richardson: as
      for `check_function_gradients`.
    **loss_hparams: the loss's hyperparameters (defaults for the rest).

  Returns:
    A `GradCheckReport`; `report.passed` is the verdict.
  """
  spec, hp, grad_fn, (params, x, targets, mask) = _check_objective_args(
    params, x, targets, loss, reg, penalty, grad_fn, method, mask, loss_hparams
  )
  params, args, weights = _float64_problem(params, x, targets, spec, reg, hp, mask)
  if h is None:
    h = _step_for_features(args[0], method)
  f, kinks = _objective_fns(spec, penalty)
  extra = {} if mask is None else {'mask': weights}

  def under_test(p, x_, t_, reg_, hp_, mask_):
    del reg_, hp_, mask_  # the user's function takes Python numbers, as analytic_grad does
    return grad_fn(p, x_, t_, loss=loss, reg=reg, penalty=penalty, **hp, **extra)

  return check_function_gradients(
    f,
    params,
    None if grad_fn is None else under_test,
    args=args,
    kinks=kinks,
    method=method,
    h=h,
    richardson=richardson,
    num_coords=num_coords,
    num_directions=num_directions,
    key=key,
    chunk_size=chunk_size,
    name=losses.loss_name(spec),
    info={'penalty': penalty, 'reg': float(reg), 'hparams': hp, 'bias_trick': params.b is None},
  )


def _check_objective_args(params, x, targets, loss, reg, penalty, grad_fn, method, mask, loss_hparams):
  """`(spec, hp, grad_fn, (params, x, targets, mask))`: the checked loss record, its hyperparameters,
  the gradient under test and the inputs as arrays.

  `grad_fn` comes back `None` for `'autodiff'` (no gradient under test).
  """
  require_x64()
  validation.check_name('gradient-check method', method, METHODS)
  spec = losses.get_loss(loss)
  validation.check_name('penalty', penalty, losses.PENALTIES)
  hp = spec.resolve_hparams(loss_hparams)
  arrays = inputs.check_inputs(params, x, targets, spec.targets, reg=reg, mask=mask)
  losses.probe(spec, concrete=True)
  if isinstance(grad_fn, str):
    validation.check_name('gradient under test', grad_fn, ('autodiff',))
    return spec, hp, None, arrays
  if grad_fn is None and spec.score_grad is None:
    raise grads.missing_score_grad(spec)
  grad_fn = grads.analytic_grad if grad_fn is None else grad_fn
  return spec, hp, grad_fn, arrays


def _step_for_features(x, method):
  """The default step for the linear model's parameters: `DEFAULT_STEP`, divided by the features' rms
  where it exceeds 1.

  A step `h` of `W[c, j]` moves the scores by `h · x_j`, so the truncation error of a difference
  quotient grows with the features' scale (`(h · |x|)²` for central differences): at 1e-5, mean-
  subtracted pixels (rms ~74) failed a correct softmax gradient at 500 × 3,073 by 8e-4. Divided by the
  rms, the step moves the scores as it does on unit-scale features (whose default it keeps).
  """
  rms = float(jnp.sqrt(jnp.mean(jnp.square(x))))
  return max(STEP_RANGE['float64'][0], DEFAULT_STEP['float64'][method] / max(1.0, rms))


def _float64_problem(params, x, targets, spec, reg, hp, mask):
  """`(params, args, weights)` in float64: `args = (x, targets, reg, hp, weights)` of `_objective_fns`."""
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  x = jnp.asarray(x, jnp.float64)
  targets = jnp.asarray(targets)
  if spec.targets == 'real':
    targets = targets.astype(jnp.float64)
  weights = None if mask is None else jnp.asarray(mask, jnp.float64)
  hp64 = {k: jnp.float64(v) for k, v in hp.items()}
  args = (x, targets, jnp.float64(reg), hp64, weights)
  return params, args, weights


def random_problem(
  key: jax.Array,
  loss: 'str | losses.Loss',
  num_examples: int = 20,
  num_features: int = 6,
  num_classes: int = 4,
  bias_trick: bool = False,
) -> tuple[model.Params, jax.Array, jax.Array]:
  """A random float64 problem for `loss`: `(params, x, targets)`.

  Binary losses get a single output whatever `num_classes` says; weights are
  of order 1 so that scores, and so gradients, are far from trivial.
  """
  spec = losses.get_loss(loss)
  kp, kx, ky = jax.random.split(key, 3)
  c = 1 if spec.targets == 'binary' else num_classes
  if spec.targets == 'class' and c < 2:
    raise ValueError(f'loss {losses.loss_name(spec)!r} needs num_classes >= 2, got {num_classes}.')
  x = jax.random.normal(kx, (num_examples, num_features), jnp.float64)
  params = model.init_params(kp, num_features, c, scale=1.0, dtype=jnp.float64)
  params = params._replace(b=0.5 * jax.random.normal(jax.random.fold_in(kp, 1), (c,), jnp.float64))
  if spec.targets == 'class':
    targets = jax.random.randint(ky, (num_examples,), 0, c)
  elif spec.targets == 'binary':
    targets = jax.random.bernoulli(ky, 0.5, (num_examples,)).astype(jnp.int32)
  else:
    targets = jax.random.normal(ky, (num_examples, c), jnp.float64)
  if bias_trick:
    params, x = model.fold_bias(params), model.add_bias_feature(x)
  return params, x, targets


def _sign_flip(params, x, targets, **kw):
  return jax.tree.map(lambda g: -g, grads.analytic_grad(params, x, targets, **kw))


def _factor_two(params, x, targets, **kw):
  return jax.tree.map(lambda g: 2.0 * g, grads.analytic_grad(params, x, targets, **kw))


def _missing_reg(params, x, targets, **kw):
  return grads.analytic_grad(params, x, targets, **{**kw, 'reg': 0.0})


def _missing_bias(params, x, targets, **kw):
  g = grads.analytic_grad(params, x, targets, **kw)
  if g.b is None:  # bias-trick form: the bias is the last column of W.
    return g._replace(W=g.W.at[:, -1].set(0.0))
  return g._replace(b=jnp.zeros_like(g.b))


# Wrong gradients a checker must catch, used by the tests and `--plant`.
PLANTED_BUGS = {
  'sign_flip': _sign_flip,
  'factor_two': _factor_two,
  'missing_reg': _missing_reg,
  'missing_bias': _missing_bias,
}
