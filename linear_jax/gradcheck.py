"""Gradient checking: finite differences, relative error, a three-way report.

The lecture's advice, done properly: derive the analytic gradient, then check
it against a numerical one. Here every hand-derived gradient is compared with
two independent references, `jax.grad` and finite differences, and the
report says which coordinates disagree, by name (`W[c, d]`, `b[c]`).

Verdict thresholds (a pair of values agrees when either holds):

==========================  ===================  ==================
pair                        relative error ≤     or |a − b| ≤
==========================  ===================  ==================
analytic vs autodiff        1e-9                 1e-12
either vs central diffs     1e-6                 1e-8
either vs forward diffs     1e-3                 1e-6
==========================  ===================  ==================

The absolute floor stops gradients that are zero up to round-off (where the
relative error of two tiny numbers means nothing) from failing the check.
Checks run in float64; `jax_enable_x64` must be on.

Hinge kinks: the `svm`, `hinge` and `l1` losses and the `l1` penalty are not
differentiable where a margin, residual or weight is exactly 0. A coordinate
whose finite-difference step crosses such a kink is reported as a kink, and
passes only if the gradient under test lies between the one-sided difference
quotients `(f(w) − f(w − h))/h` and `(f(w + h) − f(w))/h` (within tolerance).
"""

from collections.abc import Callable
import dataclasses
import functools
from typing import NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from linear_jax import grads
from linear_jax import losses
from linear_jax import model
from linear_jax import validation

METHODS = ('central', 'forward', 'sparse', 'directional')
DEFAULT_STEP = {'central': 1e-5, 'forward': 1e-7, 'sparse': 1e-5, 'directional': 1e-5}
# (relative tolerance, absolute tolerance) per comparison.
THRESHOLDS = {
  'autodiff': (1e-9, 1e-12),
  'central': (1e-6, 1e-8),
  'forward': (1e-3, 1e-6),
}


def relative_error(a, b):
  """`|a − b| / max(|a|, |b|)` elementwise, 0 where both are 0."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = np.maximum(np.abs(a), np.abs(b))
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)


def coordinate_names(params):
  """Names of the coordinates of `ravel_pytree(params)`: `W[c, d]` then `b[c]`."""
  c, d = np.shape(params.W)
  names = [f'W[{i}, {j}]' for i in range(c) for j in range(d)]
  if params.b is not None:
    names += [f'b[{i}]' for i in range(c)]
  return names


def _require_x64():
  if not jax.config.jax_enable_x64:
    raise ValueError(
      "Gradient checks need float64: call jax.config.update('jax_enable_x64', True) before any JAX work."
    )


def _to64(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _kink_state(params, x, targets, loss, penalty, margin):
  """A bool array that changes exactly when a kink of the objective is crossed."""
  spec = losses.LOSSES[loss]
  parts = []
  if spec.kinks is not None:
    k = spec.kinks(model.scores(params, x), targets, margin)
    parts.append(jnp.ravel(k > 0))
    if loss == 'l1':  # |r| has its kink at r = 0 seen from either side
      parts.append(jnp.ravel(k < 0))
  if penalty == 'l1':
    w = model.penalized_weights(params)
    parts += [jnp.ravel(w > 0), jnp.ravel(w < 0)]
  return jnp.concatenate(parts) if parts else jnp.zeros((0,), bool)


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


@functools.lru_cache(maxsize=64)
def _kernels(loss, penalty, w_shape, has_bias, chunk_size):
  """Jitted pieces of a check, compiled once per loss, penalty and shape.

  Data enter as arguments (`args = (x, targets, reg, margin)`), never as
  closures, so checking again (new data, new point, new `reg`) recompiles
  nothing.
  """
  template = model.Params(
    W=jnp.zeros(w_shape, jnp.float64), b=jnp.zeros(w_shape[:1], jnp.float64) if has_bias else None
  )
  unravel = ravel_pytree(template)[1]

  def f(v, args):
    x, targets, reg, margin = args
    return losses.unchecked_objective(unravel(v), x, targets, loss, reg, penalty, margin)

  def state(v, args):
    x, targets, _, margin = args
    return _kink_state(unravel(v), x, targets, loss, penalty, margin)

  def directional(v, args, dirs, h):
    base = state(v, args)

    def one(u):
      jvp = jax.jvp(lambda w: f(w, args), (v,), (u,))[1]
      kink = jnp.any(state(v + h * u, args) != base) | jnp.any(state(v - h * u, args) != base)
      return jvp, f(v + h * u, args), f(v - h * u, args), kink

    return jax.vmap(one)(dirs)

  return _Kernels(
    value=jax.jit(f),
    grad=jax.jit(jax.grad(f)),
    probes=jax.jit(_probes(f, state, chunk_size)),
    directional=jax.jit(directional),
    minus_at=jax.jit(lambda v, args, idx, h: jax.vmap(lambda i: f(v.at[i].add(-h), args))(idx)),
  )


def _coordinate_differences(kern, v, args, coords, h, method):
  """Difference quotients over `coords`: `(numerical, kink, backward, forward)`.

  The difference quotient (central or forward), whether the step crossed a
  kink, and the two one-sided quotients (`nan` where not computed).
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
  return numerical, kink, (f0 - f_minus) / h, (f_plus - f0) / h


