"""Tests of the gradient checker: it passes right gradients and catches wrong ones."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_jax as lj
from linear_jax.maths import gradcheck


def test_relative_error_definition():
  np.testing.assert_allclose(lj.relative_error([1.0, 0.0, -2.0], [1.1, 0.0, 2.0]), [0.1 / 1.1, 0.0, 2.0])
  # A NaN or an infinity against a number has no relative error (it read 0, as if they agreed).
  inf = np.inf
  np.testing.assert_equal(
    lj.relative_error([np.nan, inf, inf, 1.0], [3.14, 1.0, inf, np.nan]), [np.nan, np.nan, 0, np.nan]
  )
  c = gradcheck.compare('analytic vs numeric', [np.nan, 1.0], [3.14, 1.0], ['W[0]', 'W[1]'], (1e-6, 1e-8))
  assert not c.passed and c.num_failed == 1 and c.max_rel_error == inf and np.isnan(c.worst[0][3])


def test_lecture_finite_difference_arithmetic():
  # A loss with the lecture's values: f(W) = 1.25347 and the first coordinate's
  # step of 0.0001 gives 1.25322, so the forward difference is -2.5.
  w0 = jnp.array([0.34, -1.11, 0.78])
  grad = jnp.array([-2.5, 0.6, 0.0])
  f = lambda w: 1.25347 + jnp.dot(grad, w - w0)
  assert abs(float(f(w0.at[0].add(1e-4))) - 1.25322) < 1e-12
  np.testing.assert_allclose(lj.numerical_grad(f, w0, h=1e-4, method='forward'), grad, atol=1e-9)
  np.testing.assert_allclose((1.25322 - 1.25347) / 0.0001, -2.5)


def test_numerical_grad_central_beats_forward():
  f = lambda w: jnp.sum(jnp.sin(w) ** 3)
  w = jnp.linspace(-1.0, 1.0, 50)
  exact = 3 * jnp.sin(w) ** 2 * jnp.cos(w)
  fwd = lj.numerical_grad(f, w, h=1e-5, method='forward', chunk_size=7)
  cen = lj.numerical_grad(f, w, h=1e-5, method='central', chunk_size=7)
  assert float(jnp.max(jnp.abs(cen - exact))) < 1e-9 < float(jnp.max(jnp.abs(fwd - exact)))


@pytest.mark.parametrize('h', [0.0, -1e-5, 1e-13, 1.0, 1e300, float('nan'), float('inf')])
def test_a_step_where_a_finite_difference_means_nothing_is_refused(h):
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(1), 'svm', 10, 4, 3)
  with pytest.raises(ValueError, match=r'step h must be finite and in \[1e-12, 0\.1\] in float64'):
    lj.check_gradients(params, x, targets, loss='svm', h=h)
  with pytest.raises(ValueError, match=r'step h must be finite and in \[1e-12, 0\.1\]'):
    lj.numerical_grad(lambda w: jnp.sum(w**2), jnp.ones(3), h=h)


@pytest.mark.parametrize(
  'kwargs, message',
  [
    (
      {'method': 'sparse', 'num_coords': 0},
      r'num_coords must be a whole number >= 1 \(and at most 10,000\), got 0',
    ),  # a PASS
    ({'method': 'directional', 'num_directions': 0}, r'num_directions .* got 0'),  # a PASS of nothing
    ({'method': 'directional', 'num_directions': 10**9}, r'num_directions .* got 1000000000'),  # 36 GB
    ({'method': 'directional', 'num_directions': -3}, r'num_directions .* got -3'),  # an MLIR error
    ({'method': 'sparse', 'num_coords': 2.5}, r'num_coords .* got 2.5'),
    ({'chunk_size': 0}, r'chunk_size must be a whole number >= 1, got 0'),
    ({'chunk_size': -1}, r'chunk_size .* got -1'),  # a reshape TypeError
  ],
)
def test_a_count_that_would_compare_nothing_or_fail_in_jax_is_refused(kwargs, message):
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(1), 'svm', 10, 4, 3)
  with pytest.raises(ValueError, match=message):
    lj.check_gradients(params, x, targets, loss='svm', **kwargs)
  with pytest.raises(ValueError, match=message):
    lj.check_function_gradients(lambda w: jnp.sum(w**2), jnp.ones(3), None, **kwargs)
  if 'chunk_size' in kwargs:
    with pytest.raises(ValueError, match=message):
      lj.numerical_grad(lambda w: jnp.sum(w**2), jnp.ones(3), chunk_size=kwargs['chunk_size'])


@pytest.mark.parametrize('method', gradcheck.METHODS)
@pytest.mark.parametrize('loss', ['svm', 'softmax', 'hinge', 'l1'])
def test_correct_gradients_pass(method, loss):
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(1), loss, 10, 4, 3)
  report = lj.check_gradients(params, x, targets, loss=loss, reg=0.1, penalty='l1', method=method)
  assert report.passed, report.summary()
  assert [c.pair for c in report.comparisons] == [
    'analytic vs autodiff',
    'analytic vs numerical',
    'autodiff vs numerical',
  ]


@pytest.mark.parametrize('bug', sorted(gradcheck.PLANTED_BUGS))
@pytest.mark.parametrize('method', gradcheck.METHODS)
@pytest.mark.parametrize('bias_trick', [False, True])
def test_planted_bugs_fail(bug, method, bias_trick):
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(2), 'softmax', 10, 4, 3, bias_trick)
  report = lj.check_gradients(
    params,
    x,
    targets,
    loss='softmax',
    reg=0.5,
    penalty='l2',
    method=method,
    grad_fn=gradcheck.PLANTED_BUGS[bug],
    num_coords=30,
  )
  assert not report.passed
  assert not report.comparisons[0].passed and not report.comparisons[1].passed
  assert report.comparisons[2].passed  # autodiff and numerical still agree


def test_worst_coordinates_are_named():
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(3), 'softmax', 10, 4, 3)
  report = lj.check_gradients(
    params, x, targets, method='central', grad_fn=gradcheck.PLANTED_BUGS['missing_bias']
  )
  names = [w[0] for w in report.comparisons[0].worst]
  assert names and all(n.startswith('b[') for n in names)
  assert 'b[' in report.summary()


def test_kink_is_reported_not_failed():
  # One example, label 1, scores (0, 1) with margin 1: s_0 - s_1 + 1 = 0 exactly.
  params = lj.Params(W=jnp.array([[0.0, 0.0], [1.0, 0.0]]), b=jnp.zeros(2))
  x, y = np.array([[1.0, 0.0]]), np.array([1])
  report = lj.check_gradients(params, x, y, loss='svm', method='central')
  assert report.passed, report.summary()
  assert report.comparisons[1].num_kinks > 0
  # A "gradient" outside the one-sided derivatives fails even at a kink.
  wrong = lambda p, x, t, **kw: jax.tree.map(lambda g: g + 5.0, lj.analytic_grad(p, x, t, **kw))
  assert not lj.check_gradients(params, x, y, loss='svm', method='central', grad_fn=wrong).passed


@pytest.mark.parametrize('method', ['central', 'directional'])
def test_a_point_where_every_coordinate_is_a_kink_is_reported_inconclusive(method):
  """The multiclass SVM with margin 0 at W = 0: every score difference is 0, so every finite-difference
  step crosses a kink, and any value between the one-sided quotients passes. The verdict says that
  finite differences confirmed nothing there; the same check at a random point is conclusive."""
  x = np.random.default_rng(0).normal(size=(6, 4))
  y = np.array([0, 1, 2, 0, 1, 2])
  zero = lj.Params(W=jnp.zeros((3, 4)), b=jnp.zeros(3))
  report = lj.check_gradients(zero, x, y, loss='svm', margin=0.0, method=method)
  assert report.passed and report.inconclusive and report.to_dict()['inconclusive']
  assert all(c.num_kinks == c.num_compared for c in report.comparisons[1:])
  assert 'finite differences confirmed nothing' in report.summary().splitlines()[0]
  away = lj.Params(W=jnp.asarray(np.random.default_rng(1).normal(size=(3, 4))), b=jnp.zeros(3))
  elsewhere = lj.check_gradients(away, x, y, loss='svm', margin=0.0, method=method)
  assert elsewhere.passed and not elsewhere.inconclusive and 'confirmed nothing' not in elsewhere.summary()


def test_l1_penalty_kink_at_zero_weight():
  params = lj.Params(W=jnp.array([[0.0, 1.0], [0.5, 0.0]]), b=jnp.zeros(2))
  x, y = np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([0, 1])
  report = lj.check_gradients(params, x, y, loss='softmax', reg=1.0, penalty='l1', method='central')
  assert report.passed, report.summary()
  assert report.comparisons[1].num_kinks == 2


def test_sparse_and_directional_check_a_30k_parameter_model():
  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(4), 'softmax', 16, 3072, 10)
  assert params.W.size + params.b.size == 30730
  for method in ('sparse', 'directional'):
    report = lj.check_gradients(params, x, targets, method=method, num_coords=32, num_directions=4)
    assert report.passed and report.num_params == 30730


def test_correct_gradients_pass_where_the_objective_rounds_at_scale_and_bugs_still_fail():
  # `gradcheck --num_examples=500 --num_features=3000 --num_classes=10 --loss=svm --reg=0.1` (and 5,000
  # examples): the penalty of 30,000 unit weights makes f about 3,000, which rounds at 1e-13, and central
  # differences of the right gradient came out 3-4e-8 off, past the fixed floor of 1e-8: a false FAIL.
  params, x, y = gradcheck.random_problem(jax.random.PRNGKey(0), 'svm', 500, 3000, 10)
  key = jax.random.fold_in(jax.random.PRNGKey(0), 7)
  for method in ('sparse', 'directional'):
    report = lj.check_gradients(params, x, y, loss='svm', reg=0.1, method=method, key=key)
    assert report.passed, report.summary()
    numeric = report.comparisons[1]
    assert numeric.max_abs_error > 2 * gradcheck.THRESHOLDS['float64']['central'][1]  # beyond the fixed floor
  for bug, method in (('factor_two', 'sparse'), ('missing_reg', 'directional')):  # far above the floor
    wrong = lj.check_gradients(
      params, x, y, loss='svm', reg=0.1, method=method, grad_fn=gradcheck.PLANTED_BUGS[bug], key=key
    )
    assert not wrong.comparisons[1].passed and wrong.comparisons[2].passed, wrong.summary()


def test_a_correct_gradient_passes_on_mean_subtracted_pixels_at_the_assignments_scale():
  """500 × 3,073 mean-subtracted pixels (±128), 10 classes, the library's initial weights: a step of 1e-5
  moves the scores by ~1e-3, and the truncation error of central differences failed the right softmax
  gradient (rel 1e-4) at two of four sparse draws. The default step is divided by the features' rms."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (500, 3073)).astype(np.float64)
  x -= x.mean(0)
  y = rng.integers(0, 10, 500)
  params = lj.init_params(jax.random.PRNGKey(0), num_features=3073, num_classes=10)
  for seed in (0, 3):
    key = jax.random.PRNGKey(seed)
    report = lj.check_gradients(params, x, y, loss='softmax', reg=1e-3, method='sparse', key=key)
    assert report.passed, report.summary()
    assert report.step == pytest.approx(1e-5 / np.sqrt(np.mean(x * x)))
  # Unscaled, the quotients a step of 1e-5 gives miss by no more than their own error: no verdict on those.
  unscaled = lj.check_gradients(params, x, y, loss='softmax', reg=1e-3, method='sparse', h=1e-5)
  numeric = unscaled.comparisons[1]
  assert unscaled.passed and numeric.num_unsettled > 0 and not unscaled.inconclusive, unscaled.summary()
  said = f'OK, but {numeric.num_unsettled} of the 64 difference quotients decided nothing'
  assert said in unscaled.summary() and unscaled.unsettled == numeric.num_unsettled
  wrong = lj.check_gradients(
    params, x, y, loss='softmax', reg=1e-3, method='sparse', grad_fn=gradcheck.PLANTED_BUGS['factor_two']
  )
  assert not wrong.comparisons[1].passed and wrong.comparisons[2].passed, wrong.summary()


