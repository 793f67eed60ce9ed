"""Property-based tests: the lecture's facts hold for random shapes and extreme scores.

Each example's computation is one jitted program (per loss, penalty and shape) rather than one program
per operation: hypothesis draws new shapes, and each new shape would otherwise compile every operation
of the loss again. The public functions' host checks see tracers there and check shapes only.
"""

import functools

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

import linear_jax as lj
from linear_jax.maths import classification
from linear_jax.maths import losses

# JAX-friendly: compilation makes the first example slow, so no deadline; derandomized for CI.
PROPS = settings(deadline=None, derandomize=True, max_examples=30)

shapes = st.tuples(
  st.integers(1, 6), st.integers(1, 4), st.integers(2, 5)
)  # N, D, C (N=1, D=1, C=2 included)
scales = st.sampled_from([1e-3, 1.0, 30.0, 1e4])
# seed, (N, D, C), weight scale, loss, penalty
problems = (
  st.integers(0, 2**31),
  shapes,
  scales,
  st.sampled_from(sorted(losses.LOSSES)),
  st.sampled_from(sorted(losses.PENALTIES)),
)


def _problem(seed, n, d, c, scale, loss):
  rng = np.random.default_rng(seed)
  kind = losses.LOSSES[loss].targets
  c = 1 if kind == 'binary' else c
  params = lj.Params(W=jnp.asarray(rng.normal(size=(c, d)) * scale), b=jnp.asarray(rng.normal(size=c)))
  x = rng.normal(size=(n, d))
  targets = {'class': rng.integers(0, c, n), 'binary': rng.integers(0, 2, n)}.get(
    kind, rng.normal(size=(n, c))
  )
  return params, x, targets


@jax.jit
def _svm_three_ways(s, y):
  """The largest per-example multiclass SVM loss of scores `s`, and the objective at W = sᵀ and at 2W."""
  params = lj.Params(W=s.T, b=jnp.zeros(s.shape[1], s.dtype))
  x = jnp.eye(s.shape[0], dtype=s.dtype)
  at = lambda k: lj.objective(params._replace(W=k * params.W), x, y, loss='svm')
  return jnp.max(classification.multiclass_svm(s, y)), at(1.0), at(2.0)


_softmax_and_shifted = jax.jit(
  lambda s, y, shifted: tuple(classification.softmax_cross_entropy(a, y) for a in (s, shifted))
)


@functools.partial(jax.jit, static_argnames=('loss',))
def _per_example(params, x, targets, loss):
  spec = losses.LOSSES[loss]
  return spec.value(lj.scores(params, x), targets, **spec.hparams)


@functools.partial(jax.jit, static_argnames=('loss', 'penalty'))
def _two_gradients(params, x, targets, loss, penalty):
  """The hand-derived and the autodiff gradient of the objective (reg 0.1)."""
  kw = dict(loss=loss, reg=0.1, penalty=penalty)
  return lj.analytic_grad(params, x, targets, **kw), jax.grad(lj.objective)(params, x, targets, **kw)


@functools.partial(jax.jit, static_argnames=('loss', 'penalty'))
def _plain_and_folded(params, x, targets, loss, penalty):
  """`(objective, hand-derived gradient)` with a separate bias and in bias-trick form (reg 0.3)."""
  kw = dict(loss=loss, reg=0.3, penalty=penalty)
  both = ((params, x), (lj.fold_bias(params), lj.add_bias_feature(x)))
  return tuple((lj.objective(p, a, targets, **kw), lj.analytic_grad(p, a, targets, **kw)) for p, a in both)


@PROPS
@given(st.integers(0, 2**31), shapes, scales, st.sampled_from(sorted(losses.LOSSES)))
def test_losses_are_nonnegative_and_finite(seed, shape, scale, loss):
  params, x, targets = _problem(seed, *shape, scale, loss)
  per_example = _per_example(params, x, targets, loss)
  assert bool(jnp.all(per_example >= 0)) and bool(jnp.all(jnp.isfinite(per_example)))


@PROPS
@given(st.integers(0, 2**31), shapes, st.floats(1.0, 100.0))
def test_svm_zero_when_margins_met_and_for_2w(seed, shape, gap):
  n, d, c = shape
  rng = np.random.default_rng(seed)
  y = rng.integers(0, c, n)
  # Scores whose correct entry beats every other by `gap` ≥ Δ = 1: every margin is met.
  s = rng.normal(size=(n, c))
  s[np.arange(n), y] = s.max(axis=1) + gap
  # Directly, and through W: x = one-hot rows, W chosen so that W x = s for each example; then 2W.
  largest, at_w, at_2w = _svm_three_ways(s, y)
  assert float(largest) == 0.0 and float(at_w) == 0.0 and float(at_2w) == 0.0


@PROPS
@given(st.integers(0, 2**31), shapes, st.floats(-1e6, 1e6))
def test_softmax_invariant_to_shifting_all_scores(seed, shape, shift):
  n, _, c = shape
  rng = np.random.default_rng(seed)
  s, y = rng.normal(size=(n, c)) * 10, rng.integers(0, c, n)
  a, b = _softmax_and_shifted(s, y, s + shift)
  np.testing.assert_allclose(b, a, atol=1e-9 * max(1.0, abs(shift)))


@PROPS
@given(*problems)
def test_hand_derived_gradient_equals_autodiff(seed, shape, scale, loss, penalty):
  params, x, targets = _problem(seed, *shape, scale, loss)
  a, g = _two_gradients(params, x, targets, loss, penalty)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(g), strict=True):
    np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-9)
    assert bool(jnp.all(jnp.isfinite(u)))


@PROPS
@given(*problems)
def test_bias_trick_objective_equals_plain(seed, shape, scale, loss, penalty):
  params, x, targets = _problem(seed, *shape, scale, loss)
  (plain, g_plain), (folded, g_folded) = _plain_and_folded(params, x, targets, loss, penalty)
  np.testing.assert_allclose(folded, plain, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(g_folded.W[:, :-1], g_plain.W, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(g_folded.W[:, -1], g_plain.b, rtol=1e-10, atol=1e-12)