def make_numerical_grad(f, h=1e-5, method='central', chunk_size=256):
  """A jitted `params -> numerical gradient of f` for repeated use (see `numerical_grad`)."""
  validation.check_name('numerical method', method, ('central', 'forward'))

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


def numerical_grad(f, params, h=1e-5, method='central', chunk_size=256):
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

  @property
  def passed(self):
    return self.num_failed == 0


@dataclasses.dataclass
class GradCheckReport:
  """The three-way report of one gradient check."""

  loss: str
  penalty: str
  reg: float
  margin: float
  bias_trick: bool
  method: str
  step: float
  num_params: int
  comparisons: list

  @property
  def passed(self):
    return all(c.passed for c in self.comparisons)

  def to_dict(self):
    d = dataclasses.asdict(self)
    d['passed'] = self.passed
    for c, cd in zip(self.comparisons, d['comparisons'], strict=True):
      cd['passed'] = c.passed
    return d

  def summary(self):
    """A few lines a person reads: one per pair, then the worst coordinates."""
    head = (
      f'{self.loss:<10} penalty={self.penalty} reg={self.reg:g} '
      f'bias_trick={self.bias_trick} method={self.method} h={self.step:g} '
      f'params={self.num_params}: {"OK" if self.passed else "FAIL"}'
    )
    lines = [head]
    for c in self.comparisons:
      lines.append(
        f'  {c.pair:<26} max rel {c.max_rel_error:9.2e}  max abs '
        f'{c.max_abs_error:9.2e}  failed {c.num_failed}/{c.num_compared}'
        f'  kinks {c.num_kinks}'
      )
      if not c.passed:
        for name, a, b, r in c.worst:
          lines.append(f'      {name:<12} {a: .10e} vs {b: .10e} (rel {r:.2e})')
    return '\n'.join(lines)


def _compare(pair, a, b, names, kind, kink=None, lower=None, upper=None, top=3):
  rtol, atol = THRESHOLDS[kind]
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  absdiff = np.abs(a - b)
  # Relative error means nothing for two values that are 0 up to round-off.
  rel = np.where(np.maximum(np.abs(a), np.abs(b)) > atol, relative_error(a, b), 0.0)
  ok = (rel <= rtol) | (absdiff <= atol)
  num_kinks = 0
  if kink is not None and kink.any():
    num_kinks = int(kink.sum())
    lo, hi = np.minimum(lower, upper), np.maximum(lower, upper)
    slack = atol + rtol * np.maximum(np.abs(lo), np.abs(hi))
    within = (a >= lo - slack) & (a <= hi + slack)
    ok = np.where(kink, within, ok)
    rel = np.where(kink, 0.0, rel)
    absdiff = np.where(kink, 0.0, absdiff)
  bad = np.flatnonzero(~ok)
  order = bad[np.argsort(-relative_error(a[bad], b[bad]))][:top]
  worst = [(names[i], float(a[i]), float(b[i]), float(relative_error(a[i], b[i]))) for i in order]
  return Comparison(
    pair=pair,
    max_rel_error=float(rel.max(initial=0.0)),
    max_abs_error=float(absdiff.max(initial=0.0)),
    num_compared=int(a.size),
    num_failed=int(bad.size),
    num_kinks=num_kinks,
    worst=worst,
  )