def test_requires_float64():
  code = (
    'import jax, numpy as np, linear_jax as lj\n'
    'p = lj.init_params(jax.random.PRNGKey(0), 2, 2)\n'
    'lj.check_gradients(p, np.ones((1, 2)), np.array([0]))\n'
  )
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
  assert out.returncode != 0 and 'jax_enable_x64' in out.stderr


def test_report_to_dict_is_json_ready():
  import json  # pylint: disable=import-outside-toplevel

  params, x, targets = gradcheck.random_problem(jax.random.PRNGKey(5), 'l2', 5, 2, 2)
  d = lj.check_gradients(params, x, targets, loss='l2').to_dict()
  assert json.loads(json.dumps(d))['passed'] is True


def test_a_valid_subgradient_at_an_l1_kink_passes_against_autodiff_and_an_invalid_one_fails():
  """At W = 0 an l1 penalty has the subgradients [−reg, reg] per weight: a hand-derived gradient taking
  sign(0) = +1 is as valid as jax.grad's sign(0) = 0 and FAILed 'analytic vs autodiff'; it passes at the
  kinks now, between the one-sided differences, and a value outside them still fails."""
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal((20, 6)), rng.integers(0, 4, 20)
  zero = lj.Params(W=jnp.zeros((4, 6)), b=jnp.zeros(4))

  def sign_plus(times):
    def grad_fn(params, x, y, loss, reg, penalty, **kw):
      g = lj.analytic_grad(params, x, y, loss=loss, reg=reg, penalty=penalty, **kw)
      return g._replace(W=g.W + times * reg * jnp.where(params.W == 0, 1.0, 0.0))

    return grad_fn

  check = lambda grad_fn: lj.check_gradients(
    zero, x, y, loss='softmax', reg=0.1, penalty='l1', grad_fn=grad_fn
  )
  valid = check(sign_plus(1.0)).comparisons[0]
  assert valid.passed and valid.num_kinks == 24
  invalid = check(sign_plus(3.0)).comparisons[0]  # 3·reg: outside the subdifferential
  assert not invalid.passed and invalid.num_failed == 24

  # Away from a kink the plain comparison stands: a gradient off by 1e-6 in b fails.
  def off(*args, **kw):
    g = lj.analytic_grad(*args, **kw)
    return g._replace(b=g.b + 1e-6)

  assert not check(off).comparisons[0].passed


