"""Tests of the hand-derived gradients: against autodiff, check_grads, optax."""

import functools
import itertools

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import optax
import pytest

import linear_jax as lj
from linear_jax.maths import grad_sources
from linear_jax.maths import gradcheck
from linear_jax.maths import grads as grads_lib
from linear_jax.maths import losses

SHAPES = [(1, 1, 2), (7, 3, 2), (12, 5, 4)]  # (N, D, C), including N = 1, D = 1, C = 2


def _flat(tree):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])


@functools.partial(jax.jit, static_argnames=('loss', 'penalty'))
def _three_gradients(problems, loss, penalty):
  """The hand-derived, autodiff and central-difference gradients of each `(params, x, targets)` of
  `problems`, as one compiled program.

  One program per case instead of one per operation: the public functions' host checks see tracers
  and check shapes only, and the arrays they would check are `random_problem`'s, valid by design.
  """
  kw = dict(loss=loss, reg=0.3, penalty=penalty)
  out = []
  for params, x, targets in problems:
    analytic = lj.analytic_grad(params, x, targets, **kw)
    autodiff = jax.grad(lj.objective)(params, x, targets, **kw)
    numerical = lj.numerical_grad(lambda p, x=x, targets=targets: lj.objective(p, x, targets, **kw), params)
    out.append((analytic, autodiff, numerical))
  return out


@pytest.mark.parametrize(
  'loss,penalty,bias_trick',
  list(itertools.product(sorted(losses.LOSSES), sorted(losses.PENALTIES), [False, True])),
)
def test_analytic_matches_autodiff(loss, penalty, bias_trick):
  problems = [
    gradcheck.random_problem(jax.random.PRNGKey(seed), loss, n, d, c, bias_trick)
    for seed, (n, d, c) in enumerate(SHAPES)
  ]
  for grads in _three_gradients(problems, loss, penalty):
    analytic, autodiff, numerical = map(_flat, grads)
    np.testing.assert_allclose(analytic, autodiff, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(analytic, numerical, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize('loss', sorted(n for n, rec in losses.LOSSES.items() if rec.smooth))
def test_smooth_objectives_pass_check_grads(loss):
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(3), loss, 6, 3, 3)
  # Compiled: check_grads evaluates f and its derivatives many times, op by op otherwise.
  f = jax.jit(lambda p: lj.objective(p, x, targets, loss=loss, reg=0.1, penalty='l2'))
  check_grads(f, (params,), order=2, modes=['fwd', 'rev'])


@pytest.mark.parametrize('loss', sorted(losses.LOSSES))
def test_custom_vjp_matches_analytic_and_passes_check_grads(loss):
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(4), loss, 6, 3, 3)
  kw = dict(loss=loss, reg=0.2, penalty='l2')
  g = jax.grad(lj.custom_vjp_objective)(params, x, targets, **kw)
  np.testing.assert_allclose(_flat(g), _flat(lj.analytic_grad(params, x, targets, **kw)), rtol=1e-12)
  check_grads(
    jax.jit(lambda p: lj.custom_vjp_objective(p, x, targets, **kw)), (params,), order=1, modes=['rev']
  )


def test_value_and_grad_sources_agree_under_jit():
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(5), 'svm', 9, 4, 3)
  fn = jax.jit(lj.value_and_grad, static_argnums=0, static_argnames=('loss', 'penalty'))
  results = [fn(s, params, x, targets, loss='svm', reg=0.1, penalty='l1') for s in lj.GRAD_SOURCES]
  for value, g in results[1:]:
    np.testing.assert_allclose(value, results[0][0], rtol=1e-14)
    np.testing.assert_allclose(_flat(g), _flat(results[0][1]), rtol=1e-12)
  with pytest.raises(ValueError, match='Unknown gradient source'):
    lj.value_and_grad('finite', params, x, targets)


def test_optax_trains_through_the_custom_vjp():
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(6), 'softmax', 20, 3, 3)
  opt = optax.sgd(0.5)
  state = opt.init(params)
  kw = dict(loss='softmax', reg=0.0)
  before = float(lj.objective(params, x, targets, **kw))
  for _ in range(20):
    g = jax.grad(lj.custom_vjp_objective)(params, x, targets, **kw)
    updates, state = opt.update(g, state)
    params = optax.apply_updates(params, updates)
  assert float(lj.objective(params, x, targets, **kw)) < 0.7 * before


def test_per_example_gradients_under_vmap_average_to_the_batch_gradient():
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(7), 'softmax', 8, 3, 4)
  per = jax.vmap(lambda xi, ti: grad_sources.value_and_grad('analytic', params, xi[None], ti[None])[1])(
    x, targets
  )
  mean = jax.tree.map(lambda a: a.mean(0), per)
  np.testing.assert_allclose(_flat(mean), _flat(lj.analytic_grad(params, x, targets)), rtol=1e-12)


