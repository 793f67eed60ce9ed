"""Bad input to the core functions: a ValueError naming the problem, before any work."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_jax as lj
from linear_jax.maths import validation

P3 = lj.Params(W=jnp.zeros((3, 2)), b=jnp.zeros(3))
P1 = lj.Params(W=jnp.zeros((1, 2)), b=jnp.zeros(1))
X = np.ones((4, 2))


@pytest.mark.parametrize('fn', [lj.objective, lj.analytic_grad])
@pytest.mark.parametrize(
  'params,x,targets,kwargs,match',
  [
    (P3, X, np.array([0, 1, 3, 0]), {}, r'label 3 at index 2 is outside \[0, 3\)'),
    (P3, X, np.array([0, -1, 2, 0]), {}, r'label -1 at index 1'),
    (P3, X, np.array([0, 1.5, 2, 0]), {}, r'must be integers, got 1.5 at index 1'),
    (P1, X, np.array([0, 1, 2, 0]), {'loss': 'logistic'}, r'label 2 at index 2 is outside \{0, 1\}'),
    (P3, X, np.array([0, 1, 1, 0]), {'loss': 'hinge'}, r'single score per example'),
    (P1, X, np.array([0, 1, 1, 0]), {'loss': 'svm'}, r'C >= 2'),
    (P3, np.ones((4, 5)), np.array([0, 1, 2, 0]), {}, r'x has 5 features but W expects 2'),
    (P3, X, np.array([0, 1, 2]), {}, r'targets hold 3 examples but x holds 4'),
    (P3, np.array([[1.0, np.nan]] * 4), np.zeros(4, int), {}, r'non-finite feature.*example 0, feature 1'),
    (P3, np.array([[1.0, 2.0]] * 3 + [[np.inf, 0.0]]), np.zeros(4, int), {}, r'example 3, feature 0'),
    (P3, np.ones((0, 2)), np.zeros(0, int), {}, r'empty batch'),
    (P3, X, np.zeros(4, int), {'loss': 'hinge2'}, r"Unknown loss 'hinge2'; valid: .*hinge, .*l1, l2"),
    (P3, X, np.zeros(4, int), {'penalty': 'l3'}, r"Unknown penalty 'l3'; valid: l1, l2"),
    (P3, X, np.zeros(4, int), {'reg': -0.1}, r'reg must be finite and >= 0'),
    (P3, X, np.zeros(4, int), {'reg': '0.1'}, r"reg must be a number, got '0.1'"),  # was NumPy's TypeError
    # An array made a vector objective and a penalty per column of W, silently.
    (
      P3,
      X,
      np.zeros(4, int),
      {'reg': np.array([0.1, 0.2])},
      r'reg must be one number, got an array of shape \[2\]',
    ),
    (
      P3,
      X,
      np.zeros(4, int),
      {'loss': 'svm', 'margin': np.ones(3)},
      r"'margin' must be one number, got an array",
    ),
    (P3, X, np.zeros(4, int), {'loss': 'svm', 'margin': '1'}, r"'margin' must be a number, got '1'"),
    (
      P3,
      X,
      np.zeros(4, int),
      {'loss': 'svm', 'margin': -1.0},
      r"Loss 'svm': hyperparameter 'margin' must be finite and >= 0",
    ),
    (P3, X, np.zeros((4, 2)), {'loss': 'l2'}, r'regression targets must be \[N\] \(C = 1\) or \[N, C\]'),
    (P3, X, np.array([0, 1, np.nan, 0]), {}, r'non-finite target at index 2'),
  ],
)
def test_rejects_bad_input(fn, params, x, targets, kwargs, match):
  with pytest.raises(ValueError, match=match):
    fn(params, x, targets, **kwargs)


def test_a_reg_of_any_real_dtype_is_taken():
  # Refusing strings and bools (NumPy's TypeError named nothing) must not refuse bfloat16, a real number.
  y = np.array([0, 1, 2, 0])
  for reg in (0.1, 1, np.float32(0.1), jnp.asarray(0.1, jnp.bfloat16)):
    assert np.isfinite(float(lj.objective(P3, X, y, reg=reg)))


def test_bias_trick_feature_mismatch_says_so():
  folded = lj.fold_bias(P3)
  with pytest.raises(ValueError, match='bias-trick form'):
    lj.objective(folded, X, np.zeros(4, int))


def test_integral_float_labels_are_accepted():
  assert np.isfinite(float(lj.objective(P3, X, np.array([0.0, 1.0, 2.0, 0.0]))))


def test_init_params_rejects_empty_shapes():
  import jax  # pylint: disable=import-outside-toplevel

  with pytest.raises(ValueError, match='num_features >= 1'):
    lj.init_params(jax.random.PRNGKey(0), 0, 3)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_all_finite_agrees_with_isfinite(dtype):
  x = np.random.default_rng(0).standard_normal((50, 40)).astype(dtype)
  assert validation.all_finite(x)
  for value in (np.nan, np.inf, -np.inf):
    y = x.copy()
    y[17, 3] = value
    assert not validation.all_finite(y)
  y = x.copy()
  y[5, :2] = (np.inf, -np.inf)  # inf + -inf is NaN: still caught
  assert not validation.all_finite(y)
  big = np.finfo(dtype).max
  y = x.copy()
  y[5, :3] = big  # a row sum that overflows, every value finite: checked value by value
  assert validation.all_finite(y)


@pytest.mark.parametrize(
  'kwargs, match',
  [
    ({'penalty': 'l3'}, r"Unknown penalty 'l3'; valid: l1, l2"),
    ({'reg': -1.0}, r'reg must be finite and >= 0'),
  ],
)
def test_the_gradient_sources_check_what_costs_nothing(kwargs, match):
  # A KeyError from deep inside, and an objective that fell without bound at a negative reg.
  y = np.array([0, 1, 2, 0])
  for source in ('analytic', 'autodiff', 'custom_vjp'):
    with pytest.raises(ValueError, match=match):
      lj.value_and_grad(source, P3, X, y, **kwargs)
  with pytest.raises(ValueError, match=match):
    lj.custom_vjp_objective(P3, X, y, **kwargs)


def test_params_of_another_kind_and_bad_initial_weights_are_refused_by_name():
  # A dict failed in an AttributeError, a float count and an int key in JAX's TypeErrors; a NaN scale
  # gave a NaN W without a word.
  as_dict = {'W': P3.W, 'b': P3.b}
  with pytest.raises(ValueError, match=r'must be an lj.Params\(W, b\), got a dict: lj.Params\(\*\*params\)'):
    lj.objective(as_dict, X, np.zeros(4, int))
  with pytest.raises(ValueError, match=r'params must be an lj.Params'):
    lj.predict(as_dict, X)
  key = jax.random.PRNGKey(0)
  for args, match in (
    ((key, 3.5, 3), r'whole numbers num_features >= 1 and num_classes >= 1, got num_features=3.5'),
    ((key, 3, True), r'num_classes=True'),
    ((0, 3, 3), r'key must be a jax.random key \(jax.random.PRNGKey\(0\)\), got int'),
    ((key, 3, 3, float('nan')), r'scale must be one finite number >= 0, got nan'),
  ):
    with pytest.raises(ValueError, match=match):
      lj.init_params(*args)
  assert lj.init_params(key, np.int64(3), 2).W.shape == (2, 3)


def test_every_gradient_source_returns_the_parameters_dtype():
  # float32 weights and float64 rows: the hand-derived and custom_vjp gradients came back in float64,
  # jax.grad's in float32.
  with jax.enable_x64(True):
    params = lj.init_params(jax.random.PRNGKey(0), 2, 3)
    x, y = np.random.default_rng(0).uniform(size=(5, 2)), np.array([0, 1, 2, 1, 0])
    for source in ('analytic', 'autodiff', 'custom_vjp'):
      _, g = lj.value_and_grad(source, params, x, y)
      assert (g.W.dtype, g.b.dtype) == (jnp.float32, jnp.float32), source
    assert lj.analytic_grad(params, x, y).W.dtype == jnp.float32