def test_a_step_that_crosses_hinges_away_from_them_does_not_excuse_a_wrong_gradient():
  """On pixel-scale features a step of 1e-2 moves the scores by ~1 and crosses hinges in every
  coordinate, though the point sits on none: jax.grad is exact there. A gradient missing the penalty
  passed 'analytic vs autodiff' between the wide one-sided quotients; the kink test now steps a millionth
  of h, and the right gradient still passes."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (60, 40)).astype(np.float64)
  x = np.hstack([x - x.mean(0), np.ones((60, 1))])
  y = rng.integers(0, 5, 60)
  params = lj.Params(W=jnp.asarray(1e-3 * rng.standard_normal((5, 41))), b=None)
  check = lambda grad_fn=None: lj.check_gradients(
    params, x, y, loss='svm', reg=1e3, h=1e-2, method='sparse', num_coords=32, grad_fn=grad_fn
  )
  wrong = check(gradcheck.PLANTED_BUGS['missing_reg'])
  vs_autodiff = wrong.comparisons[0]
  assert not wrong.passed and not vs_autodiff.passed and vs_autodiff.num_kinks == 0, wrong.summary()
  assert vs_autodiff.num_failed > 150 and vs_autodiff.max_rel_error > 0.5
  assert check().passed


def test_a_failure_at_a_kink_shows_how_far_outside_the_one_sided_quotients_it_lies():
  # It printed `max rel 0.00e+00 max abs 0.00e+00` beside `failed 1/2`.
  c = gradcheck.compare(
    'analytic vs numerical',
    [0.5, 3.0],
    [0.0, 0.0],
    ['W[0]', 'W[1]'],
    (1e-6, 1e-8),
    kink=np.array([True, True]),
    lower=np.array([-1.0, -1.0]),
    upper=np.array([1.0, 1.0]),
  )
  assert c.num_failed == 1 and c.max_abs_error == 2.0 and c.max_rel_error == 2.0 and c.worst[0][0] == 'W[1]'