def check_gradients(
  params,
  x,
  targets,
  loss='softmax',
  reg=0.0,
  penalty='l2',
  margin=1.0,
  grad_fn: Callable | None = None,
  method='central',
  h=None,
  num_coords=64,
  num_directions=8,
  key=None,
  chunk_size=256,
):
  """Checks a hand-derived gradient against `jax.grad` and finite differences.

  Args:
    params, x, targets, loss, reg, penalty, margin: as for `objective`.
    grad_fn: the gradient under test, called like `grads.analytic_grad`
      (the default); pass your own to check a derivation of your own.
    method: `'central'` or `'forward'` (every coordinate), `'sparse'`
      (`num_coords` random coordinates, central differences) or
      `'directional'` (`num_directions` random unit directions: the
      directional derivative by JVP, by central differences and as the dot
      product with the gradient under test).
    h: finite-difference step; `DEFAULT_STEP[method]` if `None`.
    num_coords: coordinates drawn by the sparse check.
    num_directions: directions drawn by the directional check.
    key: `jax.random` key of the sparse and directional draws.
    chunk_size: coordinates evaluated together under `vmap`.

  Returns:
    A `GradCheckReport`; `report.passed` is the verdict.
  """
  _require_x64()
  validation.check_name('gradient-check method', method, METHODS)
  spec = losses.get_loss(loss)
  validation.check_name('penalty', penalty, losses.PENALTIES)
  validation.check_inputs(params, x, targets, spec.targets, reg=reg, margin=margin)
  grad_fn = grads.analytic_grad if grad_fn is None else grad_fn
  h = DEFAULT_STEP[method] if h is None else float(h)
  if not h > 0:
    raise ValueError(f'The finite-difference step h must be > 0, got {h}.')
  key = jax.random.PRNGKey(0) if key is None else key

  params, x = _to64(params), jnp.asarray(x, jnp.float64)
  targets = jnp.asarray(targets)
  if spec.targets == 'real':
    targets = targets.astype(jnp.float64)
  v, _ = ravel_pytree(params)
  names = coordinate_names(params)
  kern = _kernels(loss, penalty, tuple(params.W.shape), params.b is not None, int(chunk_size))
  args = (x, targets, jnp.float64(reg), jnp.float64(margin))

  analytic = ravel_pytree(grad_fn(params, x, targets, loss=loss, reg=reg, penalty=penalty, margin=margin))[0]
  autodiff = kern.grad(v, args)
  comparisons = [_compare('analytic vs autodiff', analytic, autodiff, names, 'autodiff')]

  if method == 'directional':
    dirs = jax.random.normal(key, (num_directions, v.size), jnp.float64)
    dirs = dirs / jnp.linalg.norm(dirs, axis=1, keepdims=True)
    jvp, fp, fm, kink = (np.asarray(a) for a in kern.directional(v, args, dirs, h))
    f0 = float(kern.value(v, args))
    numeric = (fp - fm) / (2 * h)
    lower, upper = (f0 - fm) / h, (fp - f0) / h
    dnames = [f'direction {i}' for i in range(num_directions)]
    a_dir = np.asarray(dirs @ analytic)
    comparisons += [
      _compare('analytic vs numerical', a_dir, numeric, dnames, 'central', kink, lower, upper),
      _compare('autodiff vs numerical', jvp, numeric, dnames, 'central', kink, lower, upper),
    ]
  else:
    if method == 'sparse':
      k = min(num_coords, v.size)
      coords = np.sort(np.asarray(jax.random.choice(key, v.size, (k,), replace=False)))
    else:
      coords = np.arange(v.size)
    kind = 'forward' if method == 'forward' else 'central'
    numeric, kink, lower, upper = _coordinate_differences(kern, v, args, jnp.asarray(coords), h, kind)
    sub = [names[i] for i in coords]
    a_sub, ad_sub = np.asarray(analytic)[coords], np.asarray(autodiff)[coords]
    comparisons += [
      _compare('analytic vs numerical', a_sub, numeric, sub, kind, kink, lower, upper),
      _compare('autodiff vs numerical', ad_sub, numeric, sub, kind, kink, lower, upper),
    ]
  return GradCheckReport(
    loss=loss,
    penalty=penalty,
    reg=float(reg),
    margin=float(margin),
    bias_trick=params.b is None,
    method=method,
    step=h,
    num_params=int(v.size),
    comparisons=comparisons,
  )


def random_problem(key, loss, num_examples=20, num_features=6, num_classes=4, bias_trick=False):
  """A random float64 problem for `loss`: `(params, x, targets)`.

  Binary losses get a single output whatever `num_classes` says; weights are
  of order 1 so that scores, and so gradients, are far from trivial.
  """
  spec = losses.get_loss(loss)
  kp, kx, ky = jax.random.split(key, 3)
  c = 1 if spec.targets == 'binary' else num_classes
  if spec.targets == 'class' and c < 2:
    raise ValueError(f'loss {loss!r} needs num_classes >= 2, got {num_classes}.')
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