def test_lecture_l2_update_rule():
  # dL/dw_j = -2 Σ_k δ_k x_kj for L = Σ_k (y_k - wᵀx_k)², δ_k = y_k - wᵀx_k.
  rng = np.random.default_rng(8)
  x, y, w = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=3)
  params = lj.Params(W=jnp.asarray(w[None]), b=None)
  delta = y - x @ w
  # objective is the mean, the lecture's L the sum: scale by N.
  g = lj.analytic_grad(params, x, y, loss='l2').W[0] * 5
  np.testing.assert_allclose(g, -2 * (delta[:, None] * x).sum(0), rtol=1e-12)


def test_lecture_sigmoid_update_rule():
  # dL/dw_j = Σ_i -2 δ_i σ_i (1 - σ_i) x_ij, δ_i = y_i - σ_i.
  rng = np.random.default_rng(9)
  x, y, w = rng.normal(size=(6, 2)), rng.integers(0, 2, 6), rng.normal(size=2)
  params = lj.Params(W=jnp.asarray(w[None]), b=None)
  sig = 1 / (1 + np.exp(-(x @ w)))
  expected = (-2 * (y - sig) * sig * (1 - sig))[:, None] * x
  g = lj.analytic_grad(params, x, y, loss='sigmoid_l2').W[0] * 6
  np.testing.assert_allclose(g, expected.sum(0), rtol=1e-12)


def test_masked_gradient_equals_gradient_of_the_unpadded_batch():
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(10), 'hinge', 6, 3, 1)
  xp = np.concatenate([x, np.full((2, 3), 1e3)])
  tp = np.concatenate([targets, [1, 0]])
  mask = np.array([1] * 6 + [0, 0])
  for source in lj.GRAD_SOURCES:
    _, g = lj.value_and_grad(source, params, xp, tp, loss='hinge', reg=0.1, mask=mask)
    np.testing.assert_allclose(
      _flat(g), _flat(lj.analytic_grad(params, x, targets, loss='hinge', reg=0.1)), rtol=1e-12
    )


@pytest.mark.parametrize('loss', ['softmax', 'svm', 'logistic', 'l2', 'huber'])
def test_weights_are_checked_and_weighted_gradients_match(loss):
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(11), loss, 12, 3, 3)
  w = np.linspace(0.0, 2.0, 12)
  per_example = losses.get_loss(loss).value(lj.scores(params, x), targets, **losses.get_loss(loss).hparams)
  expect = np.sum(w * np.asarray(per_example)) / np.sum(w) + 0.1 * np.sum(np.square(params.W))
  kw = dict(loss=loss, reg=0.1, mask=w)
  np.testing.assert_allclose(lj.objective(params, x, targets, **kw), expect, rtol=1e-12)
  analytic = _flat(lj.analytic_grad(params, x, targets, **kw))
  np.testing.assert_allclose(analytic, _flat(jax.grad(lj.objective)(params, x, targets, **kw)), rtol=1e-11)
  assert lj.check_gradients(params, x, targets, loss=loss, reg=0.1, mask=w).passed
  # Integer weights are repeated rows.
  reps = np.arange(12) % 3
  rows = np.repeat(np.arange(12), reps)
  same = lj.analytic_grad(params, x[rows], targets[rows], loss=loss, reg=0.1)
  np.testing.assert_allclose(
    _flat(lj.analytic_grad(params, x, targets, loss=loss, reg=0.1, mask=reps)), _flat(same), rtol=1e-11
  )
  for bad, match in (
    (-w, 'must be finite and >= 0; index 1'),
    (np.zeros(12), 'all 12 are 0'),
    (w[:5], r'must be \[N\] = \[12\]'),
    (np.where(w > 1, np.nan, w), 'must be finite'),
  ):
    with pytest.raises(ValueError, match=match):
      lj.objective(params, x, targets, loss=loss, mask=bad)


def test_unchecked_gradient_asserts_the_shapes_of_x_targets_and_mask():
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(0), 'softmax')
  fn = jax.jit(grads_lib.unchecked_analytic_grad)
  assert fn(params, x, targets).W.shape == params.W.shape
  with pytest.raises(AssertionError):
    fn(params, x, targets[:-1])
  with pytest.raises(AssertionError):
    fn(params, x, targets, mask=jnp.ones(len(x) + 1))


@pytest.mark.parametrize('penalty', ['l1', 'l2'])
def test_numpy_parameters_in_bias_trick_form_get_their_gradient(penalty):
  # The penalty's gradient zeroes the bias column with `.at`, which a NumPy W lacks: an AttributeError.
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(6), 'softmax', 5, 3, 3, bias_trick=True)
  as_numpy = lj.Params(np.asarray(params.W), None)
  kw = dict(loss='softmax', reg=0.1, penalty=penalty)
  got = lj.analytic_grad(as_numpy, np.asarray(x), np.asarray(targets), **kw)
  np.testing.assert_allclose(got.W, jax.grad(lj.objective)(params, x, targets, **kw).W, rtol=1e-12)
  assert not np.any(np.asarray(grads_lib.penalty_grad(as_numpy, penalty, 0.1))[:, -1])  # the bias: no penalty
